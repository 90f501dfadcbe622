"""Time-conditioned networks: generators G(x_t, t, z, y) and discriminators D(x, x_t, t, y), where x
is x_{t-1} or x_0 (what the discriminator judges beside x_t: training.objectives, d_pair) and y
the class of a class-conditional model ([B] long; None for unconditional ones).

Images use a UNet generator and a convolutional discriminator; vectors ([B, D]) use MLPs.
The latent z enters the generator through adaptive normalisation: a mapping network turns it
into an embedding that is added to the time embedding, and every block scales and shifts its
normalised activations by a projection of that embedding. A class enters the same way, as a
learned embedding added to it. Discriminators take the class through a projection head (Miyato
& Koyama, cGANs with projection discriminator): the logit gains the inner product of the class's
embedding with D's last features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridgan.hybrid.errors import UserError


@dataclass(frozen=True)
class NetConfig:
    channels: int = 64  # base width: UNet channels at full resolution, or MLP hidden width
    channel_mult: tuple[int, ...] = (1, 2, 2)  # UNet width multiplier per resolution level
    num_blocks: int = 1  # residual blocks per UNet level, or hidden layers of an MLP
    attn_resolutions: tuple[int, ...] = ()  # UNet resolutions with self-attention
    z_dim: int = 0  # latent size of a generator (0: no latent); discriminators ignore it
    norm: str = "group"  # normalisation: group | batch
    act: str = "silu"  # activation: silu | leaky_relu
    dropout: float = 0.0  # dropout probability inside blocks
    init: str = "default"  # weight initialisation: default | xavier | kaiming | orthogonal
    fourier: int = 0  # MLPs: encode each input coordinate with this many octaves of sin/cos (0: raw)
    mbstd_group: int = 0  # image discriminators: minibatch standard deviation over groups of this many (0: off)
    upsample: str = "nearest"  # UNet generators: how the decoder doubles resolution: nearest | bilinear


NORMS = ("group", "batch")
ACTS = ("silu", "leaky_relu")
INITS = ("default", "xavier", "kaiming", "orthogonal")
UPSAMPLES = ("nearest", "bilinear")


def check_net_config(cfg: NetConfig) -> None:
    if cfg.mbstd_group < 0:
        raise ValueError(f"mbstd_group must be 0 (off) or a group size, got {cfg.mbstd_group}")
    if cfg.channels < 8:
        raise ValueError(f"channels must be at least 8 (normalisation groups and embeddings), got {cfg.channels}")
    choices = ((cfg.norm, NORMS, "norm"), (cfg.act, ACTS, "act"), (cfg.init, INITS, "init"), (cfg.upsample, UPSAMPLES, "upsample"))
    for value, allowed, name in choices:
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


def activation(name: str) -> nn.Module:
    return nn.SiLU() if name == "silu" else nn.LeakyReLU(0.2)


def norm_layer(kind: str, channels: int, dims: int, affine: bool = True) -> nn.Module:
    """Group norm (32 groups at most) or batch norm over [B, C, ...]."""
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, affine=affine)
    # Vectors [B, C] have no spatial extent: a group of one channel normalises to 0, so keep
    # at least 8 channels per group there (width 256 still gets 32 groups).
    groups = math.gcd(32, channels if dims == 2 else max(1, channels // 8))
    return nn.GroupNorm(groups, channels, affine=affine)


def init_weights(module: nn.Module, scheme: str) -> None:
    """Re-initialise conv and linear weights with the named scheme; biases become 0."""
    if scheme == "default":
        return
    fn = {"xavier": nn.init.xavier_uniform_, "orthogonal": nn.init.orthogonal_,
          "kaiming": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")}[scheme]
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fn(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of a continuous time t in [0, 1]. t: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000 * t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return nn.functional.pad(emb, (0, dim % 2))  # an odd width gets a zero column


class Embedding(nn.Module):
    """Time (and, for generators, latent and class) embedding: [B] time, [B, z_dim] z, [B] class -> [B, dim]."""

    def __init__(self, channels: int, dim: int, z_dim: int, act: str, num_classes: int = 0) -> None:
        super().__init__()
        self.channels = channels
        self.time = nn.Sequential(nn.Linear(channels, dim), activation(act), nn.Linear(dim, dim))
        self.z_dim = z_dim
        if z_dim:
            layers: list[nn.Module] = [nn.Linear(z_dim, dim), activation(act)]
            for _ in range(2):
                layers += [nn.Linear(dim, dim), activation(act)]
            self.mapping = nn.Sequential(*layers)
        if num_classes:
            self.label = nn.Embedding(num_classes, dim)

    def forward(self, t: Tensor, z: Tensor | None, y: Tensor | None = None) -> Tensor:
        emb = self.time(timestep_embedding(t, self.channels))
        if self.z_dim:
            emb = emb + self.mapping(z)
        return emb + self.label(y) if y is not None else emb


class AdaptiveNorm(nn.Module):
    """Normalise without affine, then scale and shift by a projection of the embedding."""

    def __init__(self, kind: str, channels: int, emb_dim: int, dims: int) -> None:
        super().__init__()
        self.norm = norm_layer(kind, channels, dims, affine=False)
        self.proj = nn.Linear(emb_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.proj(emb).chunk(2, dim=1)
        if isinstance(self.norm, nn.GroupNorm) and h.dim() > 2:
            # The same as norm(h) * (1 + scale) + shift, in one fused kernel: group norm
            # never mixes samples, so [B, C, H, W] viewed as [1, B*C, H, W] with B*groups groups
            # has the same statistics, and its per-channel affine is then per sample. 2-3x
            # faster than the three ops on the CPU, forward and backward; no gain on [B, C]
            # vectors. (Under autocast the kernel wants its affine in the dtype of h.)
            B, C = h.shape[:2]
            weight, bias = (1 + scale).reshape(B * C).to(h.dtype), shift.reshape(B * C).to(h.dtype)
            out = F.group_norm(h.reshape(1, B * C, *h.shape[2:]), B * self.norm.num_groups, weight, bias, self.norm.eps)
            return out.reshape(h.shape)
        shape = (h.shape[0], -1) + (1,) * (h.dim() - 2)
        return self.norm(h) * (1 + scale.reshape(shape)) + shift.reshape(shape)


class ResBlock(nn.Module):
    """Pre-activation residual block with adaptive normalisation. [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, cfg: NetConfig) -> None:
        super().__init__()
        self.norm1 = AdaptiveNorm(cfg.norm, c_in, emb_dim, 2)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = AdaptiveNorm(cfg.norm, c_out, emb_dim, 2)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.act = activation(cfg.act)
        self.dropout = nn.Dropout(cfg.dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x, emb)))
        h = self.conv2(self.dropout(self.act(self.norm2(h, emb))))
        return (self.skip(x) + h) / math.sqrt(2)


class Attention(nn.Module):
    """Single-head self-attention over the pixels of [B, C, H, W]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(32, channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(B, C, H, W)
        return (x + self.out(h)) / math.sqrt(2)


class UNetGenerator(nn.Module):
    """G(x_t, t, z, y): [B, C, R, R], [B] in [0, 1], [B, z_dim], [B] class -> [B, C, R, R]."""

    def __init__(self, in_channels: int, resolution: int, cfg: NetConfig, num_classes: int = 0) -> None:
        super().__init__()
        check_net_config(cfg)
        emb_dim = 4 * cfg.channels
        self.embed = Embedding(cfg.channels, emb_dim, cfg.z_dim, cfg.act, num_classes)
        self.stem = nn.Conv2d(in_channels, cfg.channels, 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        widths, c, res = [cfg.channels], cfg.channels, resolution
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_blocks):
                self.down.append(self._block(c, cfg.channels * mult, res, emb_dim, cfg))
                c = cfg.channels * mult
                widths.append(c)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                widths.append(c)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, cfg), Attention(c), ResBlock(c, c, emb_dim, cfg)])
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_blocks + 1):
                self.up.append(self._block(c + widths.pop(), cfg.channels * mult, res, emb_dim, cfg))
                c = cfg.channels * mult
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode=cfg.upsample))
                res *= 2
        self.head = nn.Sequential(norm_layer(cfg.norm, c, 2), activation(cfg.act), nn.Conv2d(c, in_channels, 3, padding=1))
        init_weights(self, cfg.init)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @staticmethod
    def _block(c_in: int, c_out: int, res: int, emb_dim: int, cfg: NetConfig) -> nn.Module:
        block = ResBlock(c_in, c_out, emb_dim, cfg)
        if res in cfg.attn_resolutions:
            return _Sequential(block, Attention(c_out))
        return block

    def forward(self, x: Tensor, t: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        emb = self.embed(t, z, y)
        skips, h = self._encode(x, emb)
        for layer in self.up:
            if isinstance(layer, (ResBlock, _Sequential)):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.head(h)

    def _encode(self, x: Tensor, emb: Tensor) -> tuple[list[Tensor], Tensor]:
        """The encoder: the stem's and every down layer's output (the decoder's skips), and the middle's."""
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, (ResBlock, _Sequential)) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        return skips, h

    def encoder_features(self, x: Tensor, t: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> list[Tensor]:
        """The encoder's features of x_t at time t, coarsest last: the output of each resolution's last
        block ([B, C_r, r, r] for every resolution r) and of the middle. What a discriminator built on a
        trained denoiser reads (`FeatureDiscriminator`)."""
        skips, h = self._encode(x, self.embed(t, z, y))
        # skips[i] is the input of down[i]: what a resolution ends with is the input of its downsampling.
        ends = [skips[i] for i, layer in enumerate(self.down) if isinstance(layer, nn.Conv2d)]
        return [*ends, skips[-1], h]


class _Sequential(nn.Module):
    """A residual block followed by attention, both taking the embedding."""

    def __init__(self, block: ResBlock, attn: Attention) -> None:
        super().__init__()
        self.block, self.attn = block, attn

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attn(self.block(x, emb))


class FourierFeatures(nn.Module):
    """[B, D] -> [B, D * (1 + 2 * octaves)]: x, sin(2^k pi x), cos(2^k pi x) for k < octaves.

    Plain MLPs fit low frequencies first; on data with sharp structure (2-D mixtures with
    narrow modes) these features let both networks resolve it within a short training.
    """

    def __init__(self, dim: int, octaves: int) -> None:
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(octaves, dtype=torch.float32), persistent=False)
        self.out_dim = dim * (1 + 2 * octaves)

    def forward(self, x: Tensor) -> Tensor:
        if len(self.freqs) == 0:
            return x
        a = (x[:, :, None] * self.freqs).flatten(1)
        return torch.cat([x, a.sin(), a.cos()], dim=1)


class MLPGenerator(nn.Module):
    """G(x_t, t, z, y) for vectors: [B, D], [B], [B, z_dim], [B] class -> [B, D]."""

    def __init__(self, dim: int, cfg: NetConfig, num_classes: int = 0) -> None:
        super().__init__()
        check_net_config(cfg)
        width = cfg.channels
        self.embed = Embedding(width, width, cfg.z_dim, cfg.act, num_classes)
        self.features = FourierFeatures(dim, cfg.fourier)
        self.inp = nn.Linear(self.features.out_dim, width)
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(cfg.num_blocks))
        self.norms = nn.ModuleList(AdaptiveNorm(cfg.norm, width, width, 1) for _ in range(cfg.num_blocks))
        self.act = activation(cfg.act)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(width, dim)
        init_weights(self, cfg.init)

    def forward(self, x: Tensor, t: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        _, h = self._encode(x, self.embed(t, z, y))
        return self.out(self.act(h))

    def _encode(self, x: Tensor, emb: Tensor) -> tuple[list[Tensor], Tensor]:
        """Every block's output ([B, width] each) and the features the output layer reads."""
        h = self.inp(self.features(x)) + emb
        blocks = []
        for layer, norm in zip(self.layers, self.norms):
            h = h + layer(self.dropout(self.act(norm(h, emb))))
            blocks.append(h)
        return blocks, h

    def encoder_features(self, x: Tensor, t: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> list[Tensor]:
        """The hidden features of x_t at time t, [B, width] after each block: what a discriminator built on a
        trained denoiser reads (`FeatureDiscriminator`)."""
        return self._encode(x, self.embed(t, z, y))[0]


class ConvDiscriminator(nn.Module):
    """D(x, x_t, t, y) for images: two [B, C, R, R], [B] in [0, 1] and [B] class -> logits [B].

    With mbstd_group, the last features gain one channel: how much they vary across a group of
    samples (Karras et al., Progressive GANs), which lets D see a generator that makes too
    little variety.
    """

    def __init__(self, in_channels: int, resolution: int, cfg: NetConfig, num_classes: int = 0) -> None:
        super().__init__()
        check_net_config(cfg)
        self.t_channels = cfg.channels
        self.stem = nn.Conv2d(2 * in_channels, cfg.channels, 3, padding=1)
        self.blocks, self.t_proj = nn.ModuleList(), nn.ModuleList()
        c, res = cfg.channels, resolution
        for mult in cfg.channel_mult:
            c_out = cfg.channels * mult
            self.t_proj.append(nn.Linear(cfg.channels, c))
            self.blocks.append(_DownBlock(c, c_out, cfg.act))
            c, res = c_out, res // 2
        self.act = activation(cfg.act)
        self.mbstd_group = cfg.mbstd_group
        self.head = nn.Linear(c + (1 if cfg.mbstd_group else 0), 1)
        self.label = label_projection(num_classes, self.head.in_features)
        self.t_embed = nn.Sequential(nn.Linear(cfg.channels, cfg.channels), activation(cfg.act))
        init_weights(self, cfg.init)

    def forward(self, x: Tensor, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        emb = self.t_embed(timestep_embedding(t, self.t_channels))
        h = self.stem(torch.cat([x, x_t], dim=1))
        for block, proj in zip(self.blocks, self.t_proj):
            h = block(h + proj(emb)[:, :, None, None])
        h = self.act(h)
        if self.mbstd_group:
            h = torch.cat([h, minibatch_std(h, self.mbstd_group)], dim=1)
        return projection_logits(h.sum(dim=(2, 3)), self.head, self.label, y)


class FeatureDiscriminator(nn.Module):
    """D(x, x_t, t, y) on a frozen network's features: x of `shape` ([B, C, R, R] or [B, D]), [B] in [0, 1] and
    [B] class -> logits [B].

    `trunk` (a generator, e.g. a trained diffusion teacher) turns x at time t into features: a UNet's at each
    resolution, an MLP's after each block (`encoder_features`). A small trainable head per feature map scores
    each (a 3x3 conv, activation and the mean over positions for images; a linear layer and activation for
    vectors; then a linear layer and class projection), and the logit is the heads' mean.
    Only the heads are parameters: the trunk is held outside the module's registry, so it is neither
    trained, nor saved in D's state dict, nor moved by `.to()`; gradients still flow through it to x
    (the generator's adversarial loss and R1). x_t is ignored: D judges x alone (`noised_logits`), as
    Latent Adversarial Diffusion Distillation judges its teacher's features of noised samples. A class y
    goes to the trunk (a class-conditional one) and to each head's projection.
    """

    def __init__(self, trunk: nn.Module, shape: tuple[int, ...], width: int = 64, act: str = "silu",
                 num_classes: int = 0) -> None:
        super().__init__()
        self._trunk = (trunk,)  # a tuple: not a submodule
        like = next(trunk.parameters())  # the heads are made on the trunk's device, in its precision
        with torch.no_grad():
            probe = trunk.encoder_features(torch.zeros(1, *shape).to(like), torch.zeros(1).to(like))
        if not probe:  # an MLP of no hidden blocks
            raise UserError("--d-features teacher: the teacher's network has no hidden blocks to read; use --d-features own")
        # "convs": the name of the image heads' first layers in checkpoints; a vector's is linear.
        self.convs = nn.ModuleList(nn.Conv2d(f.shape[1], width, 3, padding=1) if f.dim() == 4
                                   else nn.Linear(f.shape[1], width) for f in probe)
        self.heads = nn.ModuleList(nn.Linear(width, 1) for _ in probe)
        self.labels = nn.ModuleList(label_projection(num_classes, width) for _ in probe) if num_classes else None
        self.act = activation(act)
        self.to(like)

    @property
    def trunk(self) -> nn.Module:
        return self._trunk[0]

    def forward(self, x: Tensor, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        trunk = self.trunk
        features = trunk.encoder_features(x, t) if y is None else trunk.encoder_features(x, t, None, y)
        logits = []
        for i, (f, conv, head) in enumerate(zip(features, self.convs, self.heads)):
            h = self.act(conv(f))
            h = h.mean(dim=(2, 3)) if h.dim() == 4 else h
            logits.append(projection_logits(h, head, self.labels[i] if self.labels else None, y).float())
        return torch.stack(logits).mean(0)


def label_projection(num_classes: int, features: int) -> nn.Embedding | None:
    """A class-conditional discriminator's class embeddings, as wide as its last features (None: unconditional)."""
    if not num_classes:
        return None
    label = nn.Embedding(num_classes, features)
    nn.init.normal_(label.weight, std=features**-0.5)
    return label


def projection_logits(h: Tensor, head: nn.Linear, label: nn.Embedding | None, y: Tensor | None) -> Tensor:
    """Logits [B] from D's last features h [B, F]: the linear head, plus for a class y [B] the inner
    product of h with the class's embedding (the projection discriminator)."""
    out = head(h).squeeze(1)
    if label is None or y is None:
        return out
    return out + (label(y).to(h.dtype) * h).sum(1)


def minibatch_std(h: Tensor, group: int) -> Tensor:
    """[B, C, H, W] -> [B, 1, H, W]: the mean over features of their standard deviation across
    each sample's group. Groups take every (B/g)-th sample; g is the largest divisor of B up to
    `group`, so any batch size works (a group of one gives about 0)."""
    b = h.shape[0]
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    y = h.float().reshape(g, b // g, *h.shape[1:])
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [B/g]
    return std.repeat(g)[:, None, None, None].expand(b, 1, *h.shape[2:]).to(h.dtype)


class _DownBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(self.act(self.conv1(self.act(x))))
        h = F.avg_pool2d(h, 2) if h.shape[-1] > 1 else h
        skip = self.skip(F.avg_pool2d(x, 2) if x.shape[-1] > 1 else x)
        return (h + skip) / math.sqrt(2)


class MLPDiscriminator(nn.Module):
    """D(x, x_t, t, y) for vectors: two [B, D], [B] in [0, 1] and [B] class -> logits [B].

    The time embedding is projected and added to the first hidden layer, so the few input
    coordinates are not drowned among the embedding's many dimensions.
    """

    def __init__(self, dim: int, cfg: NetConfig, num_classes: int = 0) -> None:
        super().__init__()
        check_net_config(cfg)
        width = cfg.channels
        self.t_channels = width
        self.features = FourierFeatures(dim, cfg.fourier)
        self.inp = nn.Linear(2 * self.features.out_dim, width)
        self.t_proj = nn.Sequential(nn.Linear(width, width), activation(cfg.act), nn.Linear(width, width))
        layers: list[nn.Module] = [activation(cfg.act)]
        for _ in range(cfg.num_blocks - 1):
            layers += [nn.Linear(width, width), activation(cfg.act)]
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))  # the last layer is the head
        self.label = label_projection(num_classes, width)
        init_weights(self, cfg.init)

    def forward(self, x: Tensor, x_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.inp(torch.cat([self.features(x), self.features(x_t)], dim=1))
        h = h + self.t_proj(timestep_embedding(t, self.t_channels))
        return projection_logits(self.net[:-1](h), self.net[-1], self.label, y)
