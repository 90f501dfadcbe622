"""`hybrid report`: a benchmark report of run directories, as Markdown, self-contained HTML and PNGs.

The report is a list of blocks (headings, paragraphs, tables, images) rendered twice: to
report.md, which links the PNG files beside it, and to report.html, which embeds them as base64
data URIs so the one file can be mailed or attached. Sources, per run: config.json, stats.jsonl
(losses, D logits, img/s), metrics.jsonl (metric vs kimg), bench.jsonl (`hybrid bench`: metric
vs NFE, latency, protocol) and the newest samples/*.png. A missing file becomes a note.

This package does not import `training`: run files are read here (see training/rundir.py for
how they are written).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridgan.hybrid import runfiles
from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.runfiles import duration, read_jsonl

MARKER = "<!-- written by `hybrid report`; regenerating it replaces this file -->"
HIGHER_IS_BETTER = {"modes_covered", "high_quality", "is", "precision", "recall", "class_min_ratio"}
# constants and spreads: not plotted on their own
HIDDEN_KEYS = {"modes_total", "kid_std", "is_std", "class_knn_accuracy", "class_cnn_accuracy"}
PRIMARY_ORDER = ("fid", "kid", "modes_covered", "swd", "mmd", "is", "precision", "recall", "high_quality", "class_tv",
                 "class_min_ratio")
LOSS_KEYS = ("Loss/D", "Loss/G")
LOGIT_KEYS = ("D/logit/real", "D/logit/fake")
DIFFUSION_GAN_KEYS = ("DiffusionGAN/T", "DiffusionGAN/r_d")  # the adaptive diffusion of --objective diffusion-gan


# ---------------------------------------------------------------------------------------------
# Reading runs


@dataclass
class Run:
    """What a report reads from one run directory."""

    path: Path  # the run directory
    label: str  # its name in tables and legends
    config: dict[str, Any]  # config.json ({} when absent)
    stats: list[dict[str, Any]]  # stats.jsonl, one record per tick
    metrics: list[dict[str, Any]]  # metrics.jsonl, one record per metric per evaluation
    bench: list[dict[str, Any]]  # bench.jsonl, one record per checkpoint x sampler x NFE
    grids: list[Path]  # the sample grids, oldest first (samples-<kimg>.png)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-") or "run"


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a run directory; UserError when `path` is not one (no config.json nor any .jsonl)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory; give folders written by `hybrid train`")
    files = [path / n for n in (runfiles.CONFIG, runfiles.STATS, runfiles.METRICS, runfiles.BENCH)]
    if not any(f.is_file() for f in files):
        raise UserError(f"{path}: not a run directory (no config.json, stats.jsonl, metrics.jsonl or bench.jsonl)")
    try:
        config = json.loads(files[0].read_text()) if files[0].is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{files[0]}: not readable JSON ({e}); is this a run directory?") from None
    grids = sorted((path / runfiles.SAMPLES).glob("*.png")) if (path / runfiles.SAMPLES).is_dir() else []
    return Run(path, label or path.name, config if isinstance(config, dict) else {}, read_jsonl(files[1]),
               read_jsonl(files[2]), read_jsonl(files[3]), grids)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Runs with distinct labels: the folder name, or parent/name where two names clash."""
    paths = [Path(p).expanduser() for p in paths]
    names = [p.resolve().name for p in paths]
    labels = [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]
    for i, label in enumerate(labels):
        if labels.index(label) != i:
            labels[i] = f"{label}-{i}"
    return [load_run(p, label) for p, label in zip(paths, labels)]


# ---------------------------------------------------------------------------------------------
# Facts drawn from the records


def shown_values(values: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(key, value) of the finite numbers among `values`, hidden keys (modes_total, ...) left out."""
    for key, value in values.items():
        if key not in HIDDEN_KEYS and isinstance(value, (int, float)) and math.isfinite(value):
            yield key, float(value)


def bench_means(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(key, mean over repetitions) of a bench.jsonl record's shown metrics."""
    return shown_values({k: s.get("mean") for k, s in record.get("metrics", {}).items()})


def metric_series(run: Run) -> dict[str, list[tuple[float, float, Any]]]:
    """Value key (fid, swd, modes_covered, ...) -> [(kimg, value, nfe)] from metrics.jsonl."""
    series: dict[str, list[tuple[float, float, Any]]] = {}
    for r in run.metrics:
        if r.get("kimg") is None:
            continue
        for key, value in shown_values(r.get("results") or {r.get("metric", "value"): r.get("value")}):
            series.setdefault(key, []).append((float(r["kimg"]), value, r.get("nfe")))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in series.items()}


def ordered_keys(keys: Iterable[str]) -> list[str]:
    """Primary metrics first (FID, KID, modes covered, SWD, ...), then the rest by name."""
    keys = set(keys) - HIDDEN_KEYS
    return [k for k in PRIMARY_ORDER if k in keys] + sorted(keys - set(PRIMARY_ORDER))


def best(points: list[tuple[float, float, Any]], key: str) -> tuple[float, float, Any]:
    """The best (kimg, value, nfe): max for higher-is-better keys, else min."""
    pick = max if key in HIGHER_IS_BETTER else min
    return pick(points, key=lambda p: p[1])


def stat_series(run: Run, key: str) -> tuple[list[float], list[float]]:
    """(kimg, value) of one stats.jsonl key, finite values only."""
    pts = [(r["kimg"], r[key]) for r in run.stats if isinstance(r.get(key), (int, float)) and "kimg" in r]
    pts = [(k, v) for k, v in pts if math.isfinite(v)]
    return [p[0] for p in pts], [p[1] for p in pts]


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: `digits` significant digits, whole numbers from 1000 up ('2,541')."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    return "–" if value is None else str(value)


def median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


# ---------------------------------------------------------------------------------------------
# Blocks: what the report says, independent of Markdown or HTML


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str
    note: bool = False  # a note about something missing or not comparable


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    file: str  # a PNG beside report.md
    alt: str


@dataclass
class Gallery:
    images: list[Image] = field(default_factory=list)  # shown side by side


Block = Heading | Para | Table | Image | Gallery


# ---------------------------------------------------------------------------------------------
# Sections


def styles_by_run(runs: list[Run]) -> dict[str, dict[str, Any]]:
    from hybridgan.metrics.report_plots import colour

    return {run.label: {"color": colour(i)} for i, run in enumerate(runs)}


def summary_section(runs: list[Run]) -> list[Block]:
    """One row per run: what it trained, for how long, how fast, and its best metrics at which kimg."""
    series = {run.label: metric_series(run) or bench_points(run) for run in runs}
    keys = ordered_keys(k for s in series.values() for k in s)
    header = ["run", "objective", "data", "kimg", "training time", "img/s", "NFE"]
    header += [f"best {k} {'↑' if k in HIGHER_IS_BETTER else '↓'} (at kimg, NFE)" for k in keys]
    rows = []
    for run in runs:
        s = series[run.label]
        speed = median([r["Speed/img_per_s"] for r in run.stats if isinstance(r.get("Speed/img_per_s"), (int, float))])
        last = run.stats[-1] if run.stats else {}
        nfes = sorted({p[2] for pts in s.values() for p in pts if p[2] is not None})
        row = [run.label, fmt(run.config.get("objective")), fmt(run.config.get("data")), fmt(last.get("kimg")),
               duration(last.get("seconds")), fmt(speed, 3) if speed is not None else "–", ", ".join(map(str, nfes)) or "–"]
        for k in keys:
            if k in s:
                kimg, value, nfe = best(s[k], k)
                row.append(f"{fmt(value)} ({kimg:.4g}" + (f", {nfe})" if nfe is not None else ")"))
            else:
                row.append("–")
        rows.append(row)
    blocks: list[Block] = [Heading(2, "Summary"), Table(header, rows),
                           Para("img/s: median training throughput over ticks (stats.jsonl). NFE: generator "
                                "evaluations per sample in the training-time evaluations (metrics.jsonl), or where a "
                                "run has none, in its `hybrid bench` measurements (bench.jsonl). "
                                "↓ lower is better, ↑ higher.")]
    blocks += [Para(f"{run.label}: no metrics.jsonl or bench.jsonl records yet (train with --metrics and "
                    "--eval-every, or run `hybrid bench`).", note=True)
               for run in runs if not series[run.label]]
    return blocks


CONFIG_ROWS = ("objective", "data", "resolution", "kimg", "minutes", "batch", "lr_g", "lr_d", "denoise_weight",
               "r1_gamma", "d_pair", "ema_kimg", "seed", "device", "precision",
               "dg_target", "dg_t_min", "dg_t_max", "dg_kimg", "dg_noise",
               "teacher", "fake_updates", "gan_weight", "student_sigma", "teacher_levels")  # rows no run has are left out
MODEL_ROWS = ("steps", "schedule", "prediction", "sampler")


def short_commit(commit: Any) -> str:
    """0123456789ab, or 0123456789ab+dirty."""
    if not isinstance(commit, str):
        return "–"
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def config_section(runs: list[Run]) -> list[Block]:
    """The options each run trained with (config.json) and where it ran (its "_run" record)."""
    if not any(run.config for run in runs):
        return []
    rows = [[key] + [fmt(run.config.get(key)) for run in runs] for key in CONFIG_ROWS]
    rows += [[f"model {key}"] + [fmt((run.config.get("model") or {}).get(key)) for run in runs] for key in MODEL_ROWS]
    rows += [["generator channels"] + [fmt(((run.config.get("model") or {}).get("generator") or {}).get("channels"))
                                       for run in runs]]
    provenance = [run.config.get("_run") or {} for run in runs]
    rows += [["machine"] + [fmt(p.get("machine")) for p in provenance],
             ["versions"] + [", ".join(f"{k} {v}" for k, v in (p.get("versions") or {}).items()) or "–" for p in provenance],
             ["git commit"] + [short_commit(p.get("git_commit")) for p in provenance],
             ["started (UTC)"] + [fmt(p.get("started")) for p in provenance],
             ["command"] + [f"`{p['command']}`" if p.get("command") else "–" for p in provenance]]
    rows = [row for row in rows if any(cell != "–" for cell in row[1:])]
    return [Heading(2, "Configuration"), Table(["option", *[run.label for run in runs]], rows)]


def bench_points(run: Run) -> dict[str, list[tuple[float, float, Any]]]:
    """Value key -> [(kimg, mean, nfe)] over every bench.jsonl setting of the run."""
    points: dict[str, list[tuple[float, float, Any]]] = {}
    for r in newest_bench(run):
        for key, mean in bench_means(r):
            points.setdefault(key, []).append((float(r.get("kimg") or 0), mean, r["nfe"]))
    return points


def bench_series(run: Run) -> dict[str, dict[str, list[tuple[float, float, Any]]]]:
    """'run sampler NFE n' -> value key -> [(kimg, mean, nfe)] from bench.jsonl, for the settings
    benchmarked at two or more checkpoints of the run (metric against training progress)."""
    points: dict[str, dict[str, list[tuple[float, float, Any]]]] = {}
    for r in newest_bench(run):
        if r.get("kimg") is None:
            continue
        label = f"{run.label} {sampling(r)} NFE {r['nfe']}"
        for key, mean in bench_means(r):
            points.setdefault(label, {}).setdefault(key, []).append((float(r["kimg"]), mean, r["nfe"]))
    return {label: s for label, s in points.items() if len({p[0] for v in s.values() for p in v}) > 1}


def curves_section(runs: list[Run], out: Path) -> list[Block]:
    """Each metric against kimg, runs overlaid: training-time evaluations (metrics.jsonl) and
    settings that `hybrid bench` measured at several checkpoints (bench.jsonl)."""
    from hybridgan.metrics.report_plots import colour, plot_lines

    per_label = {run.label: metric_series(run) for run in runs}
    styles = styles_by_run(runs)
    for i, run in enumerate(runs):
        for j, (label, s) in enumerate(bench_series(run).items()):
            per_label[label] = s
            styles[label] = {"color": colour(i), "linestyle": ("--", ":", "-.")[j % 3]}
    keys = ordered_keys(k for s in per_label.values() for k in s)
    blocks: list[Block] = [Heading(2, "Metrics during training")]
    series = {k: {label: ([p[0] for p in s[k]], [p[1] for p in s[k]]) for label, s in per_label.items() if k in s}
              for k in keys}
    sources = "metrics.jsonl; bench.jsonl: dashed" if len(per_label) > len(runs) else "metrics.jsonl"
    if keys and plot_lines(out / "metrics-vs-kimg.png", series, "kimg (thousands of training samples)",
                           f"metric vs training progress ({sources})", styles):
        blocks.append(Image("metrics-vs-kimg.png", "metrics against kimg"))
        nfe = {run.label: sorted({p[2] for s in per_label[run.label].values() for p in s if p[2] is not None})
               for run in runs}
        stated = [f"{label} at NFE {', '.join(map(str, n))}" for label, n in nfe.items() if n]
        if stated:
            blocks.append(Para("Training-time evaluations (metrics.jsonl): " + "; ".join(stated) + "."))
    else:
        blocks.append(Para("No run has metrics.jsonl records, or bench.jsonl records at several checkpoints, yet.",
                           note=True))
    return blocks


def training_section(runs: list[Run], out: Path) -> list[Block]:
    """Losses and discriminator logits against kimg (stats.jsonl)."""
    from hybridgan.metrics.report_plots import plot_lines

    blocks: list[Block] = [Heading(2, "Training curves")]
    styles = styles_by_run(runs)
    losses = {k: {run.label: stat_series(run, k) for run in runs if stat_series(run, k)[0]} for k in LOSS_KEYS}
    losses = {k: v for k, v in losses.items() if v}
    chance = {"Loss/D": (math.log(4), "ln 4: D at chance, learning nothing")}
    if losses and plot_lines(out / "losses.png", losses, "kimg", "stats.jsonl: losses per tick", styles, chance):
        blocks.append(Image("losses.png", "losses against kimg"))
        if len({run.config.get("objective") for run in runs}) > 1:
            blocks.append(Para("Loss/G is each objective's own generator loss (ddpm: the denoising loss; hybrid, ddgan: "
                               "the adversarial loss, plus the weighted denoising loss for hybrid): compare its shape "
                               "across objectives, not its level."))
    else:
        blocks.append(Para("No run has loss records (stats.jsonl) yet.", note=True))
    logits = {k: {run.label: stat_series(run, k) for run in runs if stat_series(run, k)[0]} for k in LOGIT_KEYS}
    logits = {k: v for k, v in logits.items() if v}
    if logits and plot_lines(out / "d-logits.png", logits, "kimg", "stats.jsonl: mean discriminator logits", styles):
        blocks.append(Image("d-logits.png", "discriminator logits against kimg"))
    without = [run.label for run in runs if not stat_series(run, LOGIT_KEYS[0])[0]]
    if without:
        blocks.append(Para(f"No discriminator logits for {', '.join(without)} (no discriminator, e.g. ddpm, "
                           "or no stats.jsonl).", note=True))
    return blocks + diffusion_gan_blocks(runs, out, styles)


def diffusion_gan_blocks(runs: list[Run], out: Path, styles: dict[str, dict[str, Any]]) -> list[Block]:
    """diffusion-gan's T and r_d against kimg, with the target r_d where the runs share one; [] when no run has them."""
    from hybridgan.metrics.report_plots import plot_lines

    series = {k: {run.label: stat_series(run, k) for run in runs if stat_series(run, k)[0]} for k in DIFFUSION_GAN_KEYS}
    series = {k: v for k, v in series.items() if v}
    targets = {run.config.get("dg_target") for run in runs if run.label in series.get("DiffusionGAN/r_d", {})}
    marks = {"DiffusionGAN/r_d": (targets.pop(), "target")} if len(targets) == 1 and None not in targets else None
    if not series or not plot_lines(out / "diffusion-gan.png", series, "kimg",
                                    "stats.jsonl: diffusion-gan's adaptive T and r_d = E[sign(D(real))]", styles, marks):
        return []
    return [Image("diffusion-gan.png", "diffusion-gan's T and r_d against kimg"),
            Para("diffusion-gan: T, the length of the chain the discriminator's inputs are diffused along, grows "
                 "while r_d is above its target (D overconfident on real data) and shrinks while it is below.")]


def newest_bench(run: Run) -> list[dict[str, Any]]:
    """bench.jsonl records, the newest per (checkpoint, sampling, NFE), by kimg, sampling, NFE."""
    latest = {(r.get("checkpoint"), sampling(r), r.get("nfe")): r for r in run.bench if "nfe" in r}
    return sorted(latest.values(), key=lambda r: (r.get("kimg") or 0, sampling(r), r["nfe"]))


def sampling(record: dict[str, Any]) -> str:
    """A bench record's sampler, and the generators it drew from when more than one ('gan, mixture 3')."""
    generators = record.get("generators") or 1
    return f"{record.get('sampler')}" + (f", mixture {generators}" if generators > 1 else "")


def bench_label(run: Run, record: dict[str, Any]) -> str:
    return f"{run.label} {sampling(record)}"


def bench_section(runs: list[Run], out: Path) -> list[Block]:
    """Metric vs NFE with one std over seeds, and sampling latency (bench.jsonl)."""
    from hybridgan.metrics.report_plots import SAMPLER_STYLE, colour, plot_nfe

    records = {run.label: newest_bench(run) for run in runs}
    keys = ordered_keys(k for rs in records.values() for r in rs for k in r.get("metrics", {}))
    blocks: list[Block] = [Heading(2, "Benchmark: metrics and speed against NFE")]
    if not keys:
        return blocks + [Para("No bench.jsonl in any run: run `hybrid bench CHECKPOINT` first.", note=True)]
    header = ["run", "kimg", "sampler", "NFE"] + [f"{k} {'↑' if k in HIGHER_IS_BETTER else '↓'}" for k in keys]
    header += ["ms/img (batch)", "img/s"]
    rows, series, styles = [], {k: {} for k in keys + ["sampling ms per image"]}, {}
    for i, run in enumerate(runs):
        newest = max((r.get("kimg") or 0 for r in records[run.label]), default=0)
        for r in records[run.label]:
            rows.append(bench_row(run, r, keys))
            if (r.get("kimg") or 0) != newest:
                continue  # earlier checkpoints: in the table, and against kimg under "Metrics during training"
            label = bench_label(run, r)
            styles[label] = {"color": colour(i), "linestyle": SAMPLER_STYLE.get(str(r.get("sampler")), "-")}
            for k, summary in r.get("metrics", {}).items():
                if k in series:
                    append_point(series[k], label, r["nfe"], summary.get("mean"), summary.get("std"))
            append_point(series["sampling ms per image"], label, r["nfe"], r.get("ms_per_img"), 0.0)
    blocks += [Table(header, rows),
               Para("Each cell: mean ± std over the seed repetitions, and the best repetition in brackets "
                    "(min for ↓ metrics, max for ↑); a single repetition shows its value alone. "
                    "Speed: median of timed sampler calls at the stated batch, after a warm-up call.")]
    series = {k: v for k, v in series.items() if v}
    title = "bench.jsonl: mean ± std over seeds against NFE (each run's newest benchmarked checkpoint)"
    if plot_nfe(out / "metrics-vs-nfe.png", series, title, styles,
                log_wide={"sampling ms per image"}):
        blocks.append(Image("metrics-vs-nfe.png", "metrics and latency against NFE"))
    blocks += [Para(f"{run.label}: no bench.jsonl.", note=True) for run in runs if not records[run.label]]
    return blocks


def append_point(series: dict[str, tuple[list, list, list]], label: str, nfe: int, mean: Any, std: Any) -> None:
    if isinstance(mean, (int, float)) and math.isfinite(mean):
        x, y, e = series.setdefault(label, ([], [], []))
        x.append(nfe)
        y.append(mean)
        e.append(std if isinstance(std, (int, float)) and math.isfinite(std) else 0.0)


def bench_row(run: Run, r: dict[str, Any], keys: list[str]) -> list[str]:
    cells = [run.label, fmt(r.get("kimg")), sampling(r), fmt(r.get("nfe"))]
    for k in keys:
        s = r.get("metrics", {}).get(k)
        if not s:
            cells.append("–")
            continue
        if len(s.get("values") or []) == 1:
            cells.append(fmt(s.get("mean")))  # one repetition: no spread to state
            continue
        top = s.get("max") if k in HIGHER_IS_BETTER else s.get("min")
        cells.append(f"{fmt(s.get('mean'))} ± {fmt(s.get('std'), 2)} ({fmt(top)})")
    cells += [f"{fmt(r.get('ms_per_img'), 3)} ({fmt(r.get('timing_batch'))})", fmt(r.get("img_per_s"), 4)]
    return cells


GRIDS_PER_RUN = 4  # sample grids shown per run, evenly spaced over training, the newest last


def samples_section(runs: list[Run], out: Path) -> list[Block]:
    """Sample grids of each run over training (its first, evenly spaced ones, its newest), copied beside the report."""
    blocks: list[Block] = [Heading(2, "Samples over training")]
    for run in runs:
        if not run.grids:
            blocks.append(Para(f"{run.label}: no sample grid in {run.path / 'samples'}.", note=True))
            continue
        picks = sorted({round(i * (len(run.grids) - 1) / max(GRIDS_PER_RUN - 1, 1)) for i in range(GRIDS_PER_RUN)})
        gallery = Gallery()
        for grid in (run.grids[i] for i in picks):
            name = f"samples-{run.slug}-{grid.stem}.png"
            shutil.copyfile(grid, out / name)
            gallery.images.append(Image(name, f"{run.label}, {grid_kimg(grid)}"))
        blocks.append(gallery)
    return blocks


def grid_kimg(grid: Path) -> str:
    """'40 kimg' for samples-000040.png; the file name otherwise."""
    match = re.fullmatch(r"samples-(\d+)", grid.stem)
    return f"{int(match.group(1))} kimg" if match else grid.name


def short(digest: Any) -> str:
    return f"{digest[:12]}…" if isinstance(digest, str) and len(digest) > 12 else fmt(digest)


def extractor_text(record: dict[str, Any]) -> str:
    judge = f"; classes by {'the trained CNN' if record['class_judge'] == 'cnn' else 'pixel k-NN'}" if record.get("class_judge") else ""
    if not record.get("extractor"):
        return f"none{judge}" if judge else "none (vector metrics)"
    accuracy = f", held-out accuracy {record['extractor_accuracy']:.4f}" if record.get("extractor_accuracy") is not None else ""
    return f"{record['extractor']}, weights sha256 {short(record.get('weights_sha256'))}{accuracy}{judge}"


def protocol_section(runs: list[Run]) -> list[Block]:
    """How the numbers were measured: from bench.jsonl and metrics.jsonl records."""
    blocks: list[Block] = [Heading(2, "Protocol")]
    rows, comparable = [], set()
    for run in runs:
        seen = {}
        for r in newest_bench(run):
            p = r.get("protocol", {})
            row = [run.label, f"{fmt(p.get('num'))} × {fmt(p.get('repeats'))} seeds",
                   f"{fmt(p.get('ref'))} ({fmt(p.get('num_ref'))}, sha256 {short(p.get('ref_sha256'))})",
                   extractor_text(p), fmt(p.get("device")),
                   f"torch {fmt(p.get('torch'))}, torch-fidelity {fmt(p.get('torch_fidelity'))}, "
                   f"hybridgan {fmt(p.get('hybridgan') or p.get('hybrid'))}",  # records before 0.1.0 say hybrid
                   fmt(p.get("date"))[:10]]
            seen[tuple(row[:-1])] = row
            comparable.add((p.get("num"), p.get("ref_sha256"), p.get("extractor"), p.get("weights_sha256")))
        rows += seen.values()
    if rows:
        blocks += [Heading(3, "Benchmarks (bench.jsonl)"),
                   Table(["run", "N per repetition", "reference", "features", "device", "versions", "date"],
                         rows)]
        if len(comparable) > 1:
            blocks.append(Para("The benchmarks differ in N, reference data or extractor: their numbers are not "
                               "directly comparable (FID falls with N; compare only at equal N and reference).", note=True))
    blocks += training_protocol(runs)
    details = {r["metric"]: r["detail"] for run in runs for r in run.metrics + metric_records_of_bench(run)
               if r.get("metric") and r.get("detail")}
    if details:
        blocks += [Heading(3, "Metric definitions"), Table(["metric", "how it is computed"], [[k, v] for k, v in details.items()])]
    return blocks if len(blocks) > 1 else []  # no heading over nothing


def metric_records_of_bench(run: Run) -> list[dict[str, Any]]:
    return [{"metric": k, "detail": v} for r in run.bench for k, v in r.get("protocol", {}).get("details", {}).items()]


def training_protocol(runs: list[Run]) -> list[Block]:
    rows = []
    for run in runs:
        seen = {}
        for r in run.metrics:
            row = [run.label, fmt(r.get("num")), fmt(r.get("nfe")), fmt(r.get("sampler")), fmt(r.get("ref")),
                   extractor_text(r)]
            seen[tuple(row)] = row
        rows += seen.values()
    if not rows:
        return []
    return [Heading(3, "Evaluations during training (metrics.jsonl)"),
            Table(["run", "N", "NFE", "sampler", "reference", "features"], rows)]


# ---------------------------------------------------------------------------------------------
# Rendering


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    lines = [MARKER, ""]
    for b in blocks:
        if isinstance(b, Heading):
            lines += [f"{'#' * b.level} {b.text}", ""]
        elif isinstance(b, Para):
            lines += [f"> **Note.** {b.text}" if b.note else b.text, ""]
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(map(md_cell, b.header)) + " |")
            lines.append("|" + "---|" * len(b.header))
            lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in b.rows]
            lines.append("")
        elif isinstance(b, Image):
            lines += [f"![{b.alt}]({b.file})", ""]
        elif isinstance(b, Gallery):  # captions over the pictures, side by side
            lines.append("| " + " | ".join(md_cell(i.alt) for i in b.images) + " |")
            lines.append("|" + "---|" * len(b.images))
            lines += ["| " + " | ".join(f"![{i.alt}]({i.file})" for i in b.images) + " |", ""]
    return "\n".join(lines)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #222; margin: 0 auto;
       max-width: 1180px; padding: 16px 24px; }
h1 { font-size: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #eee; }
h3 { font-size: 1.05em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td { font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 4px 10px; }
.gallery { display: flex; flex-wrap: wrap; gap: 16px; }
.gallery figure { margin: 0; max-width: 360px; }
.gallery figcaption { font-size: 12px; color: #555; text-align: center; }
"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def to_html(blocks: list[Block], out: Path, title: str) -> str:
    """A self-contained page: styles inline, every PNG embedded as a data URI."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(title)}</title><style>{CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            parts.append(f'<p class="note"><b>Note.</b> {e(b.text)}</p>' if b.note else f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            parts.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
        elif isinstance(b, Image):
            parts.append(f'<p><img src="{data_uri(out / b.file)}" alt="{e(b.alt)}"></p>')
        elif isinstance(b, Gallery):
            figures = "".join(f'<figure><img src="{data_uri(out / i.file)}" alt="{e(i.alt)}">'
                              f"<figcaption>{e(i.alt)}</figcaption></figure>" for i in b.images)
            parts.append(f'<div class="gallery">{figures}</div>')
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path  # report.md
    html: Path  # report.html (self-contained)
    images: list[Path]  # the PNGs beside report.md


def prepare_out(out: str | Path) -> Path:
    """The output folder; refuses to replace a report.md that `hybrid report` did not write."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for report.md, report.html and the plots")
    existing = out / "report.md"
    if existing.is_file() and not existing.read_text(errors="replace").startswith(MARKER):
        raise UserError(f"--out {out}: holds a report.md not written by `hybrid report`; choose another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create it ({e.strerror})") from None
    return out


def report_blocks(runs: list[Run], out: Path, title: str | None) -> list[Block]:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = Para(f"Runs: {', '.join(f'{r.label} ({r.path})' for r in runs)}. Written {now} by `hybrid report`.")
    return [Heading(1, title or default_title(runs)), intro, *summary_section(runs), *config_section(runs),
            *bench_section(runs, out), *curves_section(runs, out), *training_section(runs, out),
            *samples_section(runs, out), *protocol_section(runs)]


def default_title(runs: list[Run]) -> str:
    """What the report holds: a benchmark where a run has `hybrid bench` records, else training."""
    what = "benchmark" if any(run.bench for run in runs) else "training"
    names = ", ".join(sorted({str(run.config.get("data")) for run in runs if run.config.get("data")}))
    return f"hybrid {what} report" + (f": {names}" if names else "")


def write_report(run_dirs: list[str | Path], out: str | Path, title: str | None = None) -> ReportPaths:
    """Read the runs and write out/report.md, out/report.html and the PNGs beside them."""
    if not run_dirs:
        raise UserError("give at least one run directory")
    runs = load_runs(run_dirs)
    out = prepare_out(out)
    for old in out.glob("*.png"):  # plots of a previous report that may not be made again
        if old.name.startswith(("metrics-vs-", "losses", "d-logits", "samples-")):
            old.unlink()
    blocks = report_blocks(runs, out, title)
    images = [out / i.file for b in blocks for i in (b.images if isinstance(b, Gallery) else [b] if isinstance(b, Image) else [])]
    md, page = out / "report.md", out / "report.html"
    md.write_text(to_markdown(blocks))
    page.write_text(to_html(blocks, out, blocks[0].text))  # the title: given, or by what the report holds
    return ReportPaths(md, page, images)
