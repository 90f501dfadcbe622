"""Metrics for vector data: mode coverage and quality for known mixtures, SWD and MMD.

Coverage follows the usual toy-GAN protocol (VEEGAN, PacGAN): a sample is high quality when
it lies within `k` standard deviations of its nearest mode; a mode is covered when it holds at
least `min_share` of the high-quality samples it would get if all modes were equally likely.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mode_stats(samples: Tensor, modes: Tensor, std: float, k: float = 3.0, min_share: float = 0.2) -> dict[str, float]:
    """samples [N, D], modes [K, D] -> {"modes_covered", "modes_total", "high_quality"}."""
    d = torch.cdist(samples.double(), modes.double())
    nearest_dist, nearest = d.min(dim=1)
    hq = nearest_dist <= k * std
    counts = torch.bincount(nearest[hq], minlength=len(modes))
    covered = counts >= max(1.0, min_share * len(samples) / len(modes))
    return {
        "modes_covered": float(covered.sum()),
        "modes_total": float(len(modes)),
        "high_quality": float(hq.double().mean()),
    }


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between equal-sized sets [N, D] over random directions."""
    n = min(len(x), len(y))
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    px = (x[:n].double() @ dirs).sort(dim=0).values
    py = (y[:n].double() @ dirs).sort(dim=0).values
    return float((px - py).abs().mean())


def mmd_rbf(x: Tensor, y: Tensor, scales: tuple[float, ...] = (0.05, 0.2, 1.0)) -> float:
    """Unbiased squared MMD with a sum of RBF kernels of the given bandwidths."""
    x, y = x.double(), y.double()

    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).square()
        return sum(torch.exp(-d2 / (2 * s * s)) for s in scales)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - kxx.diag().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
                 - 2 * kxy.mean())
