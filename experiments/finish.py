"""Which teacher levels should finish a one-step student: the same trained student, finished elsewhere.

A student of `train --teacher-levels N` trains only its top level; the kept levels below it run a
frozen copy of the teacher. Where they sit (`--student-sigma`) does not change what the top level
learns, so one trained checkpoint answers the question for any placement: each `--kept` variant
moves the kept levels to those teacher levels (increasing, below the top), keeps the top level
and every weight as they are, samples at the variant's full NFE from the same seeds as `hybrid
sample --num N`, and judges the samples by Inception (fid, kid, classes), the digit classifier
(its FD, on labelled images) and their off-span rms (experiments/span.py; digits only).

    python experiments/finish.py runs/student/checkpoints/checkpoint-000076.pt --kept 21 10 5,21 --num 1000
    python experiments/finish.py CKPT --kept 21 --num 1000 --out finish.jsonl   # also one JSON line per variant

The variant equal to the checkpoint's own levels gives what `hybrid sample` and `hybrid eval` give.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from span import data_span, flat, project  # noqa: E402

from hybridgan.hybrid.checkpoint import load, model_from  # noqa: E402
from hybridgan.hybrid.errors import UserError  # noqa: E402
from hybridgan.hybrid.images import to_uint8  # noqa: E402
from hybridgan.hybrid.samplers import SEED_BASE, sample_batched  # noqa: E402
from hybridgan.hybrid.schedule import base_levels  # noqa: E402
from hybridgan.metrics.evaluate import HELD_OUT_SEED, EvalConfig, evaluate, tensor_samples  # noqa: E402
from hybridgan.training.data import load_dataset  # noqa: E402


def parse_kept(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected teacher levels such as 21 or 5,21") from None
    if any(b <= a for a, b in zip(levels, levels[1:])) or levels[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected increasing teacher levels >= 1")
    return levels


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return int(text)


def finished_at(state: dict, kept: tuple[int, ...], path: str):
    """The checkpoint's model with its kept levels moved to teacher levels `kept` (UserError where it has no kept
    level, or where `kept` does not fit below its top level)."""
    cfg = state["config"]["model"]
    if not cfg.get("frozen_levels"):
        raise UserError(f"{path}: keeps no teacher level; give a student of `train --teacher-levels N`")
    if cfg.get("classes"):
        raise UserError(f"{path}: a class-conditional student; finish.py judges unconditional ones")
    levels = cfg.get("schedule_levels") or base_levels(cfg["steps"], cfg["schedule_steps"], cfg.get("schedule_top"))
    top = levels[-1]
    trained = cfg["steps"] - cfg["frozen_levels"]
    if trained != 1:
        raise UserError(f"{path}: trains {trained} levels; finish.py moves the kept levels below a one-level student")
    if kept[-1] >= top:
        raise UserError(f"--kept {','.join(map(str, kept))}: at or above the student's top level {top}")
    model_cfg = {**cfg, "schedule_levels": (*kept, top), "steps": len(kept) + 1, "frozen_levels": len(kept)}
    return model_from({**state, "config": {**state["config"], "model": model_cfg}}, path)


def judge(x: torch.Tensor, ref, ref_name: str, span: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, float]:
    """Images: Inception's fid, kid and classes, the classifier's FD where the reference has labels, and the
    off-span rms of the 8-bit images the metrics see (as span.py measures a sample file). Vectors: `hybrid eval`'s
    metrics of them (modes, high-quality share, swd, mmd)."""
    cpu, quiet = torch.device("cpu"), dict(log=lambda _: None)
    if x.dim() == 2:
        return dict(evaluate(tensor_samples(x, "samples"), ref, ref_name, EvalConfig(progress=False), cpu, **quiet).values)
    uint8 = to_uint8(x)
    images = tensor_samples(uint8, "samples")
    labelled = ref.labels is not None
    metrics = ("fid", "kid", "classes") if labelled else ("fid", "kid")
    scores = dict(evaluate(images, ref, ref_name, EvalConfig(metrics=metrics, progress=False), cpu, **quiet).values)
    if labelled:
        scores["classifier fid"] = evaluate(images, ref, ref_name, EvalConfig(metrics=("fid",), extractor="classifier",
                                                                               progress=False), cpu, **quiet).values["fid"]
    if span is not None:
        flat_x = uint8.flatten(1).float() / 127.5 - 1
        scores["off-span rms"] = float((flat_x - project(flat_x, *span)).square().mean().sqrt())
    return scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a student of `train --teacher-levels N` with one trained level")
    p.add_argument("--kept", nargs="+", type=parse_kept, required=True, metavar="L[,L...]",
                   help="teacher levels of the kept levels, one variant each (e.g. 21 10 5,21)")
    p.add_argument("--num", type=positive, default=1000, metavar="N", help="samples per variant, seeds 1000000.. "
                   "[default: 1000]")
    p.add_argument("--out", type=Path, help="also append one JSON line per variant here")
    args = p.parse_args()
    if not Path(args.checkpoint).is_file():
        p.error(f"no such file: {args.checkpoint}")
    try:
        state = load(args.checkpoint)
        models = [finished_at(state, kept, args.checkpoint) for kept in args.kept]  # every variant checked first
        data = state["config"]["data"]
        image = models[0].cfg.is_image
        ref = load_dataset(data, models[0].cfg.shape[-1] if image else None, HELD_OUT_SEED)  # as `hybrid eval` loads it
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
    except (UserError, OSError) as e:
        p.error(str(e))  # one line, exit status 2
    span = data_span(flat(ref), 1e-5) if data == "digits" else None  # the upscaled digits' span
    seeds = list(range(SEED_BASE, SEED_BASE + args.num))
    rows = []
    for kept, model in zip(args.kept, models):
        x = sample_batched(model, seeds, steps=model.cfg.steps, sampler="gan")
        try:
            scores = judge(x, ref, data, span)
        except UserError as e:  # e.g. no Inception weights offline
            p.error(str(e))
        rows.append({"kept": list(kept), "nfe": model.cfg.steps, "num": args.num, **scores})
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"checkpoint": args.checkpoint, **rows[-1]}) + "\n")
    constant = ("kept", "nfe", "num", "class_knn_accuracy", "class_cnn_accuracy")  # the judges' own accuracy
    keys = [k for k in rows[0] if k not in constant and not k.endswith("_std")]
    print("\n| kept teacher levels | NFE | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 2) + "|")
    for row in rows:
        print(f"| {','.join(map(str, row['kept']))} | {row['nfe']} | " + " | ".join(f"{row[k]:.4g}" for k in keys) + " |")


if __name__ == "__main__":
    main()
