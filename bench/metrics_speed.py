"""Benchmark: Inception feature extraction speed (fp32 and bf16 autocast) and evaluation time.

Prints measured numbers; asserts nothing. Run from the repository root:

    python bench/metrics_speed.py                       # 64 images for speed, N=1000 evaluation on digits
    python bench/metrics_speed.py --checkpoint CKPT     # evaluate samples drawn from a checkpoint instead
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybridgan.metrics.evaluate import EvalConfig, evaluate, model_samples, tensor_samples  # noqa: E402
from hybridgan.metrics.features import ExtractorSpec, build_extractor, extract, image_batches  # noqa: E402
from hybridgan.metrics.inception import find_inception_weights  # noqa: E402
from hybridgan.training.data import load_dataset  # noqa: E402


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, load average {load:.1f}, {datetime.date.today()}")


def images_per_second(net, images: torch.Tensor, batch: int, bf16: bool) -> tuple[float, torch.Tensor]:
    """Features of uint8 images [N, C, H, W] and the throughput (after one warm-up batch)."""
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    device = torch.device("cpu")
    with context:
        extract(net, image_batches(images[:batch], batch), device)
        start = time.perf_counter()
        feats = extract(net, image_batches(images, batch), device)["2048"]
    return len(images) / (time.perf_counter() - start), feats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=64, help="images for the throughput test")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--num", type=int, default=1000, help="samples in the timed evaluation (0: skip it)")
    p.add_argument("--ref", default="digits", help="reference dataset")
    p.add_argument("--ref-num", type=int, default=None, help="reference images (default: all)")
    p.add_argument("--checkpoint", default=None, help="draw the samples from this checkpoint (default: digits images)")
    args = p.parse_args()
    print(f"machine: {machine()}")
    weights = find_inception_weights()
    print(f"weights: {weights.source} {weights.path} sha256 {weights.sha256[:16]}")
    spec = ExtractorSpec(weights=weights, batch=args.batch)

    t0 = time.perf_counter()
    net = build_extractor(spec, ["2048"], torch.device("cpu"))
    print(f"build extractor: {time.perf_counter() - t0:.1f} s")
    data = load_dataset(args.ref).data
    images = data[torch.arange(args.images) % len(data)]
    fp32, f32 = images_per_second(net, images, args.batch, bf16=False)
    print(f"inception fp32: {fp32:.1f} img/s ({args.images} images {tuple(images.shape[1:])}, batch {args.batch})")
    bf16, fb16 = images_per_second(net, images, args.batch, bf16=True)
    rel = ((fb16 - f32).norm(dim=1) / f32.norm(dim=1))
    verdict = "within" if rel.max() <= 1e-3 else "NOT within"
    print(f"inception bf16 autocast: {bf16:.1f} img/s; feature error vs fp32: max {rel.max():.2e}, "
          f"mean {rel.mean():.2e} relative ({verdict} 1e-3)")
    if args.num:
        timed_evaluation(args, spec)


def timed_evaluation(args: argparse.Namespace, spec: ExtractorSpec) -> None:
    cfg = EvalConfig(metrics=("fid", "kid"), num=args.num, ref_num=args.ref_num, batch=args.batch,
                     inception_weights=str(spec.weights.path))
    device = torch.device("cpu")
    ref = load_dataset(args.ref)
    if args.checkpoint:
        from hybridgan.hybrid.checkpoint import load_model

        model = load_model(args.checkpoint)
        ref = load_dataset(args.ref, model.cfg.shape[-1])

        def samples():
            return model_samples(model, cfg, device, args.checkpoint)
    else:
        gen = ref.data[torch.randperm(len(ref.data), generator=torch.Generator().manual_seed(1))[: args.num]]

        def samples():
            return tensor_samples(gen, f"{args.num} {args.ref} images", batch=args.batch)

    first = evaluate(samples(), ref, args.ref, cfg, device, log=print)
    state = "cached" if first.reference_cached else "computed now"
    print(f"evaluation N={args.num}, reference {first.num_ref} images {state}: {first.seconds:.1f} s "
          f"(fid {first.results['fid']['fid']:.3f}, kid {first.results['kid']['kid']:.5f})")
    second = evaluate(samples(), ref, args.ref, cfg, device, log=print)
    print(f"evaluation N={args.num} with cached reference statistics: {second.seconds:.1f} s "
          f"({args.num / second.seconds:.1f} samples/s end to end)")


if __name__ == "__main__":
    main()
