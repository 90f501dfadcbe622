"""`hybrid bench`: metrics of checkpoints under a stated protocol, over several sampling seeds.

For each checkpoint x sampler x NFE, the metrics are computed `repeats` times on disjoint seed
ranges (repetition r draws seeds SEED_BASE + r*N .. SEED_BASE + (r+1)*N - 1, or the given seeds
moved up by r times their span) and reported as
mean, std, min and max with every value; sampling speed is timed separately at a stated batch
after a warm-up call. Each result is one JSON line carrying its protocol (N, reference and its
digest, extractor and weights sha256, device, versions, date): reported numbers often fail to
reproduce because of exactly these choices (REFERENCE.md), so they travel with every number.

This package does not import `training`; the command line hands in its data loader.
"""

from __future__ import annotations

import datetime
import math
import platform
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from hybridgan.hybrid import runfiles
from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.runfiles import append_jsonl, versions
from hybridgan.metrics.evaluate import (
    SEED_BASE,
    EvalConfig,
    EvalResult,
    LoadData,
    Log,
    evaluate,
    load_reference,
    model_samples,
    stderr_log,
)
from hybridgan.metrics.inception import sha256_file
from hybridgan.metrics.reference import ReferenceStats, data_digest, reference_subset

MIN_TIMING_SECONDS = 0.5  # time sampler calls for at least this long in all ...
MAX_TIMING_CALLS = 1000  # ... unless this many calls were timed
SLOW_CALL_SECONDS = 10.0  # a warm-up call this slow: one timed call (a 1000-step sampler's takes minutes)


@dataclass(frozen=True)
class BenchConfig:
    nfe: tuple[int, ...] = (1, 2, 4)  # generator evaluations per sample to measure (those above a model's T are skipped)
    samplers: tuple[str, ...] = ()  # gan | ddpm | ddim; () = each model's default sampler
    mixtures: tuple[int, ...] = ()  # how many of a checkpoint's generators to draw from (`Model.generators`); () = all it holds
    repeats: int = 3  # evaluations per setting, on disjoint seed ranges
    eval: EvalConfig = EvalConfig(num=1000)  # metrics, N, reference size, batch, extractor
    timing_batch: int = 64  # samples per sampler call when timing
    timing_calls: int = 3  # at least this many timed calls after one warm-up call; their median is reported


@dataclass(frozen=True)
class Timing:
    batch: int  # samples per sampler call
    ms_per_img: float  # median wall time of a call / batch, in milliseconds
    img_per_s: float  # batch / median wall time of a call
    calls: int  # timed calls (after one warm-up call)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def seed_ranges(num: int, repeats: int, first: tuple[int, ...] | None = None) -> list[tuple[int, ...]]:
    """Disjoint seed sets, one per repetition: `first` (default SEED_BASE .. SEED_BASE + num - 1)
    moved up by r times its span (max - min + 1) for repetition r."""
    first = first or tuple(range(SEED_BASE, SEED_BASE + num))
    span = max(first) - min(first) + 1
    return [tuple(s + r * span for s in first) for r in range(repeats)]


def summarize(results: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per value key (fid, kid, modes_covered, swd, ...) over repetitions: mean, std, min, max, values.

    std is the sample standard deviation (n-1); 0 for one repetition.
    """
    keys = list(dict.fromkeys(k for r in results for values in r.values() for k in values))
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = [values[key] for r in results for values in r.values() if key in values]
        finite = [v for v in values if math.isfinite(v)]
        out[key] = {"mean": statistics.fmean(finite) if finite else math.nan,
                    "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
                    "min": min(finite, default=math.nan), "max": max(finite, default=math.nan), "values": values}
    return out


def time_sampling(model, sampler: str, nfe: int, device: torch.device, batch: int, calls: int,
                  mixture: int | None = None) -> Timing:
    """Median wall time of sampler calls of `batch` samples, after one warm-up call: at least
    `calls` calls and at least MIN_TIMING_SECONDS in all, so that fast calls are not timer noise;
    a single call where the warm-up took SLOW_CALL_SECONDS or more.

    `sample` returns its result on the CPU, so each call ends with a device sync.
    """
    from hybridgan.hybrid.samplers import sample

    seeds = list(range(batch))
    start = time.perf_counter()
    sample(model, seeds, steps=nfe, sampler=sampler, device=device, mixture=mixture)  # warm-up: allocator, kernels, caches
    if time.perf_counter() - start >= SLOW_CALL_SECONDS:
        calls = 1  # timer noise is nothing against such a call, and each one costs minutes
    seconds: list[float] = []
    while len(seconds) < calls or (sum(seconds) < MIN_TIMING_SECONDS and len(seconds) < MAX_TIMING_CALLS):
        start = time.perf_counter()
        sample(model, seeds, steps=nfe, sampler=sampler, device=device, mixture=mixture)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return Timing(batch, 1000 * median / batch, batch / median, len(seconds))


def reference_protocol(ref_name: str, ref_data: Any, cfg: EvalConfig, result: EvalResult) -> dict[str, Any]:
    """What the numbers were compared with: name, size, sha256 of the (subset of) reference data
    (of a statistics file: the file's), and for images the reference-feature cache file, whose
    name ends with the digest of its key."""
    if isinstance(ref_data, ReferenceStats):
        digest = sha256_file(ref_data.path)
    else:
        digest = data_digest(reference_subset(ref_data.data, cfg.ref_num))
    out: dict[str, Any] = {"ref": ref_name, "ref_description": result.ref, "num_ref": result.num_ref, "ref_sha256": digest}
    if result.reference_file:
        out["ref_cache"] = result.reference_file
    return out


def settings(model, cfg: BenchConfig, log: Log, name: str) -> Iterator[tuple[str, int, int | None]]:
    """(sampler, NFE, mixture) settings to measure for a model; NFE above its T, and mixtures of
    more generators than it holds, are skipped with a note."""
    from hybridgan.hybrid.samplers import default_sampling

    samplers = cfg.samplers or (default_sampling(model.cfg)[0],)
    nfes = fitting(cfg.nfe, model.cfg.steps, "NFE", f"the model has T = {model.cfg.steps} levels", log, name)
    held = len(model.generators())
    mixtures = fitting(cfg.mixtures, held, "mixture", f"the checkpoint holds {held} generator{'s' * (held > 1)}",
                       log, name) if cfg.mixtures else (None,)
    for sampler in samplers:
        for nfe in nfes:
            for mixture in mixtures:
                yield sampler, nfe, mixture


def fitting(values: tuple[int, ...], most: int, label: str, why: str, log: Log, name: str) -> tuple[int, ...]:
    """The values up to `most` (of the option --<label>); the others skipped with a note, or a
    UserError if none is left."""
    kept = tuple(v for v in values if v <= most)
    skipped = [str(v) for v in values if v > most]
    if not kept:
        raise UserError(f"{name}: none of --{label.lower()} {','.join(map(str, values))} fits: {why}")
    if skipped:
        log(f"{name}: {label} {', '.join(skipped)} skipped: {why}")
    return kept


def bench_checkpoint(path: str | Path, cfg: BenchConfig, device: torch.device, load_data: LoadData,
                     ref: str | None = None, log: Log = stderr_log) -> list[dict[str, Any]]:
    """Benchmark one checkpoint: one record per (sampler, NFE, mixture). ref: default the training data
    (toys: a held-out draw, seed HELD_OUT_SEED, as `hybrid eval`), or a .npz of statistics."""
    from hybridgan.hybrid.checkpoint import load, model_from
    from hybridgan.hybrid.samplers import mixture_text

    path = Path(path)
    ckpt = load(path)
    model = model_from(ckpt, path).to(device)
    config = ckpt.get("config", {})
    ref = ref or config.get("data")
    if ref is None:
        raise UserError(f"{path}: the checkpoint names no training data; give --ref")
    ref_data = load_reference(load_data, ref, model.cfg.shape[-1] if model.cfg.is_image else None)
    num = len(cfg.eval.seeds) if cfg.eval.seeds else cfg.eval.num or 1000
    common = {"checkpoint": str(path), "kimg": ckpt.get("progress", {}).get("nimg", 0) / 1000,
              "objective": config.get("objective"), "data": config.get("data"), "T": model.cfg.steps}
    records = []
    for sampler, nfe, mixture in settings(model, cfg, log, str(path)):
        records.append({**common, **bench_setting(model, sampler, nfe, mixture, ref, ref_data, cfg, num, device, log)})
        log(f"{path.name} {sampler} NFE {nfe}{mixture_text(model, mixture)}: " + "  ".join(
            f"{k} {v['mean']:.4g}±{v['std']:.2g}" for k, v in records[-1]["metrics"].items()))
    return records


def bench_setting(model, sampler: str, nfe: int, mixture: int | None, ref: str, ref_data: Any, cfg: BenchConfig,
                  num: int, device: torch.device, log: Log) -> dict[str, Any]:
    """All repetitions of one (sampler, NFE, mixture) setting, their summary, speed and protocol."""
    runs: list[EvalResult] = []
    ranges = seed_ranges(num, cfg.repeats, cfg.eval.seeds)
    for seeds in ranges:
        ecfg = replace(cfg.eval, num=num, seeds=seeds, steps=nfe, sampler=sampler, mixture=mixture)
        samples = model_samples(model, ecfg, device, description=f"bench {sampler} NFE {nfe}")
        runs.append(evaluate(samples, ref_data, ref, ecfg, device, log))
    timing = time_sampling(model, sampler, nfe, device, cfg.timing_batch, cfg.timing_calls, mixture)
    first = runs[0]
    protocol = {"num": num, "repeats": cfg.repeats, "seeds": [[s[0], s[-1]] for s in ranges],
                **reference_protocol(ref, ref_data, replace(cfg.eval, num=num), first),
                "extractor": first.extractor, "weights_sha256": first.weights_sha256, "weights_source": first.weights_source,
                **{k: v for k, v in (("extractor_accuracy", first.extractor_accuracy), ("class_judge", first.class_judge))
                   if v is not None},
                "details": first.details, "device": device_name(device), **versions(),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return {"sampler": sampler, "nfe": nfe, "generators": len(model.generators(mixture)),
            "metrics": summarize([r.results for r in runs]),
            "skipped": first.skipped, "ms_per_img": timing.ms_per_img, "img_per_s": timing.img_per_s,
            "timing_batch": timing.batch, "timing_calls": timing.calls,
            "eval_seconds": round(sum(r.seconds for r in runs), 3), "protocol": protocol}


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run directory a checkpoint belongs to (RUN_DIR/checkpoints/checkpoint-*.pt)."""
    run = Path(checkpoint).resolve().parent.parent
    if not (run / runfiles.CONFIG).is_file():
        raise UserError(f"{checkpoint} is not inside a run directory (no {run / runfiles.CONFIG}); give --out FILE.jsonl")
    return run


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for record in records:
        append_jsonl(path, record)


def bench(checkpoints: list[str], cfg: BenchConfig, device: torch.device, load_data: LoadData,
          out: str | Path | None = None, ref: str | None = None, log: Log = stderr_log) -> dict[Path, list[dict[str, Any]]]:
    """Benchmark each checkpoint; append its records to `out` or to RUN_DIR/bench.jsonl beside it.

    Destinations are checked before any work starts. Returns file -> records appended.
    """
    for c in checkpoints:
        if not Path(c).is_file():
            raise UserError(f"checkpoint {c} does not exist; give the path of a checkpoint-*.pt file")
    targets = [Path(out) if out else run_dir_of(c) / runfiles.BENCH for c in checkpoints]
    written: dict[Path, list[dict[str, Any]]] = {}
    for checkpoint, target in zip(checkpoints, targets):
        records = bench_checkpoint(checkpoint, cfg, device, load_data, ref, log)
        append_records(target, records)
        written.setdefault(target, []).extend(records)
    return written
