"""Does a ranking hold in every feature space? Each sample source judged against the data by the
Fréchet distance in several spaces, and by its class balance, in one markdown table.

    python experiments/feature_spaces.py runs/a/checkpoints/checkpoint-000140.pt runs/b/checkpoints/checkpoint-000200.pt
    python experiments/feature_spaces.py CKPT samples/ --num 1000 --extractors inception,pixels,classifier --nfe 4
    python experiments/feature_spaces.py hybrid.pt@gan:1 hybrid.pt@gan:4 ddpm.pt@ddim:100

A source is a checkpoint (N samples drawn once at seeds 1000000.., the seeds of `hybrid eval`),
optionally with its sampler and NFE as CKPT@SAMPLER:NFE (e.g. ddpm.pt@ddim:100), or a folder /
.npy / .npz of samples (its first N). The reference is --ref, else the first
checkpoint's training data. Spaces (`hybrid eval --extractor`): inception (FID), pixels (FD of
raw pixels), classifier (FD in the penultimate layer of a CNN trained on the data's labels);
their scales differ, so compare a column's rows, never columns. The `real` row, N images of the
data itself (a fixed subset, so part of the reference: a floor, optimistic), shows each space's
scale. `classes` needs labelled data; its judge is the more accurate of the pixel k-NN and the CNN.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hybridgan  # noqa: E402
from hybridgan.hybrid.checkpoint import load  # noqa: E402
from hybridgan.hybrid.errors import UserError  # noqa: E402
from hybridgan.metrics.evaluate import HELD_OUT_SEED, read_npz  # noqa: E402
from hybridgan.metrics.reference import reference_subset  # noqa: E402
from hybridgan.training.data import load_dataset  # noqa: E402


def samples_of(source: str, num: int, nfe: int | None, device: str) -> tuple[torch.Tensor, str | None]:
    """uint8 images [N, C, H, W] of a source, and the training data a checkpoint names (else None)."""
    source, _, how = source.partition("@")
    sampler, _, steps = how.partition(":")
    path = Path(source)
    if path.is_dir() or path.suffix.lower() in (".npy", ".npz"):
        data = read_npz(path) if path.suffix.lower() == ".npz" else load_dataset(str(path)).data
        if len(data) < num:
            raise UserError(f"{source} holds {len(data)} samples, fewer than --num {num}")
        return data[:num], None
    data = load(path).get("config", {}).get("data")
    x = hybridgan.sample(path, num=num, nfe=int(steps) if steps else nfe, sampler=sampler or None, device=device)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), data


def row(name: str, images: torch.Tensor, ref: str, extractors: list[str], classes: bool, device: str) -> dict:
    """FD in each space and the class balance of uint8 images [N, C, H, W] against `ref`."""
    out = {"source": name, "N": len(images)}
    for extractor in extractors:
        result = hybridgan.evaluate(images, ref, metrics=["fid"], extractor=extractor, device=device)
        out[extractor] = result["fid"]
        if result.extractor_accuracy is not None:
            out["classifier accuracy"] = result.extractor_accuracy
    if classes:
        result = hybridgan.evaluate(images, ref, metrics=["classes"], device=device)
        out.update(result.results["classes"], judge=result.class_judge)
    return out


def table(rows: list[dict], extractors: list[str]) -> str:
    heads = [f"FD {e}" for e in extractors]
    keys = ["class_tv", "class_min_ratio"] if "class_tv" in rows[0] else []
    lines = ["| source | N | " + " | ".join(heads + keys) + " |", "|---" * (2 + len(heads) + len(keys)) + "|"]
    for r in rows:
        cells = [r["source"], str(r["N"])] + [f"{r[k]:.4g}" for k in extractors + keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def footnote(rows: list[dict], ref: str) -> str:
    r = rows[0]
    notes = [f"Reference: {ref}."]
    if "classifier accuracy" in r:
        notes.append(f"Classifier held-out accuracy {r['classifier accuracy']:.4f}.")
    if "judge" in r:
        cnn = f", CNN {r['class_cnn_accuracy']:.4f}" if "class_cnn_accuracy" in r else ""
        notes.append(f"Classes judged by the {'CNN' if r['judge'] == 'cnn' else 'pixel k-NN'} "
                     f"(accuracy: k-NN {r['class_knn_accuracy']:.4f}{cnn}).")
    return " ".join(notes)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", help="checkpoints, folders or .npy / .npz of samples")
    p.add_argument("--num", type=int, default=1000, help="samples judged per source [default: 1000]")
    p.add_argument("--ref", default=None, help="the data to compare with [default: the first checkpoint's training data]")
    p.add_argument("--extractors", default="inception,pixels,classifier", help="comma-separated feature spaces")
    p.add_argument("--nfe", type=int, default=None, help="network evaluations per sample [default: each model's own]")
    p.add_argument("--no-real", dest="real", action="store_false", help="leave out the row of real images")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    extractors = [e.strip() for e in args.extractors.split(",") if e.strip()]
    try:
        drawn = {s: samples_of(s, args.num, args.nfe, args.device) for s in args.sources}
        ref = args.ref or next((data for _, data in drawn.values() if data), None)
        if ref is None:
            raise UserError("no source is a checkpoint: say what to compare with, e.g. --ref digits")
        side = next(iter(drawn.values()))[0].shape[-1]
        data = load_dataset(ref, side, HELD_OUT_SEED)
        classes = data.labels is not None
        sources = ({"real": reference_subset(data.data, args.num)} if args.real else {}) | {s: x for s, (x, _) in drawn.items()}
        rows = [row(name, x, ref, extractors, classes, args.device) for name, x in sources.items()]
    except UserError as e:
        p.error(str(e))  # one line, exit status 2
    print(table(rows, extractors))
    print()
    print(footnote(rows, ref))


if __name__ == "__main__":
    main()
