"""Data sources, held in memory: images as uint8 [N, C, H, W], vectors as float32 [N, D].

A source is named by a string: a registered name (`digits`, `toy:25gaussians`, `mnist`, ...)
or a path (a folder of images, a `.zip` of images, a `.npy` array). `load_dataset` resolves
it; unknown names and unreadable files raise UserError naming the input.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.images import resize_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Dataset:
    """An in-memory dataset. `modes`/`mode_std` describe known mixtures (toys) and `labels` the
    classes of labelled image sets, for metrics."""

    name: str
    data: Tensor  # uint8 [N, C, H, W] (images) or float32 [N, D] (vectors)
    modes: Tensor | None = None  # [K, D] centres of a known Gaussian mixture
    mode_std: float | None = None  # the standard deviation of each mixture component
    labels: Tensor | None = None  # [N] int64 class of each sample, for labelled data

    @property
    def is_image(self) -> bool:
        return self.data.dim() == 4

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def batch(self, index: Tensor) -> Tensor:
        """Rows `index` as float32: images scaled to [-1, 1], vectors as stored."""
        x = self.data[index]
        return x.float() / 127.5 - 1 if self.is_image else x.float()


# ---------------------------------------------------------------------------------------------
# Registry of named sources


Loader = Callable[[int | None, int], Dataset]  # (resolution, seed) -> Dataset
SOURCES: dict[str, tuple[Loader, str]] = {}


def register(name: str, help: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        SOURCES[name] = (fn, help)
        return fn

    return deco


def load_dataset(spec: str, resolution: int | None = None, seed: int = 0) -> Dataset:
    """Resolve a source name or path into a Dataset (images resized to `resolution` if given)."""
    if spec in SOURCES:
        return SOURCES[spec][0](resolution, seed)
    path = Path(spec).expanduser()
    if spec.startswith("toy:") or (not path.exists() and not any(c in spec for c in "/\\.")):
        known = ", ".join(sorted(SOURCES))
        raise UserError(f"unknown dataset {spec!r}; use one of {known}, or a folder, .zip or .npy path")
    if not path.exists():
        raise UserError(f"--data {spec}: no such file or folder; give a folder of images, a .zip, a .npy or a dataset name")
    if path.is_dir():
        return _images_dataset(path.name, _folder_images(path), resolution)
    if path.suffix.lower() == ".zip":
        return _images_dataset(path.name, _zip_images(path), resolution)
    if path.suffix.lower() == ".npy":
        return _npy_dataset(path, resolution)
    raise UserError(f"--data {spec}: unsupported file type {path.suffix!r}; give a folder, .zip or .npy")


# ---------------------------------------------------------------------------------------------
# 2-D toys: Gaussian mixtures with known modes, and the swiss roll


TOY_SIZE = 100_000


def _mixture(name: str, modes: Tensor, std: float, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(len(modes), (TOY_SIZE,), generator=g)
    data = modes[k] + std * torch.randn(TOY_SIZE, 2, generator=g)
    return Dataset(name, data, modes=modes, mode_std=std)


@register("toy:25gaussians", "2-D, 25 Gaussians on a 5x5 grid (spacing 0.71, std 0.018)")
def _toy_25gaussians(resolution: int | None, seed: int) -> Dataset:
    grid = torch.arange(-2, 3, dtype=torch.float32) * 2 / math.sqrt(8)
    modes = torch.cartesian_prod(grid, grid)
    return _mixture("toy:25gaussians", modes, 0.05 / math.sqrt(8), seed)


@register("toy:8gaussians", "2-D, 8 Gaussians on a circle of radius 1.41 (std 0.02)")
def _toy_8gaussians(resolution: int | None, seed: int) -> Dataset:
    angle = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    modes = math.sqrt(2) * torch.stack([angle.cos(), angle.sin()], dim=1)
    return _mixture("toy:8gaussians", modes, 0.02, seed)


@register("toy:rings", "2-D, 12 Gaussians on two rings of radius 0.5 and 1.5 (std 0.02)")
def _toy_rings(resolution: int | None, seed: int) -> Dataset:
    def ring(n: int, r: float, phase: float) -> Tensor:
        a = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n) + phase
        return r * torch.stack([a.cos(), a.sin()], dim=1)

    return _mixture("toy:rings", torch.cat([ring(4, 0.5, 0.0), ring(8, 1.5, math.pi / 8)]), 0.02, seed)


@register("toy:swissroll", "2-D swiss roll (a continuous manifold, no modes)")
def _toy_swissroll(resolution: int | None, seed: int) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    u = 1.5 * math.pi * (1 + 2 * torch.rand(TOY_SIZE, generator=g))
    data = torch.stack([u * u.cos(), u * u.sin()], dim=1) / 7.5 + 0.02 * torch.randn(TOY_SIZE, 2, generator=g)
    return Dataset("toy:swissroll", data)


# ---------------------------------------------------------------------------------------------
# Images


@register("digits", "scikit-learn's bundled 8x8 handwritten digits (1797 images, upscaled to 16x16)")
def _digits(resolution: int | None, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float()[:, None] / 16.0  # [N, 1, 8, 8] in [0, 1]
    pixels = torch.nn.functional.interpolate(pixels, size=resolution or 16, mode="bilinear", antialias=True)
    return Dataset("digits", (pixels.clamp(0, 1) * 255).round().to(torch.uint8), labels=torch.from_numpy(digits.target).long())


def _torchvision(name: str, cls_name: str, default_res: int, **kwargs) -> Loader:
    def load(resolution: int | None, seed: int) -> Dataset:
        import torchvision

        root = Path(os.environ.get("HYBRID_DATA", Path.home() / ".cache" / "hybrid" / "datasets"))
        cls = getattr(torchvision.datasets, cls_name)
        try:
            ds = cls(str(root / name), download=True, **kwargs)
        except Exception as e:  # offline, or a broken partial download
            raise UserError(
                f"dataset {name!r} is not in {root / name} and could not be downloaded ({type(e).__name__}); "
                f"put torchvision's {cls_name} files there (or set HYBRID_DATA), or give a folder of images"
            ) from None
        dataset = _images_dataset(name, ((f"{name}[{i}]", ds[i][0], str(i)) for i in range(len(ds))), resolution or default_res)
        if hasattr(ds, "targets"):  # MNIST, Fashion-MNIST, CIFAR-10 (CelebA has attributes instead)
            dataset.labels = torch.as_tensor(ds.targets, dtype=torch.long)
        return dataset

    return load


for _name, _cls, _res, _kw, _help in (
    ("mnist", "MNIST", 32, {"train": True}, "MNIST train set (60k, resized to 32x32); downloads"),
    ("fashion-mnist", "FashionMNIST", 32, {"train": True}, "Fashion-MNIST train set (60k, resized to 32x32); downloads"),
    ("cifar10", "CIFAR10", 32, {"train": True}, "CIFAR-10 train set (50k, 32x32); downloads"),
    ("celeba", "CelebA", 64, {"split": "train"}, "CelebA train set (center-cropped and resized to 64x64); downloads"),
):
    register(_name, _help)(_torchvision(_name, _cls, _res, **_kw))


def _folder_images(folder: Path) -> Iterable[tuple[str, object, str]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"--data {folder}: no images found (png, jpg, webp, bmp in any subfolder)")
    for p in files:
        yield str(p), p, p.relative_to(folder).as_posix()


def _zip_images(path: Path) -> Iterable[tuple[str, object, str]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"--data {path}: not a readable zip file ({e})") from None
    with zf:
        names = sorted(n for n in zf.namelist() if Path(n).suffix.lower() in IMAGE_SUFFIXES)
        if not names:
            raise UserError(f"--data {path}: the zip holds no images (png, jpg, webp, bmp)")
        for n in names:
            yield f"{path}:{n}", io.BytesIO(zf.read(n)), n


def _to_array(name: str, source: object, resolution: int | None) -> np.ndarray:
    """Open an image (path, file object or PIL image) -> uint8 [H, W, C], C in {1, 3}."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = source if isinstance(source, Image.Image) else Image.open(source)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"image {name} cannot be read ({type(e).__name__}); remove or replace the file") from None
    img = _normalise_mode(img)
    if resolution is not None:
        img = _center_crop_resize(img, resolution)
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _normalise_mode(img):
    """RGBA/LA over white, palette and CMYK to RGB, 16-bit and float grayscale to 8-bit L."""
    from PIL import Image

    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB" if img.mode != "LA" else "L")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray((arr / top * 255).round().clip(0, 255).astype(np.uint8), mode="L")
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    return img


def _center_crop_resize(img, resolution: int):
    from PIL import Image

    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((resolution, resolution), Image.Resampling.BICUBIC if side < resolution else Image.Resampling.LANCZOS)


def _images_dataset(name: str, items: Iterable[tuple[str, object, str]], resolution: int | None) -> Dataset:
    """items: (name for messages, file or path, path inside the folder or zip) of each image."""
    arrays, paths = [], []
    for item_name, source, relative in items:
        arrays.append(_to_array(item_name, source, resolution))
        paths.append(relative)
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        raise UserError(f"--data {name}: images have different sizes {sorted(sizes)[:3]}; pass --resolution R")
    if arrays[0].shape[0] != arrays[0].shape[1]:
        raise UserError(f"--data {name}: images are not square {arrays[0].shape[:2]}; pass --resolution R to crop")
    channels = 3 if any(a.shape[2] == 3 for a in arrays) else 1
    if channels == 3:  # grayscale among colour images becomes grey RGB
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    data = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return Dataset(name, data, labels=folder_labels(paths))


def folder_labels(paths: list[str]) -> Tensor | None:
    """Classes by torchvision's ImageFolder convention: when every image lies under a first-level
    sub-folder and there are two or more, class k is the k-th sub-folder name in sorted order.
    paths: each image's path inside the folder or zip, "/"-separated. None: not labelled."""
    parts = [p.split("/") for p in paths]
    if any(len(p) < 2 for p in parts):
        return None
    names = sorted({p[0] for p in parts})
    if len(names) < 2:
        return None
    index = {n: k for k, n in enumerate(names)}
    return torch.tensor([index[p[0]] for p in parts], dtype=torch.long)


def _npy_dataset(path: Path, resolution: int | None) -> Dataset:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"--data {path}: not a readable .npy array ({str(e)[:100]})") from None
    if arr.ndim not in (2, 4) or arr.shape[0] < 2 or not np.issubdtype(arr.dtype, np.number):
        raise UserError(
            f"--data {path}: array of shape {arr.shape} and dtype {arr.dtype}; expected numbers shaped "
            "N x D (vectors) or N x C x H x W (images)"
        )
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)).ravel()
        raise UserError(f"--data {path}: rows {bad[:5].tolist()} hold NaN or inf; remove them")
    if arr.ndim == 2:
        return Dataset(path.name, torch.from_numpy(arr.astype(np.float32)))
    return _npy_images(path, arr, resolution)


def _npy_images(path: Path, arr: np.ndarray, resolution: int | None) -> Dataset:
    if arr.shape[1] not in (1, 3):
        raise UserError(f"--data {path}: image array must be N x C x H x W with C = 1 or 3, got {arr.shape}")
    if arr.dtype == np.uint8:
        data = torch.from_numpy(arr)
    else:  # floats in [-1, 1]
        if arr.min() < -1.001 or arr.max() > 1.001:
            raise UserError(f"--data {path}: float images must lie in [-1, 1] (found {arr.min():.3g}..{arr.max():.3g})")
        data = torch.from_numpy(((arr.astype(np.float32) + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
    if resolution is not None:
        data = resize_uint8(data, resolution)
    return Dataset(path.name, data)


def class_shares(ds: Dataset, source: str) -> tuple[float, ...]:
    """Each class's share of labelled data (class k: labels == k), what a class-conditional model
    is trained on and draws classes from; unlabelled data is a UserError naming --cond."""
    if ds.labels is None:
        raise UserError(f"--cond: {source} has no class labels (labelled: digits, mnist, fashion-mnist, cifar10, "
                        "or a folder with one sub-folder of images per class)")
    counts = torch.bincount(ds.labels)
    return tuple(round(float(c) / len(ds.labels), 6) for c in counts)


def describe(ds: Dataset) -> dict[str, object]:
    """A JSON-able summary for `hybrid data info`."""
    info: dict[str, object] = {"name": ds.name, "size": len(ds), "shape": list(ds.shape),
                               "kind": "image" if ds.is_image else "vector"}
    if ds.modes is not None:
        info["modes"] = len(ds.modes)
        info["mode_std"] = ds.mode_std
    if ds.labels is not None:
        info["classes"] = int(ds.labels.max()) + 1
    if not ds.is_image:
        info["mean"] = ds.data.mean(0).tolist()
        info["std"] = ds.data.std(0).tolist()
    return info
