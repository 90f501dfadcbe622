"""Distillation, one command: a ddpm teacher trained for --teacher-minutes, a student distilled from
it for --student-minutes (at most the teacher's), and the hybrid trained from scratch for the
teacher's time and for the teacher's and the student's together; all measured on the same N samples
at the fixed evaluation seeds (1000000..): the student at NFE 1, 2, 4 (its own `gan` chain, trained
at --steps levels, sampled at any number up to them), the teacher at 4 and 100 DDIM steps (and with
--teacher-1000 at its 1000 ancestral steps), the hybrids at NFE 1 and 4. Images are judged by
Inception (fid, kid, classes) and by the project's digit classifier (its FD: `classifier fid`); toy
mixtures by modes and swd. Runs, samples and results already present are kept.

    python experiments/distill.py --out runs/distill/s0 --seed 0 --teacher-minutes 4 --student-minutes 4 --teacher-1000
    python experiments/distill.py --data toy:25gaussians --out runs/distill-toy --teacher-minutes 2 --student-minutes 2 --steps 1
    python experiments/distill.py --out runs/distill/s0 --name s-fu5 --student-only -- --fake-updates 5
    python experiments/distill.py --out runs/distill16/s1 --seed 1 --teacher-minutes 16 --teacher-only --teacher-ddim 4,25,100
    python experiments/distill.py --out runs/distill/s0 --steps 1 --name k1-curve --student-only --student-nfe 1 --curve

Arguments after `--` go to the student's `hybrid train`. Prints one table; results.jsonl keeps
every row. Over seeds, mean +- std (sample std) of each row, with n where fewer directories have it:

    python experiments/distill.py --summarize runs/distill/s0 runs/distill/s1 runs/distill/s2

Side by side, the first 16 samples (the same seeds) of each row of one directory (or of the models named),
titled with its FID or modes:

    python experiments/distill.py --grid runs/distill/s0 docs/distill-digits.png student teacher "hybrid 8 min"
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
from hybridgan.hybrid.checkpoint import checkpoint_kimg, list_checkpoints  # noqa: E402


def hybrid(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, str(ROOT / "cli.py"), *args]
    print("$ hybrid " + " ".join(shlex.quote(a) for a in args), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}
    done = subprocess.run(cmd, check=True, env=env, stdout=subprocess.PIPE if capture else None, text=True)
    return done.stdout if capture else ""


def train(run: Path, data: str, minutes: float, extra: list[str]) -> Path:
    if not list_checkpoints(run / "checkpoints"):
        hybrid("train", "--data", data, "--minutes", str(minutes), "--kimg", "1000000", "--run-dir", str(run),
               "--device", "cpu", "--quiet", *extra)
    return list_checkpoints(run / "checkpoints")[-1]


def judges(data: str) -> list[tuple[str, list[str]]]:
    """(prefix, eval options) per judge: Inception and the digit classifier for images, the mixture's metrics for toys."""
    if data.startswith("toy:"):
        return [("", ["--metrics", "modes,swd"])]
    return [("", ["--metrics", "fid,kid,classes"]), ("classifier ", ["--extractor", "classifier", "--metrics", "fid"])]


def samples_file(out: Path, label: str, sampler: str, nfe: int) -> Path:
    return out / "samples" / f"{label.replace(' ', '-')}-{sampler}-{nfe}.npy"


def measure(label: str, ckpt: Path, sampler: str, nfe: int, args: argparse.Namespace) -> dict:
    results = args.out / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    for row in done:
        if (row["model"], row["sampler"], row["nfe"]) == (label, sampler, nfe):
            return row
    samples = samples_file(args.out, label, sampler, nfe)
    if not samples.exists():
        samples.parent.mkdir(parents=True, exist_ok=True)
        hybrid("sample", str(ckpt), "--num", str(args.num), "--nfe", str(nfe), "--sampler", sampler, "--device", "cpu",
               "--out", str(samples))
    row = {"model": label, "sampler": sampler, "nfe": nfe, "num": args.num}
    for prefix, options in judges(args.data):
        out = hybrid("eval", str(samples), "--ref", args.data, *options, "--device", "cpu", "--json", capture=True)
        row.update({f"{prefix}{name}/{key}": v for name, part in json.loads(out)["results"].items() for key, v in part.items()})
    with results.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def nfes(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n]


def summarize(dirs: list[Path]) -> None:
    runs = [[json.loads(line) for line in (d / "results.jsonl").read_text().splitlines()] for d in dirs]
    keyed = [{(r["model"], r["sampler"], r["nfe"]): r for r in rows} for rows in runs]
    common = list(dict.fromkeys(k for rows in keyed for k in rows))  # every row, in the order first seen
    keys = sorted({k for rows in keyed for r in rows.values() for k in r
                   if "/" in k and not k.endswith(("_std", "accuracy"))})
    print(f"{len(dirs)} seeds: " + ", ".join(str(d) for d in dirs))
    print("| model | sampler | NFE | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for key in common:
        cells = []
        for k in keys:
            values = [rows[key][k] for rows in keyed if key in rows and rows[key].get(k) is not None]
            if not values:
                cells.append("-")
                continue
            mean = sum(values) / len(values)
            std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
            cells.append(f"{mean:.4g} ± {std:.2g}" + (f" (n={len(values)})" if len(values) < len(dirs) else ""))
        print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")


def grid(out: Path, png: Path, models: list[str], count: int = 16) -> None:
    """One panel per row of out/results.jsonl (of `models` only, if given) whose samples are kept: its
    first `count` images (the same seeds in every panel), or all its points for vectors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from hybridgan.hybrid.images import image_grid

    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    chosen = [(r, samples_file(out, r["model"], r["sampler"], r["nfe"])) for r in rows if not models or r["model"] in models]
    chosen = [(r, f) for r, f in chosen if f.exists()]
    if not chosen:
        sys.exit(f"--grid: no row of {out / 'results.jsonl'} with samples kept" + (f" among {models}" if models else ""))
    rows, files = zip(*chosen)
    cols = min(2, len(rows))
    lines = -(-len(rows) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 1.4 * lines), dpi=120, squeeze=False)
    for ax, row, file in zip(axes.flat, rows, files):
        x = np.load(file)
        score = (f"FID {row['fid/fid']:.0f}" if "fid/fid" in row else
                 f"{row['modes/modes_covered']:.0f} modes" if "modes/modes_covered" in row else "")
        if x.ndim == 4:
            ax.imshow(image_grid(torch.from_numpy(x[:count]), cols=8).squeeze(-1), cmap="gray", vmin=0, vmax=255)
        else:
            ax.scatter(x[:, 0], x[:, 1], s=0.5, c="#d62728")
            ax.set_aspect("equal")
        ax.set_title(f"{row['model']}, {row['sampler']} {row['nfe']}" + (f": {score}" if score else ""), fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png)
    print(f"wrote {png}")


def main() -> None:
    if sys.argv[1:2] == ["--summarize"]:
        summarize([Path(d) for d in sys.argv[2:]])
        return
    if sys.argv[1:2] == ["--grid"]:
        if len(sys.argv) < 4:
            sys.exit("usage: distill.py --grid DIR PNG [MODEL ...]")
        grid(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--teacher-minutes", type=float, default=5.0)
    parser.add_argument("--student-minutes", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=4, help="the student's levels")
    parser.add_argument("--name", default="student", help="the student's run directory under --out (variants side by side)")
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--student-only", action="store_true", help="the teacher (trained if missing) and the student only")
    only.add_argument("--teacher-only", action="store_true", help="the teacher (trained if missing) and its rows only")
    parser.add_argument("--student-nfe", default="1,2,4", help="the student's rows (default 1,2,4)")
    parser.add_argument("--scratch-nfe", default="1,4", help="the rows of the hybrid of the total time (default 1,4)")
    parser.add_argument("--no-teacher-time-hybrid", action="store_true",
                        help="train and measure only the hybrid of the total time, not the one of the teacher's time")
    parser.add_argument("--teacher-ddim", default="4,100", help="the teacher's DDIM rows (default 4,100)")
    parser.add_argument("--teacher-1000", action="store_true",
                        help="also the teacher at its 1000 ancestral steps (on one CPU thread ~40 minutes at N = 1000)")
    parser.add_argument("--curve", action="store_true",
                        help="also every earlier snapshot of the student at its first --student-nfe (its learning curve; "
                             "rows 'NAME K kimg')")
    parser.add_argument("student_args", nargs="*")
    args = parser.parse_args()
    if args.student_minutes > args.teacher_minutes:
        parser.error("the student trains for at most the teacher's time")
    args.out.mkdir(parents=True, exist_ok=True)
    seed = ["--seed", str(args.seed)]
    teacher = train(args.out / "teacher", args.data, args.teacher_minutes, ["--objective", "ddpm", *seed])
    rows = []
    if not args.teacher_only:
        student = train(args.out / args.name, args.data, args.student_minutes,
                        ["--objective", "distill", "--teacher", str(teacher), "--steps", str(args.steps), *seed,
                         *args.student_args])
        student_nfe = [nfe for nfe in nfes(args.student_nfe) if nfe <= args.steps]
        rows += [measure(args.name, student, "gan", nfe, args) for nfe in student_nfe]
        if args.curve and student_nfe:
            rows += [measure(f"{args.name} {checkpoint_kimg(ckpt)} kimg", ckpt, "gan", student_nfe[0], args)
                     for ckpt in list_checkpoints(student.parent)[:-1]]
    if not (args.student_only or args.teacher_only):
        total = args.teacher_minutes + args.student_minutes
        scratch = train(args.out / "scratch", args.data, total, ["--objective", "hybrid", *seed])
        rows += [measure(f"hybrid {total:g} min", scratch, "gan", nfe, args) for nfe in nfes(args.scratch_nfe)]
        if not args.no_teacher_time_hybrid:
            alike = train(args.out / "scratch-teacher-time", args.data, args.teacher_minutes,
                          ["--objective", "hybrid", *seed])
            rows.append(measure(f"hybrid {args.teacher_minutes:g} min", alike, "gan", 4, args))
    if not args.student_only:
        rows += [measure("teacher", teacher, "ddim", nfe, args) for nfe in nfes(args.teacher_ddim)]
        if args.teacher_1000:
            rows.append(measure("teacher", teacher, "ddpm", 1000, args))
    print(f"\n{args.data}: teacher {args.teacher_minutes:g} min, student {args.student_minutes:g} min, N = {args.num}, "
          f"seed {args.seed}")
    keys = [k for k in rows[0] if "/" in k]
    print("| model | sampler | NFE | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for row in rows:
        cells = " | ".join("-" if row.get(k) is None else f"{row[k]:.4g}" for k in keys)
        print(f"| {row['model']} | {row['sampler']} | {row['nfe']} | {cells} |")


if __name__ == "__main__":
    main()
