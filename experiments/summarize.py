"""Tables and plots of an `experiments/equal_time.py` experiment: mean ± std over training seeds.

    python experiments/summarize.py runs/experiments/toy-25gaussians --out docs/experiments

reads ROOT/VARIANT/seedK/{bench.jsonl, checkpoints} and writes OUT/<name>.md (one row per
variant x sampler x NFE: each metric's mean ± std over the seeds, with the kimg each variant
reached in its time budget) and OUT/<name>-<metric>.png (metric against NFE, one line per
variant and sampler). Each seed's value is its bench mean (over the bench's sampling repetitions).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hybridgan.hybrid.checkpoint import list_checkpoints, load  # noqa: E402
from hybridgan.hybrid.runfiles import read_jsonl  # noqa: E402

SHOWN = ("modes_covered", "high_quality", "swd", "mmd", "fid", "kid", "class_tv", "class_min_ratio")  # in this order, those present
LOWER_IS_BETTER = {"swd", "mmd", "fid", "kid", "class_tv"}


def csv(text: str | None) -> list[str] | None:
    return text.split(",") if text else None


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(mean: float, std: float, n: int) -> str:
    """Three significant digits of the mean, the std to the same decimal place."""
    digits = max(0, 2 - math.floor(math.log10(abs(mean)))) if mean else 3
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def collect(root: Path, variants: list[str] | None, seeds: list[str] | None) -> tuple[dict, dict]:
    """(variant, sampler, nfe) -> metric -> [value per seed]; variant -> {"kimg": [...], "minutes": [...]}."""
    results: dict = defaultdict(lambda: defaultdict(list))
    training: dict = defaultdict(lambda: defaultdict(list))
    for bench in sorted(root.glob("*/seed*/bench.jsonl")):
        run, variant = bench.parent, bench.parent.parent.name
        if (variants and variant not in variants) or (seeds and run.name.removeprefix("seed") not in seeds):
            continue
        final = list_checkpoints(run / "checkpoints")[-1]
        # The newest record per setting of the final checkpoint (earlier ones may be benchmarked for a report's curves).
        newest = {(r["sampler"], r["nfe"]): r for r in read_jsonl(bench) if Path(r["checkpoint"]).name == final.name}
        for r in newest.values():
            for key, value in r["metrics"].items():
                results[(variant, r["sampler"], r["nfe"])][key].append(value["mean"])
        progress = load(final)["progress"]
        training[variant]["kimg"].append(progress["nimg"] / 1000)
        training[variant]["minutes"].append(progress["seconds"] / 60)
    return results, training


def table(results: dict, training: dict, keys: list[str]) -> list[str]:
    header = ["variant", "kimg trained", "sampler", "NFE", *[k + (" ↓" if k in LOWER_IS_BETTER else " ↑") for k in keys], "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (variant, sampler, nfe), metrics in sorted(results.items(), key=lambda kv: (kv[0][0] != "hybrid", kv[0])):
        kimg = training[variant]["kimg"]
        n = len(next(iter(metrics.values())))
        cells = [variant, fmt(*mean_std(kimg), len(kimg)), sampler, str(nfe)]
        cells += [fmt(*mean_std(metrics[k]), len(metrics[k])) if k in metrics else "–" for k in keys]
        lines.append("| " + " | ".join(cells + [str(n)]) + " |")
    return lines


def plot(results: dict, key: str, title: str, path: Path) -> None:
    lines: dict = defaultdict(list)
    for (variant, sampler, nfe), metrics in results.items():
        if key in metrics:
            lines[(variant, sampler)].append((nfe, *mean_std(metrics[key])))
    variants = sorted({v for v, _ in lines}, key=lambda v: (v != "hybrid", v))
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=90)
    for (variant, sampler), points in sorted(lines.items(), key=lambda kv: (variants.index(kv[0][0]), kv[0][1])):
        points.sort()
        nfe, mean, std = zip(*points)
        ax.errorbar(nfe, mean, yerr=std, marker="s" if sampler == "ddpm" else "o", capsize=3,
                    color=f"C{variants.index(variant)}", label=f"{variant} ({sampler})")
    ax.set_xscale("log")
    means = [m for points in lines.values() for _, m, _ in points]
    if means and min(means) > 0 and max(means) > 10 * min(means):  # e.g. FID from 1 to 1000 steps
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "25" else ""))
    ax.set_xlabel("NFE (generator evaluations per sample)")
    ax.set_ylabel(key + (" (lower is better)" if key in LOWER_IS_BETTER else " (higher is better)"))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="an experiment folder: ROOT/VARIANT/seedK")
    p.add_argument("--out", type=Path, default=Path("docs/experiments"))
    p.add_argument("--name", default=None, help="file name stem [default: the root's name]")
    p.add_argument("--variants", default=None, help="comma-separated variants to include [default: all]")
    p.add_argument("--nfe", default=None, help="comma-separated NFE to include [default: all]")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds to include [default: all]")
    args = p.parse_args()

    results, training = collect(args.root, csv(args.variants), csv(args.seeds))
    if args.nfe:
        results = {k: v for k, v in results.items() if str(k[2]) in args.nfe.split(",")}
    if not results:
        sys.exit(f"error: no ROOT/VARIANT/seedK/bench.jsonl under {args.root}")
    name = args.name or args.root.name
    keys = [k for k in SHOWN if any(k in m for m in results.values())]
    minutes = [m for t in training.values() for m in t["minutes"]]
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"### {name}", "",
             f"Training time per run {min(minutes):.2f}-{max(minutes):.2f} min; mean ± std over training seeds.", "",
             *table(results, training, keys), ""]
    for key in keys:
        if key != "modes_total":
            png = f"{name}-{key}.png"
            plot(results, key, f"{name}: {key} at equal training time", args.out / png)
            lines.append(f"![{name} {key}]({png})")
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
