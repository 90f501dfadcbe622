"""Reference features of a dataset, cached on disk.

The cache key is (dataset, content digest, resolution, number of images, extractor, weights
sha256); the features come from the un-augmented images as loaded (no flips). The file holds the
features themselves (KID and precision/recall need them), their float64 mean and covariance and
the covariance's square root (FID), so a cached reference costs a load, not an eigendecomposition.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hybridgan.hybrid.checkpoint import save_atomic
from hybridgan.metrics.distances import GaussianStats, gaussian_stats, psd_sqrt
from hybridgan.metrics.features import ExtractorSpec, build_extractor, extract, image_batches
from hybridgan.metrics.inception import cache_dir

SUBSET_SEED = 0  # which reference images are used when the dataset has more than asked for


@dataclass(frozen=True)
class ReferenceFeatures:
    features: Tensor  # [N, d] float32 features of the reference images
    stats: GaussianStats  # their float64 mean and covariance
    sigma_sqrt: Tensor  # [d, d] float64 symmetric square root of the covariance (FID needs it)
    cached: bool  # True when read from the cache, False when computed now
    path: Path | None  # the cache file (None when not cached)


def data_digest(images: Tensor) -> str:
    """sha256 of the image bytes and shape: the key changes when the data does, whatever its name."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_subset(images: Tensor, num: int | None) -> Tensor:
    """All images [N, C, H, W], or `num` of them chosen by a fixed seed (not the global RNG)."""
    if num is None or num >= len(images):
        return images
    g = torch.Generator().manual_seed(SUBSET_SEED)
    return images[torch.randperm(len(images), generator=g)[:num].sort().values]


def reference_key(dataset: str, digest: str, resolution: int, num: int, spec: ExtractorSpec, layer: str) -> dict[str, object]:
    return {"dataset": dataset, "data_sha256": digest, "resolution": resolution, "num": num,
            "extractor": spec.name, "layer": layer, "weights_sha256": spec.weights_sha256}


def cache_path(key: dict[str, object], root: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(str(key["dataset"]).rstrip("/")).name).strip("-") or "data"
    return (root or cache_dir() / "reference") / f"{slug}-{key['resolution']}px-{key['num']}-{digest}.pt"


def reference_features(dataset: str, images: Tensor, spec: ExtractorSpec, layer: str, device: torch.device,
                       num: int | None = None, use_cache: bool = True, root: Path | None = None,
                       net: torch.nn.Module | None = None) -> ReferenceFeatures:
    """Features of (a fixed subset of) uint8 images [N, C, H, W] at `layer`, from the cache when there.

    dataset: the name or path the images came from (part of the key, with a digest of the bytes).
    net: an extractor built from `spec` that returns `layer` (default: build one when needed).
    """
    images = reference_subset(images, num)
    key = reference_key(dataset, data_digest(images), images.shape[-1], len(images), spec, layer)
    path = cache_path(key, root)
    if use_cache and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == key:
                stats = GaussianStats(saved["mu"], saved["sigma"], len(saved["features"]))
                return ReferenceFeatures(saved["features"], stats, saved["sigma_sqrt"], True, path)
        except Exception:  # unreadable or from an older layout: recompute and overwrite
            pass
    net = net if net is not None else build_extractor(spec, [layer], device)
    features = extract(net, image_batches(images, spec.batch), device, len(images), desc="reference")[layer]
    stats = gaussian_stats(features)
    sigma_sqrt = psd_sqrt(stats.sigma)
    if not use_cache:
        return ReferenceFeatures(features, stats, sigma_sqrt, False, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"key": key, "features": features, "mu": stats.mu, "sigma": stats.sigma, "sigma_sqrt": sigma_sqrt}, path)
    return ReferenceFeatures(features, stats, sigma_sqrt, False, path)
