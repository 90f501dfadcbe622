"""Throughput, memory and model FLOP utilisation of the cifar10-ddgan preset's model on one device.

    bench/gpu_check.sh                                   # one GPU: 300 timed steps, batch 256, bf16, compiled
    python bench/gpu_check.py --device cpu --steps 3 --batch 4 --channels 16 --no-compile   # CPU smoke run, seconds

The run is the real code path of `hybrid train --preset cifar10-ddgan --precision bf16 --compile`:
the preset's config (its ~45M-parameter generator and its discriminator, the ddgan objective
with lazy R1 every 15 steps) resolved by `training.config.resolve`, trained by `Trainer.step`
(every phase, fused Adam, EMA, stats) on synthetic uint8 32x32x3 images, so no data is needed.

FLOPs per step are counted with `torch.utils.flop_counter.FlopCounterMode` on two uncompiled
steps (torch.compile's stance forced to eager): the first is an R1 step, the second a plain one,
and the mean step is plain + (R1 - plain) / r1_every. The count is of the model's matrix
products and convolutions forward and backward (what MFU conventionally counts; the optimiser
and element-wise work are not). MFU = FLOPs per step x steps per second / peak FLOP/s, the peak
given by --peak-flops: default 989e12, the dense bf16 tensor-core peak of an H100/H200 SXM
(NVIDIA's datasheet figure without sparsity); give your accelerator's for another one. On a CPU
MFU is printed only with an explicit --peak-flops.

Prints one line per measurement and a final JSON line with all of them.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from hybridgan.hybrid.errors import UserError  # noqa: E402

H100_BF16_DENSE = 989e12  # FLOP/s, H100/H200 SXM dense bf16 (no sparsity)
SHAPE = (3, 32, 32)


def build_trainer(args: argparse.Namespace, run_dir: str):
    """A Trainer for the preset's model on random images; the options a user would pass to `hybrid train`."""
    from hybridgan.hybrid.devices import resolve_device
    from hybridgan.training.config import read_preset, resolve
    from hybridgan.training.data import Dataset
    from hybridgan.training.rundir import Console, RunDir
    from hybridgan.training.trainer import Trainer

    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    data = Dataset("synthetic", torch.randint(0, 256, (max(1024, args.batch), *SHAPE), generator=gen, dtype=torch.uint8))
    cfg = read_preset("cifar10-ddgan").replace(
        data="synthetic", batch=args.batch, precision=args.precision, compile=args.compile, device=device.type,
        metrics=(), eval_kimg=0.0)
    cfg = resolve(cfg, data.shape, {"channels": args.channels} if args.channels else None)
    return Trainer(cfg, RunDir(run_dir), data, Console(None, quiet=True))


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: no hooks, every op counted under "Global"."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        return None


def count_step_flops(trainer) -> float:
    """Mean model FLOPs of one step, from one R1 step and one plain step run eagerly (see the module doc)."""
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    every = trainer.cfg.r1_every
    if trainer.progress.step != 0 or every < 2:
        raise ValueError("count the FLOPs on a fresh trainer with R1 every >= 2 steps (step 0 is the R1 step)")
    for _ in range(2):
        counter = FlopCounterMode(display=False)
        # Only the total is needed. The per-module tracker's backward hooks fail inside R1's
        # torch.autograd.grad ("A leaf node was passed to _will_engine_execute_node"), so every
        # op is attributed to "Global" alone, which is where get_total_flops sums.
        counter.mod_tracker = _GlobalOnly()
        with torch.compiler.set_stance("force_eager"), counter:
            trainer.step()
        counts.append(counter.get_total_flops())
    r1_step, plain = counts
    return plain + (r1_step - plain) / every


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # a sync point: the timer must see the kernels finish


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(args, tmp)
        device = trainer.device
        flops = count_step_flops(trainer)
        start = time.perf_counter()
        for _ in range(args.warmup):  # compilation happens here
            trainer.step()
        synchronize(device)
        warmup_s = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.step()
        synchronize(device)
        seconds = time.perf_counter() - start
        if device.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        peak = args.peak_flops if args.peak_flops is not None else (H100_BF16_DENSE if device.type == "cuda" else None)
        steps_per_s = args.steps / seconds
        return {
            "device": name, "batch": args.batch, "precision": str(trainer.autocast_dtype or "fp32"),
            "compiled": trainer.compiled, "g_params": sum(p.numel() for p in trainer.model.G.parameters()),
            "d_params": sum(p.numel() for p in trainer.model.D.parameters()), "steps": args.steps,
            "warmup_steps": args.warmup, "warmup_s": warmup_s, "img_s": args.batch * steps_per_s,
            "step_ms": 1000 / steps_per_s, "peak_memory_mb": peak_mb, "flops_per_step": flops,
            "achieved_tflops": flops * steps_per_s / 1e12, "peak_flops": peak,
            "mfu": flops * steps_per_s / peak if peak else None,
        }


def report(r: dict) -> None:
    print(f"device {r['device']}, batch {r['batch']}, precision {r['precision']}, compiled {r['compiled']}, "
          f"G {r['g_params'] / 1e6:.1f}M + D {r['d_params'] / 1e6:.1f}M parameters")
    print(f"warm-up: {r['warmup_steps']} steps in {r['warmup_s']:.1f} s (includes compilation)")
    print(f"throughput: {r['img_s']:.1f} img/s ({r['step_ms']:.1f} ms/step over {r['steps']} steps)")
    print(f"peak memory: {r['peak_memory_mb']:.0f} MB" + (" (allocator)" if r["device"] != "cpu" else " (RSS)"))
    print(f"model FLOPs/step: {r['flops_per_step'] / 1e12:.3f} TFLOP; achieved {r['achieved_tflops']:.2f} TFLOP/s")
    if r["mfu"] is None:
        print("MFU: n/a (give --peak-flops for this device)")
    else:
        print(f"MFU: {100 * r['mfu']:.1f}% of {r['peak_flops'] / 1e12:.0f} TFLOP/s peak")
    print(json.dumps(r))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="cuda", help="default cuda")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps (default 300)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps before timing, compilation included (default 30 on a GPU, 1 on the CPU)")
    parser.add_argument("--batch", type=int, default=256, help="batch size (default 256, the preset's)")
    parser.add_argument("--precision", choices=("bf16", "fp32", "auto"), default="bf16", help="default bf16 autocast")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile G and D, as `hybrid train --compile` (default on)")
    parser.add_argument("--channels", type=int, default=None, help="generator width override (smoke runs; default: the preset's 128)")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help=f"peak FLOP/s for MFU (default {H100_BF16_DENSE:g} on CUDA: H100/H200 SXM dense bf16; none on CPU)")
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.device == "cpu" else 30
    if args.steps < 1 or args.batch < 1 or args.warmup < 0:
        raise UserError("--steps and --batch must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    try:
        report(run(parse_args(argv)))
    except UserError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
