"""Distances between two sets of features: Fréchet distance, KID, k-NN precision/recall.

Plain functions of feature matrices [N, D], independent of the network that made them.
Statistics are accumulated in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianStats:
    mu: Tensor  # [D] float64 mean
    sigma: Tensor  # [D, D] float64 covariance (unbiased, divided by N - 1)
    num: int  # the number of feature vectors N


def gaussian_stats(features: Tensor) -> GaussianStats:
    """Features [N, D] (N >= 2) -> mean and covariance in float64."""
    f = features.double()
    mu = f.mean(dim=0)
    centred = f - mu
    sigma = centred.T @ centred / (len(f) - 1)
    return GaussianStats(mu, sigma, len(f))


def psd_sqrt(a: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix [D, D] (float64)."""
    a = a.double()
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def trace_sqrt_product(s1: Tensor, s2: Tensor, s2_sqrt: Tensor | None = None) -> float:
    """tr((s1 s2)^(1/2)) for covariances [D, D], by eigenvalues.

    s1 s2 has the eigenvalues of the symmetric PSD matrix s2^(1/2) s1 s2^(1/2), so the trace is
    the sum of the square roots of its (clamped) eigenvalues: real and finite even when both
    covariances are singular (N < D), where a general matrix square root turns complex.
    s2_sqrt: psd_sqrt(s2) when already known (cached with reference statistics).
    """
    r = psd_sqrt(s2) if s2_sqrt is None else s2_sqrt.double()
    m = r @ s1.double() @ r
    eig = torch.linalg.eigvalsh((m + m.T) / 2)
    return float(eig.clamp(min=0).sqrt().sum())


def frechet_distance(a: GaussianStats, b: GaussianStats, b_sigma_sqrt: Tensor | None = None) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)): FID when the features are Inception's.

    b_sigma_sqrt: psd_sqrt(b.sigma) if known, which saves one eigendecomposition.
    """
    diff = a.mu - b.mu
    tr_sqrt = trace_sqrt_product(a.sigma, b.sigma, b_sigma_sqrt)
    value = float(diff @ diff) + float(a.sigma.trace() + b.sigma.trace()) - 2 * tr_sqrt
    return max(value, 0.0)


def polynomial_mmd2(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 of equal-sized sets [m, D] with k(a, b) = (a.b / D + coef0)^degree."""
    x, y = x.double(), y.double()
    m, d = x.shape

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        return (a @ b.T / d + coef0) ** degree

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    off_diagonal = kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()
    return float(off_diagonal / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


def kernel_distance(x: Tensor, y: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 2020) -> dict[str, float]:
    """KID (Bińkowski et al. 2018): polynomial MMD^2 averaged over random subsets of [N, D] features.

    The subsets are drawn as torch-fidelity draws them (numpy RandomState(seed), x's subset then
    y's, without replacement), so both give the same number up to float rounding. The subset
    size is cut to the smaller set. Returns {"kid": mean, "kid_std": std over subsets}.
    """
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(x)} and {len(y)}")
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        ix = torch.from_numpy(rng.choice(len(x), size, replace=False))
        iy = torch.from_numpy(rng.choice(len(y), size, replace=False))
        values.append(polynomial_mmd2(x[ix], y[iy]))
    return {"kid": float(np.mean(values)), "kid_std": float(np.std(values))}


def _kth_neighbour_radius(f: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from each row of f [N, D] to its k-th nearest other row -> [N]."""
    return torch.cat([torch.cdist(part, f).kthvalue(k + 1, dim=1).values for part in f.split(chunk)])


def _inside_any_ball(queries: Tensor, centres: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """For each query [Q, D]: is it within radii[j] of some centre j ([C, D], [C])? -> [Q] bool."""
    return torch.cat([(torch.cdist(part, centres) <= radii).any(dim=1) for part in queries.split(chunk)])


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, chunk: int = 2048) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of features [N, D] with k-NN balls.

    Precision: the share of fake samples inside the real manifold (the union of balls around each
    real sample reaching its k-th nearest real neighbour); recall: the share of real samples
    inside the fake manifold. Distances in float32, computed in chunks of `chunk` rows.
    """
    real, fake = real.float(), fake.float()
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    precision = _inside_any_ball(fake, real, _kth_neighbour_radius(real, k, chunk), chunk)
    recall = _inside_any_ball(real, fake, _kth_neighbour_radius(fake, k, chunk), chunk)
    return {"precision": float(precision.double().mean()), "recall": float(recall.double().mean())}
