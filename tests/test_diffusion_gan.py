"""--objective diffusion-gan: the adaptive T (scripted discriminators), what D is shown, exact
resume, sampling at NFE 1, stats, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import TINY_NET, TINY_UNET, assert_user_error, digits_config, latest_checkpoint, read_stats, toy_config
from hybridgan.hybrid.checkpoint import load, load_model
from hybridgan.hybrid.model import Model
from hybridgan.hybrid.samplers import sample
from hybridgan.metrics.report import write_report
from hybridgan.training import train
from hybridgan.training.config import TrainConfig, resolve
from hybridgan.training.objectives import DG_INTERVAL, DiffusionGAN, diffusion_gan_alpha_bar, diffusion_gan_level_weights
from hybridgan.training.stats import Stats


def dgan_config(**changes) -> TrainConfig:
    return toy_config(objective="diffusion-gan", **changes)


class ScriptedD(nn.Module):
    """A discriminator whose logits are +1 on a share `positive` of each batch (its first rows)
    and -1 on the rest, whatever it is shown; it records its inputs."""

    def __init__(self, positive: float) -> None:
        super().__init__()
        self.positive, self.calls = positive, []

    def forward(self, x, x_t, t, y=None):
        self.calls.append((x, x_t, t, y))
        k = round(self.positive * len(x))
        return torch.cat([torch.ones(k), -torch.ones(len(x) - k)]) + 0 * x.sum()


def scripted_objective(positive: float, **options) -> tuple[DiffusionGAN, Model]:
    cfg = resolve(dgan_config(), (2,), TINY_NET)
    model = Model(cfg.model)
    model.D = ScriptedD(positive)
    return DiffusionGAN(model, Stats(), batch=64, **options), model


def d_steps(objective: DiffusionGAN, n: int, seed: int = 0) -> None:
    """n D phases on fresh draws of toy data, as the trainer runs them."""
    gen = torch.Generator().manual_seed(seed)
    phase = objective.phases[0]
    assert phase.name == "D"
    for _ in range(n):
        batch = objective.draw(torch.randn(64, 2, generator=gen), gen)
        objective.begin(batch)
        objective.loss(phase, batch)


def test_t_moves_up_when_d_overfits_and_down_when_it_does_not():
    # ada_kimg 1 at batch 64: each adjustment moves p by 64 * 4 / 1000 = 0.256 of T's range 10..100.
    objective, model = scripted_objective(0.9, target=0.6, t_min=10, t_max=100, ada_kimg=1)  # r_d = 0.8 > 0.6
    assert objective.T == 10, "T starts at t_min"
    d_steps(objective, DG_INTERVAL - 1)
    assert objective.T == 10, "T changes only every 4 D steps"
    d_steps(objective, 1)
    seen = [objective.T]
    for _ in range(4):
        d_steps(objective, DG_INTERVAL)
        seen.append(objective.T)
    assert seen == [10 + round(0.256 * 90), 10 + round(0.512 * 90), 10 + round(0.768 * 90), 100, 100], seen

    model.D.positive = 0.7  # r_d = 0.4: below the target, D does not overfit
    seen = []
    for _ in range(5):
        d_steps(objective, DG_INTERVAL)
        seen.append(objective.T)
    assert seen == [10 + round(0.744 * 90), 10 + round(0.488 * 90), 10 + round(0.232 * 90), 10, 10], seen


def test_r_d_pools_every_d_step_since_the_last_adjustment():
    """Three steps at r_d 1 and one at -1 average 0.5 < 0.6: T falls (from the middle of its range);
    the steps judged alone would have raised it three times."""
    objective, model = scripted_objective(1.0, target=0.6, t_min=10, t_max=100, ada_kimg=1)
    objective.p = 0.5
    d_steps(objective, DG_INTERVAL - 1)
    model.D.positive = 0.0
    d_steps(objective, 1)
    assert objective.p == pytest.approx(0.5 - 0.256) and objective.T == 10 + round((0.5 - 0.256) * 90)


def test_r_d_pools_the_signs_of_every_rank(monkeypatch):
    """Each rank counts sign(D(real)) over its own rows; T moves by the sums over all ranks, so every
    rank moves it alike. Here a second rank whose D says -1 everywhere pulls r_d from 1 to 0."""
    from hybridgan.training import distributed

    def with_a_second_rank(sums, counts):
        return {k: float(v) - float(counts[k]) for k, v in sums.items()}, {k: 2 * float(v) for k, v in counts.items()}

    monkeypatch.setattr(distributed, "sum_named", with_a_second_rank)
    objective, _ = scripted_objective(1.0, target=0.6, t_min=10, t_max=100, ada_kimg=1)
    objective.p = 0.5
    d_steps(objective, DG_INTERVAL)
    assert objective.p == pytest.approx(0.5 - 0.256), "T rose on this rank's signs alone"


def test_d_judges_real_and_fake_diffused_alike_at_t_over_t_max():
    objective, model = scripted_objective(1.0, t_min=10, t_max=100, noise=0.5)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, generator=gen)
    batch = objective.draw(x0, gen)
    objective.begin(batch)
    objective.loss(objective.phases[0], batch)
    (real, real_pair, t_real, _), (fake, fake_pair, t_fake, _) = model.D.calls
    a = diffusion_gan_alpha_bar(10).float()[batch.t][:, None]
    torch.testing.assert_close(real, a.sqrt() * x0 + (1 - a).sqrt() * 0.5 * batch.n_real)
    torch.testing.assert_close(fake, a.sqrt() * batch.x0_pred + (1 - a).sqrt() * 0.5 * batch.n_fake)
    assert real_pair is real and fake_pair is fake  # one diffused sample, beside itself
    assert torch.equal(t_real, batch.t.float() / 100) and torch.equal(t_fake, t_real)
    undiffused = batch.t == 0
    assert undiffused.any() and torch.equal(real[undiffused], x0[undiffused])
    # The generator's sample is G at the chain's one level from the step's noise, as `hybrid sample` draws it.
    torch.testing.assert_close(batch.x0_pred, model.G(batch.x_T, torch.ones(64), batch.z))


def test_the_class_reaches_the_generator_and_the_discriminator_of_a_conditional_run():
    cfg = resolve(dgan_config(cond=True), (2,), TINY_NET, classes=(0.5, 0.5))
    model = Model(cfg.model)
    model.D = ScriptedD(1.0)
    objective = DiffusionGAN(model, Stats(), batch=64)
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=gen)
    batch = objective.draw(torch.randn(64, 2, generator=gen), gen, y)
    objective.begin(batch)
    for phase in objective.phases:
        objective.loss(phase, batch)
    assert len(model.D.calls) == 4 and all(call[3] is y for call in model.D.calls), "D phase (2), Dreg, G"
    torch.testing.assert_close(batch.x0_pred, model.G(batch.x_T, torch.ones(64), batch.z, y))
    assert not torch.allclose(batch.x0_pred, model.G(batch.x_T, torch.ones(64), batch.z, 1 - y))


def test_the_chain_and_the_levels_are_the_papers():
    # Ho et al.'s chain at T = 1000 (alpha_bar_T 4e-5); the same betas over 10 steps keep most of the signal.
    assert diffusion_gan_alpha_bar(1000)[-1].item() == pytest.approx(4.04e-5, rel=0.01)
    assert diffusion_gan_alpha_bar(10)[-1].item() == pytest.approx(math.prod(1 - (1e-4 + k * (2e-2 - 1e-4) / 9)
                                                                           for k in range(10)))
    assert diffusion_gan_alpha_bar(10)[0] == 1
    w = diffusion_gan_level_weights(4)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.05, 0.1, 0.15, 0.2], dtype=torch.float64))
    objective, _ = scripted_objective(1.0, t_min=4, t_max=4)
    gen = torch.Generator().manual_seed(0)
    t = torch.cat([objective.draw(torch.zeros(64, 2), gen).t for _ in range(200)])  # 12800 draws
    share = torch.bincount(t, minlength=5).double() / len(t)
    torch.testing.assert_close(share, w, atol=0.015, rtol=0)  # 3.5 binomial std at most


def test_a_resumed_run_matches_an_uninterrupted_one_bitwise(tmp_path, hybrid):
    # Batch 96: the checkpoint at 1 kimg falls after 11 steps, in the middle of an interval of 4, so
    # the pooled signs are part of what must resume; dg_kimg 2 and a low target move T fast.
    options = dict(batch=96, dg_kimg=2.0, dg_t_max=200, dg_target=0.3)
    whole = train(dgan_config(kimg=2, **options), run_dir=tmp_path / "whole", model_changes=TINY_NET, quiet=True)
    part = train(dgan_config(kimg=1, **options), run_dir=tmp_path / "part", model_changes=TINY_NET, quiet=True)
    middle = load(latest_checkpoint(part))["objective"]
    assert middle["count"] == 3 * 96 and middle["p"] > 0, middle
    result = hybrid("train", "--run-dir", part, "--resume", "auto", "--kimg", "2", "--dg-target", "0.5")
    assert_user_error(result, "cannot change dg_target of a run")
    result = hybrid("train", "--run-dir", part, "--resume", "auto", "--kimg", "2", "--quiet")
    assert result.code == 0, result.err

    a, b = load(latest_checkpoint(whole)), load(latest_checkpoint(part))
    assert a["progress"]["step"] == b["progress"]["step"] == 21
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert a["objective"]["p"] == b["objective"]["p"] and torch.equal(a["objective"]["signs"], b["objective"]["signs"])
    assert [r["DiffusionGAN/T"] for r in read_stats(part)] == [r["DiffusionGAN/T"] for r in read_stats(whole)]


def test_stats_tensorboard_and_report_show_t_and_r_d_and_the_checkpoint_samples_at_nfe_1(tmp_path, hybrid, toy_run):
    run = train(dgan_config(kimg=1, dg_kimg=1.0, dg_target=0.3), run_dir=tmp_path / "run", model_changes=TINY_NET,
                quiet=True)
    stats = read_stats(run)
    assert all(10 <= r["DiffusionGAN/T"] <= 1000 and -1 <= r["DiffusionGAN/r_d"] <= 1 for r in stats), stats
    assert stats[-1]["DiffusionGAN/T"] > 10, "T never moved at dg_kimg 1 and target 0.3"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run)).Reload()
    assert {"DiffusionGAN/T", "DiffusionGAN/r_d"} <= set(events.Tags()["scalars"])
    (layout,) = events.Tensors("custom_scalars__config__")
    assert b"^DiffusionGAN/T$" in layout.tensor_proto.string_val[0], "a chart of T in the Custom Scalars tab"
    paths = write_report([run, toy_run], tmp_path / "report")
    md = paths.markdown.read_text()
    assert "](diffusion-gan.png)" in md and (paths.markdown.parent / "diffusion-gan.png").stat().st_size > 1000
    assert "| dg_target | 0.3 | – |" in md and "| dg_t_max | 1000 | – |" in md
    alone = write_report([toy_run], tmp_path / "hybrid-report")
    assert "diffusion-gan" not in alone.markdown.read_text(), "no diffusion-gan plot or rows without a diffusion-gan run"

    ckpt = latest_checkpoint(run)
    model = load_model(ckpt)
    assert (model.cfg.steps, model.cfg.sampler, model.cfg.prediction) == (1, "gan", "x0")
    result = hybrid("sample", ckpt, "--num", "8", "--out", tmp_path / "s.npy")
    assert result.code == 0 and "NFE 1" in result.out, result.err
    result = hybrid("sample", ckpt, "--num", "8", "--nfe", "2", "--out", tmp_path / "s2.npy")
    assert_user_error(result, "NFE 2", "T = 1")


def test_a_conditional_image_run_samples_a_row_per_class(tmp_path, hybrid):
    run = train(digits_config(objective="diffusion-gan", cond=True), run_dir=tmp_path / "run", model_changes=TINY_UNET,
                quiet=True)
    result = hybrid("sample", latest_checkpoint(run), "--classes", "0-9", "--num", "2", "--out", tmp_path / "grid.png")
    assert result.code == 0 and "20 samples (gan, NFE 1)" in result.out, result.err


def test_diffusion_gan_moves_the_generator_toward_the_data(tmp_path):
    """The 8 Gaussians lie on a circle of radius 1.41; the untrained generator's samples near 0.
    After 16 kimg the samples' mean radius is well on its way out (measured over seeds 0-4: from
    0.23-0.45 to 0.95-1.30; seed 0 is the slowest, 0.23 -> 0.95)."""
    run = train(dgan_config(kimg=16, tick_kimg=8, snapshot_kimg=16), run_dir=tmp_path / "run", model_changes=TINY_NET,
                quiet=True)
    trained = load_model(latest_checkpoint(run))
    torch.manual_seed(0)  # the untrained weights this seed's run started from
    untrained = Model(trained.cfg)
    seeds = list(range(1000))
    before, after = (sample(m, seeds).norm(dim=1).mean().item() for m in (untrained, trained))
    assert abs(after - math.sqrt(2)) < 0.6 * abs(before - math.sqrt(2)), (before, after)


@pytest.mark.parametrize("argv, says", [
    (["--dg-target", "0.5"], "only --objective diffusion-gan uses it"),
    (["--objective", "diffusion-gan", "--steps", "4"], "--steps 4: diffusion-gan's generator"),
    (["--objective", "diffusion-gan", "--prediction", "eps"], "--prediction eps"),
    (["--objective", "diffusion-gan", "--d-pair", "x0"], "--d-pair"),
    (["--objective", "diffusion-gan", "--d-noise", "0.1"], "--d-noise"),
    (["--objective", "diffusion-gan", "--dg-t-min", "50", "--dg-t-max", "20"], "--dg-t-min 50 above --dg-t-max 20"),
    (["--objective", "diffusion-gan", "--dg-target", "1.5"], "--dg-target"),
])
def test_bad_diffusion_gan_options_are_one_line(tmp_path, hybrid, argv, says):
    result = hybrid("train", "--data", "toy:8gaussians", "--kimg", "0.1", "--run-dir", tmp_path / "run", *argv)
    assert_user_error(result, says)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("key, bad", [("dg_target", -0.1), ("dg_t_max", 0), ("dg_t_min", 2.5), ("dg_kimg", 0),
                                      ("dg_noise", "x")])
def test_bad_diffusion_gan_values_in_a_config_are_one_line(tmp_path, hybrid, key, bad):
    import json

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": "toy:8gaussians", "objective": "diffusion-gan", key: bad}))
    result = hybrid("train", "--config", config, "--kimg", "0.1", "--run-dir", tmp_path / "run")
    assert_user_error(result, key)
