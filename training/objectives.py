"""Objectives: what each training phase computes.

An objective names its phases (which network a phase updates, and how often) and returns the
loss of a phase for a step. The trainer loop stays generic: for each due phase it enables the
phase's network, asks for the loss, and steps that network's optimiser.

Notation: a step draws levels t in 1..T; real x_{t-1} ~ q(x_{t-1} | x_0) and
x_t ~ q(x_t | x_{t-1}). The generator sees x_t and outputs x0' (or eps'); the fake
x'_{t-1} ~ q(x_{t-1} | x_t, x0'). The discriminator judges pairs (x_{t-1}, x_t) at level t, or
(x_0, x_t): the real x_0 against x0' (d_pair).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridgan.hybrid.model import Model
from hybridgan.training.stats import Stats


@dataclass(frozen=True)
class Phase:
    name: str  # "G", "D" or "Dreg"; also the stats prefix Loss/<name>
    network: str  # the Model attribute the phase updates: "G" or "D"
    interval: int = 1  # run on steps where step % interval == 0


@dataclass
class Batch:
    """The random draws of one step. Tensors are [B, ...] on the training device."""

    x0: Tensor
    t: Tensor  # [B] long, 1..T
    x_prev: Tensor  # real x_{t-1}
    x_t: Tensor
    z: Tensor | None
    noise: Tensor  # the posterior noise of the fake, or the DDPM target noise
    d_noise: Tensor | None = None  # instance noise added to both samples D judges (unit std; None: off)
    shifts: Tensor | None = None  # [2, B, 2] long: (dy, dx) of the real and the fake pair D judges (None: off)
    x0_pred: Tensor | None = None
    fake_prev: Tensor | None = None


OBJECTIVES: dict[str, type[Objective]] = {}


def register(name: str) -> Callable[[type[Objective]], type[Objective]]:
    def deco(cls: type[Objective]) -> type[Objective]:
        OBJECTIVES[name] = cls
        cls.name = name
        return cls

    return deco


class Objective:
    """Base: draws a step's batch; subclasses define `phases` and `loss`."""

    name = ""
    phases: tuple[Phase, ...] = ()

    def __init__(self, model: Model, stats: Stats, denoise_weight: float = 0.0, r1_gamma: float = 0.0,
                 r1_every: int = 16, d_pair: str = "x_prev", d_noise: float = 0.0, d_augment: str = "none") -> None:
        self.model, self.stats = model, stats
        self.denoise_weight, self.r1_gamma, self.r1_every = denoise_weight, r1_gamma, r1_every
        self.d_pair, self.d_noise, self.d_augment = d_pair, d_noise, d_augment

    def draw(self, x0: Tensor, gen: torch.Generator) -> Batch:
        T, B = self.model.cfg.steps, x0.shape[0]
        sched = self.model.schedule
        t = torch.randint(1, T + 1, (B,), generator=gen, device=x0.device)
        x_prev = sched.q_sample(x0, t - 1, torch.randn(x0.shape, generator=gen, device=x0.device))
        x_t = sched.q_step(x_prev, t - 1, torch.randn(x0.shape, generator=gen, device=x0.device))
        zd = self.model.z_dim
        z = torch.randn((B, zd), generator=gen, device=x0.device) if zd else None
        noise = torch.randn(x0.shape, generator=gen, device=x0.device)
        d_noise = torch.randn(x0.shape, generator=gen, device=x0.device) if self.d_noise else None
        shifts = None
        if self.d_augment == "translate":
            reach = max(1, x0.shape[-1] // 8)  # an eighth of the side (DiffAugment's translation)
            shifts = torch.randint(-reach, reach + 1, (2, B, 2), generator=gen, device=x0.device)
        return Batch(x0=x0, t=t, x_prev=x_prev, x_t=x_t, z=z, noise=noise, d_noise=d_noise, shifts=shifts)

    def begin(self, batch: Batch) -> None:
        """Work shared by the phases of one step (run under autocast, with G trainable)."""

    def loss(self, phase: Phase, batch: Batch) -> Tensor:
        raise NotImplementedError


@register("ddpm")
class DDPM(Objective):
    """Denoising only: the generator's noise (or x_0) estimate against the truth, MSE."""

    phases = (Phase("G", "G"),)

    def draw(self, x0: Tensor, gen: torch.Generator) -> Batch:
        T, B = self.model.cfg.steps, x0.shape[0]
        t = torch.randint(1, T + 1, (B,), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device)
        x_t = self.model.schedule.q_sample(x0, t, noise)
        return Batch(x0=x0, t=t, x_prev=x_t, x_t=x_t, z=None, noise=noise)

    def loss(self, phase: Phase, batch: Batch) -> Tensor:
        model = self.model
        out = model.G(batch.x_t, batch.t.float() / model.cfg.steps, None).float()
        target = model.prediction_target(batch.x0, batch.t, batch.noise)
        per_sample = (out - target).square().flatten(1).mean(1)
        self.stats.report_per_level("Loss/G/denoise", per_sample, batch.t, model.cfg.steps)
        return per_sample.mean()


@register("ddgan")
class DDGAN(Objective):
    """Adversarial only: non-saturating GAN loss, lazy R1 on real pairs.

    D judges (x_{t-1}, x_t) pairs, real against the fake posterior sample (d_pair "x_prev"),
    or (x_0, x_t) pairs, real against the generator's estimate x0' (d_pair "x0"). A generator
    whose x0' ~ q(x_0 | x_t) fools both and makes every posterior step exact. Judging x_0 is the
    easier task at high noise levels, where x_{t-1} is mostly noise.
    """

    @property
    def phases(self) -> tuple[Phase, ...]:  # type: ignore[override]
        return (Phase("D", "D"), Phase("Dreg", "D", self.r1_every), Phase("G", "G"))

    def begin(self, batch: Batch) -> None:
        model = self.model
        batch.x0_pred = model.predict_x0(model.G, batch.x_t, batch.t, batch.z)
        batch.fake_prev = model.schedule.posterior_sample(batch.x_t, batch.x0_pred.float(), batch.t, batch.noise)

    def _d(self, x: Tensor, x_t: Tensor, batch: Batch) -> Tensor:
        return self.model.D(x, x_t, batch.t.float() / self.model.cfg.steps).float()

    def _pair(self, batch: Batch) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """The real and the fake sample D judges, each beside its x_t: both samples plus the same
        instance noise, and each pair (sample and x_t alike) moved by its own random shift."""
        real, fake = (batch.x0, batch.x0_pred) if self.d_pair == "x0" else (batch.x_prev, batch.fake_prev)
        if batch.d_noise is not None:
            noise = self.d_noise * batch.d_noise
            real, fake = real + noise, fake + noise
        if batch.shifts is None:
            return (real, batch.x_t), (fake, batch.x_t)
        return ((translate(real, batch.shifts[0]), translate(batch.x_t, batch.shifts[0])),
                (translate(fake, batch.shifts[1]), translate(batch.x_t, batch.shifts[1])))

    def loss(self, phase: Phase, batch: Batch) -> Tensor:
        (real_x, real_xt), (fake_x, fake_xt) = self._pair(batch)
        if phase.name == "D":
            real, fake = self._d(real_x, real_xt, batch), self._d(fake_x.detach(), fake_xt, batch)
            self.stats.report("D/logit/real", real)
            self.stats.report("D/logit/fake", fake)
            self.stats.report_per_level("D/logit/real", real, batch.t, self.model.cfg.steps)
            loss = F.softplus(fake).mean() + F.softplus(-real).mean()
            self.stats.report("Loss/D/main", loss)
            return loss
        if phase.name == "Dreg":
            return self._r1(real_x, real_xt, batch)
        fake = self._d(fake_x, fake_xt, batch)
        loss = F.softplus(-fake).mean()
        self.stats.report("Loss/G/adv", loss)
        return loss + self._denoise(batch)

    def _denoise(self, batch: Batch) -> Tensor:
        return batch.x0.new_zeros(())

    def _r1(self, real_x: Tensor, real_xt: Tensor, batch: Batch) -> Tensor:
        x = real_x.detach().float().requires_grad_(True)
        # The penalty backpropagates through a gradient (double backward), which compiled graphs
        # (aot_autograd) do not support: under --compile, D runs eagerly here.
        with torch.autocast(x.device.type, enabled=False), torch.compiler.set_stance("force_eager"):
            logits = self.model.D(x, real_xt.float(), batch.t.float() / self.model.cfg.steps)
            (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        penalty = grad.square().flatten(1).sum(1).mean()
        self.stats.report("Loss/D/r1", penalty)
        # Lazy regularisation: applied every r1_every steps with the weight scaled to match.
        return 0.5 * self.r1_gamma * self.r1_every * penalty


@register("hybrid")
class Hybrid(DDGAN):
    """DDGAN plus a weighted denoising term ||x0' - x_0||^2 in the generator loss."""

    def _denoise(self, batch: Batch) -> Tensor:
        per_sample = (batch.x0_pred.float() - batch.x0).square().flatten(1).mean(1)
        self.stats.report_per_level("Loss/G/denoise", per_sample, batch.t, self.model.cfg.steps)
        return self.denoise_weight * per_sample.mean()


def translate(images: Tensor, shift: Tensor) -> Tensor:
    """Each image [B, C, H, W] moved by its own (dy, dx) pixels (shift: [B, 2] long), with zeros
    shifted in; differentiable in the images."""
    reach = int(shift.abs().max())
    if reach == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (reach, reach, reach, reach))
    rows = torch.arange(h, device=images.device) + reach - shift[:, :1]  # [B, H]
    cols = torch.arange(w, device=images.device) + reach - shift[:, 1:]  # [B, W]
    index = torch.arange(b, device=images.device)[:, None, None]
    return padded[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]
