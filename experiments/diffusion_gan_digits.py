"""Diffusion-GAN against the hybrid and ddgan at equal training time, one command.

On the digits, each objective trains for --minutes per run on each of --seeds; the final
checkpoints are measured with `hybrid bench` at N = --num (FID, KID, classes): diffusion-gan at
its one step (NFE 1), the hybrid and ddgan at NFE 1 and 4. On toy:25gaussians the same three
train for --toy-minutes and are measured for mode coverage (modes, SWD) at the same NFE, NFE 1
being the comparison asked for. Runs and bench results already present are kept
(experiments/equal_time.py's layout, RUNS/<data>/<objective>/seedK), so an interrupted
experiment continues where it stopped; the tables and plots (experiments/summarize.py) go to --out.

    python experiments/diffusion_gan_digits.py                          # 12 min digits, 3 min toys, seeds 0,1,2
    python experiments/diffusion_gan_digits.py --minutes 4 --runs runs/dgan --out runs/dgan/summary

Two runs train at a time, one thread each (equal_time.py's protocol): on a 2-core machine every
run sees the same load. At the defaults it takes about 2.5 hours of training on 2 cores, plus
the digits' Inception features (about 10 images/s on a CPU).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import equal_time  # noqa: E402  (a sibling script: its train, bench and metric choice)

OBJECTIVES = ("diffusion-gan", "hybrid", "ddgan")
NFE = {"diffusion-gan": "1"}  # a one-step generator; the others at their one step and their whole chain
MULTI_STEP_NFE = "1,4"


def jobs_for(data: str, minutes: float | None, seeds: list[int], root: Path,
             kimg: float | None = None) -> list[tuple[Path, str, str, int, float | None, float | None]]:
    return [(root / equal_time.data_slug(data) / objective / f"seed{seed}", data, objective, seed, minutes, kimg)
            for seed in seeds for objective in OBJECTIVES]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=12.0, help="training time per digits run [default: %(default)s]")
    p.add_argument("--toy-minutes", type=float, default=3.0, help="training time per toy run [default: %(default)s]")
    p.add_argument("--toy-kimg", type=float, default=None, help="or training length per toy run (equal images shown)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--num", type=int, default=1000, help="samples per digits measurement [default: %(default)s]")
    p.add_argument("--toy-num", type=int, default=5000, help="samples per toy measurement [default: %(default)s]")
    p.add_argument("--ref-num", type=int, default=None, help="reference digits for FID/KID [default: all 1797]")
    p.add_argument("--train-options", default="--snapshot-every 1000000",
                   help="options for every run (e.g. smaller networks for a smoke test) [default: %(default)s]")
    p.add_argument("--runs", type=Path, default=Path("runs/diffusion-gan"))
    p.add_argument("--out", type=Path, default=None, help="tables and plots [default: RUNS/summary]")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    toy_minutes = None if args.toy_kimg else args.toy_minutes
    jobs = (jobs_for("digits", args.minutes, seeds, args.runs)
            + jobs_for("toy:25gaussians", toy_minutes, seeds, args.runs, args.toy_kimg))
    options = shlex.split(args.train_options)

    def run(job) -> None:
        path, data, objective, seed, minutes, kimg = job
        equal_time.train(path, data, objective, seed, minutes, kimg, options)

    def measure(job) -> None:
        path, data, objective, _, _, _ = job
        num = args.num if data == "digits" else args.toy_num
        equal_time.bench(path, objective, data, num, args.ref_num if data == "digits" else None,
                         NFE.get(objective, MULTI_STEP_NFE))

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(run, jobs))
        measure(jobs[0])  # alone first: it computes the cached reference features the others reuse
        list(pool.map(measure, jobs[1:]))
    out = args.out or args.runs / "summary"
    for data in ("digits", "toy:25gaussians"):
        root = args.runs / equal_time.data_slug(data)
        subprocess.run([sys.executable, str(Path(__file__).with_name("summarize.py")), str(root), "--out", str(out),
                        "--name", f"diffusion-gan-{root.name}"], check=True)
    print(f"done: {len(jobs)} runs under {args.runs}; tables in {out}")


if __name__ == "__main__":
    main()
