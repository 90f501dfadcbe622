"""How much of a sample set's FID comes from content no real image has.

When real images vary only within a subspace of pixel space (digits: 8x8 digits upscaled to
16x16 vary along about 60 of 256 directions), a sample splits into a part within the span of
the data and a part outside it. This script projects each sample set onto the span (the
reference's mean plus the principal components that hold all but `--tail` of its variance),
and judges it as is and projected. The FID the projection removes is what the off-span
texture costs; a real subset is shown beside the samples as the floor.

    hybrid sample CKPT --seeds 1000000-1000199 --out samples.npy
    python experiments/span.py samples.npy [more.npy ...] --ref digits
    python experiments/span.py samples.npy --metrics none   # the off-span rms alone, in seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybridgan.hybrid.errors import UserError  # noqa: E402
from hybridgan.hybrid.images import to_uint8  # noqa: E402
from hybridgan.metrics.evaluate import EvalConfig, evaluate, tensor_samples  # noqa: E402
from hybridgan.training.data import Dataset, load_dataset  # noqa: E402


def flat(data: Dataset) -> torch.Tensor:
    """Every image of a data set as [N, P] floats in [-1, 1]."""
    return data.batch(torch.arange(len(data))).flatten(1)


def data_span(ref: torch.Tensor, tail: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's mean [P] and an orthonormal basis [P, K] of the components that hold all but `tail` of its variance."""
    mean = ref.mean(0)
    _, s, vh = torch.linalg.svd(ref - mean, full_matrices=False)
    left = 1 - (s.square().cumsum(0) / s.square().sum())
    k = int((left > tail).sum()) + 1
    return mean, vh[:k].T


def project(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    return mean + ((x - mean) @ basis) @ basis.T


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", nargs="+", type=Path, help=".npy files of images in [-1, 1] (hybrid sample --out x.npy)")
    p.add_argument("--ref", default="digits", help="reference data set [default: digits]")
    p.add_argument("--tail", type=float, default=1e-5, help="variance left outside the span [default: 1e-5]")
    p.add_argument("--num", type=int, default=200, help="size of the real subset shown as the floor")
    p.add_argument("--metrics", default="fid,kid", help="metrics of each set as is and projected (none: the off-span rms alone)")
    p.add_argument("--ref-num", type=int, help="reference images for the metrics [default: all]")
    args = p.parse_args()
    missing = [str(path) for path in args.samples if not path.is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}")  # one line, exit status 2
    try:
        sample_sets = [(str(path), load_dataset(str(path))) for path in args.samples]
        side = sample_sets[0][1].shape[-1] if sample_sets[0][1].is_image else None
        ref = load_dataset(args.ref, side)  # at the samples' resolution
    except UserError as e:
        p.error(str(e))
    if not ref.is_image:
        p.error(f"--ref {args.ref} holds vectors; span.py judges images")
    for name, x in sample_sets:
        if x.shape != ref.shape:
            p.error(f"{name} holds samples of shape {x.shape}, {args.ref} of {ref.shape}")
    real = flat(ref)
    mean, basis = data_span(real, args.tail)
    metrics = () if args.metrics == "none" else tuple(args.metrics.split(","))
    cfg = EvalConfig(metrics=metrics, ref_num=args.ref_num)
    print(f"{args.ref}: {len(real)} images, span of {basis.shape[1]} of {real.shape[1]} directions (tail {args.tail:g})")

    def report(name: str, x: torch.Tensor) -> None:
        projected = project(x, mean, basis)
        off = (x - projected).square().mean().sqrt()
        parts = [name, f"off-span rms {off:.4f}"]
        judged = (("as is", x), ("projected", projected)) if metrics else ()
        for label, y in judged:
            images = to_uint8(y.reshape(-1, *ref.shape))  # clamps to [-1, 1]
            result = evaluate(tensor_samples(images, name), ref, args.ref, cfg, torch.device("cpu"), log=lambda _: None)
            scores = {k: v for k, v in result.values.items() if not k.endswith("_std")}
            parts.append(f"{label}: " + " ".join(f"{k} {v:.4g}" for k, v in scores.items()))
        print("  ".join(parts), flush=True)

    subset = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[: args.num]
    report(f"real subset (N = {args.num})", real[subset])
    for name, x in sample_sets:
        report(name, flat(x))


if __name__ == "__main__":
    main()
