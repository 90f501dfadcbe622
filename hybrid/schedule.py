"""The discrete variance-preserving forward chain x_0 -> x_1 -> ... -> x_T.

Levels are integers s in 0..T; level 0 is the data. `alpha_bar[s]` is the signal fraction
of q(x_s | x_0) = N(sqrt(alpha_bar[s]) x_0, (1 - alpha_bar[s]) I); alpha_bar[0] = 1.
Everything is computed once, in float64, at construction.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
from torch import Tensor


class ScheduleKind(str, Enum):
    LINEAR = "linear"
    COSINE = "cosine"
    VP = "vp"
    LOGSNR = "logsnr"


def _alpha_bar_linear(T: int) -> Tensor:
    # Ho et al.'s 1e-4..0.02 over 1000 steps, rescaled so that shorter chains end as noisy.
    scale = 1000 / T
    # linspace with one point gives the start; a one-step chain must end in noise like the rest.
    start = 1e-4 * scale if T > 1 else 0.02 * scale
    betas = torch.linspace(start, 0.02 * scale, T, dtype=torch.float64).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


def _alpha_bar_cosine(T: int, offset: float = 0.008) -> Tensor:
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0)


def _alpha_bar_vp(T: int, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3) -> Tensor:
    # The continuous VP SDE evaluated at t_i = eps + (1 - eps) i / T (Denoising Diffusion GANs).
    t = eps + (1 - eps) * torch.arange(1, T + 1, dtype=torch.float64) / T
    return torch.exp(-(beta_min * t + 0.5 * (beta_max - beta_min) * t**2))


def _alpha_bar_logsnr(T: int, logsnr_max: float = 5.0, logsnr_min: float = -6.0) -> Tensor:
    # log(alpha_bar / (1 - alpha_bar)) evenly spaced from logsnr_max at level 1 to logsnr_min
    # at level T. With few levels the first step stays small (alpha_bar_1 = 0.993, noise 0.08 of
    # the data scale), so q(x_0 | x_1) is nearly unimodal on data with separated modes, and the
    # last level is close to pure noise (alpha_bar_T = 0.0025).
    # A one-level chain ends in noise like the rest.
    logsnr = torch.linspace(logsnr_max, logsnr_min, T, dtype=torch.float64) if T > 1 else torch.tensor([logsnr_min])
    return torch.sigmoid(logsnr.double())


_ALPHA_BAR = {
    ScheduleKind.LINEAR: _alpha_bar_linear,
    ScheduleKind.COSINE: _alpha_bar_cosine,
    ScheduleKind.VP: _alpha_bar_vp,
    ScheduleKind.LOGSNR: _alpha_bar_logsnr,
}


def _gather(values: Tensor, index: Tensor, like: Tensor) -> Tensor:
    """values[index] as float32 on like's device, shaped [B, 1, ...] to broadcast against like."""
    out = values.to(like.device)[index.to(like.device)].to(like.dtype)
    return out.reshape(-1, *([1] * (like.dim() - 1)))


def base_levels(T: int, base_steps: int, top: int | None = None) -> list[int]:
    """The levels 1..top of a long chain of base_steps levels that levels 1..T of a short one stand
    for, evenly spaced and ending at `top` (None: base_steps): T=4, base_steps=1000 -> [250, 500,
    750, 1000]; with top=440 -> [110, 220, 330, 440]."""
    top = base_steps if top is None else top
    return [round(k * top / T) for k in range(1, T + 1)]


class Schedule:
    """Forward process, one-step forward and posterior of a T-step VP chain."""

    def __init__(self, kind: str | ScheduleKind, T: int, base_steps: int | None = None, base_top: int | None = None,
                 base_list: tuple[int, ...] | None = None) -> None:
        """base_steps: the chain's T levels are levels of this kind's chain of base_steps levels:
        evenly spaced up to base_top (None: base_steps), so level k is base level round(k * base_top
        / T), or the T increasing levels of base_list; a distilled student's few levels are its
        teacher's (training.objectives.Distill). None: a chain of T levels."""
        if T < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        if base_steps is not None and base_steps < T:
            raise ValueError(f"base_steps must be >= T = {T}, got {base_steps}")
        if base_top is not None and (base_steps is None or not T <= base_top <= base_steps):
            raise ValueError(f"base_top must be in {T}..base_steps, got {base_top} (base_steps {base_steps})")
        if base_list is not None:
            base_list = tuple(base_list)
            if base_steps is None or len(base_list) != T or list(base_list) != sorted(set(base_list)) \
                    or not 1 <= base_list[0] <= base_list[-1] <= base_steps:
                raise ValueError(f"base_list must be {T} increasing levels in 1..base_steps, got {base_list} "
                                 f"(base_steps {base_steps})")
        self.kind = ScheduleKind(kind)
        self.T = T
        self.base_steps = base_steps
        self.base_top = base_top
        self.base_list = base_list
        if base_steps is None:
            alpha_bar = _ALPHA_BAR[self.kind](T)
        else:
            chosen = base_list if base_list is not None else base_levels(T, base_steps, base_top)
            alpha_bar = _ALPHA_BAR[self.kind](base_steps)[torch.tensor(chosen) - 1]
        self.alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar])
        # time inputs of levels 0..T of an explicit list: the share of the base chain each stands for
        self._list_time = None if base_list is None else torch.tensor((0, *base_list), dtype=torch.float32) / base_steps

    def __repr__(self) -> str:
        base = f", base_steps={self.base_steps}" if self.base_steps is not None else ""
        top = f", base_top={self.base_top}" if self.base_top is not None else ""
        chosen = f", base_list={self.base_list}" if self.base_list is not None else ""
        return f"Schedule({self.kind.value!r}, T={self.T}{base}{top}{chosen})"

    def time_input(self, s: Tensor) -> Tensor:
        """The networks' time input at levels s ([B] long): s / T, the share of the chain; for a
        chain of base levels ending below the base chain's top, the share of the base chain level
        s stands for (k * base_top / T of base_steps, unrounded; base_list[s - 1] of base_steps)."""
        if self._list_time is not None:
            return self._list_time.to(s.device)[s]
        if self.base_top is None:
            return s.float() / self.T
        return s.float() * (self.base_top / self.base_steps) / self.T

    def level_of_sigma(self, sigma: float) -> int:
        """The level (1..T) whose noise-to-signal ratio sqrt((1 - alpha_bar) / alpha_bar) (EDM's
        sigma) is closest to `sigma` in log scale."""
        a = self.alpha_bar[1:]
        return int(((1 - a) / a).log().sub(2 * math.log(sigma)).abs().argmin()) + 1

    @property
    def betas(self) -> Tensor:
        """beta_s for s = 1..T (index 0 holds beta_1). [T] float64."""
        return 1 - self.alpha_bar[1:] / self.alpha_bar[:-1]

    def q_sample(self, x0: Tensor, s: Tensor, noise: Tensor) -> Tensor:
        """x_s ~ q(x_s | x_0). x0, noise: [B, ...]; s: [B] long in 0..T."""
        a = _gather(self.alpha_bar, s, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def q_step(self, x_s: Tensor, s: Tensor, noise: Tensor) -> Tensor:
        """x_{s+1} ~ q(x_{s+1} | x_s). s: [B] long in 0..T-1."""
        alpha = _gather(self.alpha_bar[1:] / self.alpha_bar[:-1], s, x_s)
        return alpha.sqrt() * x_s + (1 - alpha).sqrt() * noise

    def posterior(self, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_s | x_t, x_0) for 0 <= s < t (s = t - 1 by default).

        x_t, x0: [B, ...]; t, s: [B] long. The variance is [B, 1, ...]; it is 0 at s = 0.
        """
        s = t - 1 if s is None else s
        a_t, a_s = _gather(self.alpha_bar, t, x_t), _gather(self.alpha_bar, s, x_t)
        alpha_ts = a_t / a_s
        mean = (a_s.sqrt() * (1 - alpha_ts) * x0 + alpha_ts.sqrt() * (1 - a_s) * x_t) / (1 - a_t)
        var = (1 - alpha_ts) * (1 - a_s) / (1 - a_t)
        return mean, var

    def posterior_sample(self, x_t: Tensor, x0: Tensor, t: Tensor, noise: Tensor, s: Tensor | None = None) -> Tensor:
        """x_s ~ q(x_s | x_t, x_0); deterministic (the mean, which is x0) at s = 0."""
        mean, var = self.posterior(x_t, x0, t, s)
        return mean + var.sqrt() * noise

    def eps_to_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        a = _gather(self.alpha_bar, t, x_t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def v_to_x0(self, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
        a = _gather(self.alpha_bar, t, x_t)
        return a.sqrt() * x_t - (1 - a).sqrt() * v

    def v_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
        a = _gather(self.alpha_bar, t, x0)
        return a.sqrt() * eps - (1 - a).sqrt() * x0

    def x0_to_eps(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        a = _gather(self.alpha_bar, t, x_t)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()
