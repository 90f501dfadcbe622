"""Reference features of a dataset, cached on disk.

The cache key is (dataset, content digest, resolution, number of images, extractor, weights
sha256); the features come from the un-augmented images as loaded (no flips). The file holds the
features themselves (KID and precision/recall need them), their float64 mean and covariance and
the covariance's square root (FID), so a cached reference costs a load, not an eigendecomposition.

Statistics also travel as a .npz with float64 `mu` [D] and `sigma` [D, D], the layout of
pytorch-fid's `--save-stats` and EDM's `fid.py ref`, so a FID can be computed against the
statistics a paper used. Ours add `extractor`, `weights_sha256`, `num`, `data_sha256` and `dataset`
beside them; the other tools read only mu and sigma, and files without `extractor` are theirs:
Inception pool3.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hybridgan.hybrid.checkpoint import save_atomic
from hybridgan.hybrid.errors import UserError
from hybridgan.metrics.distances import GaussianStats, gaussian_stats, psd_sqrt
from hybridgan.metrics.features import ExtractorSpec, build_extractor, extract, image_batches
from hybridgan.metrics.inception import cache_dir

SUBSET_SEED = 0  # which reference images are used when the dataset has more than asked for


@dataclass(frozen=True)
class ReferenceFeatures:
    features: Tensor | None  # [N, d] float32 features of the reference images (None: statistics alone, from a .npz)
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
                       net: torch.nn.Module | None = None, progress: bool = True) -> ReferenceFeatures:
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
    features = extract(net, image_batches(images, spec.batch), device, len(images), desc="reference", progress=progress)[layer]
    stats = gaussian_stats(features)
    sigma_sqrt = psd_sqrt(stats.sigma)
    if not use_cache:
        return ReferenceFeatures(features, stats, sigma_sqrt, False, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_atomic({"key": key, "features": features, "mu": stats.mu, "sigma": stats.sigma, "sigma_sqrt": sigma_sqrt}, path)
    return ReferenceFeatures(features, stats, sigma_sqrt, False, path)


# ---------------------------------------------------------------------------------------------
# Statistics files (.npz: mu, sigma)


@dataclass(frozen=True)
class ReferenceStats:
    """Reference statistics read from a .npz: enough for FID, not for KID or precision/recall."""

    path: Path
    stats: GaussianStats  # float64 mu [D], sigma [D, D]; num 0 where the file does not say
    extractor: str | None  # the extractor's name as records keep it (None: another tool's file, Inception pool3)
    weights_sha256: str | None  # of the extractor's weights, where recorded

    def __len__(self) -> int:
        return self.stats.num


def write_stats(path: str | Path, ref: ReferenceFeatures, key: dict[str, object]) -> Path:
    """Write ref's mu and sigma, and what they are (key: reference_key's fields), to a .npz."""
    path = Path(path)
    meta = {name: np.array(str(key[name])) for name in ("extractor", "weights_sha256", "dataset")}
    with open(path, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(f, mu=ref.stats.mu.numpy(), sigma=ref.stats.sigma.numpy(), num=np.array(ref.stats.num),
                 data_sha256=np.array(str(key["data_sha256"])), **meta)
    return path


def read_stats(path: str | Path) -> ReferenceStats:
    """A .npz of `mu` [D] and `sigma` [D, D] (ours, pytorch-fid's, EDM's); UserError if it is not one."""
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as z:
            found = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"--ref {path}: not a readable .npz ({str(e)[:100]})") from None
    if "mu" not in found or "sigma" not in found:
        raise UserError(f"--ref {path}: holds {sorted(found)}; reference statistics need 'mu' and 'sigma' "
                        "(pytorch-fid --save-stats, EDM fid.py ref, hybrid eval --save-ref)")
    mu, sigma = np.asarray(found["mu"], np.float64), np.asarray(found["sigma"], np.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)) or not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"--ref {path}: mu {mu.shape} and sigma {sigma.shape} are not a finite mean [D] and covariance [D, D]")
    text = {k: str(found[k]) for k in ("extractor", "weights_sha256") if k in found}
    num = int(found["num"]) if "num" in found else 0
    stats = GaussianStats(torch.from_numpy(mu), torch.from_numpy(sigma), num)
    return ReferenceStats(path, stats, text.get("extractor"), text.get("weights_sha256"))


def stats_reference(ref: ReferenceStats) -> ReferenceFeatures:
    """Statistics read from a file as the reference features FID reads (no features)."""
    return ReferenceFeatures(None, ref.stats, psd_sqrt(ref.stats.sigma), True, ref.path)
