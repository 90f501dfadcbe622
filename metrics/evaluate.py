"""Evaluations: draw or read samples, extract features once, run the requested metrics.

Callers: `hybrid eval` (`evaluate_source`), the Python API (`evaluate_tensor`) and the trainer
(`evaluate_model`, whose result the trainer records).
Neither touches the global torch RNG: samples come from per-seed generators (evaluation seeds
start at SEED_BASE, far from the training grid's 0..63), KID subsets from a seeded numpy
RandomState, reference subsets from a seeded torch.Generator.

This package does not import `training`; the command line hands in its data loader.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.images import resize_uint8, to_uint8
from hybridgan.hybrid.samplers import SEED_BASE
from hybridgan.metrics.classes import choose_judge
from hybridgan.metrics.classifier import load_or_train
from hybridgan.metrics.extractors import CLASSIFIER, INCEPTION, canonical, check_extractor, resolve_extractor
from hybridgan.metrics.features import ExtractorSpec, build_extractor, extract, generated_batches, image_batches, metric_layer
from hybridgan.metrics.inception import EXTRACTOR
from hybridgan.metrics.reference import (
    ReferenceFeatures,
    ReferenceStats,
    data_digest,
    read_stats,
    reference_features,
    reference_subset,
    stats_reference,
    write_stats,
)
from hybridgan.metrics.registry import IMAGE, VECTOR, Metric, MetricInputs, check_labels, default_metrics, get_metrics

HELD_OUT_SEED = 1_000_000  # toy data: the reference draw uses this seed, training uses cfg.seed
DEFAULT_NUM = 1000  # samples drawn from a model when not told
VECTOR_BATCH = 4096  # vector samples per sampler call

LoadData = Callable[[str, "int | None", int], Any]  # (name or path, resolution, seed) -> a Dataset
Log = Callable[[str], None]


@dataclass(frozen=True)
class EvalConfig:
    metrics: tuple[str, ...] = ()  # metric names (see METRICS); () = fid,kid for images, modes,swd,mmd for vectors
    num: int | None = None  # samples to judge (None: 1000 from a model, all from sample files)
    ref_num: int | None = None  # reference images (None: all of the reference data)
    steps: int | None = None  # NFE for a model (None: the model's default)
    sampler: str | None = None  # gan | ddpm | ddim for a model (None: the model's default)
    seeds: tuple[int, ...] | None = None  # sample seeds for a model (None: SEED_BASE .. SEED_BASE + num - 1)
    mixture: int | None = None  # a model's generators to draw from (None: all it holds; 1: G_ema alone)
    batch: int = 64  # images per sampler call and per feature-extractor pass
    resolution: int | None = None  # evaluate_source: compare images at this side, both sets resized (None: the samples' own)
    inception_weights: str | None = None  # a weights file (None: search, see metrics.inception)
    extractor: str = INCEPTION  # feature space of fid, kid, pr: inception, dinov2, pixels, classifier, a file (metrics.extractors)
    extractor_weights: str | None = None  # the extractor's weights file (inception, dinov2; None: search)
    kid_subsets: int = 100  # KID: random subsets
    kid_subset_size: int = 1000  # KID: subset size (cut to the smaller set)
    use_cache: bool = True  # cache reference features on disk
    progress: bool = True  # progress bars on stderr where it is a terminal
    label: int | None = None  # a class-conditional model: draw every sample of this class (None: by seed, the data's shares)
    per_class: bool = False  # a class-conditional model: also judge each class's samples against that class's reference


@dataclass
class Samples:
    """What is judged: image batches (uint8 [B, C, H, W]) made on demand, or vectors [N, D]."""

    kind: str  # image | vector
    description: str  # for the report: a path, or a checkpoint with its sampler
    num: int  # how many samples
    batches: Callable[[], Iterable[Tensor]] | None = None  # images: yields uint8 batches
    vectors: Tensor | None = None  # vectors: [N, D] float
    nfe: int | None = None  # generator evaluations per sample (None: not from a model)
    sampler: str | None = None  # the sampler (None: not from a model)
    labels: Tensor | None = None  # [N] the class each sample was drawn for (a class-conditional model; None: unknown)


@dataclass(frozen=True)
class EvalResult:
    results: dict[str, dict[str, float]]  # metric name -> its values
    details: dict[str, str]  # metric name -> how it was computed
    source: str  # what was judged
    ref: str  # what it was compared with
    num: int  # samples judged
    num_ref: int  # reference samples
    nfe: int | None  # generator evaluations per sample
    sampler: str | None  # the sampler
    seconds: float  # wall time of the whole evaluation
    extractor: str | None = None  # extractor and layer, for image metrics
    weights_sha256: str | None = None  # sha256 of the extractor's weights
    weights_source: str | None = None  # where the weights came from
    extractor_accuracy: float | None = None  # held-out accuracy of the classifier extractor (--extractor classifier)
    class_judge: str | None = None  # what labelled the samples for `classes`: cnn or knn
    reference_cached: bool | None = None  # reference features read from the cache
    reference_file: str | None = None  # their cache file (or statistics file); its name ends with its key's digest
    skipped: dict[str, str] = field(default_factory=dict)  # metric name -> why it was not computed
    by_class: dict[int, dict[str, float]] = field(default_factory=dict)  # class -> `values` of its samples alone (per_class)

    def __getitem__(self, key: str) -> float:
        """A value by its name: result["fid"], result["kid_std"]."""
        return self.values[key]

    @property
    def values(self) -> dict[str, float]:
        """Every metric's values in one flat dict: {"fid": ..., "kid": ..., "kid_std": ...}."""
        return {key: value for values in self.results.values() for key, value in values.items()}

    def records(self, kimg: float | None = None) -> list[dict[str, Any]]:
        """One JSON-able record per metric, as appended to RUN_DIR/metrics.jsonl."""
        common = {"num": self.num, "num_ref": self.num_ref, "nfe": self.nfe, "sampler": self.sampler,
                  "seconds": round(self.seconds, 3), "extractor": self.extractor, "weights_sha256": self.weights_sha256}
        common.update({k: v for k, v in (("extractor_accuracy", self.extractor_accuracy), ("class_judge", self.class_judge))
                       if v is not None})
        return [{"kimg": kimg, "metric": name, "value": next(iter(values.values())), "results": values, **common,
                 "detail": self.details[name], "source": self.source, "ref": self.ref}
                for name, values in self.results.items()]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        lines = [f"source     {self.source}", f"reference  {self.ref}"]
        if self.extractor:
            cached = " (cached reference features)" if self.reference_cached else ""
            accuracy = f", held-out accuracy {self.extractor_accuracy:.4f}" if self.extractor_accuracy is not None else ""
            lines.append(f"features   {self.extractor}, weights {self.weights_source} sha256 {self.weights_sha256[:12]}"
                         f"{accuracy}{cached}")
        if self.class_judge:
            lines.append(f"classes    labelled by the {'trained CNN' if self.class_judge == 'cnn' else 'pixel k-NN'}")
        lines.append(f"{'metric':<10} {'result':<14} {'value':>14}")
        for name, values in self.results.items():
            lines += [f"{name:<10} {key:<14} {value:>14.6g}" for key, value in values.items()]
        lines += [f"{name:<10} skipped: {why}" for name, why in self.skipped.items()]
        for k, values in self.by_class.items():
            lines += [f"{'class ' + str(k):<10} {key:<14} {value:>14.6g}" for key, value in values.items()]
        lines.append(f"time       {self.seconds:.1f} s")
        return "\n".join(lines)


def stderr_log(message: str) -> None:
    print(f"hybrid: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Samples


def model_samples(model, cfg: EvalConfig, device: torch.device, description: str = "model") -> Samples:
    """Samples drawn from a hybrid.model.Model with its generators (`cfg.mixture`), one seed per sample."""
    from hybridgan.hybrid.samplers import mixture_text, resolve_sampling, sample, sample_batched, sample_labels

    sampler, steps = resolve_sampling(model.cfg, cfg.sampler, cfg.steps)
    seeds = list(cfg.seeds) if cfg.seeds else list(range(SEED_BASE, SEED_BASE + (cfg.num or DEFAULT_NUM)))
    labels = sample_labels(model.cfg, None if cfg.label is None else [cfg.label] * len(seeds), seeds)
    of_class = f", class {cfg.label}" if cfg.label is not None else ""
    what = (f"{description} ({sampler} sampler, NFE {steps}{mixture_text(model, cfg.mixture)}{of_class}, "
            f"seeds {seeds[0]}..{seeds[-1]})")
    if not model.cfg.is_image:
        x = sample_batched(model, seeds, batch=VECTOR_BATCH, steps=steps, sampler=sampler, device=device,
                           mixture=cfg.mixture, labels=labels, progress=cfg.progress)
        return Samples(VECTOR, what, len(seeds), vectors=x, nfe=steps, sampler=sampler, labels=labels)
    index = {s: i for i, s in enumerate(seeds)}

    def draw(chunk: list[int]) -> Tensor:
        y = None if labels is None else labels[[index[s] for s in chunk]]
        return sample(model, chunk, steps=steps, sampler=sampler, device=device, mixture=cfg.mixture, labels=y)

    return Samples(IMAGE, what, len(seeds), batches=lambda: generated_batches(draw, seeds, cfg.batch), nfe=steps,
                   sampler=sampler, labels=labels)


def tensor_samples(data: Tensor, description: str, num: int | None = None, batch: int = 64) -> Samples:
    """uint8 images [N, C, H, W] or float vectors [N, D] already in memory; the first `num` of them."""
    if num is not None:
        if num > len(data):
            raise UserError(f"{description} holds {len(data)} samples, fewer than --num {num}")
        data = data[:num]
    if data.dim() == 2:
        return Samples(VECTOR, description, len(data), vectors=data.float())
    return Samples(IMAGE, description, len(data), batches=lambda: image_batches(data, batch))


def check_resolution(resolution: int | None, size: tuple[int, ...] | None, source: str) -> None:
    if resolution is not None and size is None:
        raise UserError(f"--resolution {resolution}: {source} holds vectors, not images")


def resized(samples: Samples, side: int) -> Samples:
    """The same image samples, each batch resized to side x side."""
    batches = samples.batches
    return replace(samples, description=f"{samples.description}, resized to {side} px",
                   batches=lambda: (resize_uint8(b, side) for b in batches()))


def read_npz(path: Path) -> Tensor:
    """A .npz of samples: its only array (or 'samples', 'images', 'x', 'arr_0').

    Images: uint8 or floats in [-1, 1], N x C x H x W or N x H x W x C with C = 1 or 3 -> uint8
    [N, C, H, W]; vectors: N x D -> float32.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            key = keys[0] if len(keys) == 1 else next((k for k in ("samples", "images", "x", "arr_0") if k in keys), None)
            if key is None:
                raise UserError(f"{path}: holds arrays {keys}; name the samples 'samples' or save only one array")
            arr = z[key]
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz ({str(e)[:100]})") from None
    return array_to_samples(arr, path)


def array_to_samples(arr: np.ndarray, path: Path) -> Tensor:
    """Check and convert a sample array (see read_npz) to uint8 images [N, C, H, W] or float vectors [N, D]."""
    if arr.ndim not in (2, 4) or len(arr) < 2 or not np.issubdtype(arr.dtype, np.number):
        raise UserError(f"{path}: array {arr.shape} {arr.dtype}; expected N x D vectors or N x C x H x W images")
    if not np.isfinite(arr).all():
        raise UserError(f"{path}: holds NaN or inf values")
    if arr.ndim == 2:
        return torch.from_numpy(arr.astype(np.float32))
    if arr.shape[1] not in (1, 3) and arr.shape[3] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    if arr.shape[1] not in (1, 3):
        raise UserError(f"{path}: images must have 1 or 3 channels, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.min() < -1.001 or arr.max() > 1.001:
            raise UserError(f"{path}: float images must lie in [-1, 1] (found {arr.min():.3g}..{arr.max():.3g})")
        arr = ((arr.astype(np.float32) + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr))


# ---------------------------------------------------------------------------------------------
# The evaluation


def extractor_spec(cfg: EvalConfig, classifier: Any = None) -> ExtractorSpec:
    """cfg's extractor with its weights found; `classifier` (a TrainedClassifier) for --extractor classifier."""
    kind = canonical(cfg.extractor)
    if cfg.inception_weights and kind != EXTRACTOR:
        raise UserError(f"--inception-weights: --extractor {cfg.extractor} is not Inception; drop it or use --extractor-weights")
    if cfg.inception_weights and cfg.extractor_weights and cfg.inception_weights != cfg.extractor_weights:
        raise UserError("--inception-weights and --extractor-weights disagree; give one of them")
    return resolve_extractor(cfg.extractor, cfg.extractor_weights or cfg.inception_weights, cfg.batch, classifier)


def evaluate(samples: Samples, ref_data: Any, ref_name: str, cfg: EvalConfig, device: torch.device,
             log: Log = stderr_log, ref_description: str | None = None) -> EvalResult:
    """Judge `samples` against `ref_data` (a Dataset: .data uint8 images or float vectors,
    optional .labels / .modes / .mode_std; or ReferenceStats read from a .npz). ref_name keys
    the reference cache."""
    start = time.perf_counter()
    stats_only = isinstance(ref_data, ReferenceStats)
    ref_kind = IMAGE if stats_only or ref_data.data.dim() == 4 else VECTOR
    if samples.kind != ref_kind:
        raise UserError(f"{samples.description} holds {samples.kind}s but the reference {ref_name} holds {ref_kind}s")
    names = cfg.metrics or (("fid",) if stats_only else default_metrics(samples.kind, getattr(ref_data, "modes", None) is not None))
    chosen = get_metrics(names, samples.kind)
    run = _image_inputs if samples.kind == IMAGE else _vector_inputs
    inputs, meta, skipped = run(samples, ref_data, ref_name, chosen, cfg, device, log)
    results = {m.name: m.fn(inputs) for m in chosen if m.name not in skipped}
    num_ref = meta.pop("num_ref")
    return EvalResult(results, {m.name: m.detail for m in chosen}, samples.description,
                      ref_description or f"{ref_name} ({num_ref} samples)", samples.num, num_ref, samples.nfe,
                      samples.sampler, time.perf_counter() - start, skipped=skipped, **meta)


def _image_inputs(samples: Samples, ref_data: Any, ref_name: str, chosen: list[Metric], cfg: EvalConfig,
                  device: torch.device, log: Log) -> tuple[MetricInputs, dict[str, Any], dict[str, str]]:
    """The extractor and the class judge are settled, and the reference's features extracted,
    before any sample is drawn: a wrong choice fails in seconds, not after the sampling."""
    labels = getattr(ref_data, "labels", None)
    check_labels(chosen, labels, ref_name)
    featured = [m for m in chosen if m.gen_layers or m.ref_layers]
    kind = check_extractor(cfg.extractor, cfg.extractor_weights, featured, labels, ref_name)
    if isinstance(ref_data, ReferenceStats):
        check_stats_metrics(chosen, ref_data)
    labelled = any(m.needs_labels for m in chosen)
    classifier = None
    if labelled or (featured and kind == CLASSIFIER):
        classifier = load_or_train(ref_name, ref_data.data, labels, use_cache=cfg.use_cache)
        if not classifier.cached:  # the one slow step (seconds) a user waits for here
            log(f"trained a classifier on {ref_name}'s labels: held-out accuracy {classifier.accuracy:.4f}")
    judge = choose_judge(ref_data.data, labels, classifier, MetricInputs.seed) if labelled else None
    num_ref = ref_data.stats.num if isinstance(ref_data, ReferenceStats) else len(ref_data.data)
    meta: dict[str, Any] = {"num_ref": num_ref, "class_judge": judge.name if judge else None}
    side = _reference_side(featured, ref_data, ref_name, cfg, device, log, classifier) if featured else None
    # Metrics on pixels and on features share one draw of the samples.
    gen_images = torch.cat(list(samples.batches())) if labelled else None
    pixel_inputs = dict(gen_images=gen_images, ref_images=ref_data.data, ref_labels=labels, class_judge=judge,
                        gen_labels=samples.labels) if labelled else {}
    if side is None:  # no features to extract
        return MetricInputs(**pixel_inputs), meta, {}
    batches = image_batches(gen_images, cfg.batch) if labelled else samples.batches()
    gen = extract(side.net, batches, device, samples.num, progress=cfg.progress) if side.gen_layers else {}
    gen = {layer: gen[layer] for layer in side.gen_layers}
    if isinstance(ref_data, ReferenceStats) and "fid" in side.layers:
        check_stats_dims(ref_data, gen[side.layers["fid"]])
    inputs = MetricInputs(gen=gen, ref=side.ref, layers=side.layers, kid_subsets=cfg.kid_subsets,
                          kid_subset_size=cfg.kid_subset_size, **pixel_inputs)
    return inputs, {**meta, **side.meta}, side.skipped


@dataclass(frozen=True)
class ReferenceSide:
    net: Any  # the extractor, built once (loading Inception takes seconds)
    layers: dict[str, str]  # metric key (fid, kid, prc, isc) -> the extractor's layer
    gen_layers: set[str]  # the layers read on the samples
    ref: dict[str, ReferenceFeatures]  # layer -> the reference's features (or statistics)
    meta: dict[str, Any]  # what the result records about them
    skipped: dict[str, str]  # metric name -> why it is not computed


def _reference_side(featured: list[Metric], ref_data: Any, ref_name: str, cfg: EvalConfig, device: torch.device, log: Log,
                    classifier: Any) -> ReferenceSide:
    """The extractor and the reference's features, for the metrics that read features."""
    spec = extractor_spec(cfg, classifier)
    skipped = {}
    if not spec.has_classifier:
        for m in featured:
            if m.needs_classifier:
                skipped[m.name] = f"the {spec.weights.source} Inception has no classifier layer; give the official weights"
                log(f"warning: {m.name} skipped: the offline Inception ({spec.weights.source}) has no classifier layer; "
                    f"pass --inception-weights {spec.weights.path.parent}/weights-inception-2015-12-05-6726825d.pth for IS")
    active = [m for m in featured if m.name not in skipped]
    keys = {k for m in active for k in m.gen_layers + m.ref_layers}
    layers = {k: metric_layer(spec, k) for k in keys}
    gen_layers = {layers[k] for m in active for k in m.gen_layers}
    ref_layers = {layers[k] for m in active for k in m.ref_layers}
    net = build_extractor(spec, gen_layers | ref_layers, device) if keys else None
    if isinstance(ref_data, ReferenceStats):
        check_stats_extractor(ref_data, spec, log)
        ref = {layer: stats_reference(ref_data) for layer in ref_layers}
    else:
        ref = {layer: reference_features(ref_name, ref_data.data, spec, layer, device, cfg.ref_num, cfg.use_cache, net=net,
                                         progress=cfg.progress)
               for layer in sorted(ref_layers)}
    meta = {"extractor": f"{spec.name}/{'+'.join(sorted(gen_layers | ref_layers))}", "weights_sha256": spec.weights_sha256,
            "weights_source": spec.weights.source if spec.weights else "builtin", "extractor_accuracy": spec.accuracy,
            "reference_cached": all(r.cached for r in ref.values()) if ref else None}
    first = ref.get(layers.get("fid")) or next(iter(ref.values()), None)
    meta["reference_file"] = first.path.name if first is not None and first.path is not None else None
    meta["num_ref"] = next(iter(ref.values())).stats.num if ref else 0
    return ReferenceSide(net, layers, gen_layers, ref, meta, skipped)


def check_stats_metrics(chosen: list[Metric], ref: ReferenceStats) -> None:
    """Statistics files give FID: refuse metrics that read reference features or images."""
    wrong = [m.name for m in chosen if set(m.ref_layers) - {"fid"} or m.needs_labels]
    if wrong:
        raise UserError(f"--ref {ref.path} holds statistics (mu, sigma), which give fid alone; metric(s) {','.join(wrong)} "
                        "need the reference images: give the data set instead")


def check_stats_extractor(ref: ReferenceStats, spec: ExtractorSpec, log: Log) -> None:
    """The file's statistics must come from the extractor in use; other tools' files are Inception's."""
    made_by = ref.extractor or EXTRACTOR
    if made_by != spec.name:
        origin = "" if ref.extractor else " (it records none: pytorch-fid and EDM write Inception pool3)"
        raise UserError(f"--ref {ref.path} holds {made_by} statistics{origin}, not {spec.name} ones; "
                        f"use --extractor {made_by if ref.extractor else 'inception'} or statistics of this extractor")
    if ref.weights_sha256 and ref.weights_sha256 != spec.weights_sha256:
        log(f"note: {ref.path} was made with other {spec.name} weights (sha256 {ref.weights_sha256[:12]}, "
            f"here {spec.weights_sha256[:12]}); equal networks give equal features, others do not")


def check_stats_dims(ref: ReferenceStats, gen: Tensor) -> None:
    if gen.shape[1] != len(ref.stats.mu):
        raise UserError(f"--ref {ref.path} holds {len(ref.stats.mu)}-d statistics; this extractor gives "
                        f"{gen.shape[1]}-d features")


def _vector_inputs(samples: Samples, ref_data: Any, ref_name: str, chosen: list[Metric], cfg: EvalConfig,
                   device: torch.device, log: Log) -> tuple[MetricInputs, dict[str, Any], dict[str, str]]:
    ref = ref_data.data.float()
    if cfg.ref_num is not None:
        ref = ref[: cfg.ref_num]
    if ref.shape[1] != samples.vectors.shape[1]:
        raise UserError(f"{samples.description} has {samples.vectors.shape[1]}-D vectors, {ref_name} has {ref.shape[1]}-D")
    inputs = MetricInputs(gen_vectors=samples.vectors, ref_vectors=ref, modes=getattr(ref_data, "modes", None),
                          mode_std=getattr(ref_data, "mode_std", None))
    return inputs, {"num_ref": len(ref)}, {}


# ---------------------------------------------------------------------------------------------
# Callers


def load_as(option: str, load_data: LoadData, spec: str, resolution: int | None, seed: int) -> Any:
    """`load_data`, its errors naming the option the data came from (the loaders speak of --data)."""
    try:
        return load_data(spec, resolution, seed)
    except UserError as e:
        text = str(e)
        raise UserError(option + text.removeprefix("--data ") if text.startswith("--data ") else text) from None


def is_stats_file(ref: str | None) -> bool:
    """A --ref that names statistics (.npz of mu and sigma) rather than data."""
    return ref is not None and ref.lower().endswith(".npz")


def load_reference(load_data: LoadData, ref: str, resolution: int | None, option: str = "--ref ") -> Any:
    """A reference: ReferenceStats for a .npz of statistics, else the data set loaded at
    `resolution` (toys: the held-out draw)."""
    return read_stats(ref) if is_stats_file(ref) else load_as(option, load_data, ref, resolution, HELD_OUT_SEED)


def evaluate_source(source: str, ref: str | None, cfg: EvalConfig, device: torch.device, load_data: LoadData,
                    log: Log = stderr_log) -> EvalResult:
    """`hybrid eval`: SOURCE is a checkpoint, a folder of images, or a .npy / .npz of samples.

    ref: a dataset name, folder or .npy (for a checkpoint: default its training data), or a .npz
    of statistics (mu, sigma: FID only). The reference is loaded at the samples' side (a model's
    resolution). With cfg.resolution both sets are then resized to it by one function, so real
    images score the same either way. Toy references are a fresh draw (seed HELD_OUT_SEED), not
    the training one.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(f"{source}: no such file or folder; give a checkpoint, a folder of images, or a .npy / .npz")
    if path.is_dir() or path.suffix.lower() in (".npy", ".npz"):
        if ref is None:
            raise UserError(f"{source} holds samples: say what to compare them with, e.g. --ref digits or --ref real_images/")
        # A folder is resized to R as it loads (its images may differ in size), so its reference is
        # loaded straight at R; arrays keep their size here and are resized by `resized`, after --num.
        if path.suffix.lower() == ".npz":
            data = read_npz(path)
        else:
            data = load_as("", load_data, str(path), cfg.resolution if path.is_dir() else None, 0).data
        size = tuple(data.shape[-2:]) if data.dim() == 4 else None
        check_resolution(cfg.resolution, size, source)
        samples = tensor_samples(data, str(path), cfg.num, cfg.batch)
    else:
        from hybridgan.hybrid.checkpoint import load, model_from

        ckpt = load(path)
        config = ckpt.get("config", {})
        model = model_from(ckpt, path).to(device)
        size = tuple(model.cfg.shape[-2:]) if model.cfg.is_image else None
        check_resolution(cfg.resolution, size, source)
        ref = ref or config.get("data")
        if ref is None:
            raise UserError(f"{source}: the checkpoint names no training data; give --ref")
        samples = model_samples(model, cfg, device, description=str(path))
    if cfg.per_class and samples.labels is None:
        raise UserError(f"--per-class: {source} is not a class-conditional model (train it with --cond)")
    resolution = cfg.resolution or (size[-1] if size else None)  # the side images are compared at
    # The reference is loaded as the samples' training data was, at their side, and then takes the
    # samples' path to R: a dataset loaded straight at R would differ from real images resized to R
    # (200 real 16x16 digits resized to 8 px: FID 113 against the digits loaded at 8 px, 10.6 this way).
    square = size[-1] if size and size[0] == size[1] else None
    if is_stats_file(ref):
        if cfg.resolution and size != (resolution, resolution):
            samples = resized(samples, resolution)
        stats = read_stats(ref)
        return evaluate(samples, stats, ref, cfg, device, log, ref_description=f"{ref} (statistics of {stats.stats.num or '?'} images)")
    ref_data = load_as("--ref ", load_data, ref, square or resolution, HELD_OUT_SEED)
    if cfg.resolution and size != (resolution, resolution):
        samples = resized(samples, resolution)
        ref_data = replace(ref_data, data=resize_uint8(ref_data.data, resolution))
    what = f"{ref} ({len(ref_data) if cfg.ref_num is None else min(cfg.ref_num, len(ref_data))} samples"
    what += f" at {ref_data.data.shape[-1]} px)" if ref_data.data.dim() == 4 else ", held-out draw for toys)"
    if cfg.per_class:
        check_class_labels(ref_data, ref)
    result = evaluate(samples, ref_data, ref, cfg, device, log, ref_description=what)
    if cfg.per_class:
        result = with_classes(result, model, ref_data, ref, cfg, device, log, resolution if cfg.resolution else None)
    return result


def check_class_labels(ref_data: Any, ref_name: str) -> None:
    if getattr(ref_data, "labels", None) is None:
        raise UserError(f"--per-class: the reference {ref_name} has no class labels; give labelled data (--ref)")


def with_classes(result: EvalResult, model, ref_data: Any, ref_name: str, cfg: EvalConfig, device: torch.device,
                 log: Log = stderr_log, resolution: int | None = None) -> EvalResult:
    """The result of a class-conditional model with `by_class` filled in: for each class k, num / K
    samples drawn for k (the evaluation seeds, so sample i is the same image in every class's set
    but of another class) judged against the reference images labelled k, by the same metrics
    (`classes`, which needs every class, only overall). resolution: resize the samples to it, as
    the reference already was."""
    check_class_labels(ref_data, ref_name)
    start = time.perf_counter()
    names = [m for m in (cfg.metrics or default_metrics(IMAGE if model.cfg.is_image else VECTOR)) if m != "classes"]
    per = max(2, (cfg.num or DEFAULT_NUM) // model.cfg.num_classes)
    by_class = {}
    for k in range(model.cfg.num_classes):
        rows = ref_data.labels == k
        if not rows.any():
            continue
        part = replace(cfg, label=k, num=per, seeds=cfg.seeds[:per] if cfg.seeds else None, metrics=tuple(names), ref_num=None,
                       per_class=False)
        samples = model_samples(model, part, device)
        if resolution is not None:
            samples = resized(samples, resolution)
        ref_k = replace(ref_data, data=ref_data.data[rows], labels=None)
        by_class[k] = evaluate(samples, ref_k, f"{ref_name} class {k}", part, device, log).values
    return replace(result, by_class=by_class, seconds=result.seconds + time.perf_counter() - start)


@dataclass(frozen=True)
class Reference:
    """Reference data handed in as a tensor: uint8 images [N, C, H, W] or vectors [N, D]."""

    data: Tensor
    labels: Tensor | None = None
    modes: Tensor | None = None
    mode_std: float | None = None

    def __len__(self) -> int:
        return len(self.data)


def stored_form(x: Tensor) -> Tensor:
    """Samples as the metrics take them: float images in [-1, 1] -> uint8; uint8 images and vectors as they are."""
    return to_uint8(x) if x.dim() == 4 and x.is_floating_point() else x


def evaluate_tensor(samples: Any, ref: Any, ref_name: str, cfg: EvalConfig, device: torch.device,
                    log: Log = stderr_log) -> EvalResult:
    """The Python API's evaluation of samples in memory: a tensor ([N, C, H, W] images, float in
    [-1, 1] or uint8; [N, D] vectors) or a Model (sampled as `model_samples` does), against `ref`:
    a tensor of the same form, or a dataset (.data and optional .labels, .modes, .mode_std)."""
    if isinstance(ref, Tensor):
        ref = Reference(stored_form(ref))
    if isinstance(samples, Tensor):
        judged = tensor_samples(stored_form(samples), f"a tensor of {len(samples)} samples", cfg.num, cfg.batch)
    else:
        judged = model_samples(samples.to(device), cfg, device)
    if cfg.per_class:
        if judged.labels is None:
            raise UserError("per_class: the samples are not from a class-conditional model")
        check_class_labels(ref, ref_name)
    result = evaluate(judged, ref, ref_name, cfg, device, log)
    return with_classes(result, samples, ref, ref_name, cfg, device, log) if cfg.per_class else result


def evaluate_model(model, ref_data: Any, ref_name: str, cfg: EvalConfig, device: torch.device, log: Log = stderr_log,
                   description: str = "model") -> EvalResult:
    """Judge a model's generators against `ref_data` (a Dataset), as training does between steps:
    the global RNG and the model's weights are left as they were (exact resume relies on it)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return evaluate(model_samples(model, cfg, device, description), ref_data, ref_name, cfg, device, log)


# ---------------------------------------------------------------------------------------------
# Statistics files


@dataclass(frozen=True)
class SavedStats:
    path: Path  # the .npz written
    num: int  # images the statistics summarise
    dim: int  # feature dimension D
    extractor: str  # the extractor's name
    cached: bool  # the features came from the reference cache


def save_reference_stats(source: str, out: str | Path, cfg: EvalConfig, device: torch.device, load_data: LoadData) -> SavedStats:
    """`hybrid eval DATA --save-ref stats.npz`: mu [D] and sigma [D, D] of DATA's images (all, or the
    fixed subset of cfg.ref_num that `eval` would use as its reference) in cfg's extractor, in the
    layout pytorch-fid and EDM's `fid.py ref` write. DATA: a data set name, a folder, a .npy or a
    .npz of images, at cfg.resolution (default its own). An existing file is never replaced."""
    out = Path(out).expanduser()
    if out.suffix.lower() != ".npz":
        raise UserError(f"--save-ref {out}: name a .npz file (the layout of pytorch-fid and EDM)")
    if out.exists() or not out.parent.is_dir():
        raise UserError(f"--save-ref {out}: {'exists; remove it or choose another name' if out.exists() else 'no such folder'}")
    path = Path(source).expanduser()
    data = Reference(read_npz(path)) if path.suffix.lower() == ".npz" else load_as("", load_data, source, cfg.resolution,
                                                                                    HELD_OUT_SEED)
    if data.data.dim() != 4:
        raise UserError(f"--save-ref: {source} holds vectors; statistics files are for images")
    if cfg.resolution and data.data.shape[-2:] != (cfg.resolution, cfg.resolution):
        data = replace(data, data=resize_uint8(data.data, cfg.resolution))
    labels = getattr(data, "labels", None)
    check_extractor(cfg.extractor, cfg.extractor_weights, get_metrics(("fid",)), labels, source)
    classifier = load_or_train(source, data.data, labels, use_cache=cfg.use_cache) if canonical(cfg.extractor) == CLASSIFIER else None
    spec = extractor_spec(cfg, classifier)
    layer = metric_layer(spec, "fid")
    ref = reference_features(source, data.data, spec, layer, device, cfg.ref_num, cfg.use_cache, progress=cfg.progress)
    digest = data_digest(reference_subset(data.data, cfg.ref_num))
    write_stats(out, ref, {"extractor": spec.name, "weights_sha256": spec.weights_sha256, "dataset": source, "data_sha256": digest})
    return SavedStats(out, ref.stats.num, len(ref.stats.mu), f"{spec.name}/{layer}", ref.cached)
