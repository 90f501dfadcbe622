"""The model bundle: a schedule, a generator (and its EMA), a discriminator, built from a config."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from hybridgan.hybrid.nets import ConvDiscriminator, MLPDiscriminator, MLPGenerator, NetConfig, UNetGenerator
from hybridgan.hybrid.schedule import Schedule, ScheduleKind


class Prediction(str, Enum):
    """What the generator outputs: the clean sample x_0 (GAN objectives), the noise (DDPM), or
    v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho), whose x_0 estimate passes
    x_t through where it still holds the signal."""

    X0 = "x0"
    EPS = "eps"
    V = "v"


@dataclass(frozen=True)
class ModelConfig:
    shape: tuple[int, ...] = (1, 16, 16)  # one sample: (C, H, W) for images, (D,) for vectors
    steps: int = 4  # T, the number of levels of the forward chain
    schedule: str = "vp"  # linear | cosine | vp | logsnr
    prediction: str = "x0"  # x0 | eps | v: what the generator outputs
    schedule_steps: int | None = None  # the levels are evenly spaced ones of this long a chain of the schedule (a
    # distilled student: its teacher's T, so that level k of T sits at the teacher's level k * schedule_steps / T); None: T
    schedule_top: int | None = None  # the highest of those levels (a student started below its teacher's noisiest level,
    # training.config.resolve_distill: level k of T sits at k * schedule_top / T); None: schedule_steps
    schedule_levels: tuple[int, ...] | None = None  # instead of evenly spaced ones, these T increasing levels of the
    # chain of schedule_steps (a student given one --student-sigma per level; schedule_top is then the last)
    frozen_levels: int = 0  # the lowest levels 1..frozen_levels run `Model.frozen`, a fixed network of G's architecture
    # (a distilled student's copy of its teacher, `train --teacher-levels`), not the generator
    sampler: str | None = None  # gan | ddpm | ddim: how samples are drawn unless asked otherwise (None: by the chain's length)
    classes: tuple[float, ...] = ()  # a class-conditional model: each class's share of its training data; (): unconditional
    generator: NetConfig = field(default_factory=NetConfig)  # the generator network
    discriminator: NetConfig | None = field(default_factory=NetConfig)  # None: no discriminator

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def num_classes(self) -> int:
        """The number of classes of a class-conditional model (0: unconditional)."""
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["shape"] = tuple(d["shape"])
        d["classes"] = tuple(d.get("classes", ()))
        if d.get("schedule_levels") is not None:
            d["schedule_levels"] = tuple(d["schedule_levels"])
        d["generator"] = net_config_from_dict(d["generator"])
        if d.get("discriminator") is not None:
            d["discriminator"] = net_config_from_dict(d["discriminator"])
        return cls(**d)


def net_config_from_dict(d: dict[str, Any]) -> NetConfig:
    known = {f.name for f in fields(NetConfig)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown network option(s) {sorted(unknown)}; known: {sorted(known)}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return NetConfig(**d)


def build_generator(cfg: ModelConfig) -> nn.Module:
    if cfg.is_image:
        c, h, w = cfg.shape
        if h != w:
            raise ValueError(f"images must be square, got {h}x{w}")
        return UNetGenerator(c, h, cfg.generator, cfg.num_classes)
    return MLPGenerator(cfg.shape[0], cfg.generator, cfg.num_classes)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    assert cfg.discriminator is not None
    if cfg.is_image:
        return ConvDiscriminator(cfg.shape[0], cfg.shape[1], cfg.discriminator, cfg.num_classes)
    return MLPDiscriminator(cfg.shape[0], cfg.discriminator, cfg.num_classes)


def run_generator(net: nn.Module, x_t: Tensor, time: Tensor, z: Tensor | None, y: Tensor | None) -> Tensor:
    """net(x_t, time, z), and y where there is a class: networks of unconditional models (a
    diffusers teacher among them) take no class argument."""
    return net(x_t, time, z) if y is None else net(x_t, time, z, y)


class Model(nn.Module):
    """Generator G, its exponential moving average G_ema, discriminator D and the schedule.

    `past` holds copies of G_ema from earlier in training, newest first (`remember`); samples are
    drawn from G_ema and these together (`generators`, hybrid.samplers.sample).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        ScheduleKind(cfg.schedule)
        Prediction(cfg.prediction)
        self.cfg = cfg
        self.schedule = Schedule(cfg.schedule, cfg.steps, cfg.schedule_steps, cfg.schedule_top, cfg.schedule_levels)
        if not 0 <= cfg.frozen_levels < cfg.steps:
            raise ValueError(f"frozen_levels must be in 0..{cfg.steps - 1} (steps {cfg.steps}), got {cfg.frozen_levels}")
        self.G = build_generator(cfg)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.frozen = copy.deepcopy(self.G_ema) if cfg.frozen_levels else None
        self.D = build_discriminator(cfg) if cfg.discriminator is not None else None
        self.past = nn.ModuleList()

    @property
    def z_dim(self) -> int:
        return self.cfg.generator.z_dim

    def predict_x0(self, net: nn.Module, x_t: Tensor, t: Tensor, z: Tensor | None, y: Tensor | None = None) -> Tensor:
        """The generator's estimate of x_0 from x_t at levels t ([B] long, 1..T), of class y ([B] long)
        for a class-conditional model."""
        out = run_generator(net, x_t, self.schedule.time_input(t), z, y)
        if self.cfg.prediction == Prediction.EPS:
            return self.schedule.eps_to_x0(x_t, t, out.float())
        if self.cfg.prediction == Prediction.V:
            return self.schedule.v_to_x0(x_t, t, out.float())
        return out

    def net_at(self, net: nn.Module, level: int) -> nn.Module:
        """What runs at `level` of the chain for the generator `net`: `frozen` at the lowest frozen_levels."""
        return self.frozen if level <= self.cfg.frozen_levels else net

    def train(self, mode: bool = True) -> Model:
        super().train(mode)
        if self.frozen is not None:  # fixed weights: never dropout
            self.frozen.eval()
        return self

    def prediction_target(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """What the generator should output for x_t = q_sample(x0, t, eps): the inverse of predict_x0."""
        if self.cfg.prediction == Prediction.EPS:
            return eps
        if self.cfg.prediction == Prediction.V:
            return self.schedule.v_target(x0, t, eps)
        return x0

    def generators(self, mixture: int | None = None) -> list[nn.Module]:
        """The networks samples are drawn from: G_ema, then its earlier states; the first `mixture` of them."""
        return [self.G_ema, *self.past][:mixture]

    def remember(self, keep: int) -> None:
        """Keep a copy of G_ema as it is now, and at most `keep` earlier states in all."""
        if keep > 0:
            self.past.insert(0, copy.deepcopy(self.G_ema))
            del self.past[keep:]

    def load_past(self, states: list[dict[str, Tensor]]) -> None:
        """Set `past` to generators with these state dicts (newest first), as a checkpoint stores them."""
        self.past = nn.ModuleList(copy.deepcopy(self.G_ema) for _ in states)
        for net, state in zip(self.past, states):
            net.load_state_dict(state)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        # One foreach call each instead of a Python loop over ~130 tensors: the same lerp_ and
        # copy_ kernels per tensor (bitwise the same), a fraction of the dispatch overhead.
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1 - decay)
        buffers = list(self.G_ema.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(self.G.buffers()))
