"""Where along its chain a checkpoint loses quality: each level judged from real data.

Real samples x_0 (a fixed subset of the training data) are noised to x_k ~ q(x_k | x_0) at
every level k = 1..T, and two things are judged against the data, beside the real subset
itself (the floor of the metric at this N; for image data the subset is part of the reference,
so new real images score somewhat higher; toys are judged against a fresh draw):

  rec k    the generator's one-step estimate of x_0 from the real x_k
  chain k  the model's own sampler run from the real x_k down to 0 (k generator calls)

A generator that samples q(x_0 | x_k) exactly scores the floor at every level. `rec 1` is what
the last step of every sampling chain does to an image that was right until then; a level whose
`rec` is well above the floor, or a `chain k` worse than `chain k-1`, is where quality goes.
Class metrics (labelled data) show whether a level keeps the class x_k carries.

    python experiments/levels.py RUN/checkpoints/checkpoint-000104.pt --num 200
    python experiments/levels.py CKPT --metrics fid,kid,classes --out levels.jsonl
    python experiments/levels.py CKPT --save lv && python experiments/span.py lv/rec1.npy lv/chain4.npy

`--save DIR` keeps every judged set as float32 .npy (real.npy, rec1.npy, chain1.npy, ...), the
format of `hybrid sample --out x.npy`, for other tools: span.py tells texture from shapes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridgan.hybrid.checkpoint import load, model_from  # noqa: E402
from hybridgan.hybrid.images import to_uint8, write_samples  # noqa: E402
from hybridgan.hybrid.samplers import levels, sample_batched  # noqa: E402
from hybridgan.metrics.evaluate import HELD_OUT_SEED, EvalConfig, evaluate, tensor_samples  # noqa: E402
from hybridgan.training.data import load_dataset  # noqa: E402

SEED_BASE = 2_000_000  # sampling seeds (latents, posterior noise) of the chains


def chosen_levels(T: int, given: list[int] | None) -> list[int]:
    """The levels to judge: those given, else every level of a short chain, 8 evenly spaced ones of a long chain."""
    chosen = sorted(given or (range(1, T + 1) if T <= 8 else levels(T, 8)))
    if not 1 <= chosen[0] <= chosen[-1] <= T:
        raise ValueError(f"--levels must lie in 1..{T}, got {chosen}")
    return chosen


def rows(data_name: str, model, chosen: list[int], num: int, metrics: tuple[str, ...], seed: int, device: str,
         save: Path | None = None):
    """One dict per judged set: what, level, and each metric's values; with `save`, each set also
    goes to save/<what><level>.npy (real.npy for the real subset)."""
    resolution = model.cfg.shape[-1] if model.cfg.is_image else None
    data = load_dataset(data_name, resolution)
    ref = load_dataset(data_name, resolution, HELD_OUT_SEED)  # toys: a fresh draw; images: the same data
    x0 = data.batch(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num])
    cfg, seeds = EvalConfig(metrics=metrics), list(range(SEED_BASE, SEED_BASE + num))
    noise = torch.Generator().manual_seed(seed + 1)

    def judge(what: str, level: int, x: torch.Tensor) -> dict:
        if save:
            write_samples(x, save / f"{what}{level or ''}.npy", image=model.cfg.is_image)
        x = to_uint8(x) if model.cfg.is_image else x.float()
        result = evaluate(tensor_samples(x, what), ref, data_name, cfg, torch.device(device), log=lambda _: None)
        return {"what": what, "level": level, **result.values}

    yield judge("real", 0, x0)
    for k in chosen:
        t = torch.full((num,), k, dtype=torch.long)
        x_k = model.schedule.q_sample(x0, t, torch.randn(x0.shape, generator=noise))
        z = torch.randn((num, model.z_dim), generator=noise).to(device) if model.z_dim else None
        with torch.no_grad():
            rec = model.predict_x0(model.net_at(model.G_ema, k), x_k.to(device), t.to(device), z).float().cpu()
        yield judge("rec", k, rec.clamp(-1, 1) if model.cfg.is_image else rec)
        yield judge("chain", k, sample_batched(model, seeds, start=(k, x_k), device=device))


def level_list(text: str) -> list[int]:
    return [int(k) for k in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--num", type=int, default=200, help="real samples, and samples judged per row")
    p.add_argument("--metrics", default=None, help="comma-separated [default: fid,kid for images, swd for vectors]")
    p.add_argument("--seed", type=int, default=0, help="picks the real subset and the noise that makes x_k")
    p.add_argument("--levels", type=level_list, help="comma-separated levels [default: all of T <= 8, else 8 evenly spaced]")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="also append the rows to this JSON-lines file")
    p.add_argument("--save", type=Path, metavar="DIR", help="also keep each judged set as DIR/<row>.npy (real, rec1, chain1, ...)")
    args = p.parse_args()
    metrics = tuple(args.metrics.split(",")) if args.metrics else ()
    ckpt = load(args.checkpoint)
    model = model_from(ckpt, args.checkpoint).to(args.device)
    try:
        chosen = chosen_levels(model.cfg.steps, args.levels)
    except ValueError as e:
        p.error(str(e))  # one line, exit status 2
    if args.save:
        try:
            args.save.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            p.error(f"--save {args.save}: {e.strerror}")
    print(f"{'row':<9} metrics at N = {args.num}", flush=True)
    for row in rows(ckpt["config"]["data"], model, chosen, args.num, metrics, args.seed, args.device, args.save):
        label = row["what"] if row["level"] == 0 else f"{row['what']} {row['level']}"
        values = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("what", "level"))
        print(f"{label:<9} {values}", flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps({"checkpoint": args.checkpoint, "num": args.num, **row}) + "\n")


if __name__ == "__main__":
    main()
