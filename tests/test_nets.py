"""Networks: the image discriminator's minibatch standard deviation, the generator's upsampling."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from torch import Tensor, nn

from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.model import net_config_from_dict
from hybridgan.hybrid.nets import (
    ConvDiscriminator,
    FeatureDiscriminator,
    MLPGenerator,
    NetConfig,
    UNetGenerator,
    check_net_config,
    minibatch_std,
)


def discriminator(group: int) -> ConvDiscriminator:
    torch.manual_seed(0)
    return ConvDiscriminator(1, 8, NetConfig(channels=8, channel_mult=(1, 2), act="leaky_relu", mbstd_group=group))


def logits(d: ConvDiscriminator, x: torch.Tensor) -> torch.Tensor:
    return d(x, torch.zeros_like(x), torch.full((x.shape[0],), 0.5))


@pytest.mark.parametrize("group", [0, 4])
def test_a_logit_depends_on_the_rest_of_its_group_only_with_mbstd(group):
    d = discriminator(group)
    x = torch.randn(8, 1, 8, 8)
    changed = x.clone()
    changed[4] = 3 * torch.randn(1, 8, 8)  # sample 0's group is samples 0, 2, 4, 6
    moved = (logits(d, changed) - logits(d, x)).abs()
    if group:
        assert moved[0] > 1e-4 and moved[1] == 0  # sample 1 is in the other group
    else:
        assert moved[[0, 1, 2, 3, 5, 6, 7]].max() == 0


def test_identical_samples_have_no_spread_and_any_batch_size_works():
    same = torch.randn(1, 8, 4, 4).expand(6, 8, 4, 4)
    assert minibatch_std(same, 4).abs().max() < 1e-3  # groups of 3 (the largest divisor of 6 up to 4)
    varied = torch.randn(7, 8, 4, 4)  # prime: groups of one, no spread to measure
    assert minibatch_std(varied, 4).abs().max() < 1e-3
    assert minibatch_std(torch.randn(6, 8, 4, 4), 4).min() > 0.3
    assert logits(discriminator(4), torch.randn(5, 1, 8, 8)).shape == (5,)


def test_an_r1_gradient_flows_through_the_spread():
    d = discriminator(4)
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(logits(d, x).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert torch.isfinite(grad).all() and all(torch.isfinite(p.grad).all() for p in d.parameters() if p.grad is not None)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_the_decoder_doubles_resolution_as_configured(mode):
    g = UNetGenerator(1, 8, NetConfig(channels=8, channel_mult=(1, 2), upsample=mode))
    assert [m.mode for m in g.modules() if isinstance(m, nn.Upsample)] == [mode]
    x = torch.randn(3, 1, 8, 8)
    assert g(x, torch.full((3,), 0.5)).shape == x.shape


def test_a_config_written_before_the_upsample_option_keeps_nearest_and_a_bad_mode_is_named():
    old = {k: v for k, v in asdict(NetConfig()).items() if k != "upsample"}
    assert net_config_from_dict(old).upsample == "nearest"
    with pytest.raises(ValueError, match="upsample 'cubic'"):
        check_net_config(NetConfig(upsample="cubic"))


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_networks_of_odd_width_run(shape):
    """Any width >= 8 works (a fuzzed `train --channels 9` crashed: the time embedding came out one short)."""
    from hybridgan.hybrid.model import Model, ModelConfig

    cfg = ModelConfig(shape=shape, generator=NetConfig(channels=9, z_dim=4), discriminator=NetConfig(channels=9))
    model, x = Model(cfg), torch.randn(3, *shape)
    t, z = torch.tensor([1, 2, 4]), torch.randn(3, 4)
    assert model.G(x, t / 4, z).shape == x.shape
    assert model.D(x, x, t / 4).shape[0] == 3


def test_a_unets_features_are_its_encoder_at_each_resolution_and_the_middle():
    net = UNetGenerator(1, 16, NetConfig(channels=8, channel_mult=(1, 2, 2), num_blocks=2)).eval()
    nn.init.normal_(net.head[-1].weight, std=0.1)  # zero at initialisation
    x, t = torch.randn(3, 1, 16, 16), torch.rand(3)
    features = net.encoder_features(x, t)
    assert [tuple(f.shape) for f in features] == [(3, 8, 16, 16), (3, 16, 8, 8), (3, 16, 4, 4), (3, 16, 4, 4)]
    # The middle is what the decoder starts from: changing it changes the output.
    mid = net.mid[-1]
    out = net(x, t)
    with torch.no_grad():
        mid.conv2.bias += 1
    after = net.encoder_features(x, t)
    assert torch.equal(after[0], features[0]) and not torch.equal(after[-1], features[-1])
    assert not torch.equal(net(x, t), out)


def test_an_mlps_features_are_each_blocks_output_and_its_forward_is_unchanged():
    net = MLPGenerator(2, NetConfig(channels=16, num_blocks=3, fourier=2, dropout=0.5), num_classes=3)
    x, t, y = torch.randn(5, 2), torch.rand(5), torch.tensor([0, 1, 2, 0, 1])

    def written_out() -> tuple[list[Tensor], Tensor]:  # the forward pass as it was before encoder_features
        emb = net.embed(t, None, y)
        h, blocks = net.inp(net.features(x)) + emb, []
        for layer, norm in zip(net.layers, net.norms):
            h = h + layer(net.dropout(net.act(norm(h, emb))))
            blocks.append(h)
        return blocks, net.out(net.act(h))

    for mode in (net.eval, net.train):  # in training, dropout draws the same masks from the same seed
        mode()
        torch.manual_seed(0)
        blocks, out = written_out()
        torch.manual_seed(0)
        assert torch.equal(net(x, t, None, y), out)
        torch.manual_seed(0)
        features = net.encoder_features(x, t, None, y)
        assert [tuple(f.shape) for f in features] == [(5, 16)] * 3
        assert all(torch.equal(a, b) for a, b in zip(features, blocks))


def test_a_feature_discriminator_reads_an_mlp_with_linear_heads():
    trunk = MLPGenerator(2, NetConfig(channels=16, num_blocks=2), num_classes=3).requires_grad_(False).eval()
    D = FeatureDiscriminator(trunk, (2,), width=8, num_classes=3)
    assert [type(m) for m in D.convs] == [nn.Linear, nn.Linear]
    x = torch.randn(5, 2, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1])
    logits = D(x, x, torch.zeros(5), y)
    assert logits.shape == (5,)
    logits.sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in D.parameters())
    assert not torch.equal(D(x, x, torch.zeros(5), torch.zeros(5, dtype=torch.long)), logits)
    # An MLP of no hidden blocks has nothing to read: one line.
    with pytest.raises(UserError, match="no hidden blocks"):
        FeatureDiscriminator(MLPGenerator(2, NetConfig(channels=16, num_blocks=0)), (2,))


def test_a_feature_discriminator_trains_its_heads_only_and_passes_gradients_to_the_sample():
    trunk = UNetGenerator(1, 16, NetConfig(channels=8), num_classes=3).requires_grad_(False).eval()
    D = FeatureDiscriminator(trunk, (1, 16, 16), num_classes=3)
    names = {name.split(".")[0] for name in D.state_dict()}
    assert names == {"convs", "heads", "labels"}  # the trunk is neither saved nor trained
    x = torch.randn(4, 1, 16, 16, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    logits = D(x, x, torch.zeros(4), y)
    assert logits.shape == (4,)
    logits.sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in trunk.parameters())
    assert all(p.grad is not None for p in D.parameters())
    # The class enters through the trunk's embedding and each head's projection.
    assert not torch.equal(D(x, x, torch.zeros(4), torch.tensor([1, 1, 1, 1])), logits)
    # The heads are made where the trunk is (a teacher on a GPU: on the GPU; here the meta device).
    elsewhere = UNetGenerator(1, 16, NetConfig(channels=8)).to("meta")
    assert all(p.device.type == "meta" for p in FeatureDiscriminator(elsewhere, (1, 16, 16)).parameters())
