"""Distillation: a few-step student from a ddpm teacher (training.objectives.Distill)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from conftest import TINY_UNET, assert_same_samples, assert_user_error, digits_config, latest_checkpoint, read_stats, toy_config
from hybridgan.hybrid.checkpoint import load, load_model
from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.model import Model
from hybridgan.hybrid.samplers import sample_batched
from hybridgan.hybrid.schedule import Schedule
from hybridgan.metrics.toy import mode_stats, sliced_wasserstein
from hybridgan.training import objectives, train
from hybridgan.training.config import TrainConfig, check_distill, config_from_dict, default_model, dm_levels, resolve
from hybridgan.training.data import load_dataset
from hybridgan.training.objectives import OBJECTIVES, REGRESS_DDIM_STEPS, REGRESS_SEED_BASE, Distill, gan_top
from hybridgan.training.stats import Stats
from hybridgan.training.teacher import load_teacher

# The teacher: 200 kimg of ddpm on toy:8gaussians with a 32-wide MLP (~8 s on one thread); at 1000
# ancestral steps it covers all 8 modes, sliced Wasserstein 0.03 to the data (measured, seed 0).
TEACHER_NET = {"channels": 32}


@pytest.fixture(scope="session")
def teacher(tmp_path_factory) -> str:
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    cfg = toy_config(objective="ddpm", kimg=200, batch=128, lr_g=2e-3, tick_kimg=100, snapshot_kimg=200)
    train(cfg, run_dir=run_dir, model_changes=TEACHER_NET, quiet=True)
    return str(latest_checkpoint(run_dir))


@pytest.fixture(scope="session")
def image_teacher(tmp_path_factory) -> str:
    """A ddpm teacher of the digits with an 8-channel UNet: a few steps, enough to have features (~5 s)."""
    run_dir = tmp_path_factory.mktemp("image-teacher") / "run"
    train(digits_config(objective="ddpm", kimg=0.256), run_dir=run_dir, model_changes=TINY_UNET, quiet=True)
    return str(latest_checkpoint(run_dir))


def distill_config(teacher: str, **changes):
    base = dict(objective="distill", teacher=teacher, batch=128, kimg=1, tick_kimg=0.512, snapshot_kimg=1)
    return toy_config(**{**base, **changes})


def swd_to_data(model: Model, steps: int, n: int = 2000) -> float:
    ref = torch.as_tensor(load_dataset("toy:8gaussians").data[:n]).float()
    return sliced_wasserstein(sample_batched(model, list(range(n)), steps=steps, sampler="gan"), ref)


# ------------------------------------------------------------------------------------ the student


def test_student_levels_are_evenly_spaced_teacher_levels_with_the_teachers_time_input():
    teacher = Schedule("linear", 1000)
    for K in (1, 2, 4):
        student = Schedule("linear", K, base_steps=1000)
        levels = [k * 1000 // K for k in range(1, K + 1)]
        torch.testing.assert_close(student.alpha_bar[1:], teacher.alpha_bar[levels])
        # The networks see t / T: level k of K and the teacher's level k * 1000 / K alike.
        steps = torch.arange(1, K + 1)
        assert student.time_input(steps).tolist() == [k / K for k in range(1, K + 1)] == [t / 1000 for t in levels]
    assert student.alpha_bar[0] == 1
    # Below the teacher's top: K levels evenly spaced up to level 441, each told the share of the
    # teacher's chain it stands for (unrounded: 110.25 of 1000 for level 1 of 4).
    student = Schedule("linear", 4, base_steps=1000, base_top=441)
    torch.testing.assert_close(student.alpha_bar[1:], teacher.alpha_bar[[110, 220, 331, 441]])
    torch.testing.assert_close(student.time_input(torch.arange(1, 5)), torch.tensor([0.11025, 0.2205, 0.33075, 0.441]))
    with pytest.raises(ValueError, match="base_top"):
        Schedule("linear", 4, base_steps=1000, base_top=3)


def test_the_student_sits_at_the_teachers_level_of_noise_sigma(teacher):
    """--student-sigma picks the teacher level whose sqrt((1 - alpha_bar) / alpha_bar) is nearest; by
    default 1.0 for a one-level student and 2.5 (SiD's) for more levels, and the run records it."""
    t = load_teacher(teacher, (2,))

    def top(steps: int, **changes) -> tuple[int, float]:
        cfg, _ = Distill.prepare(distill_config(teacher, **changes), (2,), resumed=False)
        cfg = resolve(cfg, (2,), {"steps": steps})
        return cfg.model.schedule_top, cfg.student_sigma

    for sigma in (0.5, 2.5, 80.0):
        level, recorded = top(1, student_sigma=sigma)
        a = float(t.model.schedule.alpha_bar[level])
        assert abs(((1 - a) / a) ** 0.5 / sigma - 1) < 0.02 and recorded == sigma, (sigma, level)
    assert top(1) == (259, 1.0) and top(2) == top(4) == (441, 2.5)  # linear, T = 1000
    assert top(4, student_sigma=1.0) == (259, 1.0)
    # A run's config.json given again with another --student-sigma moves the top with it.
    cfg, _ = Distill.prepare(distill_config(teacher), (2,), resumed=False)
    again = resolve(resolve(cfg, (2,)).replace(student_sigma=2.5), (2,))
    assert (again.model.schedule_top, again.student_sigma) == (441, 2.5)


def test_a_student_of_listed_levels_stands_for_those_teacher_levels():
    """base_list: the chain's levels are the listed levels of the base chain, each told its share."""
    teacher = Schedule("linear", 1000)
    student = Schedule("linear", 2, base_steps=1000, base_list=(21, 259))
    torch.testing.assert_close(student.alpha_bar[1:], teacher.alpha_bar[[21, 259]])
    torch.testing.assert_close(student.time_input(torch.tensor([0, 1, 2, 1])), torch.tensor([0, 0.021, 0.259, 0.021]))
    for bad in ((259, 21), (21, 21), (0, 259), (21, 1001), (21,)):
        with pytest.raises(ValueError, match="base_list"):
            Schedule("linear", 2, base_steps=1000, base_list=bad)


def test_one_student_sigma_per_level(teacher):
    """--student-sigma S1,S2: one level at each, in any order; a count other than 1 or K, or two sigmas
    on one teacher level, is one line. One sigma given again returns to evenly spaced levels."""
    t = load_teacher(teacher, (2,))

    def chain(steps: int, sigma) -> TrainConfig:
        cfg, _ = Distill.prepare(distill_config(teacher, student_sigma=sigma), (2,), resumed=False)
        return resolve(cfg, (2,), {"steps": steps})

    cfg = chain(2, (0.08, 1.0))
    levels = [t.model.schedule.level_of_sigma(s) for s in (0.08, 1.0)]
    assert cfg.model.schedule_levels == tuple(levels) and cfg.model.schedule_top == levels[1] == 259
    assert cfg.student_sigma == (0.08, 1.0) and chain(2, [1.0, 0.08]).model.schedule_levels == tuple(levels)
    model = Model(cfg.model)
    torch.testing.assert_close(model.schedule.alpha_bar[1:], t.model.schedule.alpha_bar[levels].double())
    assert chain(1, (1.0,)).model.schedule_levels is None  # one sigma is the single-value form
    again = resolve(cfg.replace(student_sigma=2.5), (2,))
    assert (again.model.schedule_levels, again.model.schedule_top) == (None, 441)
    kept = resolve(cfg.replace(student_sigma=None), (2,))  # a config without sigma keeps its own levels
    assert kept.model.schedule_levels == tuple(levels)
    # Evenly spaced levels with one kept as the teacher's: listed, so it is exactly the teacher's level 110.
    cfg, _ = Distill.prepare(distill_config(teacher, student_sigma=2.5, teacher_levels=1), (2,), resumed=False)
    kept = resolve(cfg, (2,), {"steps": 4}).model
    assert (kept.schedule_levels, kept.frozen_levels) == ((110, 220, 331, 441), 1)
    assert Model(kept).schedule.time_input(torch.tensor([1])).item() == pytest.approx(0.110)
    for steps, sigma, message in ((4, (1.0, 0.08), "2 sigmas for --steps 4"), (2, (1.0, -1.0), "student_sigma"),
                                  (2, (1.0, 1.001), "two sigmas fall on the teacher's level 259")):
        with pytest.raises(UserError, match=message):
            chain(steps, sigma)


def test_listed_levels_start_as_the_teachers_denoisers_there_and_survive_a_checkpoint(image_teacher, tmp_path):
    """Each listed level of a digits student is, at the start, the teacher's denoiser at its teacher
    level; a short run saves the levels with the model, and its file samples at NFE 1 and 2."""
    t = load_teacher(image_teacher, (1, 16, 16))
    run_dir = tmp_path / "run"
    train(digits_config(objective="distill", teacher=image_teacher, kimg=0.032, student_sigma=(1.0, 0.08)),
          run_dir=run_dir, model_changes={"steps": 2}, quiet=True)
    model = load_model(latest_checkpoint(run_dir))
    levels = model.cfg.schedule_levels
    assert levels == (21, 259) and model.schedule.base_list == levels and model.frozen is None
    start = Model(model.cfg)
    start.G.load_state_dict(t.net.state_dict())
    x = torch.randn(4, 1, 16, 16)
    for k, level in enumerate(levels, start=1):
        torch.testing.assert_close(start.predict_x0(start.G, x, torch.full((4,), k), None),
                                   t.model.predict_x0(t.net, x, torch.full((4,), level), None), rtol=1e-5, atol=1e-5)
    for nfe in (1, 2):
        x = sample_batched(model, list(range(4)), steps=nfe, sampler="gan")
        assert x.shape == (4, 1, 16, 16) and torch.isfinite(x).all()


def test_teacher_levels_stay_the_teachers_denoiser_and_finish_the_students_samples(image_teacher, tmp_path):
    """--teacher-levels 1: only the top level trains; the lowest runs a frozen copy of the teacher,
    saved with the student, so NFE 2 is the one-step sample finished by the teacher at sigma 0.08."""
    t = load_teacher(image_teacher, (1, 16, 16))
    run_dir = tmp_path / "run"
    cfg = digits_config(objective="distill", teacher=image_teacher, kimg=0.064, student_sigma=(1.0, 0.08), teacher_levels=1)
    train(cfg, run_dir=run_dir, model_changes={"steps": 2}, quiet=True)
    ckpt = load(latest_checkpoint(run_dir))
    model = load_model(latest_checkpoint(run_dir))
    assert model.cfg.frozen_levels == 1 and ckpt["config"]["teacher_levels"] == 1
    teacher_weights = t.net.state_dict()
    assert all(torch.equal(ckpt["frozen"][k], v) for k, v in teacher_weights.items())
    assert not all(torch.equal(ckpt["G"][k], v) for k, v in teacher_weights.items())  # the top level trained
    # Level 1 runs the teacher at its level 21, level 2 the student's G_ema.
    seeds, x = list(range(4)), torch.randn(4, 1, 16, 16)
    finished = sample_batched(model, seeds, start=(1, x), steps=1, sampler="gan")
    torch.testing.assert_close(finished, t.model.predict_x0(t.net, x, torch.full((4,), 21), None).clamp(-1, 1))
    assert not torch.allclose(finished, model.predict_x0(model.G_ema, x, torch.full((4,), 1), None).clamp(-1, 1))
    top = sample_batched(model, seeds, start=(2, x), steps=1, sampler="gan")
    torch.testing.assert_close(top, model.predict_x0(model.G_ema, x, torch.full((4,), 2), None).clamp(-1, 1))
    assert not torch.allclose(top, t.model.predict_x0(t.net, x, torch.full((4,), 259), None).clamp(-1, 1))
    model.train()
    assert model.G.training and not model.frozen.training  # fixed weights: never dropout
    # Training draws the top level only; the resolved config survives config.json.
    resolved, inputs = Distill.prepare(cfg, (1, 16, 16), resumed=False)
    resolved = resolve(resolved, (1, 16, 16), {"steps": 2})
    assert config_from_dict(json.loads(json.dumps(resolved.to_dict()))) == resolved
    objective = Distill.build(Model(resolved.model), Stats(), resolved, **inputs)
    gen = torch.Generator().manual_seed(0)
    assert {objective.draw(torch.zeros(2, 1, 16, 16), gen).level for _ in range(20)} == {2}


def test_the_student_starts_from_the_teacher_and_the_dm_gradient_is_zero_there(teacher):
    """At the start the fake denoiser is the teacher, so the distribution-matching loss is 0; the
    student's network holds the teacher's weights."""
    t = load_teacher(teacher, (2,))
    cfg, inputs = Distill.prepare(distill_config(teacher), (2,), resumed=False)
    cfg = resolve(cfg, (2,))
    model = Model(cfg.model)
    objective = OBJECTIVES["distill"].build(model, Stats(), cfg, **inputs)
    for name, tensor in t.net.state_dict().items():
        assert torch.equal(model.G.state_dict()[name], tensor), name
        assert torch.equal(objective.fake.state_dict()[name], tensor), name
    # The same function: the student's one level is the teacher's denoiser at its top level.
    x = torch.randn(64, 2)
    top = torch.full((64,), cfg.model.schedule_top)
    torch.testing.assert_close(model.predict_x0(model.G, x, torch.ones(64, dtype=torch.long), None),
                               t.model.predict_x0(t.net, x, top, None), rtol=1e-5, atol=1e-5)
    batch = objective.draw(torch.randn(64, 2), torch.Generator().manual_seed(0))
    objective.begin(batch)
    G = next(p for p in objective.phases if p.name == "G")
    objective.gan_weight = 0.0
    assert objective.loss(G, batch).item() == 0.0


def sample_gradient(objective: Distill, batch, x0: Tensor) -> Tensor:
    """The gradient of the distribution-matching loss in the student's samples x0 (a leaf here)."""
    batch.x0_pred = x0.clone().requires_grad_(True)
    return torch.autograd.grad(objective._dm_loss(batch), batch.x0_pred)[0]


def test_the_dm_losses_gradients_in_the_students_samples_are_dmds_and_sids(teacher):
    """`dmd`: (fake - real) / mean|x0 - real| per sample; `sid`: the gradient of SiD's loss as its
    reference code writes it, summed over elements and samples (ours is their mean), taken through both
    denoisers' inputs. While the fake denoiser is the teacher both are 0; once it differs, SiD's differs
    from DMD's by the paths through the denoisers."""
    cfg, inputs = Distill.prepare(distill_config(teacher), (2,), resumed=False)
    cfg = resolve(cfg, (2,))
    assert cfg.dm_loss == "dmd"
    objective = Distill.build(Model(cfg.model), Stats(), cfg, **inputs)
    batch = objective.draw(torch.randn(64, 2), torch.Generator().manual_seed(0))
    x0 = torch.randn(64, 2)
    for loss in ("dmd", "sid"):
        objective.dm_loss = loss
        assert sample_gradient(objective, batch, x0).abs().max().item() < 1e-7, loss  # SiD's two paths cancel to rounding
        assert objective._dm_loss(batch).item() == 0.0, loss
    with torch.no_grad():
        for p in objective.fake.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    schedule, t, real_net = objective.teacher.model, batch.t_dm, objective.teacher.net

    def estimates(x: Tensor) -> tuple[Tensor, Tensor]:
        x_t = schedule.schedule.q_sample(x, t, batch.n_dm)
        return schedule.predict_x0(real_net, x_t, t, None), schedule.predict_x0(objective.fake, x_t, t, None)

    x = x0.clone().requires_grad_(True)
    real, fake = estimates(x)
    scale = (x - real).abs().mean(1, keepdim=True).detach()
    sid_reference = ((real - fake) * ((real - x) - 1.2 * (real - fake)) / scale).sum()
    expected = {"dmd": ((fake - real) / scale).detach(), "sid": torch.autograd.grad(sid_reference, x)[0]}
    got = {}
    for loss in ("dmd", "sid"):
        objective.dm_loss = loss
        got[loss] = sample_gradient(objective, batch, x0) * x0.numel()  # a mean over samples and elements
        torch.testing.assert_close(got[loss], expected[loss], rtol=1e-4, atol=1e-6)
    assert (got["sid"] - got["dmd"]).norm() > 0.1 * got["dmd"].norm()
    # The fake denoiser gives the DM term its estimate without dropout, as the teacher does, and goes
    # back to training mode for its own phase.
    dropouts = [m for m in objective.fake.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts
    for module in dropouts:
        module.p = 0.5
    assert objective.fake.training
    torch.testing.assert_close(sample_gradient(objective, batch, x0), sample_gradient(objective, batch, x0), rtol=0, atol=0)
    assert objective.fake.training
    with pytest.raises(UserError, match="dm_loss"):
        check_distill(cfg.replace(dm_loss="dmd2"))
    with pytest.raises(UserError, match="dm_loss"):
        Distill.build(Model(cfg.model), Stats(), cfg.replace(dm_loss="dmd2"), **inputs)


def test_the_discriminator_judges_samples_noised_up_to_gan_sigma(teacher):
    """--gan-sigma S: D's levels are drawn evenly from 0 up to the teacher's level of noise S (0, the
    default: clean samples); a config without it (runs from before the option) from every level but the last."""
    cfg, inputs = Distill.prepare(distill_config(teacher), (2,), resumed=False)
    cfg = resolve(cfg, (2,))
    assert (cfg.gan_sigma, cfg.gan_weight) == (0.0, 1.0)  # vectors; images: 0.05 on the teacher's features, 0.01 own

    def d_levels(gan_sigma: float | None) -> Tensor:
        objective = Distill.build(Model(cfg.model), Stats(), cfg.replace(gan_sigma=gan_sigma), **inputs)
        return objective.draw(torch.randn(4096, 2), torch.Generator().manual_seed(0)).t_d

    assert d_levels(0.0).eq(0).all()
    levels = d_levels(0.5)  # level 145 of the linear chain of 1000
    assert levels.min() == 0 and levels.max() == 145
    assert abs(levels.float().mean().item() / 72.5 - 1) < 0.05  # evenly
    # A recorded config without the option (a run from before it, resumed) keeps every level but the last.
    objective = Distill.build(Model(cfg.model), Stats(), cfg.replace(gan_sigma=None), **inputs)
    assert objective.gan_top == 999 and gan_top(Schedule("linear", 1000), 100.0) == 954
    with pytest.raises(UserError, match="gan_sigma"):
        check_distill(cfg.replace(gan_sigma=-1.0))


def test_the_distribution_matching_levels_start_at_dm_sigma_min(teacher):
    """--dm-sigma-min S: the DM gradient's levels are drawn evenly from the teacher's level of noise S (0: its
    first level) up to 98% of its chain; without it (the default, and runs from before the option) from 2%, DMD2's."""
    cfg, inputs = Distill.prepare(distill_config(teacher), (2,), resumed=False)
    cfg = resolve(cfg, (2,))
    assert cfg.dm_sigma_min is None

    def drawn(sigma_min: float | None) -> Tensor:
        objective = Distill.build(Model(cfg.model), Stats(), cfg.replace(dm_sigma_min=sigma_min), **inputs)
        return objective.draw(torch.randn(8192, 2), torch.Generator().manual_seed(0)).t_dm

    for sigma_min, lowest in ((None, 20), (0.0, 1), (0.5, 145)):  # the teacher's linear chain of 1000
        levels = drawn(sigma_min)
        assert levels.min() == lowest and levels.max() == 980
        assert abs(levels.float().mean().item() / ((lowest + 980) / 2) - 1) < 0.02  # evenly
    with pytest.raises(UserError, match="dm_sigma_min"):
        check_distill(cfg.replace(dm_sigma_min=-1.0))
    # The levels follow the teacher's chain; none above its 98%, where an eps teacher's x0 estimate blows up.
    assert dm_levels(Schedule("cosine", 1000), 0.5) == (290, 980) and dm_levels(Schedule("linear", 1), None) == (1, 1)
    with pytest.raises(UserError, match="--dm-sigma-min 500: above the teacher's level 980 of 1000.*sigma 129"):
        dm_levels(Schedule("linear", 1000), 500.0)
    with pytest.raises(UserError, match="--dm-sigma-min 500"):
        resolve(cfg.replace(dm_sigma_min=500.0), (2,))


def test_the_students_phases_follow_the_gan_weight_and_r1(teacher):
    """The student every fake_updates steps and the fake denoiser every step; D and lazy R1 only with a
    GAN term, and no R1 phase at --r1-gamma 0 (test_training: its zero step would still move D)."""
    cfg, inputs = Distill.prepare(distill_config(teacher), (2,), resumed=False)
    cfg = resolve(cfg, (2,))

    def phases(**changes) -> list[tuple[str, str, int]]:
        objective = Distill.build(Model(cfg.model), Stats(), cfg.replace(**changes), **inputs)
        return [(p.name, p.network, p.interval) for p in objective.phases]

    both = [("G", "G", cfg.fake_updates), ("fake", "fake", 1)]
    assert phases() == both + [("D", "D", 1), ("Dreg", "D", cfg.r1_every)]
    assert phases(r1_gamma=0.0) == both + [("D", "D", 1)]
    assert phases(gan_weight=0.0) == both


@pytest.mark.parametrize("dm_loss", ["dmd", "sid"])
def test_distill_moves_the_student_toward_the_data(teacher, tmp_path, dm_loss):
    cfg = distill_config(teacher, kimg=100, tick_kimg=25, snapshot_kimg=100, lr_g=1e-3, fake_updates=2, dm_loss=dm_loss)
    cfg0, inputs = Distill.prepare(cfg, (2,), resumed=False)
    start = Model(resolve(cfg0, (2,)).model)
    Distill.build(start, Stats(), resolve(cfg0, (2,)), **inputs)
    before = swd_to_data(start.eval(), 1)
    run = train(cfg, run_dir=tmp_path / "run", quiet=True)
    after = swd_to_data(load_model(latest_checkpoint(run)), 1)
    # Measured (seed 0, CPU-B): 0.308 at the start (the teacher's denoiser at level 259, sigma 1,
    # applied to pure noise: points pulled toward the middle of the ring), 0.102 after 100 kimg
    # (0.136 without the discriminator).
    assert after < 0.8 * before, (before, after)
    stats = read_stats(run)
    for key in ("Loss/G/dm", "Loss/G/adv", "DM/grad_norm", "Loss/fake", "Loss/D", "D/logit/real", "D/logit/fake",
                "Grad/fake", "LR/fake"):
        assert key in stats[-1] and np.isfinite(stats[-1][key]), key


def test_the_discriminator_puts_the_one_step_students_samples_on_the_modes(teacher, tmp_path):
    """D judging clean samples (the default --gan-sigma 0): the one-step student's samples land on the
    mixture's modes; D judging nearly every level of noise (as before the option) leaves them between."""
    data = load_dataset("toy:8gaussians")

    def high_quality(**changes) -> float:
        cfg = distill_config(teacher, kimg=100, tick_kimg=25, snapshot_kimg=100, lr_g=1e-3, **changes)
        run = train(cfg, run_dir=tmp_path / ("-".join(f"{k}={v}" for k, v in changes.items()) or "defaults"), quiet=True)
        x = sample_batched(load_model(latest_checkpoint(run)), list(range(2000)), steps=1, sampler="gan")
        return mode_stats(x, data.modes, data.mode_std)["high_quality"]

    clean, everywhere = high_quality(), high_quality(gan_sigma=100.0)  # levels 0..954 of 1000
    # Measured (seed 0, CPU-B): high-quality share 0.27 (6 of 8 modes covered) against 0.02 (none;
    # 0.03 with no discriminator, --gan-weight 0).
    assert clean > max(3 * everywhere, 0.15), (clean, everywhere)


def test_a_regression_pair_starts_from_the_noise_sample_starts_the_students_chain_from(teacher):
    """Pair i's noise is where `hybrid sample` starts the student's chain of seed REGRESS_SEED_BASE + i,
    at its top level K: the student's x0 there is its NFE-1 sample of that seed (K = 2, not level 1)."""
    cfg, inputs = Distill.prepare(distill_config(teacher, regress_weight=1.0, regress_pairs=64), (2,), resumed=False)
    cfg = resolve(cfg.replace(model=dataclasses.replace(cfg.model, steps=2)), (2,))
    model = Model(cfg.model).eval()
    objective = Distill.build(model, Stats(), cfg, **inputs)
    pairs = objective._make_pairs(torch.device("cpu"))
    assert pairs.noise.shape == pairs.target.shape == (64, 2) and pairs.y is None
    seeds = list(range(REGRESS_SEED_BASE, REGRESS_SEED_BASE + 64))
    with torch.no_grad():
        x0 = model.predict_x0(model.G, pairs.noise, torch.full((64,), 2), None)
    assert_same_samples(x0, sample_batched(model, seeds, steps=1, sampler="gan", net=model.G))


def test_the_regression_pulls_the_students_one_step_samples_onto_the_teachers_ode_samples(teacher, tmp_path):
    """--regress-weight: the student's NFE-1 sample of seed REGRESS_SEED_BASE + i moves to the teacher's
    25-step DDIM sample of that seed, pair i's target, far closer than distribution matching alone takes it."""
    seeds = list(range(REGRESS_SEED_BASE, REGRESS_SEED_BASE + 256))
    t = load_teacher(teacher, (2,))
    target = sample_batched(t.model, seeds, steps=REGRESS_DDIM_STEPS, sampler="ddim", net=t.net)

    def distance(weight: float, name: str) -> float:
        cfg = distill_config(teacher, kimg=40, tick_kimg=20, snapshot_kimg=40, lr_g=1e-3, regress_weight=weight,
                             regress_pairs=256, gan_weight=0.0)
        run = train(cfg, run_dir=tmp_path / name, quiet=True)
        student = load_model(latest_checkpoint(run))
        return float((sample_batched(student, seeds, steps=1, sampler="gan") - target).square().sum(1).mean())

    # Measured (seed 0, CPU-B): mean squared distance 0.309 at the start (the teacher's denoiser at
    # level 259), 0.017 after 40 kimg with the regression, 0.166 without it.
    with_regression, dm_alone = distance(10.0, "regress"), distance(0.0, "dm")
    assert with_regression < 0.3 * dm_alone, (with_regression, dm_alone)


@pytest.mark.parametrize("regress, dm_loss, teacher_levels", [(0.0, "dmd", 0), (1.0, "dmd", 0), (0.0, "sid", 0),
                                                             (0.0, "dmd", 1)])
def test_a_resumed_distill_run_matches_an_uninterrupted_one_bitwise(teacher, tmp_path, hybrid, regress, dm_loss,
                                                                    teacher_levels):
    """Also with the regression on: a resumed run makes the same pairs and draws the same ones; and
    with a level kept as the teacher's."""
    changes = dict(model_changes={"steps": 2}, quiet=True)
    extra = dict(regress_weight=regress, regress_pairs=64, dm_loss=dm_loss, teacher_levels=teacher_levels)
    whole = train(distill_config(teacher, kimg=2, **extra), run_dir=tmp_path / "whole", **changes)
    part = train(distill_config(teacher, kimg=1, **extra), run_dir=tmp_path / "part", **changes)
    result = hybrid("train", "--run-dir", part, "--resume", "auto", "--kimg", "2", "--quiet")
    assert result.code == 0, result.err
    assert ("Loss/G/regress" in read_stats(part)[-1]) == bool(regress)
    a, b = load(latest_checkpoint(whole)), load(latest_checkpoint(part))
    assert a["progress"]["nimg"] == b["progress"]["nimg"] == 2048
    assert ("frozen" in a) == ("frozen" in b) == bool(teacher_levels)
    for key in ("G", "G_ema", "D", *(("frozen",) if teacher_levels else ())):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    for name, tensor in a["nets"]["fake"].items():
        assert torch.equal(tensor, b["nets"]["fake"][name]), f"fake.{name} differs after resume"
    for net in ("G", "D", "fake"):
        for pid, state in a["opt"][net]["state"].items():
            for k, v in state.items():
                assert torch.equal(v, b["opt"][net]["state"][pid][k]), f"opt {net} {pid} {k}"
    assert a["config"]["teacher_sha256"] == b["config"]["teacher_sha256"] and len(a["config"]["teacher_sha256"]) == 64


def test_the_discriminator_reads_the_teachers_features_by_default_for_images_and_weighs_them_more(teacher, image_teacher):
    def resolved(path: str, shape: tuple[int, ...], **changes) -> TrainConfig:
        base = digits_config(objective="distill") if len(shape) == 3 else distill_config(path)
        return resolve(Distill.prepare(base.replace(teacher=path, **changes), shape, resumed=False)[0], shape)

    def d_features(path: str, shape: tuple[int, ...], **changes) -> str:
        return resolved(path, shape, **changes).d_features

    assert d_features(image_teacher, (1, 16, 16)) == "teacher"
    assert d_features(image_teacher, (1, 16, 16), d_features="own") == "own"
    assert d_features(image_teacher, (1, 16, 16), gan_weight=0.0) == "own"  # no discriminator to read them
    assert d_features(teacher, (2,)) == "own"  # vectors: own by default (docs/distill.md#the-teachers-features-on-25-gaussians)
    assert d_features(teacher, (2,), d_features="teacher") == "teacher"
    # The GAN's default weight follows (docs/distill.md#the-gan-weight-on-the-teachers-features); a given one stands.
    assert resolved(image_teacher, (1, 16, 16)).gan_weight == 0.05
    assert resolved(image_teacher, (1, 16, 16), gan_weight=0.01).gan_weight == 0.01
    weight = {(t, f): resolved(t, s, d_features=f).gan_weight
              for t, s in ((image_teacher, (1, 16, 16)), (teacher, (2,))) for f in ("own", "teacher")}
    assert weight == {(image_teacher, "own"): 0.01, (image_teacher, "teacher"): 0.05,
                      (teacher, "own"): 1.0, (teacher, "teacher"): 1.0}


def test_a_run_from_before_d_features_resumes_with_its_own_discriminator(teacher, tmp_path, hybrid):
    """The same for a run from before --teacher-levels: it kept none."""
    run = train(distill_config(teacher, kimg=0.256), run_dir=tmp_path / "run", quiet=True)
    ckpt = latest_checkpoint(run)
    state = load(ckpt)
    state["config"]["d_features"] = state["config"]["teacher_levels"] = None  # as such runs recorded them
    del state["config"]["model"]["frozen_levels"], state["config"]["model"]["schedule_levels"]
    torch.save(state, ckpt)
    result = hybrid("train", "--run-dir", run, "--resume", "auto", "--kimg", "0.512", "--d-features", "own",
                    "--teacher-levels", "0", "--quiet")
    assert result.code == 0, result.err
    assert load(latest_checkpoint(run))["progress"]["nimg"] == 512


def test_a_discriminator_on_the_teachers_features_resumes_exactly_and_keeps_only_its_heads(image_teacher, tmp_path,
                                                                                          hybrid):
    """--d-features teacher: D is the objective's network (heads on the frozen teacher), R1 runs through the
    teacher (every second step here), and the student's file still samples on its own."""
    def config(kimg: float):
        return digits_config(objective="distill", teacher=image_teacher, d_features="teacher", kimg=kimg, r1_every=2)

    whole = train(config(0.256), run_dir=tmp_path / "whole", quiet=True)
    part = train(config(0.128), run_dir=tmp_path / "part", quiet=True)
    result = hybrid("train", "--run-dir", part, "--resume", "auto", "--kimg", "0.256", "--quiet")
    assert result.code == 0, result.err
    a, b = load(latest_checkpoint(whole)), load(latest_checkpoint(part))
    assert "D" not in a and a["config"]["model"]["discriminator"] is None and a["config"]["d_features"] == "teacher"
    assert {name.split(".")[0] for name in a["nets"]["D"]} == {"convs", "heads"}  # no copy of the teacher
    for key, state in (("G", a["G"]), ("D", a["nets"]["D"]), ("fake", a["nets"]["fake"])):
        other = b[key] if key == "G" else b["nets"][key]
        for name, tensor in state.items():
            assert torch.equal(tensor, other[name]), f"{key}.{name} differs after resume"
    for pid, state in a["opt"]["D"]["state"].items():
        assert all(torch.equal(v, b["opt"]["D"]["state"][pid][k]) for k, v in state.items())
    stats = read_stats(whole)[-1]
    assert "Loss/G/adv" in stats and "Loss/D/r1" in stats and stats["D/logit/real"] != stats["D/logit/fake"]
    result = hybrid("sample", latest_checkpoint(whole), "--num", "4", "--out", tmp_path / "x.npy", "--device", "cpu")
    assert result.code == 0, result.err
    assert np.load(tmp_path / "x.npy").shape == (4, 1, 16, 16)
    # The option is the run's: a resume cannot change it; a new run from its config can.
    result = hybrid("train", "--run-dir", part, "--resume", "auto", "--kimg", "0.384", "--d-features", "own")
    assert_user_error(result, "d_features")
    for option, own in (("teacher", False), ("own", True)):
        result = hybrid("train", "--config", whole / "config.json", "--d-features", option, "--kimg", "0.032",
                        "--run-dir", tmp_path / option, "--quiet")
        assert result.code == 0, result.err
        assert ("D" in load(latest_checkpoint(tmp_path / option))) == own


def test_a_teacher_without_encoder_features_refuses_d_features_teacher(teacher, monkeypatch):
    """A teacher whose network gives no encoder features (a diffusers UNet): one line, before any training."""
    real = load_teacher(teacher, (2,))
    featureless = SimpleNamespace(net=nn.Identity(), model=real.model, sha256=real.sha256)
    monkeypatch.setattr(objectives, "load_teacher", lambda *args: featureless)
    with pytest.raises(UserError, match="--d-features teacher.*has none"):
        Distill.prepare(distill_config(teacher, d_features="teacher"), (2,), resumed=False)
    assert Distill.prepare(distill_config(teacher), (2,), resumed=False)[0].d_features == "own"


def test_a_vector_teachers_features_feed_the_discriminator_with_d_features_teacher(teacher, tmp_path):
    """An MLP teacher's hidden features (each block's output) take linear heads; the run trains them alone."""
    run = train(distill_config(teacher, d_features="teacher", kimg=1, snapshot_kimg=0.512), run_dir=tmp_path / "run",
                quiet=True)
    first, state = (load(path) for path in sorted((run / "checkpoints").glob("checkpoint-*.pt")))
    assert "D" not in state and state["config"]["d_features"] == "teacher"
    student = state["config"]["model"]["generator"]  # the teacher's network
    width, blocks = student["channels"], student["num_blocks"]
    assert width == TEACHER_NET["channels"]
    heads = state["nets"]["D"]
    assert [tuple(heads[f"convs.{i}.weight"].shape) for i in range(blocks)] == [(64, width)] * blocks
    assert all(not torch.equal(tensor, first["nets"]["D"][name]) for name, tensor in heads.items())  # they train
    assert "Loss/G/adv" in read_stats(run)[-1]


def test_sample_and_eval_need_only_the_student_checkpoint(teacher, tmp_path, hybrid):
    run = train(distill_config(teacher), run_dir=tmp_path / "run", model_changes={"steps": 4}, quiet=True)
    student = tmp_path / "student.pt"
    shutil.copy(latest_checkpoint(run), student)
    shutil.rmtree(run)
    moved = tmp_path / "teacher-elsewhere.pt"
    shutil.move(teacher, moved)  # the teacher out of reach: sampling must not need it
    try:
        result = hybrid("sample", student, "--num", "32", "--out", tmp_path / "x.npy", "--device", "cpu")
        assert result.code == 0, result.err
        assert "NFE 4" in result.out and np.load(tmp_path / "x.npy").shape == (32, 2)
        result = hybrid("sample", student, "--num", "8", "--nfe", "1", "--out", tmp_path / "y.npy", "--device", "cpu")
        assert result.code == 0, result.err
        result = hybrid("eval", student, "--metrics", "modes,swd", "--num", "256", "--nfe", "2", "--device", "cpu",
                        "--json")
        assert result.code == 0, result.err
        assert '"swd"' in result.out
    finally:
        shutil.move(moved, teacher)


# ------------------------------------------------------------------------------------ bad input


def test_frozen_levels_belong_to_a_distilled_student():
    model = dataclasses.replace(default_model((2,), "hybrid"), frozen_levels=1)
    with pytest.raises(UserError, match="frozen_levels 1 in the model config"):
        resolve(toy_config(model=model), (2,))
    with pytest.raises(ValueError, match="frozen_levels"):
        Model(dataclasses.replace(model, frozen_levels=model.steps))


def test_distill_without_a_teacher_is_one_line(tmp_path, hybrid):
    result = hybrid("train", "--objective", "distill", "--data", "toy:8gaussians", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--teacher")
    assert not (tmp_path / "run").exists()


def test_a_teacher_that_is_not_a_ddpm_checkpoint_is_one_line(toy_run, tmp_path, hybrid):
    argv = ["train", "--objective", "distill", "--data", "toy:8gaussians", "--run-dir", tmp_path / "run"]
    assert_user_error(hybrid(*argv, "--teacher", latest_checkpoint(toy_run)), "--teacher", "--objective hybrid")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert_user_error(hybrid(*argv, "--teacher", garbage), "--teacher", str(garbage))
    assert_user_error(hybrid(*argv, "--teacher", tmp_path / "missing.pt"), "--teacher", "missing.pt")
    assert not (tmp_path / "run").exists()


def test_a_teacher_of_other_data_is_one_line(teacher, tmp_path, hybrid):
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "digits", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--teacher", "(2,)", "(1, 16, 16)")
    assert not (tmp_path / "run").exists()


def test_distill_options_elsewhere_are_one_line(teacher, tmp_path, hybrid):
    result = hybrid("train", "--data", "toy:8gaussians", "--teacher", teacher, "--run-dir", tmp_path / "run")
    assert_user_error(result, "--teacher", "--objective hybrid")
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians", "--schedule",
                    "cosine", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--schedule")
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians", "--steps", "4",
                    "--student-sigma", "0.001", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--steps 4", "--student-sigma")
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians", "--steps", "2",
                    "--teacher-levels", "2", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--teacher-levels 2", "raise --steps")
    for option in (("--channels", "16"), ("--prediction", "x0")):  # the kept level runs the teacher's own network
        result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians", "--steps",
                        "2", "--teacher-levels", "1", *option, "--run-dir", tmp_path / "run")
        assert_user_error(result, "--teacher-levels 1", "network options")
    for sigmas, message in (("1.0,x", "expected numbers > 0"), ("1.0,0", "expected numbers > 0"),
                            ("1.0,0.08", "2 sigmas for --steps 4")):
        result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians", "--steps",
                        "4", "--student-sigma", sigmas, "--run-dir", tmp_path / "run")
        assert_user_error(result, "--student-sigma", message)
    result = hybrid("train", "--objective", "ddpm", "--data", "toy:8gaussians", "--regress-weight", "1",
                    "--run-dir", tmp_path / "run")
    assert_user_error(result, "--regress-weight", "--objective distill")
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians",
                    "--regress-pairs", "64", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--regress-pairs", "--regress-weight")
    for option in ("--gan-sigma", "--dm-sigma-min"):
        result = hybrid("train", "--data", "toy:8gaussians", option, "0.5", "--run-dir", tmp_path / "run")
        assert_user_error(result, option, "--objective distill")
    result = hybrid("train", "--objective", "ddpm", "--data", "toy:8gaussians", "--dm-loss", "sid", "--run-dir",
                    tmp_path / "run")
    assert_user_error(result, "--dm-loss", "--objective distill")
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians",
                    "--gan-sigma", "-1", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--gan-sigma")
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians",
                    "--gan-sigma", "0.5", "--gan-weight", "0", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--gan-sigma", "--gan-weight 0")
    result = hybrid("train", "--objective", "distill", "--teacher", teacher, "--data", "toy:8gaussians",
                    "--d-features", "teacher", "--gan-weight", "0", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--d-features", "--gan-weight 0")
    result = hybrid("train", "--data", "toy:8gaussians", "--d-features", "teacher", "--run-dir", tmp_path / "run")
    assert_user_error(result, "--d-features", "--objective distill")
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_refuses_a_changed_teacher(teacher, tmp_path, hybrid):
    copy = tmp_path / "teacher.pt"
    shutil.copy(teacher, copy)
    run = train(distill_config(str(copy), kimg=0.256), run_dir=tmp_path / "run", quiet=True)
    state = load(copy)
    state["G_ema"] = {k: v + 1 for k, v in state["G_ema"].items()}
    torch.save(state, copy)
    before = latest_checkpoint(run).read_bytes()
    result = hybrid("train", "--run-dir", run, "--resume", "auto", "--kimg", "0.512")
    assert_user_error(result, "--teacher", str(copy), "changed")
    assert latest_checkpoint(run).read_bytes() == before
    # The teacher moved, unchanged: --teacher says where it is now.
    shutil.copy(teacher, tmp_path / "moved.pt")
    result = hybrid("train", "--run-dir", run, "--resume", "auto", "--kimg", "0.512", "--teacher", tmp_path / "moved.pt",
                    "--quiet")
    assert result.code == 0, result.err
    assert load(latest_checkpoint(run))["config"]["teacher"] == str(tmp_path / "moved.pt")


# ------------------------------------------------------------------------------------ diffusers


def diffusers_folder(folder, **scheduler):
    """A tiny randomly initialised UNet2DModel for 1x8x8 images saved to `folder`, with a DDPMScheduler
    of `scheduler`'s settings beside it. Returns (diffusers, unet, scheduler)."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    unet.save_pretrained(folder)
    sched = diffusers.DDPMScheduler(**scheduler)
    sched.save_pretrained(folder)
    return diffusers, unet, sched


def test_a_diffusers_unet_folder_is_a_teacher(tmp_path, hybrid):
    folder = tmp_path / "unet"
    diffusers, unet, _ = diffusers_folder(folder, num_train_timesteps=1000)
    teacher = load_teacher(str(folder), (1, 8, 8))
    assert teacher.model.cfg.steps == 1000 and teacher.model.cfg.schedule == "linear"
    x = torch.randn(4, 1, 8, 8)
    levels = torch.tensor([1, 10, 500, 1000])
    with torch.no_grad():
        ours = teacher.net(x, levels.float() / 1000, None)
        theirs = unet.eval()(x, levels - 1).sample  # diffusers' timestep k is our level k + 1
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000)
    torch.testing.assert_close(teacher.model.schedule.alpha_bar[1:].float(), scheduler.alphas_cumprod, atol=1e-6, rtol=0)
    # It distills: a short run on 8x8 images, and its student samples from its own file.
    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).uniform(-1, 1, (64, 1, 8, 8)).astype(np.float32))
    result = hybrid("train", "--objective", "distill", "--teacher", folder, "--data", data, "--kimg", "0.064",
                    "--batch", "16", "--run-dir", tmp_path / "run", "--device", "cpu", "--precision", "fp32", "--quiet")
    assert result.code == 0, result.err
    result = hybrid("sample", latest_checkpoint(tmp_path / "run"), "--num", "4", "--out", tmp_path / "x.npy", "--device", "cpu")
    assert result.code == 0, result.err
    # Its discriminator is its own network: a diffusers UNet does not give its encoder's features.
    result = hybrid("train", "--objective", "distill", "--teacher", folder, "--data", data, "--d-features", "teacher",
                    "--run-dir", tmp_path / "refused")
    assert_user_error(result, "--d-features teacher", str(folder))
    result = hybrid("train", "--objective", "distill", "--teacher", folder, "--data", data, "--steps", "2",
                    "--teacher-levels", "1", "--run-dir", tmp_path / "refused")
    assert_user_error(result, "--teacher-levels 1", "diffusers")
    assert not (tmp_path / "refused").exists()



@pytest.mark.parametrize("T", [1000, 250])
def test_a_diffusers_cosine_teachers_chain_is_its_schedulers(tmp_path, T):
    _, _, sched = diffusers_folder(tmp_path / "unet", num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    teacher = load_teacher(str(tmp_path / "unet"), (1, 8, 8))
    assert teacher.model.cfg.steps == T and teacher.model.cfg.schedule == "cosine"
    torch.testing.assert_close(teacher.model.schedule.alpha_bar[1:].float(), sched.alphas_cumprod, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scheduler", [dict(num_train_timesteps=500), dict(beta_end=0.03), dict(beta_schedule="scaled_linear"),
                                       dict(prediction_type="v_prediction")])
def test_a_diffusers_teacher_whose_chain_we_do_not_follow_is_refused(tmp_path, scheduler):
    """A linear schedule over other than 1000 steps (ours rescales the betas, diffusers' does not), other
    betas, another schedule or parameterisation: one line, before any training."""
    diffusers_folder(tmp_path / "unet", **scheduler)
    with pytest.raises(UserError, match="only epsilon-predicting teachers"):
        load_teacher(str(tmp_path / "unet"), (1, 8, 8))
