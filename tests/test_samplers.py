"""Samplers: a sample depends only on its seed; the levels a sampler visits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import assert_same_samples
from hybridgan.hybrid.model import Model, ModelConfig
from hybridgan.hybrid.nets import NetConfig
from hybridgan.hybrid.samplers import SeedNoise, default_sampling, levels, sample, sample_batched

SAMPLERS = ("gan", "ddpm", "ddim")
SEEDS = list(range(7))


class RowwiseGenerator(nn.Module):
    """A stand-in generator whose row i is computed from row i alone with exactly rounded
    element-wise arithmetic, so any batch dependence of a sample comes from the sampler."""

    def forward(self, x, t, z=None):
        shape = (-1,) + (1,) * (x.dim() - 1)
        out = 0.5 * x + 0.1 * t.reshape(shape)
        if z is not None:
            out = out + 0.3 * z[:, 0].reshape(shape) - 0.2 * z[:, -1].reshape(shape)
        return out


def tiny_model(shape, steps, prediction="x0", z_dim=4, channels=8) -> Model:
    torch.manual_seed(0)
    g = NetConfig(channels=channels, channel_mult=(1, 2), z_dim=z_dim, fourier=2)
    cfg = ModelConfig(shape=shape, steps=steps, schedule="vp" if steps <= 8 else "linear", prediction=prediction,
                      generator=g, discriminator=None)
    model = Model(cfg).eval()
    # Untrained networks start near 0 (zero-initialised modulation); perturb the EMA weights so
    # that the sample really depends on the network's input.
    with torch.no_grad():
        for p in model.G_ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


MODELS = {
    "vector-gan": lambda: tiny_model((2,), 4),
    "vector-eps": lambda: tiny_model((2,), 20, prediction="eps", z_dim=0),
    "image-gan": lambda: tiny_model((1, 8, 8), 4),
}


def draws(model, sampler, steps=None):
    """The same seeds drawn all at once, one at a time, three at a time, and seed k among [0..k]."""
    kw = dict(sampler=sampler, steps=steps)
    whole = sample(model, SEEDS, **kw)
    ones = sample_batched(model, SEEDS, batch=1, **kw)
    threes = sample_batched(model, SEEDS, batch=3, **kw)
    prefixes = torch.stack([sample(model, SEEDS[: k + 1], **kw)[k] for k in SEEDS])
    return whole, ones, threes, prefixes


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sample_depends_only_on_its_seed_bitwise(kind, sampler):
    model = MODELS[kind]()
    model.G_ema = RowwiseGenerator()
    steps = 3 if sampler == "ddim" else None
    whole, ones, threes, prefixes = draws(model, sampler, steps)
    assert whole.shape == (len(SEEDS), *model.cfg.shape) and whole.dtype == torch.float32
    assert torch.equal(whole, ones)
    assert torch.equal(whole, threes)
    assert torch.equal(whole, prefixes)
    assert torch.equal(sample(model, [5, 2], sampler=sampler, steps=steps), whole[[5, 2]])


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sample_with_real_networks_does_not_depend_on_batching(kind, sampler):
    """With the real MLP / UNet the seeds decide the sample too, but not bitwise: MKL's sgemm and
    oneDNN's convolutions round a row differently depending on how many rows the call has, each
    CPU in its own way. The tolerance (conftest.SAMPLE_ATOL) is far below seed-to-seed differences."""
    model = MODELS[kind]()
    steps = 3 if sampler == "ddim" else None
    whole, ones, threes, prefixes = draws(model, sampler, steps)
    for other in (ones, threes, prefixes):
        assert_same_samples(other, whole)
    assert torch.isfinite(whole).all()


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_different_seeds_give_different_samples(kind, sampler):
    model = MODELS[kind]()
    x = sample(model, SEEDS, sampler=sampler, steps=3 if sampler == "ddim" else None).flatten(1)
    distances = torch.cdist(x, x) + torch.eye(len(SEEDS)) * 1e9
    assert distances.min() > 1e-3


@pytest.mark.parametrize(
    "T, nfe, expected",
    [(4, 4, [4, 3, 2, 1]), (4, 2, [4, 2]), (4, 1, [4]), (1000, 1, [1000]), (1000, 4, [1000, 750, 500, 250])],
)
def test_levels_known_values(T, nfe, expected):
    assert levels(T, nfe) == expected


@pytest.mark.parametrize("T", [1, 2, 3, 4, 7, 10, 1000])
def test_levels_has_nfe_distinct_decreasing_levels_from_T(T):
    for nfe in sorted({1, 2, 3, 5, 50, T} & set(range(1, T + 1))):
        path = levels(T, nfe)
        assert len(path) == nfe
        assert path[0] == T
        assert all(a > b for a, b in zip(path, path[1:]))
        assert path[-1] >= 1


@pytest.mark.parametrize("nfe", [0, 5, -1])
def test_levels_refuses_impossible_step_counts(nfe):
    with pytest.raises(ValueError, match="1..4"):
        levels(4, nfe)


def record_calls(model: Model) -> list[tuple[float, torch.Tensor]]:
    """Wrap the EMA generator so that each call appends (its level as a fraction of T, its input x)."""
    calls = []
    real_forward = model.G_ema.forward

    def recording_forward(x, t, z=None):
        calls.append((t[0].item(), x.clone()))
        return real_forward(x, t, z)

    model.G_ema.forward = recording_forward
    return calls


def test_fewer_steps_visit_fewer_levels():
    model = MODELS["vector-eps"]()
    calls = record_calls(model)
    sample(model, [0, 1], sampler="ddim", steps=5)
    assert [level for level, _ in calls] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])  # levels 20, 16, ... as fractions of T


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_chain_started_from_the_seeds_own_noise_is_the_usual_sample(kind, sampler):
    model = MODELS[kind]()
    x_T = SeedNoise(SEEDS).randn(*model.cfg.shape)
    usual = sample(model, SEEDS, sampler=sampler)
    assert torch.equal(sample(model, SEEDS, sampler=sampler, start=(model.cfg.steps, x_T)), usual)
    # Each chunk starts from its own rows of x_T (to rounding: the real networks, see above).
    batched = sample_batched(model, SEEDS, batch=3, sampler=sampler, start=(model.cfg.steps, x_T))
    assert_same_samples(batched, usual)


def test_a_chain_started_at_level_k_visits_levels_k_to_1_from_the_given_x():
    model = MODELS["image-gan"]()
    calls = record_calls(model)
    x_2 = torch.randn(len(SEEDS), *model.cfg.shape)
    out = sample(model, SEEDS, start=(2, x_2))
    assert [level for level, _ in calls] == [0.5, 0.25]  # levels 2 and 1 of T = 4
    assert torch.equal(calls[0][1], x_2)
    assert not torch.equal(out, sample(model, SEEDS, start=(2, -x_2))), "the result depends on the start"
    with pytest.raises(ValueError, match="1..4"):
        sample(model, SEEDS, start=(5, x_2))


def test_a_given_path_visits_exactly_its_levels():
    model = MODELS["image-gan"]()
    calls = record_calls(model)
    out = sample(model, SEEDS, path=[4, 1])
    assert [level for level, _ in calls] == [1.0, 0.25]  # levels 4 and 1 of T = 4
    assert torch.equal(sample(model, SEEDS, path=[4, 2]), sample(model, SEEDS, steps=2)), "levels(4, 2) is [4, 2]"
    assert not torch.equal(out, sample(model, SEEDS, steps=2))
    for bad in ([3, 1], [4, 4, 1], [4, 0], []):
        with pytest.raises(ValueError, match="levels must"):
            sample(model, SEEDS, path=bad)
    with pytest.raises(ValueError, match="disagree"):
        sample(model, SEEDS, path=[4, 1], steps=3)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_mixture_draws_each_sample_from_the_generator_its_seed_picks(kind, sampler):
    """Sample i comes from generator seeds[i] mod K, whatever the batch, from its own seed's noise."""
    model = MODELS[kind]()
    earlier = [tiny_model(model.cfg.shape, model.cfg.steps, model.cfg.prediction, model.z_dim).G_ema for _ in range(2)]
    for k, net in enumerate(earlier):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * (k + 1))
    model.past = nn.ModuleList(earlier)
    nets = model.generators()
    seeds = [11, 3, 7, 12, 5, 9, 4]
    mixed = sample(model, seeds, sampler=sampler)
    for i, seed in enumerate(seeds):
        alone = sample(model, [seed], sampler=sampler, net=nets[seed % 3])[0]
        assert_same_samples(mixed[i], alone)  # to rounding: real networks, see above
    assert_same_samples(sample_batched(model, seeds, batch=2, sampler=sampler), mixed)
    assert torch.equal(sample(model, seeds, sampler=sampler, mixture=1), sample(model, seeds, sampler=sampler, net=model.G_ema))
    x_T = SeedNoise(seeds).randn(*model.cfg.shape)
    started = sample(model, seeds, sampler=sampler, start=(model.cfg.steps, x_T))
    assert_same_samples(started, mixed)  # each generator gets its own rows of the start


def test_default_sampling():
    assert default_sampling(ModelConfig(shape=(2,), steps=4)) == ("gan", 4)
    assert default_sampling(ModelConfig(shape=(2,), steps=1000)) == ("ddpm", 1000)
    assert default_sampling(ModelConfig(shape=(2,), steps=1000), fast=True) == ("ddim", 50)
    # a chain of 9 to 49 levels: its grid takes one DDIM step per level (a fuzzed `train --steps 9` crashed here)
    assert default_sampling(ModelConfig(shape=(2,), steps=9), fast=True) == ("ddim", 9)


@pytest.mark.parametrize("width", [8, 16, 32, 256])
def test_vector_group_norm_keeps_the_signal_at_small_widths(width):
    """Group norm over [B, C] with one channel per group maps everything to 0; the MLPs' hidden
    layers would then never see x_t (this made widths <= 32 untrainable and batch 1 crash)."""
    from hybridgan.hybrid.nets import norm_layer

    h = torch.randn(1, width)
    assert norm_layer("group", width, dims=1, affine=False)(h).std() > 0.5
