"""Training: each objective learns, the run directory and TensorBoard records, --config, resume."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_NET, TINY_UNET, assert_user_error, digits_config, latest_checkpoint, log_messages, read_stats, toy_config
from hybridgan.hybrid.checkpoint import list_checkpoints, load, load_model
from hybridgan.hybrid.devices import resolve_precision
from hybridgan.hybrid.images import read_png
from hybridgan.hybrid.model import Model, ModelConfig
from hybridgan.hybrid.runfiles import read_jsonl
from hybridgan.training import train
from hybridgan.training.config import read_config, resolve
from hybridgan.training.objectives import OBJECTIVES, translate
from hybridgan.training.stats import Stats
from hybridgan.training.trainer import Trainer, _resumed_config


def mean(records: list[dict], key: str) -> float:
    return sum(r[key] for r in records) / len(records)


def margin(records: list[dict]) -> float:
    """How far the discriminator's logits on real pairs sit above those on fakes."""
    return mean(records, "D/logit/real") - mean(records, "D/logit/fake")


# ------------------------------------------------------------------------------- objectives learn


def test_ddpm_loss_falls(tmp_path):
    # A 16-wide MLP learns eps slowly; 32 wide shows it within 8 kimg (measured over seeds 0-4:
    # the last ticks sit at 0.39-0.45 of the first).
    run = train(toy_config(objective="ddpm", kimg=8, snapshot_kimg=8), run_dir=tmp_path / "run",
                model_changes={"channels": 32}, quiet=True)
    stats = read_stats(run)
    assert len(stats) == 16
    first, last = stats[0]["Loss/G"], mean(stats[-4:], "Loss/G")
    assert 0.8 < first < 1.3, "an untrained eps model should start near the noise variance, 1"
    assert last < 0.6 * first, f"Loss/G {first:.3f} -> {last:.3f}"


class Fixed(torch.nn.Module):
    """A generator that always outputs the same tensor."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = out

    def forward(self, x_t, t, z):
        return self.out


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddpm_regresses_what_the_generator_predicts_and_predict_x0_inverts_it(prediction):
    """A generator that outputs exactly its target (the noise, x_0, or v) has zero denoising
    loss, and the model turns that output back into the true x_0 at every level."""
    cfg = resolve(toy_config(objective="ddpm"), (2,), model_changes={**TINY_NET, "prediction": prediction, "steps": 50})
    model = Model(cfg.model)
    objective = OBJECTIVES["ddpm"](model, Stats())
    batch = objective.draw(torch.randn(64, 2), torch.Generator().manual_seed(0))
    sched = model.schedule
    target = {"eps": batch.noise, "x0": batch.x0, "v": sched.v_target(batch.x0, batch.t, batch.noise)}[prediction]
    model.G = Fixed(target)
    assert objective.loss(objective.phases[0], batch).item() < 1e-10
    torch.testing.assert_close(model.predict_x0(model.G, batch.x_t, batch.t, None), batch.x0, atol=1e-4, rtol=0)
    model.G = Fixed(target + 0.1)
    assert objective.loss(objective.phases[0], batch).item() == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize("objective", ["hybrid", "ddgan", "diffusion-gan"])
def test_r1_gamma_zero_runs_no_r1_phase(tmp_path, objective):
    """--r1-gamma 0 drops the Dreg phase: a zero penalty's Adam step would still move D by its
    momentum. With R1, the same run reports it on step 0 (lazy R1 runs on steps 0, 16, ...)."""
    reported = {}
    for gamma in (0.0, 0.02):
        run = train(toy_config(objective=objective, kimg=0.128, tick_kimg=0.064, snapshot_kimg=0.128, r1_gamma=gamma),
                    run_dir=tmp_path / f"g{gamma}", model_changes=TINY_NET, quiet=True)
        stats = read_stats(run)
        assert all("Loss/D" in r for r in stats), "D trains either way"
        reported[gamma] = any("Loss/Dreg" in r or "Loss/D/r1" in r for r in stats)
    assert reported == {0.0: False, 0.02: True}


@pytest.mark.parametrize("d_pair", ["x_prev", "x0"])
def test_ddgan_discriminator_learns(tmp_path, d_pair):
    run = train(toy_config(objective="ddgan", kimg=8, snapshot_kimg=8, d_pair=d_pair), run_dir=tmp_path / "run",
                model_changes=TINY_NET, quiet=True)
    assert read_config(run / "config.json").d_pair == d_pair
    stats = read_stats(run)
    first, last = margin(stats[:1]), margin(stats[-4:])
    assert last > 0.1 and last > first + 0.05, f"D logit margin {first:.3f} -> {last:.3f}"
    assert "Loss/G/denoise/t1" not in stats[-1], "ddgan has no denoising term"
    assert all(math.isfinite(r["Loss/G"]) and math.isfinite(r["Loss/D"]) for r in stats)


def test_hybrid_discriminator_learns_and_the_denoising_term_reaches_the_generator(tmp_path):
    """Two hybrid runs from the same seed, denoising weight 0 and 1. Both report the denoising
    loss; only the weighted one may pull it down. (Measured over seeds 0-4 after 8 kimg at level 1:
    1.55-1.77 unweighted, 0.92-1.01 weighted.) Within 8 kimg the adversarial term alone drives
    the x_0 estimate away from the data, so "the loss falls" is not a fair test of one run."""
    level1 = {}
    for weight in (0.0, 1.0):
        # lr_g pinned to the rate these numbers were measured with (the vector default is now 2e-4).
        run = train(toy_config(kimg=8, snapshot_kimg=8, denoise_weight=weight, lr_g=5e-4), run_dir=tmp_path / f"w{weight}",
                    model_changes=TINY_NET, quiet=True)
        stats = read_stats(run)
        first, last = margin(stats[:1]), margin(stats[-4:])
        assert last > 0.1 and last > first + 0.05, f"D logit margin {first:.3f} -> {last:.3f}"
        assert "Loss/Dreg" in stats[0] and "Loss/D/r1" in stats[0], "lazy R1 runs on step 0"
        level1[weight] = mean(stats[-4:], "Loss/G/denoise/t1")
    assert level1[1.0] < 0.75 * level1[0.0], level1


@pytest.mark.parametrize("d_pair", ["x_prev", "x0"])
def test_the_discriminator_judges_the_chosen_pair(d_pair):
    """Every ddgan phase reads the pair d_pair names and nothing of the other: with the other
    pair poisoned by NaN (after the step's fake was drawn), every loss stays finite."""
    cfg = resolve(toy_config(objective="ddgan", d_pair=d_pair), (2,), model_changes=TINY_NET)
    objective = OBJECTIVES["ddgan"](Model(cfg.model), Stats(), r1_gamma=1.0, r1_every=1, d_pair=d_pair)
    batch = objective.draw(torch.randn(16, 2), torch.Generator().manual_seed(0))
    objective.begin(batch)
    others = ("x_prev",) if d_pair == "x0" else ("x0", "x0_pred")
    if d_pair == "x0":
        assert batch.fake_prev is None, "the fake x_{t-1} is not computed where D judges x_0"
    for name in others:
        setattr(batch, name, torch.full_like(getattr(batch, name), math.nan))
    for phase in objective.phases:
        assert torch.isfinite(objective.loss(phase, batch)), phase.name


@pytest.mark.parametrize("data_shape, mbstd", [((1, 16, 16), 0), ((1, 16, 16), 4), ((2,), 0)])
def test_the_d_phase_judges_real_and_fake_in_one_call_as_two_would(data_shape, mbstd):
    """The D phase stacks the real and the fake pair into one call of D: the same logits, and in
    fp32 D's gradient to float rounding (one reduction over both halves instead of two added).
    With the minibatch standard deviation it keeps two calls, whose groups must not mix them."""
    base = digits_config() if len(data_shape) == 3 else toy_config()
    cfg = resolve(base, data_shape, model_changes=TINY_UNET if len(data_shape) == 3 else TINY_NET)
    model_cfg = dataclasses.replace(cfg.model, discriminator=dataclasses.replace(cfg.model.discriminator, mbstd_group=mbstd))
    torch.manual_seed(0)
    objective = OBJECTIVES["hybrid"](Model(model_cfg), Stats(), d_pair=cfg.d_pair)
    D = objective.model.D
    batch = objective.draw(torch.rand(16, *data_shape) * 2 - 1, torch.Generator().manual_seed(0))
    objective.begin(batch)
    calls = []
    D.register_forward_hook(lambda mod, args, out: calls.append(len(args[0])))
    loss = objective.loss(objective.phases[0], batch)
    assert calls == ([32] if not mbstd else [16, 16])
    grad = torch.autograd.grad(loss, list(D.parameters()))
    (real_x, real_xt), (fake_x, fake_xt) = objective._pair(batch)
    real, fake = objective._d(real_x, real_xt, batch), objective._d(fake_x.detach(), fake_xt, batch)
    two_calls = torch.nn.functional.softplus(fake).mean() + torch.nn.functional.softplus(-real).mean()
    torch.testing.assert_close(loss, two_calls, rtol=0, atol=0)
    expected = torch.autograd.grad(two_calls, list(D.parameters()))
    flat, flat_expected = torch.cat([g.flatten() for g in grad]), torch.cat([g.flatten() for g in expected])
    # The real and the fake half pull D's weights in opposite directions: their sum cancels, so
    # rounding shows at ~1e-5 of its norm (measured 1-2e-5 on digits, 1e-6 on the toy).
    assert (flat - flat_expected).norm() <= 1e-4 * flat_expected.norm()


def test_a_runs_d_noise_reaches_the_discriminator(tmp_path, monkeypatch):
    """--d-noise goes from the config through the trainer into every step's pair, and is recorded."""
    from hybridgan.training.objectives import DDGAN

    noise_std, real_pair = [], DDGAN._pair

    def recording_pair(self, batch):
        noise_std.append(None if batch.d_noise is None else self.d_noise * batch.d_noise.std().item())
        return real_pair(self, batch)

    monkeypatch.setattr(DDGAN, "_pair", recording_pair)
    run = train(toy_config(kimg=0.128, d_noise=0.2), run_dir=tmp_path / "run", model_changes=TINY_NET, quiet=True)
    assert noise_std and all(s is not None and abs(s - 0.2) < 0.03 for s in noise_std), noise_std
    assert read_config(run / "config.json").d_noise == 0.2


@pytest.mark.parametrize("d_pair", ["x_prev", "x0"])
def test_instance_noise_reaches_both_samples_the_discriminator_judges(d_pair):
    """With d_noise, D sees the real and the fake pair each plus the same sigma * n, and R1
    is taken at the noisy real; the step's other draws are those of a run without it."""
    cfg = resolve(toy_config(objective="hybrid", d_pair=d_pair), (2,), model_changes=TINY_NET)
    seen = []

    def objective(d_noise):
        obj = OBJECTIVES["hybrid"](Model(cfg.model), Stats(), r1_gamma=1.0, r1_every=1, d_pair=d_pair, d_noise=d_noise)
        obj.model.D.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
        batch = obj.draw(torch.randn(4096, 2, generator=torch.Generator().manual_seed(1)), torch.Generator().manual_seed(0))
        obj.begin(batch)
        return obj, batch

    plain, plain_batch = objective(0.0)
    assert plain_batch.d_noise is None
    noisy, batch = objective(0.3)
    for name in ("t", "x_t", "z", "noise"):
        assert torch.equal(getattr(batch, name), getattr(plain_batch, name)), f"{name} drawn differently"
    seen.clear()
    for phase in noisy.phases:
        noisy.loss(phase, batch)
    both_in, r1_in, g_in = seen  # the D phase judges the real and the fake sample in one call
    real_in, fake_in = both_in.chunk(2)
    real, fake = (batch.x0, batch.x0_pred) if d_pair == "x0" else (batch.x_prev, batch.fake_prev)
    noise = real_in - real
    assert abs(noise.std().item() - 0.3) < 0.01, noise.std()
    torch.testing.assert_close(fake_in - fake.detach(), noise)
    torch.testing.assert_close(r1_in, real_in)
    torch.testing.assert_close(g_in, fake_in)


def test_translate_moves_each_image_by_its_own_shift_and_passes_gradients():
    images = torch.randn(3, 2, 5, 5, requires_grad=True)
    shift = torch.tensor([[0, 0], [1, -2], [-1, 1]])
    moved = translate(images, shift)
    assert moved.shape == images.shape
    torch.testing.assert_close(moved[0], images[0])
    torch.testing.assert_close(moved[1, :, 1:, :3], images[1, :, :4, 2:])
    assert (moved[1, :, 0] == 0).all() and (moved[1, :, :, 3:] == 0).all(), "zeros shifted in"
    torch.testing.assert_close(moved[2, :, :4, 1:], images[2, :, 1:, :4])
    moved.sum().backward()
    assert images.grad[0].eq(1).all() and images.grad[1, :, 4].eq(0).all(), "gradients follow the pixels that stay"
    assert translate(images, torch.zeros(3, 2, dtype=torch.long)) is images
    # With the reach given (no host sync on a GPU): the same images, for any reach the shifts fit in.
    assert torch.equal(translate(images, shift, reach=2), moved) and torch.equal(translate(images, shift, reach=4), moved)
    assert torch.equal(translate(images, torch.zeros(3, 2, dtype=torch.long), reach=1), images)


@pytest.mark.parametrize("d_pair", ["x_prev", "x0"])
def test_d_augment_moves_each_pair_d_judges_as_one(d_pair):
    """With translate, D sees the real sample and its x_t moved by one shift, the fake and its
    x_t by another, in every phase (R1 at the moved real pair); the step's other draws are
    those of a run without it."""
    cfg = resolve(digits_config(d_pair=d_pair), (1, 16, 16), model_changes=TINY_UNET)
    seen = []

    def objective(d_augment):
        obj = OBJECTIVES["hybrid"](Model(cfg.model), Stats(), r1_gamma=1.0, r1_every=1, d_pair=d_pair,
                                   d_augment=d_augment)
        obj.model.D.register_forward_hook(lambda mod, args, out: seen.append([a.detach().clone() for a in args[:2]]))
        x0 = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
        batch = obj.draw(x0, torch.Generator().manual_seed(0))
        obj.begin(batch)
        return obj, batch

    plain, plain_batch = objective("none")
    assert plain_batch.shifts is None
    augmented, batch = objective("translate")
    for name in ("t", "x_t", "z", "noise"):
        assert torch.equal(getattr(batch, name), getattr(plain_batch, name)), f"{name} drawn differently"
    assert batch.shifts.shape == (2, 8, 2) and batch.shifts.abs().max() == 2 and (batch.shifts[0] != batch.shifts[1]).any()
    seen.clear()
    for phase in augmented.phases:
        augmented.loss(phase, batch)
    (both_in, both_xt), (r1_in, r1_xt), (g_in, g_xt) = seen  # the D phase: the real and the fake pair in one call
    (real_in, fake_in), (real_xt, fake_xt) = both_in.chunk(2), both_xt.chunk(2)
    real, fake = (batch.x0, batch.x0_pred) if d_pair == "x0" else (batch.x_prev, batch.fake_prev)
    torch.testing.assert_close(real_in, translate(real, batch.shifts[0]))
    torch.testing.assert_close(real_xt, translate(batch.x_t, batch.shifts[0]))
    torch.testing.assert_close(fake_in, translate(fake, batch.shifts[1]).detach())
    torch.testing.assert_close(fake_xt, translate(batch.x_t, batch.shifts[1]))
    torch.testing.assert_close(r1_in, real_in)
    torch.testing.assert_close(r1_xt, real_xt)
    torch.testing.assert_close(g_in, fake_in)
    torch.testing.assert_close(g_xt, fake_xt)


def test_the_hybrid_on_images_judges_the_clean_estimate_by_default():
    assert resolve(digits_config(), (1, 16, 16)).d_pair == "x0"
    assert resolve(digits_config(objective="ddgan"), (1, 16, 16)).d_pair == "x_prev", "ddgan keeps its published pairs"
    assert resolve(toy_config(), (2,)).d_pair == "x_prev"
    assert resolve(digits_config(d_pair="x_prev"), (1, 16, 16)).d_pair == "x_prev", "an explicit choice stands"


def test_image_defaults_of_the_hybrid_and_what_keeps_its_own():
    hybrid = resolve(digits_config(), (1, 16, 16))
    assert (hybrid.model.schedule, hybrid.denoise_weight, hybrid.r1_gamma) == ("cosine", 0.03, 0.005)
    ddgan = resolve(digits_config(objective="ddgan"), (1, 16, 16))
    assert (ddgan.model.schedule, ddgan.r1_gamma) == ("vp", 0.02), "ddgan keeps the published chain and R1"
    toy = resolve(toy_config(), (2,))
    assert (toy.model.schedule, toy.denoise_weight, toy.r1_gamma) == ("logsnr", 0.1, 0.02)
    assert resolve(toy_config(objective="ddpm"), (2,)).model.schedule == "linear"
    chosen = resolve(digits_config(r1_gamma=0.0, denoise_weight=0.01), (1, 16, 16))
    assert (chosen.r1_gamma, chosen.denoise_weight) == (0.0, 0.01), "an explicit choice stands, zero included"
    assert (hybrid.ema_kimg, ddgan.ema_kimg, toy.ema_kimg) == (5.0, 10.0, 10.0)
    assert resolve(digits_config(objective="ddpm"), (1, 16, 16)).ema_kimg == 10.0
    assert resolve(digits_config(ema_kimg=20.0), (1, 16, 16)).ema_kimg == 20.0


# ---------------------------------------------------------------------------------- run directory


def test_run_directory_layout(toy_run):
    names = {p.name for p in toy_run.iterdir()}
    for expected in ("config.json", "log.txt", "stats.jsonl", "samples", "checkpoints"):
        assert expected in names
    assert any(n.startswith("events.out.tfevents.") for n in names)
    assert not [n for n in names if n.endswith(".tmp")]

    cfg = read_config(toy_run / "config.json")
    assert cfg.data == "toy:8gaussians" and cfg.kimg == 1 and cfg.batch == 64
    assert cfg.model is not None and cfg.model.shape == (2,) and cfg.model.generator.channels == 16
    assert cfg.lr_g is not None and cfg.denoise_weight is not None, "config.json holds the resolved values"
    assert (cfg.device, cfg.precision, cfg.resolution, cfg.model.sampler) == ("cpu", "fp32", None, "gan")
    run = json.loads((toy_run / "config.json").read_text())["_run"]
    assert run["versions"]["torch"] == torch.__version__ and run["started"] and "hybridgan" in run["versions"]
    assert "git_commit" in run and run["command"]

    messages = log_messages(toy_run)
    log = "\n".join(messages)
    assert messages[0].startswith("training hybrid on toy:8gaussians") and "done:" in log
    ticks = [m for m in messages if m.startswith("tick ")]
    assert len(ticks) == 2 and re.search(r"time \d+s +left \d+s ", ticks[0]) and " left 0s " in ticks[-1], ticks
    assert "\r" not in log and "\x1b" not in log, "no progress-bar noise in log.txt"

    stats = read_stats(toy_run)
    assert [r["tick"] for r in stats] == list(range(len(stats))) and len(stats) == 2
    assert stats[-1]["kimg"] == pytest.approx(1.024)
    for key in ("Loss/G", "Loss/D", "D/logit/real", "D/logit/fake", "Grad/G", "Grad/D", "Speed/img_per_s",
                "Memory/peak_mb"):
        assert key in stats[-1] and math.isfinite(stats[-1][key]), key

    samples = sorted((toy_run / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["samples-000001.png"]
    assert read_png(samples[0]).shape[2] in (3, 4)
    assert [p.name for p in list_checkpoints(toy_run / "checkpoints")] == ["checkpoint-000001.pt"]
    assert [p.name for p in (toy_run / "checkpoints").iterdir()] == ["checkpoint-000001.pt"]


def test_training_time_metrics_are_recorded_and_change_nothing_else(tmp_path):
    """--metrics during training: metrics.jsonl, TensorBoard and log.txt get the results, and the
    run's weights are those of the same run without evaluations (the RNGs are left alone)."""
    options = dict(kimg=0.512, tick_kimg=0.256, snapshot_kimg=0.512)
    plain = train(toy_config(**options), run_dir=tmp_path / "plain", model_changes=TINY_NET, quiet=True)
    judged = train(toy_config(metrics=("modes", "swd", "mmd"), eval_num=300, eval_kimg=0.256, **options),
                   run_dir=tmp_path / "judged", model_changes=TINY_NET, quiet=True)
    records = read_jsonl(judged / "metrics.jsonl")
    assert [r["metric"] for r in records] == ["modes", "swd", "mmd"] * 2
    assert [r["kimg"] for r in records[::3]] == [0.256, 0.512] and {(r["num"], r["nfe"]) for r in records} == {(300, 4)}
    assert "toy:8gaussians held-out" in records[0]["ref"]
    events = EventAccumulator(str(judged), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("Metrics/swd")] == pytest.approx([r["value"] for r in records[1::3]])
    assert "metrics at 0.3 kimg (N=300, NFE 4" in (judged / "log.txt").read_text()
    a, b = load(latest_checkpoint(plain)), load(latest_checkpoint(judged))
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}: the evaluation changed the run"


def test_tensorboard_has_the_scalars_and_sample_grids(toy_run):
    events = EventAccumulator(str(toy_run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("Loss/G", "Loss/D", "D/logit/real", "Speed/img_per_s", "Memory/peak_mb", "LR/G"):
        assert tag in tags["scalars"], tag
    stats = read_stats(toy_run)
    loss = events.Scalars("Loss/G")
    assert [e.step for e in loss] == [round(r["kimg"] * 1000) for r in stats]
    assert [e.value for e in loss] == pytest.approx([r["Loss/G"] for r in stats], rel=1e-6)
    assert "Samples" in tags["images"]
    grids = events.Images("Samples")
    assert len(grids) == 1 and grids[0].step == 1024 and grids[0].width > 100


def test_tensorboard_shows_gan_health_on_shared_charts_with_readable_grids_and_hparams(digits_run):
    events = EventAccumulator(str(digits_run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    for t in range(1, 5):
        assert f"D/logit/real/t{t}" in tags["scalars"] and f"D/logit/fake/t{t}" in tags["scalars"], t
    (layout,) = events.Tensors("custom_scalars__config__")  # the Custom Scalars tab's layout, a serialised proto
    charts = layout.tensor_proto.string_val[0]
    assert b"D logits: real vs fake" in charts and b"^D/logit/fake$" in charts, "real and fake logits share a chart"
    assert events.PluginTagToContent("hparams"), "the run's options and final values in the HParams tab"
    assert "final/Loss/G" in tags["scalars"]
    grid = events.Images("Samples")[-1]
    assert grid.width >= 512 and grid.width == grid.height, "a readable grid: 2x2 digits enlarged to >= 512 px"


def test_config_json_reproduces_the_run(toy_run, tmp_path, hybrid):
    new = tmp_path / "again"
    result = hybrid("train", "--config", toy_run / "config.json", "--run-dir", new, "--quiet")
    assert result.code == 0, result.err
    first, again = (json.loads((run / "config.json").read_text()) for run in (toy_run, new))
    assert first.pop("_run")["started"] <= again.pop("_run")["started"] and first == again  # "_run": this session
    a, b = load(latest_checkpoint(toy_run)), load(latest_checkpoint(new))
    assert latest_checkpoint(new).name == latest_checkpoint(toy_run).name
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"


def test_resumed_run_matches_an_uninterrupted_one_bitwise(tmp_path, hybrid):
    # A mixture of three, with a copy due at 0.5, 1.0 and 1.5 kimg: the one at 1.0 falls after the
    # checkpoint the run resumes from, so the resumed run must take it as the whole run does.
    mixture = dict(mixture=3, mixture_kimg=0.5)
    whole = train(toy_config(kimg=2, **mixture), run_dir=tmp_path / "whole", model_changes=TINY_NET, quiet=True)
    part = train(toy_config(kimg=1, **mixture), run_dir=tmp_path / "part", model_changes=TINY_NET, quiet=True)
    result = hybrid("train", "--run-dir", part, "--resume", "auto", "--kimg", "2", "--quiet")
    assert result.code == 0, result.err
    assert "resumed from" in (part / "log.txt").read_text()

    a, b = load(latest_checkpoint(whole)), load(latest_checkpoint(part))
    assert latest_checkpoint(part).name == "checkpoint-000002.pt"
    assert a["progress"]["nimg"] == b["progress"]["nimg"] == 2048
    assert a["progress"]["step"] == b["progress"]["step"] == 32
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    assert a["progress"]["past_nimg"] == b["progress"]["past_nimg"] == [1536, 1024]
    for k in range(2):
        for name, tensor in a["G_past"][k].items():
            assert torch.equal(tensor, b["G_past"][k][name]), f"G_past[{k}].{name} differs after resume"
    for net in ("G", "D"):
        for pid, state in a["opt"][net]["state"].items():
            for k, v in state.items():
                assert torch.equal(v, b["opt"][net]["state"][pid][k]), f"opt {net} {pid} {k}"
    assert [r["kimg"] for r in read_stats(part)] == [r["kimg"] for r in read_stats(whole)]
    assert read_config(part / "config.json").kimg == 2, "config.json says what the continued run trains for"


def test_a_run_continued_in_a_new_directory_is_a_whole_run_directory(toy_run, tmp_path, hybrid):
    """`--resume CKPT --run-dir NEW` leaves NEW with its own config.json, so `hybrid bench` and
    `hybrid train --config` work on it as on any run."""
    new = tmp_path / "continued"
    result = hybrid("train", "--resume", latest_checkpoint(toy_run), "--run-dir", new, "--kimg", "1.25", "--quiet")
    assert result.code == 0, result.err
    original, continued = (json.loads((run / "config.json").read_text()) for run in (toy_run, new))
    assert continued.pop("_run")["started"] >= original.pop("_run")["started"] and continued == {**original, "kimg": 1.25}
    result = hybrid("bench", latest_checkpoint(new), "--metrics", "modes", "--num", "64", "--repeats", "1", "--device", "cpu")
    assert result.code == 0, result.err
    assert (new / "bench.jsonl").is_file()


def test_resume_refuses_to_change_what_a_run_is(toy_run, tmp_path, hybrid):
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = hybrid("train", "--run-dir", run, "--resume", "auto", "--batch", "32", "--kimg", "2")
    assert_user_error(result, str(run), "cannot change batch")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_checkpoint_from_before_d_pair_resumes_judging_the_pairs_it_was_trained_on(digits_run):
    """Image hybrids now judge (x_0, x_t) by default; a checkpoint whose config predates the
    option was trained on (x_{t-1}, x_t) and must go on with those, and accept saying so."""
    path = latest_checkpoint(digits_run)
    state = load(path)
    assert state["config"].pop("d_pair") == "x0"
    assert _resumed_config(state, {}, path).d_pair == "x_prev"
    assert _resumed_config(state, {"d_pair": "x_prev"}, path).d_pair == "x_prev"


def test_the_mixture_keeps_g_ema_at_the_latest_multiples_before_now(tmp_path):
    """A checkpoint holds, beside G_ema, the G_ema of the two latest multiples of mixture_kimg
    (0.5 kimg here) before it, none from the start of the run."""
    run = train(toy_config(kimg=2, mixture=3, mixture_kimg=0.5), run_dir=tmp_path / "run", model_changes=TINY_NET,
                quiet=True)
    middle, last = (load(run / "checkpoints" / f"checkpoint-{k:06d}.pt") for k in (1, 2))
    assert middle["progress"]["past_nimg"] == [512] and len(middle["G_past"]) == 1
    assert last["progress"]["past_nimg"] == [1536, 1024] and len(last["G_past"]) == 2
    # The copy taken at 1024 images is G_ema as the checkpoint at 1024 images saved it.
    for name, tensor in middle["G_ema"].items():
        assert torch.equal(last["G_past"][1][name], tensor)
    assert "a mixture of G_ema and its states at 1.536, 1.024 kimg" in (run / "log.txt").read_text()
    model = load_model(latest_checkpoint(run))
    assert len(model.generators()) == 3 and len(model.generators(1)) == 1
    newest, now = model.past[0].state_dict(), model.G_ema.state_dict()
    assert any(not torch.equal(newest[name], now[name]) for name in now), "a copy is of an earlier G_ema"


def test_a_checkpoint_from_before_the_mixture_resumes_and_samples_from_g_ema_alone(digits_run, tmp_path):
    path = latest_checkpoint(digits_run)
    state = load(path)
    state["config"].pop("mixture")
    state.pop("G_past")
    state["progress"].pop("past_nimg")
    assert _resumed_config(state, {}, path).mixture == 1
    from hybridgan.hybrid.checkpoint import model_from

    assert len(model_from(state, path).generators()) == 1
    old = tmp_path / "run" / "checkpoints" / path.name
    old.parent.mkdir(parents=True)
    torch.save(state, old)
    run = train(None, run_dir=old.parent.parent, resume=str(old), changes={"kimg": 0.256}, quiet=True)
    assert load(latest_checkpoint(run))["progress"]["past_nimg"] == []


@pytest.mark.parametrize("key, bad", [("mixture", 0), ("mixture", 2.5), ("mixture", True), ("mixture", "3"),
                                      ("mixture_kimg", 0), ("mixture_kimg", -1), ("mixture_kimg", "20")])
def test_a_bad_mixture_in_a_config_is_one_line(key, bad, tmp_path, hybrid):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"data": "digits", key: bad}))
    assert_user_error(hybrid("train", "--config", config, "--run-dir", tmp_path / "run"), key)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ image runs


@pytest.mark.parametrize("precision, shown", [("bf16", "bf16"), ("fp32", "fp32")])
def test_image_run_on_digits(tmp_path, precision, shown):
    run = train(digits_config(precision=precision), run_dir=tmp_path / "run", model_changes=TINY_UNET, quiet=True)
    assert f"precision {shown}" in (run / "log.txt").read_text()
    stats = read_stats(run)
    assert all(math.isfinite(v) for r in stats for v in r.values())

    model = load_model(latest_checkpoint(run))
    assert model.cfg.shape == (1, 16, 16) and model.cfg.generator.channels == 8
    torch.manual_seed(0)  # the trainer seeds the initial weights with the run's seed
    initial = Model(ModelConfig.from_dict(model.cfg.to_dict()))
    changed = [k for k, v in model.G.state_dict().items() if not torch.equal(v, initial.G.state_dict()[k])]
    assert changed, "training did not change the generator"

    grid = read_png(next((run / "samples").glob("*.png")))
    # 4 seeds in a 2x2 grid of 16px images with a 1px border, enlarged 8x
    assert grid.shape == (8 * 35, 8 * 35, 1)


@pytest.mark.parametrize("avx512_bf16, amx, picked", [(False, False, None), (True, False, torch.bfloat16),
                                                       (False, True, torch.bfloat16), (True, True, torch.bfloat16)])
def test_auto_precision_picks_bf16_only_for_images_on_a_cpu_that_computes_in_it(monkeypatch, avx512_bf16, amx, picked):
    """The CPU probes decide `--precision auto` (this machine's own answer is not what is tested)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, image=True) is picked
    assert resolve_precision("auto", cpu, image=False) is None, "the toy MLPs are too small to gain"
    assert resolve_precision("fp32", cpu, image=True) is None
    assert resolve_precision("bf16", cpu, image=False) is torch.bfloat16


class FakeMachine:
    """Two CPUs whose /proc/stat ticks (100 per second each) advance with a scripted clock: `others`
    cores kept busy by other processes, `ours` wanted by this one (which gets what they leave)."""

    def __init__(self):
        self.now, self.busy, self.total, self.our_cpu = 0.0, 0.0, 0.0, 0.0
        self.others, self.ours = 0.0, 1.0

    def advance(self, seconds):
        self.now += seconds
        self.busy += 100 * seconds * min(2.0, self.others + self.ours)
        self.total += 100 * seconds * 2
        self.our_cpu += seconds * min(self.ours, 2.0 - self.others)


@pytest.fixture
def machine(monkeypatch):
    from hybridgan.hybrid import devices

    fake = FakeMachine()
    monkeypatch.setattr(devices, "_cpu_jiffies", lambda cpus: (fake.busy, fake.total))
    monkeypatch.setattr(devices.time, "sleep", fake.advance)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # torch's choice on this fake machine
    yield fake
    torch.set_num_threads(threads)


def cpu_threads(machine):
    from hybridgan.hybrid.devices import CPUThreads

    t = CPUThreads(clock=lambda: machine.now, cpu_time=lambda: machine.our_cpu)
    t.cpus = {0, 1}
    return t


def test_cpu_threads_follow_the_cores_other_processes_leave_idle(machine):
    machine.others = 1.0  # a busy loop on one core when the run starts
    threads = cpu_threads(machine)
    assert "threads 1 of 2" in threads.start() and torch.get_num_threads() == 1
    machine.others = 0.0  # it ends: two checks in a row see idle cores before the count goes back up
    for seconds, expected in ((1.0, None), (4.5, None), (5.0, None), (5.0, "threads 1 -> 2")):
        machine.advance(seconds)
        change = threads.poll()
        assert change == expected or (expected and expected in change), (seconds, change)
    assert torch.get_num_threads() == 2
    machine.ours, machine.others = 2.0, 0.3  # our two threads spin, another process takes a third of a core
    machine.advance(5.0)
    assert threads.poll() is None, "one check alone changes nothing"
    machine.advance(5.0)
    assert "threads 2 -> 1" in threads.poll() and torch.get_num_threads() == 1
    threads.__exit__(None, None, None)  # the run ends: the caller's count comes back
    assert torch.get_num_threads() == 2


def test_cpu_threads_stay_as_pinned(machine, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    machine.others = 1.0
    threads = cpu_threads(machine)
    assert threads.start() == "threads 2 (OMP_NUM_THREADS)" and torch.get_num_threads() == 2
    machine.advance(20.0)
    assert threads.poll() is None and torch.get_num_threads() == 2


# ------------------------------------------------------------------------------------ interrupts


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_and_the_resumed_run_matches(toy_run, tmp_path, monkeypatch, hybrid, signum, code):
    """A signal after step 3 (mid-tick, mid-snapshot interval): checkpoint, exit 128 + signum; the
    resumed run ends with the weights of the uninterrupted toy run."""
    real_step, steps = Trainer.step, []

    def step_then_signal(self):
        real_step(self)
        steps.append(self.progress.step)
        if len(steps) == 3:
            os.kill(os.getpid(), signum)

    run = tmp_path / "run"
    argv = ["train", "--data", "toy:8gaussians", "--kimg", "1", "--batch", "64", "--channels", "16",
            "--lr-decay", "constant", "--run-dir", run, "--quiet"]
    with monkeypatch.context() as m:
        m.setattr(Trainer, "step", step_then_signal)
        result = hybrid(*argv)
    assert result.code == code, result.err
    assert len(result.err.strip().splitlines()) == 1 and "--resume auto" in result.err
    assert steps == [1, 2, 3]
    assert load(latest_checkpoint(run))["progress"]["nimg"] == 3 * 64

    result = hybrid(*argv, "--resume", "auto")
    assert result.code == 0, result.err
    a, b = load(latest_checkpoint(toy_run)), load(latest_checkpoint(run))
    assert b["progress"]["nimg"] == a["progress"]["nimg"] == 1024
    for key in ("G", "G_ema", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after an interrupted run"


def test_cosine_learning_rate_decay_reaches_the_floor(tmp_path):
    from hybridgan.training.config import LR_FLOOR, lr_scale

    assert lr_scale("cosine", 0) == 1.0 and lr_scale("constant", 0.9) == 1.0
    assert lr_scale("cosine", 0.5) == pytest.approx(LR_FLOOR + (1 - LR_FLOOR) / 2)
    assert lr_scale("cosine", 1) == lr_scale("cosine", 1.5) == pytest.approx(LR_FLOOR)
    run = train(toy_config(lr_decay="cosine", kimg=2, tick_kimg=0.5, snapshot_kimg=2), run_dir=tmp_path / "run",
                model_changes=TINY_NET, quiet=True)
    lrs = [r["LR/G"] for r in read_stats(run)]
    assert all(a > b for a, b in zip(lrs, lrs[1:])), lrs
    assert lrs[-1] < 0.1 * read_config(run / "config.json").lr_g


STEP_SECONDS = 1 / 16  # a scripted clock: every reading is this much later (exact in binary)


@pytest.fixture
def scripted_clock(monkeypatch):
    """The trainer's clock advances STEP_SECONDS per reading, two readings per step: each step
    "takes" STEP_SECONDS whatever the machine's speed or load."""
    readings = iter(range(10**9))
    monkeypatch.setattr(Trainer, "clock", staticmethod(lambda: next(readings) * STEP_SECONDS))


def test_cosine_decay_follows_a_time_budget_when_time_ends_the_run(tmp_path, scripted_clock):
    # 1000 kimg would keep the rate near its start; the 2-second budget (32 steps) ends the run instead.
    run = train(toy_config(lr_decay="cosine", kimg=1000, minutes=2 / 60, tick_kimg=0.256), run_dir=tmp_path / "run",
                model_changes=TINY_NET, quiet=True)
    lr_g = read_config(run / "config.json").lr_g
    lrs = [r["LR/G"] for r in read_stats(run)]
    assert len(lrs) == 8 and all(a > b for a, b in zip(lrs, lrs[1:])), lrs
    assert lrs[0] > 0.9 * lr_g and lrs[-1] < 0.1 * lr_g, lrs
    assert read_stats(run)[-1]["kimg"] == 32 * 64 / 1000


def test_a_time_limit_stops_the_run_with_a_checkpoint_and_resume_extends_it(tmp_path, hybrid, scripted_clock):
    limit = 1.5  # seconds of training time: 24 steps; the tiny toy run needs far longer for its 1000 kimg
    run = train(toy_config(kimg=1000, minutes=limit / 60), run_dir=tmp_path / "run", model_changes=TINY_NET, quiet=True)
    first = load(latest_checkpoint(run))["progress"]
    assert first["seconds"] == limit and first["nimg"] == 24 * 64
    assert "or 0.025 minutes" in (run / "log.txt").read_text()

    result = hybrid("train", "--run-dir", run, "--resume", "auto", "--minutes", str(2 * limit / 60), "--quiet")
    assert result.code == 0, result.err
    second = load(latest_checkpoint(run))["progress"]
    # The budget is reached on the step that crosses 2 * limit (the minutes round in binary).
    assert 2 * limit <= second["seconds"] <= 2 * limit + STEP_SECONDS
    assert second["nimg"] == round(second["seconds"] / STEP_SECONDS) * 64


# ------------------------------------------------------------------------------------ --compile


def test_compiled_run_trains_and_its_checkpoint_is_the_plain_one(tmp_path):
    """torch.compile (inductor, a real C++ compile of the toy MLPs) changes speed, not the run.

    Over 4 steps of toy:8gaussians the compiled losses matched the eager ones to 2.2e-7
    relative at worst (fused kernels reorder float sums, so not bitwise); 1e-4 leaves room for
    other compilers and CPUs while a wrong graph (a missed input, R1 without its double backward)
    moves the losses by percents. 41 s here with an empty inductor cache, nearly all compilation."""
    cfg = toy_config(kimg=0.256, tick_kimg=0.064, snapshot_kimg=0.256)
    runs = {c: train(cfg.replace(compile=c), run_dir=tmp_path / f"compile-{c}", model_changes=TINY_NET, quiet=True)
            for c in (False, True)}
    assert "compiled" in (runs[True] / "log.txt").read_text().splitlines()[0]
    eager, compiled = read_stats(runs[False]), read_stats(runs[True])
    assert len(eager) == len(compiled) == 4
    for a, b in zip(eager, compiled):
        for key in (k for k in a if k.startswith("Loss/")):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["kimg"], key)
    assert "Loss/Dreg" in compiled[0], "lazy R1 (double backward, run eagerly) ran on step 0"

    plain, state = load(latest_checkpoint(runs[False])), load(latest_checkpoint(runs[True]))
    for key in ("G", "G_ema", "D"):
        assert list(state[key]) == list(plain[key]), f"{key} keys differ"
        assert not any("_orig_mod" in k for k in state[key])
    model = load_model(latest_checkpoint(runs[True]))
    assert model.cfg.generator.channels == 16


def test_compile_falls_back_to_eager_with_one_line_when_it_cannot_run(tmp_path, monkeypatch, hybrid):
    from hybridgan.training import trainer
    def no_compiler(device):
        raise RuntimeError("InvalidCxxCompiler: No working C compiler detected.\nmore detail")

    monkeypatch.setattr(trainer, "_compile_probe", no_compiler)
    run = tmp_path / "run"
    result = hybrid("train", "--data", "toy:8gaussians", "--kimg", "0.128", "--batch", "64", "--channels", "16",
                    "--run-dir", run, "--device", "cpu", "--compile", "--quiet")
    assert result.code == 0, result.err
    log = log_messages(run)
    notes = [line for line in log if line.startswith("--compile:")]
    assert notes == ["--compile: torch.compile cannot run here (RuntimeError: InvalidCxxCompiler: No working C "
                     "compiler detected.); training uncompiled"]
    first = next(line for line in log if line.startswith("training "))
    assert not first.endswith("compiled") and json.loads((run / "config.json").read_text())["compile"] is True
    assert latest_checkpoint(run).name == "checkpoint-000000.pt"
