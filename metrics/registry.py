"""The metric registry: name -> a function of precomputed inputs returning dict[str, float].

Image metrics declare which torch-fidelity feature layers they read (by torch-fidelity's metric
key: fid, kid, prc, isc), so features are extracted once per evaluation for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from hybridgan.hybrid.errors import UserError
from hybridgan.metrics.classes import KNN_K, ClassJudge, class_balance
from hybridgan.metrics.distances import frechet_distance, gaussian_stats, kernel_distance, precision_recall
from hybridgan.metrics.reference import ReferenceFeatures
from hybridgan.metrics.toy import mmd_rbf, mode_stats, sliced_wasserstein

IMAGE, VECTOR = "image", "vector"
MMD_MAX = 2000  # MMD builds N x N kernels: at most this many samples per set
PR_K = 3  # neighbourhood size of k-NN precision/recall (Kynkäänniemi et al. 2019)


@dataclass(frozen=True)
class MetricInputs:
    """What a metric may read. Image metrics: features by layer; vector metrics: the vectors."""

    gen: dict[str, Tensor] = field(default_factory=dict)  # layer -> [N, d] features of generated images
    ref: dict[str, ReferenceFeatures] = field(default_factory=dict)  # layer -> reference features
    layers: dict[str, str] = field(default_factory=dict)  # metric key (fid, kid, prc, isc) -> the extractor's layer
    gen_vectors: Tensor | None = None  # [N, D] generated vectors
    ref_vectors: Tensor | None = None  # [M, D] held-out real vectors
    gen_images: Tensor | None = None  # [N, C, H, W] uint8 generated images (metrics that read pixels)
    ref_images: Tensor | None = None  # [M, C, H, W] uint8 reference images (metrics that read pixels)
    ref_labels: Tensor | None = None  # [M] class of each reference image
    gen_labels: Tensor | None = None  # [N] the class each generated image was drawn for (class-conditional models)
    class_judge: ClassJudge | None = None  # what labels the generated images (None: the pixel k-NN)
    modes: Tensor | None = None  # [K, D] centres of a known mixture
    mode_std: float | None = None  # standard deviation of each mixture component
    kid_subsets: int = 100  # KID: number of random subsets
    kid_subset_size: int = 1000  # KID: subset size (cut to the smaller set)
    seed: int = 2020  # KID subsets, IS split shuffle, SWD directions


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[MetricInputs], dict[str, float]]
    kind: str  # image | vector
    gen_layers: tuple[str, ...]  # torch-fidelity metric keys whose layers are read on generated images
    ref_layers: tuple[str, ...]  # ... and on the reference images
    needs_classifier: bool  # True: reads the Inception classifier's logits (IS)
    detail: str  # how it is computed, stated in every record
    needs_labels: bool = False  # True: reads the pixels of both sets and the reference's class labels


METRICS: dict[str, Metric] = {}


def register_metric(name: str, kind: str, detail: str, gen_layers: tuple[str, ...] = (), ref_layers: tuple[str, ...] = (),
                    needs_classifier: bool = False, needs_labels: bool = False) -> Callable:
    def deco(fn: Callable[[MetricInputs], dict[str, float]]) -> Callable[[MetricInputs], dict[str, float]]:
        METRICS[name] = Metric(name, fn, kind, gen_layers, ref_layers, needs_classifier, detail, needs_labels)
        return fn

    return deco


def get_metrics(names: tuple[str, ...] | list[str], kind: str | None = None) -> list[Metric]:
    """Look names up; unknown names or names for the other kind of data raise UserError."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UserError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(METRICS))}")
    found = [METRICS[n] for n in dict.fromkeys(names)]
    wrong = [m.name for m in found if kind is not None and m.kind != kind]
    if wrong:
        fits = ", ".join(sorted(n for n, m in METRICS.items() if m.kind == kind))
        raise UserError(f"metric(s) {', '.join(wrong)} do not apply to {kind} data; use {fits}")
    return found


def check_labels(chosen: list[Metric], labels: Tensor | None, source: str, what: str = "metric") -> None:
    """UserError if a chosen metric reads class labels and `source` has none."""
    labelled = [m.name for m in chosen if m.needs_labels]
    if labelled and labels is None:
        raise UserError(f"{what} {','.join(labelled)} needs class labels; {source} has none "
                        "(labelled data: digits, mnist, fashion-mnist, cifar10)")


def default_metrics(kind: str, has_modes: bool = False) -> tuple[str, ...]:
    if kind == IMAGE:
        return ("fid", "kid")
    return ("modes", "swd", "mmd") if has_modes else ("swd", "mmd")


# ---------------------------------------------------------------------------------------------
# Image metrics on torch-fidelity feature layers


@register_metric("fid", IMAGE, "Frechet distance of float64 Gaussian fits, eigenvalue trace sqrt", ("fid",), ("fid",))
def _fid(x: MetricInputs) -> dict[str, float]:
    layer = x.layers["fid"]
    ref = x.ref[layer]
    return {"fid": frechet_distance(gaussian_stats(x.gen[layer]), ref.stats, ref.sigma_sqrt)}


@register_metric("kid", IMAGE, "unbiased polynomial-kernel MMD^2 (degree 3) over random subsets, as torch-fidelity",
                 ("kid",), ("kid",))
def _kid(x: MetricInputs) -> dict[str, float]:
    layer = x.layers["kid"]
    return kernel_distance(x.gen[layer], x.ref[layer].features, x.kid_subsets, x.kid_subset_size, x.seed)


@register_metric("is", IMAGE, "torch-fidelity's Inception Score of unbiased logits, 10 splits", ("isc",),
                 needs_classifier=True)
def _is(x: MetricInputs) -> dict[str, float]:
    from torch_fidelity.metric_isc import isc_features_to_metric

    out = isc_features_to_metric(x.gen[x.layers["isc"]], splits=10, shuffle=True, rng_seed=x.seed)
    return {"is": out["inception_score_mean"], "is_std": out["inception_score_std"]}


@register_metric("pr", IMAGE, f"k-NN precision/recall (Kynkaanniemi et al. 2019), k={PR_K}, on the FID features "
                 "(Inception pool3), not VGG16", ("prc",), ("prc",))
def _pr(x: MetricInputs) -> dict[str, float]:
    layer = x.layers["prc"]
    return precision_recall(x.ref[layer].features, x.gen[layer], k=PR_K)


@register_metric("classes", IMAGE, f"class shares by the more accurate of a {KNN_K}-nearest-neighbour pixel classifier "
                 "on the labelled reference and a CNN trained on its labels (class_judge): total variation from the "
                 "reference's shares, rarest class's ratio, both classifiers' accuracies", needs_labels=True)
def _classes(x: MetricInputs) -> dict[str, float]:
    if x.gen_images.shape[1:] != x.ref_images.shape[1:]:
        raise UserError(f"metric 'classes' compares pixels: the samples are {tuple(x.gen_images.shape[1:])}, "
                        f"the reference {tuple(x.ref_images.shape[1:])}; give samples at the reference's size")
    return class_balance(x.gen_images, x.ref_images, x.ref_labels, seed=x.seed, judge=x.class_judge, gen_labels=x.gen_labels)


# ---------------------------------------------------------------------------------------------
# Vector metrics (toys, .npy N x D)


@register_metric("modes", VECTOR, "modes covered / high-quality share: within 3 std of the nearest known mode")
def _modes(x: MetricInputs) -> dict[str, float]:
    if x.modes is None or x.mode_std is None:
        raise UserError("metric 'modes' needs a mixture with known modes (toy:25gaussians, toy:8gaussians, toy:rings)")
    return mode_stats(x.gen_vectors, x.modes, x.mode_std)


@register_metric("swd", VECTOR, "sliced 1-Wasserstein distance over 256 random directions, against held-out data")
def _swd(x: MetricInputs) -> dict[str, float]:
    return {"swd": sliced_wasserstein(x.gen_vectors, x.ref_vectors, seed=x.seed)}


@register_metric("mmd", VECTOR, f"unbiased RBF MMD^2 (bandwidths 0.05, 0.2, 1) on at most {MMD_MAX} samples per set")
def _mmd(x: MetricInputs) -> dict[str, float]:
    return {"mmd": mmd_rbf(x.gen_vectors[:MMD_MAX], x.ref_vectors[:MMD_MAX])}
