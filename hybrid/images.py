"""Turning samples into pictures: image grids and scatter plots of 2-D vectors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hybridgan.hybrid.outputs import check_output, seed_file


def to_uint8(x: Tensor) -> Tensor:
    """Images in [-1, 1], [N, C, H, W] float -> uint8 [N, C, H, W]."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def resize_uint8(images: Tensor, side: int) -> Tensor:
    """uint8 images [N, C, H, W] -> [N, C, side, side], bilinear with antialiasing (as the data loader resizes arrays)."""
    if images.shape[-2:] == (side, side):
        return images
    x = torch.nn.functional.interpolate(images.float(), size=(side, side), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def image_grid(x: Tensor, cols: int | None = None, pad: int = 1) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] with a grey border."""
    n, c, h, w = x.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 128, dtype=np.uint8)
    imgs = to_uint8(x).permute(0, 2, 3, 1).numpy()
    for i, img in enumerate(imgs):
        r, col = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = img
    return grid


def save_png(array: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write uint8 [H, W, C] (C = 1 or 3) as PNG, optionally enlarged by nearest-neighbour."""
    from PIL import Image

    if scale > 1:
        array = array.repeat(scale, axis=0).repeat(scale, axis=1)
    img = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    img.save(path)
    return Path(path)


def scatter_png(points: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "") -> Path:
    """Scatter plot of 2-D points [N, 2] (first two dims of larger vectors), over reference data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=1, c="#bbbbbb", label="data")
    ax.scatter(points[:, 0], points[:, 1], s=1, c="#d62728", label="samples")
    lim = float(max(points[:, :2].abs().quantile(0.99), 1e-3 if reference is None else reference[:, :2].abs().max()))
    ax.set_xlim(-1.1 * lim, 1.1 * lim)
    ax.set_ylim(-1.1 * lim, 1.1 * lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7, markerscale=5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def read_png(path: str | Path) -> np.ndarray:
    from PIL import Image

    arr = np.asarray(Image.open(path))
    return arr[:, :, None] if arr.ndim == 2 else arr


def write_samples(x: Tensor, out: str | Path, image: bool, seeds: list[int] | None = None,
                  labels: list[int] | None = None, cols: int | None = None) -> Path:
    """Save samples by the form of `out`: .png a grid of `cols` columns (default: square; a scatter
    for vectors), .npy the raw float32 array, anything else a folder with one PNG per image, named
    by its seed (`seed_file`; seeds default 0..N-1), in a sub-folder per class where `labels` gives
    each sample's. Check `out` first with `check_output`."""
    out = Path(out)
    suffix = out.suffix.lower()
    check_output(out, [], overwrite=True, image=image)  # the form of `out`; existing files are the caller's to refuse
    if suffix == ".npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, x.float().numpy())
    elif suffix == ".png":
        out.parent.mkdir(parents=True, exist_ok=True)
        if image:
            save_png(image_grid(x, cols), out, scale=max(1, 128 // x.shape[-1]))
        else:
            scatter_png(x, out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        seeds = list(range(len(x))) if seeds is None else seeds
        labels = [None] * len(x) if labels is None else labels
        for seed, label, img in zip(seeds, labels, to_uint8(x).permute(0, 2, 3, 1).numpy()):
            (out / seed_file(seed, label)).parent.mkdir(exist_ok=True)
            save_png(img, out / seed_file(seed, label))
    return out
