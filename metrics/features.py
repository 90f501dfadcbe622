"""Feature extraction: torch-fidelity's registered extractors and our own (metrics.extractors).

Images enter as uint8 [N, C, H, W] with C = 1 or 3. torch-fidelity's extractors get grayscale
repeated to 3 channels and resize themselves (Inception: TF-1.x bilinear to 299x299); our own
take the images as stored (`rgb = False`: raw pixels, a classifier trained on them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hybridgan.metrics.inception import EXTRACTOR, CPUInception, InceptionWeights


@dataclass(frozen=True)
class WeightsFile:
    path: Path | None  # the file (None: weights held in memory only)
    sha256: str  # of the weights; part of every reference-statistics key
    source: str  # where they came from: user, torch-hub-cache, download, trained ...


@dataclass(frozen=True)
class ExtractorSpec:
    name: str = EXTRACTOR  # a torch-fidelity extractor, or one of ours (metrics.extractors.OWN_EXTRACTORS)
    weights: InceptionWeights | WeightsFile | None = None  # the weights it loads (None: none, or its built-in)
    batch: int = 64  # images per forward pass
    network: Any = None  # an extractor's network already in memory (the trained classifier)
    accuracy: float | None = None  # held-out accuracy of a classifier extractor

    @property
    def weights_sha256(self) -> str:
        return self.weights.sha256 if self.weights is not None else "builtin"

    @property
    def has_classifier(self) -> bool:
        return getattr(self.weights, "has_classifier", True)


def own_extractor(name: str) -> Any:
    """Our extractor of that name (metrics.extractors.OwnExtractor), or None for torch-fidelity's."""
    from hybridgan.metrics.extractors import OWN_EXTRACTORS  # here: that module builds on this one

    return OWN_EXTRACTORS.get(name)


def metric_layer(spec: ExtractorSpec, metric: str) -> str:
    """The feature layer used for `metric` (fid, kid, prc, isc) with this extractor."""
    own = own_extractor(spec.name)
    if own is not None:
        return own.layer
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    return FEATURE_EXTRACTORS_REGISTRY[spec.name].get_default_feature_layer_for_metric(metric)


def build_extractor(spec: ExtractorSpec, layers: Iterable[str], device: torch.device) -> torch.nn.Module:
    """The extractor `spec.name` returning `layers`, on `device`, in eval mode."""
    own = own_extractor(spec.name)
    if own is not None:
        return own.build(spec).to(device).eval()
    from torch_fidelity.utils import create_feature_extractor

    kwargs = {"feature_extractor_weights_path": str(spec.weights.path)} if spec.weights is not None else {}
    net = create_feature_extractor(spec.name, sorted(set(layers)), cuda=False, verbose=False, **kwargs)
    if spec.name == EXTRACTOR and device.type == "cpu":
        net = CPUInception(net)  # the same features to ~1e-5, ~2x faster on the CPU
    return net.to(device)


def to_rgb_uint8(images: Tensor) -> Tensor:
    """uint8 [N, 1 or 3, H, W] -> uint8 [N, 3, H, W]."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images [N, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.no_grad()
def extract(net: torch.nn.Module, batches: Iterable[Tensor], device: torch.device,
            total: int | None = None, desc: str = "features", progress: bool = True) -> dict[str, Tensor]:
    """Run the extractor over uint8 image batches [B, C, H, W] -> {layer: [N, d] float32 on the CPU}.
    progress: a bar on stderr where it is a terminal."""
    from tqdm import tqdm

    out: dict[str, list[Tensor]] = {name: [] for name in net.features_list}
    with tqdm(total=total, desc=desc, unit="img", leave=False, disable=not (progress and sys.stderr.isatty())) as bar:
        for x in batches:
            feats = net((to_rgb_uint8(x) if getattr(net, "rgb", True) else x).to(device))
            for name, f in zip(net.features_list, feats):
                out[name].append(f.float().cpu())
            bar.update(len(x))
    return {name: torch.cat(parts) for name, parts in out.items()}


def image_batches(images: Tensor, batch: int) -> Iterable[Tensor]:
    """uint8 images [N, C, H, W] in chunks of `batch`."""
    return (images[i : i + batch] for i in range(0, len(images), batch))


def generated_batches(sample_fn: Callable[[list[int]], Tensor], seeds: list[int], batch: int) -> Iterable[Tensor]:
    """Draw samples in [-1, 1] for `batch` seeds at a time and quantise them like saved PNGs.

    sample_fn(seeds) -> [B, C, H, W] float in [-1, 1]; yields uint8 [B, C, H, W].
    """
    from hybridgan.hybrid.images import to_uint8

    for i in range(0, len(seeds), batch):
        yield to_uint8(sample_fn(seeds[i : i + batch]))
