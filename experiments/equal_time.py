"""Equal-training-time comparison of objectives (and ablation variants), over several seeds.

Each run trains for the same budget of training time (`hybrid train --minutes`; or the same
--kimg, for ablations), then its final
checkpoint is measured with `hybrid bench` at a fixed N: the GAN objectives at NFE 1, 2, 4; ddpm
with DDIM at 1, 2, 4, 100 steps and with its ancestral sampler over the whole 1000-step chain.
Runs and bench results already present are kept, so an interrupted experiment continues where
it stopped. `experiments/summarize.py` turns the results into tables and plots.

    python experiments/equal_time.py --data toy:25gaussians --minutes 3          # hybrid, ddgan, ddpm x 3 seeds
    python experiments/equal_time.py --data digits --minutes 4 --num 200
    python experiments/equal_time.py --data toy:25gaussians --minutes 3 \\
        --variant "dw0=--denoise-weight 0" --variant "r1x10=--r1-gamma 0.2"   # an ablation

Jobs run `--jobs` at a time, each on one thread (OMP_NUM_THREADS=1): on a 2-core machine two
jobs keep both cores busy, and every run sees the same load.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from hybridgan.hybrid.checkpoint import list_checkpoints  # noqa: E402
from hybridgan.training.rundir import data_slug  # noqa: E402

OBJECTIVES = ("hybrid", "ddgan", "ddpm")
# What ddpm is measured at: (sampler, NFE list).
BENCH = {"ddpm": [("ddim", "1,2,4,100"), ("ddpm", "1000")]}  # the GAN objectives: --gan-nfe


LABELLED = ("digits", "mnist", "fashion-mnist")  # image sets whose classes a pixel-space classifier tells apart


def metrics_for(data: str) -> str:
    if data == "toy:swissroll":
        return "swd,mmd"  # a manifold without modes
    if data.startswith("toy:"):
        return "modes,swd"
    return "fid,kid,classes" if data in LABELLED else "fid,kid"


def hybrid(*args: str) -> None:
    cmd = [sys.executable, str(ROOT / "cli.py"), *args]
    print("$ hybrid " + " ".join(shlex.quote(a) for a in args), flush=True)
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # the caller's is kept
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})


def final_checkpoint(run: Path) -> Path:
    return list_checkpoints(run / "checkpoints")[-1]


def train(run: Path, data: str, objective: str, seed: int, minutes: float | None, kimg: float | None,
          extra: list[str]) -> None:
    # With a time budget, --kimg far beyond what fits in it: the time limit ends every run.
    length = ["--minutes", str(minutes), "--kimg", "1000000"] if minutes else ["--kimg", str(kimg)]
    hybrid("train", "--data", data, "--objective", objective, "--seed", str(seed), *length,
           "--run-dir", str(run), "--resume", "auto", "--device", "cpu", "--quiet", *extra)


def bench(run: Path, objective: str, data: str, num: int, ref_num: int | None, gan_nfe: str) -> None:
    if (run / "bench.jsonl").exists():
        return
    settings = BENCH["ddpm"] if objective == "ddpm" else [(None, gan_nfe)]
    ref = ["--ref-num", str(ref_num)] if ref_num else []
    out = run / "bench.jsonl.tmp"
    out.unlink(missing_ok=True)
    for sampler, nfe in settings:
        sampler_args = ["--sampler", sampler] if sampler else []
        hybrid("bench", str(final_checkpoint(run)), "--nfe", nfe, *sampler_args, "--repeats", "1", "--num", str(num),
               "--metrics", metrics_for(data), "--device", "cpu", "--out", str(out), *ref)
    out.rename(run / "bench.jsonl")  # present only when every setting was measured


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--minutes", type=float, help="training time per run (equal time)")
    length.add_argument("--kimg", type=float, help="or training length per run (equal images shown: for ablations "
                        "of loss weights, whose step costs the same, on a machine whose load varies)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--objectives", default=",".join(OBJECTIVES))
    p.add_argument("--variant", action="append", default=[],
                   help="NAME=OPTIONS: a hybrid run with extra train options (an ablation); repeatable")
    p.add_argument("--num", type=int, default=5000, help="samples per bench measurement")
    p.add_argument("--gan-nfe", default="1,2,4", help="NFE at which the GAN objectives are measured")
    p.add_argument("--ref-num", type=int, default=None, help="reference images for FID/KID [default: all]")
    p.add_argument("--train-options", default="--snapshot-every 1000000",
                   help="options for every run, e.g. \"--metrics modes,swd --eval-every 200\" [default: %(default)s]")
    p.add_argument("--runs", default="runs/experiments")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--no-bench", dest="bench", action="store_false", help="train only (measure later, e.g. in other spaces)")
    args = p.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    variants = {o: (o, []) for o in args.objectives.split(",") if o}
    for v in args.variant:
        name, _, options = v.partition("=")
        variants[name] = ("hybrid", shlex.split(options))
    root = Path(args.runs) / data_slug(args.data)
    jobs = [(root / name / f"seed{seed}", objective, seed, extra)
            for seed in seeds for name, (objective, extra) in variants.items()]

    def run(job) -> None:
        path, objective, seed, extra = job
        train(path, args.data, objective, seed, args.minutes, args.kimg, shlex.split(args.train_options) + extra)

    def measure(job) -> None:
        bench(job[0], job[1], args.data, args.num, args.ref_num, args.gan_nfe)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run, jobs))
        if not args.bench:
            print(f"trained: {len(jobs)} runs under {root}")
            return
        measure(jobs[0])  # alone first: it computes the cached reference features the others reuse
        list(pool.map(measure, jobs[1:]))
    print(f"done: {len(jobs)} runs under {root}; summarise with: python experiments/summarize.py {root}")


if __name__ == "__main__":
    main()
