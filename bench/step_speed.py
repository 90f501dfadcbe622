"""Training-step throughput of this checkout against an older commit, side by side in one run.

    python bench/step_speed.py --old REV [--rounds 5] [--threads N] [--only hybrid]

Rows: the default hybrid step on digits at batch 16 (every phase: D, lazy R1, G; fused Adam,
EMA, stats) and the ddpm step on digits at batch 64, each in fp32 and in bf16 autocast. Each
measurement is a fresh worker process that imports one version (bench/versions.py), builds
its Trainer with `TrainConfig(data="digits", objective=..., batch=..., precision=...)`, runs
untimed warm-up steps (20 hybrid, 4 ddpm), then times whole steps: 64 hybrid steps (four of them
with R1, its 1 in 16) or 16 ddpm steps. Workers of the two versions alternate for --rounds rounds;
the table gives medians: img/s of wall time, and CPU ms per step (less disturbed by other
processes than wall time, so compare those where the load average moved). With two or more
threads, 32-step blocks of one process vary by +-15% even on an idle machine: keep the rounds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from versions import abba, check_import, header, median, run_worker, table, versions  # noqa: E402

CASES = (  # (objective, batch, precision, warm-up steps, timed steps)
    ("hybrid", 16, "fp32", 20, 64),
    ("hybrid", 16, "bf16", 20, 64),
    ("ddpm", 64, "fp32", 4, 16),
    ("ddpm", 64, "bf16", 4, 16),
)


def worker(objective: str, batch: int, precision: str, warmup: int, steps: int, threads: int | None) -> dict:
    """Times `steps` training steps of this process's `hybridgan` (PYTHONPATH)."""
    import tempfile

    import torch

    if threads:
        torch.set_num_threads(threads)
    import hybridgan
    from hybridgan.training.config import TrainConfig, resolve
    from hybridgan.training.data import load_dataset
    from hybridgan.training.rundir import Console, RunDir
    from hybridgan.training.trainer import Trainer

    data = load_dataset("digits")
    cfg = resolve(TrainConfig(data="digits", objective=objective, batch=batch, precision=precision, device="cpu"),
                  data.shape)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, RunDir(tmp), data, Console(None, quiet=True))
        for _ in range(warmup):
            trainer.step()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            trainer.step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"img_s": steps * batch / wall, "cpu_ms": 1000 * cpu / steps, "threads": torch.get_num_threads(),
            "autocast": str(trainer.autocast_dtype), "code": str(Path(hybridgan.__file__).parent)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default=None, help="the commit to compare with (e.g. main, or a sha); none: this checkout alone")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of old and new per row (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in every worker (default: torch's choice)")
    parser.add_argument("--only", default=None, help="rows whose 'objective precision' contains this, e.g. 'hybrid'")
    parser.add_argument("--worker", nargs=6, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.worker:
        objective, batch, precision, warmup, steps, threads = args.worker
        print(json.dumps(worker(objective, int(batch), precision, int(warmup), int(steps), int(threads) or None)))
        return

    cases = [c for c in CASES if not args.only or args.only in f"{c[0]} {c[2]}"]
    print(header("bench/step_speed.py", f"--rounds {args.rounds}, threads {args.threads or 'default'}"))
    with versions(args.old) as vs:
        for v in vs:
            check_import(v)
        results: dict[tuple, dict[str, list[dict]]] = {c: {v.label: [] for v in vs} for c in cases}
        for case in cases:
            for _, v in abba(vs, args.rounds):
                r = run_worker_for(v, case, args.threads)
                results[case][v.label].append(r)
                if "error" in r:
                    sys.exit(f"{v.label} {case}: {r['error']}")
        print()
        print(table(*rows(results, vs)))
    print()
    print("# img/s: wall time, median over rounds; cpu ms: process CPU time per step (all threads), median")


def run_worker_for(version, case, threads):
    objective, batch, precision, warmup, steps = case
    return run_worker(__file__, version, [objective, str(batch), precision, str(warmup), str(steps), str(threads or 0)])


def rows(results, vs) -> tuple[list[str], list[list[object]]]:
    labels = [v.label for v in vs]
    columns = ["step", "batch", "precision", "threads"]
    columns += [f"{label} img/s" for label in labels] + [f"{label} cpu ms" for label in labels]
    if len(labels) == 2:
        columns += ["new/old img/s", "old/new cpu ms"]
    out = []
    for (objective, batch, precision, _, _), by_version in results.items():
        img = [median([r["img_s"] for r in by_version[label]]) for label in labels]
        cpu = [median([r["cpu_ms"] for r in by_version[label]]) for label in labels]
        threads = "/".join(sorted({str(r["threads"]) for label in labels for r in by_version[label]}))
        row = [objective, batch, precision, threads, *(f"{x:.1f}" for x in img), *(f"{x:.0f}" for x in cpu)]
        if len(labels) == 2:
            row += [f"{img[1] / img[0]:.2f}x", f"{cpu[0] / cpu[1]:.2f}x"]
        out.append(row)
    return columns, out


if __name__ == "__main__":
    main()
