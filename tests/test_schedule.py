"""The forward chain: closed forms of the posterior, the VP discretisation, Monte Carlo marginals."""

from __future__ import annotations

import math

import pytest
import torch

from hybridgan.hybrid.schedule import Schedule

KINDS = ("linear", "cosine", "vp", "logsnr")


def closed_form_posterior(betas: torch.Tensor, t: int) -> tuple[float, float, float]:
    """(coefficient of x0, coefficient of x_t, variance) of q(x_{t-1} | x_t, x_0), from betas alone
    (Ho et al. 2020, eq. 6-7)."""
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)  # abar[t-1] is alpha_bar_t
    abar_t = float(abar[t - 1])
    abar_prev = 1.0 if t == 1 else float(abar[t - 2])
    beta_t, alpha_t = float(betas[t - 1]), float(alphas[t - 1])
    c_x0 = math.sqrt(abar_prev) * beta_t / (1 - abar_t)
    c_xt = math.sqrt(alpha_t) * (1 - abar_prev) / (1 - abar_t)
    var = (1 - abar_prev) / (1 - abar_t) * beta_t
    return c_x0, c_xt, var


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 2, 4, 10, 1000])
def test_posterior_matches_closed_form(kind, T):
    sched = Schedule(kind, T)
    betas = sched.betas
    assert betas.shape == (T,) and bool((betas > 0).all()) and bool((betas < 1).all())
    g = torch.Generator().manual_seed(0)
    levels = sorted({1, 2, T // 2, T - 1, T} & set(range(1, T + 1)))
    t = torch.tensor(levels)
    x0 = torch.randn(len(levels), 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(len(levels), 3, generator=g, dtype=torch.float64)
    mean, var = sched.posterior(x_t, x0, t)
    for i, level in enumerate(levels):
        c_x0, c_xt, v = closed_form_posterior(betas, level)
        torch.testing.assert_close(mean[i], c_x0 * x0[i] + c_xt * x_t[i], rtol=1e-9, atol=1e-12)
        assert var[i].item() == pytest.approx(v, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 4, 1000])
def test_alpha_bar_starts_at_one_and_decreases(kind, T):
    sched = Schedule(kind, T)
    assert sched.alpha_bar.shape == (T + 1,)
    assert sched.alpha_bar[0].item() == 1.0
    assert bool((sched.alpha_bar[1:] < sched.alpha_bar[:-1]).all())
    assert sched.alpha_bar[-1].item() < 0.05, "the chain should end (nearly) in noise"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 4, 1000])
def test_posterior_at_level_one_is_x0_without_noise(kind, T):
    sched = Schedule(kind, T)
    x0, x_t = torch.randn(5, 2), torch.randn(5, 2)
    t = torch.ones(5, dtype=torch.long)
    mean, var = sched.posterior(x_t, x0, t)
    assert bool((var == 0).all())
    torch.testing.assert_close(mean, x0)
    torch.testing.assert_close(sched.posterior_sample(x_t, x0, t, noise=torch.randn(5, 2)), x0)


@pytest.mark.parametrize("T", [2, 4, 1000])
def test_vp_matches_the_continuous_sde(T):
    beta_min, beta_max, eps = 0.1, 20.0, 1e-3
    sched = Schedule("vp", T)
    for i in range(1, T + 1):
        t = eps + (1 - eps) * i / T
        expected = math.exp(-(beta_min * t + 0.5 * (beta_max - beta_min) * t**2))
        assert sched.alpha_bar[i].item() == pytest.approx(expected, rel=1e-12)


def test_linear_is_ho_et_al_at_1000_steps():
    betas = Schedule("linear", 1000).betas
    torch.testing.assert_close(betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("T", [4, 1000])
def test_cosine_is_nichol_dhariwal(T):
    s = 0.008
    f = [math.cos((i / T + s) / (1 + s) * math.pi / 2) ** 2 for i in range(T + 1)]
    sched = Schedule("cosine", T)
    unclipped = [i for i in range(1, T + 1) if 1 - f[i] / f[i - 1] < 0.999]
    assert len(unclipped) >= T - 1
    for i in unclipped:
        assert sched.alpha_bar[i].item() == pytest.approx(f[i] / f[0], rel=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("s", [0, 1, 2])
def test_one_step_forward_has_the_next_marginal(kind, s):
    """x_{s+1} = q_step(q_sample(x0, s), s) is distributed as q_sample(x0, s + 1)."""
    T, n = 4, 200_000
    sched = Schedule(kind, T)
    g = torch.Generator().manual_seed(1)
    x0 = torch.tensor([1.5, -0.7]).repeat(n, 1)
    level = torch.full((n,), s)
    x_s = sched.q_sample(x0, level, torch.randn(n, 2, generator=g))
    x_next = sched.q_step(x_s, level, torch.randn(n, 2, generator=g))
    a = sched.alpha_bar[s + 1].item()
    std = math.sqrt(1 - a)
    se = std / math.sqrt(n)  # standard error of the mean
    torch.testing.assert_close(x_next.mean(0), math.sqrt(a) * torch.tensor([1.5, -0.7]), rtol=0, atol=5 * se)
    torch.testing.assert_close(x_next.std(0), torch.full((2,), std), rtol=0.01, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t", [2, 3, 4])
def test_posterior_sample_has_the_previous_marginal(kind, t):
    """x_t ~ q(x_t | x0), then x_{t-1} ~ q(x_{t-1} | x_t, x0) is distributed as q(x_{t-1} | x0)."""
    T, n = 4, 200_000
    sched = Schedule(kind, T)
    g = torch.Generator().manual_seed(2)
    x0 = torch.full((n, 1), 0.8)
    level = torch.full((n,), t)
    x_t = sched.q_sample(x0, level, torch.randn(n, 1, generator=g))
    x_prev = sched.posterior_sample(x_t, x0, level, torch.randn(n, 1, generator=g))
    a = sched.alpha_bar[t - 1].item()
    std = math.sqrt(1 - a)
    assert x_prev.mean().item() == pytest.approx(math.sqrt(a) * 0.8, abs=5 * std / math.sqrt(n))
    assert x_prev.std().item() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize("kind", KINDS)
def test_eps_and_x0_conversions_invert_each_other(kind):
    sched = Schedule(kind, 10)
    x0, eps = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    t = torch.arange(1, 11)
    x_t = sched.q_sample(x0, t, eps)
    torch.testing.assert_close(sched.eps_to_x0(x_t, t, eps), x0)
    torch.testing.assert_close(sched.x0_to_eps(x_t, t, x0), eps)
    v = sched.v_target(x0, t, eps)
    torch.testing.assert_close(sched.v_to_x0(x_t, t, v), x0)
    a = sched.alpha_bar[t][:, None]
    torch.testing.assert_close(v, a.sqrt() * eps - (1 - a).sqrt() * x0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        Schedule("vp", 0)
    with pytest.raises(ValueError):
        Schedule("sigmoid", 4)
