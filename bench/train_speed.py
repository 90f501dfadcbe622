"""Training and sampling throughput of the default models on this machine.

    python bench/train_speed.py [--steps 10] [--batch 64] [--threads N]

Each row runs in its own subprocess, so its peak memory (RSS) is its own. A row builds the
default configuration of its data set (`training.config.resolve`), warms up, then times
`Trainer.step` (every phase of the objective, EMA and stats, as in a real run) or
`hybrid.samplers.sample_batched`. It prints measured numbers only:

- img/s: images per second of wall-clock time;
- cpu ms/step: process CPU time per step (or per sampling batch of 256), which is less
  disturbed than wall time when other processes share the cores;
- peak MB: the row's peak resident memory (`resource.getrusage(...).ru_maxrss`).

Precision "bf16" is `torch.autocast('cpu', dtype=torch.bfloat16)`; "+cl" converts the whole
model to channels_last; "+compile" is `hybrid train --compile` (torch.compile of G and D, timed
after its compilation in the warm-up steps, whose seconds are printed). The load average is printed before and after: compare numbers taken
under similar load only. With 2 threads, a busy machine makes
OpenMP's spinning threads waste most of their time (here up to 14x the CPU time of one
thread per step); `--threads 1` gives numbers that stay comparable under load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (label, kind, data, precision, channels_last, compile)
ROWS = [
    ("train digits", "train", "digits", "fp32", False, False),
    ("train digits", "train", "digits", "fp32", False, True),
    ("train digits", "train", "digits", "bf16", False, False),
    ("train digits", "train", "digits", "bf16", True, False),
    ("train digits", "train", "digits", "bf16", False, True),
    ("sample digits 4 NFE", "sample", "digits", "fp32", False, False),
    ("sample digits 4 NFE", "sample", "digits", "bf16", False, False),
    ("train toy:25gaussians", "train", "toy:25gaussians", "fp32", False, False),
    ("train toy:25gaussians", "train", "toy:25gaussians", "fp32", False, True),
    ("train toy:25gaussians", "train", "toy:25gaussians", "bf16", False, False),
]
COMPILE_WARMUP = 4  # compiled rows: steps before timing (the graphs and their recompiles are built in these)
SAMPLE_BATCH = 256


def machine() -> str:
    import torch

    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), model)
    return (f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, amx {torch.cpu._is_amx_tile_supported()}")


def autocast(precision: str):
    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_trainer(data_name: str, precision: str, batch: int | None, run_dir: str, compile: bool = False):
    from hybridgan.training.config import TrainConfig, resolve
    from hybridgan.training.data import load_dataset
    from hybridgan.training.rundir import Console, RunDir
    from hybridgan.training.trainer import Trainer

    data = load_dataset(data_name)
    cfg = resolve(TrainConfig(data=data_name, precision=precision, device="cpu", batch=batch, compile=compile), data.shape)
    return Trainer(cfg, RunDir(run_dir), data, Console(None, quiet=True))


def time_calls(fn, warmup: int, n: int) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds) of n calls of fn after warmup calls, and the warm-up's wall seconds."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    warmup_s = time.perf_counter() - start
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return time.perf_counter() - wall, time.process_time() - cpu, warmup_s


def run_row(kind: str, data_name: str, precision: str, channels_last: bool, compile: bool, steps: int,
            batch: int | None) -> dict:
    """Measure one row in this process; returns img/s, CPU ms per call, peak MB and warm-up seconds."""
    import torch

    from hybridgan.hybrid.samplers import sample_batched

    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(data_name, "fp32" if kind == "sample" else precision, batch, tmp, compile)
        if compile and not trainer.compiled:
            raise SystemExit("torch.compile cannot run here")
        if channels_last:
            trainer.model.to(memory_format=torch.channels_last)
        if kind == "train":
            wall, cpu, warmup_s = time_calls(trainer.step, warmup=COMPILE_WARMUP if compile else 2, n=steps)
            images, calls = steps * trainer.cfg.batch, steps
        else:
            model = trainer.model

            def draw(num: int = SAMPLE_BATCH) -> None:
                with autocast(precision):
                    sample_batched(model, list(range(num)), batch=SAMPLE_BATCH, steps=4, sampler="gan")

            draw(32)  # warm-up
            calls = max(2, steps // 6)
            wall, cpu, warmup_s = time_calls(draw, warmup=0, n=calls)
            images = calls * SAMPLE_BATCH
    return {"img_s": images / wall, "cpu_ms": 1000 * cpu / calls,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "batch": trainer.cfg.batch if kind == "train" else SAMPLE_BATCH, "threads": torch.get_num_threads(),
            "warmup_s": warmup_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per row (default 10)")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default: the data's, 64 / 512)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", default=None, help="run only rows whose label and precision contain this, e.g. 'digits fp32'")
    parser.add_argument("--row", type=int, default=None, help=argparse.SUPPRESS)  # internal: one row, JSON out
    args = parser.parse_args()
    if args.row is not None:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        _, kind, data_name, precision, cl, compile = ROWS[args.row]
        print(json.dumps(run_row(kind, data_name, precision, cl, compile, args.steps, args.batch)))
        return

    print(f"# hybrid bench/train_speed.py, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"# {machine()}")
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; --steps {args.steps}")
    print()
    cols = ("what", "precision", "batch", "threads", "img/s", "cpu ms/call", "peak MB", "warm-up s")
    widths = (24, 16, 5, 7, 7, 11, 7, 9)
    print("| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for i, (label, _, _, precision, cl, compile) in enumerate(ROWS):
        if args.only and args.only not in f"{label} {precision}{'+cl' if cl else ''}{'+compile' if compile else ''}":
            continue
        cmd = [sys.executable, __file__, "--row", str(i), "--steps", str(args.steps)]
        cmd += ["--batch", str(args.batch)] if args.batch else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        name = precision + ("+cl" if cl else "") + ("+compile" if compile else "")
        if proc.returncode != 0:
            error = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
            print(f"| {label:24s} | {name:16s} | failed: {error}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {label:24s} | {name:16s} | {r['batch']:5d} | {r['threads']:7d} | {r['img_s']:7.1f} | "
              f"{r['cpu_ms']:11.0f} | {r['peak_mb']:7.0f} | {r['warmup_s']:9.1f} |", flush=True)
    print()
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("# cpu ms/call: per training step, or per sampling batch of 256 at 4 NFE")
    print(f"# warm-up s: the untimed first steps (2, or {COMPILE_WARMUP} with +compile: that is where torch.compile compiles)")


if __name__ == "__main__":
    main()
