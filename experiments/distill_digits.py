"""Distillation on digits, one command: a ddpm teacher trained for --teacher-minutes, a student
distilled from it for --student-minutes (at most the teacher's), both measured at N fixed
evaluation seeds (`hybrid eval`'s default seeds 1000000..): the student at NFE 1, 2, 4 (its own
`gan` chain: it is trained at --steps levels and sampled at any number up to them), the teacher
at its 1000 ancestral steps and at 4 DDIM steps, and the hybrid trained from scratch for the
teacher's and the student's time together at NFE 1 and 4 (--no-scratch skips it). Runs and
results already present are kept.

    python experiments/distill_digits.py --out runs/distill-digits --teacher-minutes 4 --student-minutes 4
    python experiments/distill_digits.py --out runs/distill-digits --student-minutes 2 -- --gan-weight 0

Arguments after `--` go to the student's `hybrid train`. Prints one table; results.jsonl keeps
every row.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from hybridgan.hybrid.checkpoint import list_checkpoints  # noqa: E402


def hybrid(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, str(ROOT / "cli.py"), *args]
    print("$ hybrid " + " ".join(shlex.quote(a) for a in args), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, check=True, env=env, stdout=subprocess.PIPE if capture else None, text=True)
    return done.stdout if capture else ""


def train(run: Path, minutes: float, extra: list[str]) -> Path:
    if not list_checkpoints(run / "checkpoints"):
        hybrid("train", "--data", "digits", "--minutes", str(minutes), "--kimg", "1000000", "--run-dir", str(run),
               "--device", "cpu", "--quiet", *extra)
    return list_checkpoints(run / "checkpoints")[-1]


def measure(label: str, ckpt: Path, sampler: str, nfe: int, num: int, results: Path) -> dict:
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    for row in done:
        if (row["model"], row["sampler"], row["nfe"]) == (label, sampler, nfe):
            return row
    out = hybrid("eval", str(ckpt), "--metrics", "fid,kid,classes", "--num", str(num), "--nfe", str(nfe),
                 "--sampler", sampler, "--device", "cpu", "--json", capture=True)
    result = json.loads(out)
    values = {f"{name}/{key}": v for name, part in result["results"].items() for key, v in part.items()}
    row = {"model": label, "sampler": sampler, "nfe": nfe, "num": num, "seconds": result["seconds"], **values}
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--teacher-minutes", type=float, default=4.0)
    parser.add_argument("--student-minutes", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=4, help="the student's levels")
    parser.add_argument("--name", default="student", help="the student's run directory under --out (variants side by side)")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-teacher-1000", action="store_true", help="skip the slow 1000-step teacher row")
    parser.add_argument("--no-scratch", action="store_true", help="skip the from-scratch hybrid of equal total time")
    parser.add_argument("student_args", nargs="*")
    args = parser.parse_args()
    if args.student_minutes > args.teacher_minutes:
        parser.error("the student trains for at most the teacher's time")
    args.out.mkdir(parents=True, exist_ok=True)
    seed = ["--seed", str(args.seed)]
    teacher = train(args.out / "teacher", args.teacher_minutes, ["--objective", "ddpm", *seed])
    student = train(args.out / args.name, args.student_minutes,
                    ["--objective", "distill", "--teacher", str(teacher), "--steps", str(args.steps), *seed,
                     *args.student_args])
    results = args.out / "results.jsonl"
    rows = [measure(args.name, student, "gan", nfe, args.num, results) for nfe in (1, 2, 4) if nfe <= args.steps]
    rows.append(measure("teacher", teacher, "ddim", 4, args.num, results))
    if not args.no_scratch:
        scratch = train(args.out / "scratch", args.teacher_minutes + args.student_minutes, ["--objective", "hybrid", *seed])
        rows += [measure("scratch hybrid", scratch, "gan", nfe, args.num, results) for nfe in (1, 4)]
    if not args.skip_teacher_1000:
        rows.append(measure("teacher", teacher, "ddpm", 1000, args.num, results))
    print(f"\nteacher {args.teacher_minutes:g} min, student {args.student_minutes:g} min, "
          f"scratch hybrid {args.teacher_minutes + args.student_minutes:g} min, N = {args.num}")
    keys = [k for k in rows[0] if "/" in k]
    print("| model | sampler | NFE | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for row in rows:
        cells = " | ".join("-" if row.get(k) is None else f"{row[k]:.4g}" for k in keys)
        print(f"| {row['model']} | {row['sampler']} | {row['nfe']} | {cells} |")


if __name__ == "__main__":
    main()
