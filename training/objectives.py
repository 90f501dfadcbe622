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

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.model import Model, ModelConfig, run_generator
from hybridgan.hybrid.nets import FeatureDiscriminator
from hybridgan.hybrid.samplers import sample_batched, sample_labels, start_noise
from hybridgan.hybrid.schedule import Schedule
from hybridgan.training import distributed
from hybridgan.training.config import REGRESS_PAIRS, TrainConfig, check_dm_loss, default_model, dm_levels
from hybridgan.training.stats import Stats
from hybridgan.training.teacher import DiffusersEps, Teacher, load_teacher


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
    y: Tensor | None = None  # [B] long: the class of each real sample (class-conditional models; None: off)


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

    @classmethod
    def prepare(cls, cfg: TrainConfig, data_shape: tuple[int, ...], resumed: bool) -> tuple[TrainConfig, dict[str, Any]]:
        """Before the run directory exists: read and check what the objective needs besides the
        data (bad input fails here, as one line), and complete the config with what it implies.
        Returns the config and the keyword arguments `build` takes beyond it."""
        return cfg, {}

    @classmethod
    def build(cls, model: Model, stats: Stats, cfg: TrainConfig, **inputs: Any) -> Objective:
        """The objective of a run with the resolved `cfg` (inputs: from `prepare`)."""
        return cls(model, stats, cfg.denoise_weight, cfg.r1_gamma, cfg.r1_every, cfg.d_pair, cfg.d_noise, cfg.d_augment)

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        """Networks the objective trains besides the model's G and D (their phases name them); the
        trainer gives each an optimiser and keeps it in the checkpoint."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the objective itself changes while training, besides its networks (plain numbers and
        tensors): the trainer keeps it in the checkpoint, so a resumed run continues exactly. {}: none."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def draw(self, x0: Tensor, gen: torch.Generator, y: Tensor | None = None) -> Batch:
        """The step's random draws for real data x0 [B, ...] of classes y ([B] long, or None)."""
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
            reach = translate_reach(x0.shape[-1])
            shifts = torch.randint(-reach, reach + 1, (2, B, 2), generator=gen, device=x0.device)
        return Batch(x0=x0, t=t, x_prev=x_prev, x_t=x_t, z=z, noise=noise, d_noise=d_noise, shifts=shifts, y=y)

    def begin(self, batch: Batch, due: tuple[Phase, ...] | None = None) -> None:
        """Work shared by the phases of one step (run under autocast, with G trainable); due: the
        phases this step runs (None: all)."""

    def loss(self, phase: Phase, batch: Batch) -> Tensor:
        raise NotImplementedError

    @property
    def d_phases(self) -> tuple[Phase, ...]:
        """D's phases: its loss every step, and R1 every r1_every steps where r1_gamma > 0. At 0 there is
        no Dreg phase: a zero penalty's step would still move D by Adam's momentum, and cost a double backward."""
        r1 = (Phase("Dreg", "D", self.r1_every),) if self.r1_gamma else ()
        return (Phase("D", "D"), *r1)

    def _lazy_r1(self, penalty: Tensor) -> Tensor:
        """The loss of the Dreg phase from an R1 penalty (`r1_penalty`), reported as Loss/D/r1. Lazy
        regularisation: applied every r1_every steps with the weight scaled to match."""
        self.stats.report("Loss/D/r1", penalty)
        return 0.5 * self.r1_gamma * self.r1_every * penalty


@register("ddpm")
class DDPM(Objective):
    """Denoising only: the generator's noise (or x_0) estimate against the truth, MSE."""

    phases = (Phase("G", "G"),)

    def draw(self, x0: Tensor, gen: torch.Generator, y: Tensor | None = None) -> Batch:
        T, B = self.model.cfg.steps, x0.shape[0]
        t = torch.randint(1, T + 1, (B,), generator=gen, device=x0.device)
        noise = torch.randn(x0.shape, generator=gen, device=x0.device)
        x_t = self.model.schedule.q_sample(x0, t, noise)
        return Batch(x0=x0, t=t, x_prev=x_t, x_t=x_t, z=None, noise=noise, y=y)

    def loss(self, phase: Phase, batch: Batch) -> Tensor:
        model = self.model
        out = run_generator(model.G, batch.x_t, batch.t.float() / model.cfg.steps, None, batch.y).float()
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
        return (*self.d_phases, Phase("G", "G"))

    def begin(self, batch: Batch, due: tuple[Phase, ...] | None = None) -> None:
        model = self.model
        batch.x0_pred = model.predict_x0(model.G, batch.x_t, batch.t, batch.z, batch.y)
        if self.d_pair != "x0":  # D judging x_0 never sees the fake x_{t-1}: not drawn (its noise still is, in `draw`)
            batch.fake_prev = model.schedule.posterior_sample(batch.x_t, batch.x0_pred.float(), batch.t, batch.noise)

    def _d(self, x: Tensor, x_t: Tensor, batch: Batch) -> Tensor:
        return self.model.D(x, x_t, batch.t.float() / self.model.cfg.steps, batch.y).float()

    def _d_real_fake(self, real: tuple[Tensor, Tensor], fake: tuple[Tensor, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
        """D's logits [B] of the real and of the fake pair, in one call on both stacked: half the
        calls, a third less CPU time for the phase at batch 16. Each sample's logit is its own (D
        has no batch statistics), but D's weight gradient then sums both halves in one reduction
        instead of two added: the same to float rounding (tests/test_training.py). Not with the
        minibatch standard deviation, whose groups would mix real and fake samples."""
        cfg = self.model.cfg
        if cfg.discriminator is not None and cfg.discriminator.mbstd_group:
            return self._d(*real, batch), self._d(*fake, batch)
        # Per-sample [B] fields (the levels t, and any other D reads through `_d`) for both halves.
        both = dataclasses.replace(batch, **{f.name: v.repeat(2) for f in dataclasses.fields(batch)
                                             if isinstance(v := getattr(batch, f.name), Tensor) and v.dim() == 1})
        return self._d(torch.cat([real[0], fake[0]]), torch.cat([real[1], fake[1]]), both).chunk(2)

    def _pair(self, batch: Batch) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """The real and the fake sample D judges, each beside its x_t: both samples plus the same
        instance noise, and each pair (sample and x_t alike) moved by its own random shift."""
        real, fake = (batch.x0, batch.x0_pred) if self.d_pair == "x0" else (batch.x_prev, batch.fake_prev)
        if batch.d_noise is not None:
            noise = self.d_noise * batch.d_noise
            real, fake = real + noise, fake + noise
        if batch.shifts is None:
            return (real, batch.x_t), (fake, batch.x_t)
        reach = translate_reach(batch.x_t.shape[-1])  # known here: reading it off the shifts would sync a GPU
        return ((translate(real, batch.shifts[0], reach), translate(batch.x_t, batch.shifts[0], reach)),
                (translate(fake, batch.shifts[1], reach), translate(batch.x_t, batch.shifts[1], reach)))

    def loss(self, phase: Phase, batch: Batch) -> Tensor:
        (real_x, real_xt), (fake_x, fake_xt) = self._pair(batch)
        if phase.name == "D":
            real, fake = self._d_real_fake((real_x, real_xt), (fake_x.detach(), fake_xt), batch)
            self.stats.report("D/logit/real", real)
            self.stats.report("D/logit/fake", fake)
            self.stats.report_per_level("D/logit/real", real, batch.t, self.model.cfg.steps)
            self.stats.report_per_level("D/logit/fake", fake, batch.t, self.model.cfg.steps)
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
        t_in = batch.t.float() / self.model.cfg.steps
        return self._lazy_r1(r1_penalty(self.model.D, real_x, real_xt, t_in, batch.y))


@register("hybrid")
class Hybrid(DDGAN):
    """DDGAN plus a weighted denoising term ||x0' - x_0||^2 in the generator loss."""

    def _denoise(self, batch: Batch) -> Tensor:
        per_sample = (batch.x0_pred.float() - batch.x0).square().flatten(1).mean(1)
        self.stats.report_per_level("Loss/G/denoise", per_sample, batch.t, self.model.cfg.steps)
        return self.denoise_weight * per_sample.mean()


def r1_penalty(D: torch.nn.Module, x: Tensor, x_t: Tensor | None, t_in: Tensor, y: Tensor | None = None) -> Tensor:
    """R1: the mean over the batch of |grad_x D(x, x_t, t_in, y)|^2 at real samples x [B, ...] of classes y,
    in fp32. x_t None: D judges x beside itself (`noised_logits`), and the gradient is taken through both."""
    x = x.detach().float().requires_grad_(True)
    # The penalty backpropagates through a gradient (double backward), which compiled graphs
    # (aot_autograd) do not support: under --compile, D runs eagerly here.
    with torch.autocast(x.device.type, enabled=False), torch.compiler.set_stance("force_eager"):
        logits = D(x, x if x_t is None else x_t.float(), t_in, y)
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def noised_logits(D: torch.nn.Module, x_t: Tensor, t_in: Tensor, y: Tensor | None = None) -> Tensor:
    """D's logits [B] for noised samples x_t [B, ...] of classes y at time inputs t_in [B]: D judges a pair,
    and here the pair is x_t twice (there is nothing else to set beside it: Diffusion-GAN's D sees x_t and t)."""
    return D(x_t, x_t, t_in, y).float()


def translate_reach(side: int) -> int:
    """The largest shift of --d-augment translate: an eighth of the side (DiffAugment's translation)."""
    return max(1, side // 8)


def translate(images: Tensor, shift: Tensor, reach: int | None = None) -> Tensor:
    """Each image [B, C, H, W] moved by its own (dy, dx) pixels (shift: [B, 2] long), with zeros
    shifted in; differentiable in the images. reach: at least the largest |shift| (None: read
    from `shift`, a host-device sync on a GPU; the images themselves where it is 0)."""
    if reach is None:
        reach = int(shift.abs().max())
        if reach == 0:
            return images
    b, _, h, w = images.shape
    padded = F.pad(images, (reach, reach, reach, reach))
    rows = torch.arange(h, device=images.device) + reach - shift[:, :1]  # [B, H]
    cols = torch.arange(w, device=images.device) + reach - shift[:, 1:]  # [B, W]
    index = torch.arange(b, device=images.device)[:, None, None]
    return padded[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # [B, H, W, C] -> [B, C, H, W]


@dataclass
class DistillBatch:
    """The random draws of one distillation step. Tensors are [B, ...] on the training device;
    levels t_* are the teacher's (1..T, or 0..T-1 for D), `level` the student's (1..K)."""

    x0: Tensor  # real data, for the discriminator
    level: int  # the student level trained this step (one per step, the same on every rank)
    chain: Tensor  # [B, K, ...]: the student's starting noise at level K, then its posterior noise per step
    t_dm: Tensor  # [B] long: where the student's sample is noised for the distribution-matching gradient
    n_dm: Tensor
    t_fake: Tensor  # [B] long: where the fake denoiser learns to denoise the student's samples
    n_fake: Tensor
    t_d: Tensor  # [B] long: where D judges the real and the student's sample, noised alike
    n_real: Tensor
    n_gen: Tensor
    x0_pred: Tensor | None = None  # the student's sample at `level` (with its graph when G is due)
    y: Tensor | None = None  # [B] long: the class of each real sample, which the student's sample takes too (None: off)
    pair_index: Tensor | None = None  # [B] long: the regression pairs of this step (None: no regression)


@dataclass
class RegressionPairs:
    """What the student regresses onto: noise at the student's top level and the teacher's
    deterministic (DDIM) sample from the same noise at the top of its own chain."""

    noise: Tensor  # [M, ...]
    target: Tensor  # [M, ...]
    y: Tensor | None  # [M] long: the class of each pair (conditional models; None: off)


REGRESS_SEED_BASE = 2_000_000  # pair i's noise comes from seed REGRESS_SEED_BASE + i, past the eval seeds (1000000..1999999)
REGRESS_DDIM_STEPS = 25  # the teacher's ODE steps per target (cost against quality: docs/distill.md#a-regression-term)


SID_ALPHA = 1.2  # SiD's alpha, the weight of its second term (its choice for CIFAR-10, ImageNet 64 and FFHQ; 1.0 for AFHQ)


def gan_top(schedule: Schedule, sigma: float | None) -> int:
    """The highest teacher level at which distill's D judges samples: that of noise `sigma` (0: none, D
    judges clean samples; None: T - 1, every level but the last, as runs before --gan-sigma had it)."""
    if sigma is None:
        return schedule.T - 1
    return schedule.level_of_sigma(sigma) if sigma > 0 else 0


@register("distill")
class Distill(Objective):
    """A few-step student from a diffusion teacher: distribution matching (DMD) plus a GAN (DMD2).

    The student G has K levels, evenly spaced levels of the teacher's chain up to the level of noise
    `student_sigma` (ModelConfig.schedule_steps, schedule_top), or one at each of K sigmas
    (schedule_levels), so level k of K sees the time input the teacher sees at the level it stands
    for, and it starts as the teacher's denoiser there; sampling starts from pure noise at level K all
    the same (SiD's generator at sigma_init). The lowest `frozen_levels` levels may stay the
    teacher's denoiser (Model.frozen, a copy of the teacher's network): only the levels above train.
    A step trains G at one of its levels on its own samples ("backward simulation": the input at
    level k is drawn by running the current student from noise down through the levels above k,
    as `hybrid sample` does), so training sees what sampling will feed it, which noised real data
    would not. The student's x0' is noised to a teacher level t; the frozen teacher's x0 estimate
    ("real") and that of a fake denoiser ("fake": a copy of the teacher trained online by plain
    denoising of the student's samples) give the gradient (fake - real) / mean|x0' - real|, applied
    as the MSE to a detached target (DMD). D judges real data and student samples noised alike to a
    teacher level drawn evenly up to `gan_top` (0 by default: the samples as they are; DMD2's diffusion
    GAN draws from every level, where D sees mostly noise). The fake denoiser and D update every
    step, G every `fake_updates` steps (two time-scale). With `regress_weight`, G's loss adds the MSE
    between its one-step samples and the teacher's DDIM samples from the same noise (DMD's
    regression term; `RegressionPairs`, made once at the first student update). With `dm_loss` "sid"
    the distribution-matching term is SiD's loss instead of DMD's gradient (`_dm_loss`).
    """

    def __init__(self, model: Model, stats: Stats, teacher: Teacher, fake_updates: int = 5, gan_weight: float = 0.0,
                 r1_gamma: float = 0.0, r1_every: int = 16, regress_weight: float = 0.0,
                 regress_pairs: int = REGRESS_PAIRS, gan_sigma: float | None = None, dm_loss: str = "dmd",
                 d_features: str = "own", dm_sigma_min: float | None = None) -> None:
        super().__init__(model, stats, r1_gamma=r1_gamma, r1_every=r1_every)
        self.teacher, self.fake_updates, self.gan_weight = teacher, fake_updates, gan_weight
        check_dm_loss(dm_loss)  # a resumed run's config.json is not checked by check_distill
        self.dm_loss = dm_loss
        self.gan_top = gan_top(teacher.model.schedule, gan_sigma)
        self.dm_levels = dm_levels(teacher.model.schedule, dm_sigma_min)
        self.regress_weight, self.regress_pairs = regress_weight, regress_pairs
        self.pairs: RegressionPairs | None = None  # made by the teacher at the first student update (timed with the run)
        device = next(model.G.parameters()).device
        teacher.model.to(device)
        self.fake = copy.deepcopy(teacher.net).requires_grad_(True).train()
        # D: the model's own network, or the objective's heads on the frozen teacher (trained and kept as its network).
        self.teacher_d = teacher_discriminator(teacher, model.cfg) if d_features == "teacher" else None
        self.D = self.teacher_d if self.teacher_d is not None else model.D
        # The student starts as the teacher where the networks match: the same weights and
        # parameterisation, so its level k is the teacher's denoiser at the level k stands for.
        if model.cfg.generator == teacher.model.cfg.generator and type(teacher.net) is type(model.G):
            model.G.load_state_dict(teacher.net.state_dict())
            model.G_ema.load_state_dict(teacher.net.state_dict())
        if model.frozen is not None:  # its lowest levels stay the teacher's denoiser (prepare refused a diffusers teacher)
            model.frozen.load_state_dict(teacher.net.state_dict())

    @classmethod
    def prepare(cls, cfg: TrainConfig, data_shape: tuple[int, ...], resumed: bool) -> tuple[TrainConfig, dict[str, Any]]:
        if cfg.d_features == "teacher" and cfg.gan_weight == 0:  # before the teacher is read
            raise UserError("--d-features teacher: only the discriminator uses it, and --gan-weight 0 turns it off; "
                            "drop one")
        teacher = load_teacher(cfg.teacher, data_shape, cfg.teacher_sha256 if resumed else None)
        has_features = hasattr(teacher.net, "encoder_features")
        if cfg.d_features == "teacher" and not has_features:
            raise UserError(f"--d-features teacher: reads the encoder features of a hybrid teacher; "
                            f"{cfg.teacher} has none (a diffusers teacher); use --d-features own")
        if cfg.teacher_levels and isinstance(teacher.net, DiffusersEps):
            raise UserError(f"--teacher-levels {cfg.teacher_levels}: keeps a copy of the teacher's network in the student, "
                            f"which needs one of hybrid's networks; {cfg.teacher} is a diffusers model")
        if not resumed:  # the student's top level follows from --student-sigma and --steps (config.resolve_distill)
            # D reads the teacher's features for images where it has them (docs/distill.md#the-teachers-features);
            # vectors keep their own D (docs/distill.md#the-teachers-features-on-25-gaussians).
            default = "teacher" if has_features and len(data_shape) == 3 and cfg.gan_weight != 0 else "own"
            cfg = cfg.replace(teacher_sha256=teacher.sha256, model=cfg.model or student_model(teacher),
                              d_features=cfg.d_features or default)
        return cfg, {"teacher": teacher}

    @classmethod
    def build(cls, model: Model, stats: Stats, cfg: TrainConfig, **inputs: Any) -> Objective:
        # `or`: configs of runs from before the regression term have None for its options.
        return cls(model, stats, inputs["teacher"], fake_updates=cfg.fake_updates, gan_weight=cfg.gan_weight,
                   r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every, regress_weight=cfg.regress_weight or 0.0,
                   regress_pairs=cfg.regress_pairs or REGRESS_PAIRS, gan_sigma=cfg.gan_sigma,
                   dm_loss=cfg.dm_loss if cfg.dm_loss is not None else "dmd", d_features=cfg.d_features or "own",
                   dm_sigma_min=cfg.dm_sigma_min)

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        return {"fake": self.fake, **({"D": self.teacher_d} if self.teacher_d is not None else {})}

    @property
    def phases(self) -> tuple[Phase, ...]:  # type: ignore[override]
        g_and_fake = (Phase("G", "G", self.fake_updates), Phase("fake", "fake"))
        return g_and_fake + (self.d_phases if self.gan_weight else ())

    @property
    def T(self) -> int:
        return self.teacher.model.cfg.steps

    def draw(self, x0: Tensor, gen: torch.Generator, y: Tensor | None = None) -> DistillBatch:  # type: ignore[override]
        B, K, T, dev = x0.shape[0], self.model.cfg.steps, self.T, x0.device

        def levels(lo: int, hi: int) -> Tensor:
            return torch.randint(lo, hi + 1, (B,), generator=gen, device=dev)

        def randn() -> Tensor:
            return torch.randn(x0.shape, generator=gen, device=dev)

        # A trained level: above the frozen ones, which stay the teacher's. A sync on a GPU, once per step.
        level = int(torch.randint(self.model.cfg.frozen_levels + 1, K + 1, (1,), generator=gen, device=dev))
        chain = torch.randn((B, K, *x0.shape[1:]), generator=gen, device=dev)
        t_dm, n_dm = levels(*self.dm_levels), randn()
        t_fake, n_fake = levels(1, T), randn()
        t_d, n_real, n_gen = levels(0, self.gan_top), randn(), randn()
        # Drawn only with the regression on, so that runs without it keep their random stream.
        pair_index = torch.randint(0, self.regress_pairs, (B,), generator=gen, device=dev) if self.regress_weight else None
        return DistillBatch(x0=x0, level=level, chain=chain, t_dm=t_dm, n_dm=n_dm, t_fake=t_fake, n_fake=n_fake,
                            t_d=t_d, n_real=n_real, n_gen=n_gen, y=y, pair_index=pair_index)

    def begin(self, batch: DistillBatch, due: tuple[Phase, ...] | None = None) -> None:  # type: ignore[override]
        x = self._student_input(batch)
        g_due = due is None or any(p.network == "G" for p in due)
        t = torch.full((len(x),), batch.level, dtype=torch.long, device=x.device)
        with torch.set_grad_enabled(g_due and torch.is_grad_enabled()):
            batch.x0_pred = self.model.predict_x0(self.model.G, x, t, None, batch.y).float()

    @torch.no_grad()
    def _student_input(self, batch: DistillBatch) -> Tensor:
        """x at the step's student level: the current student run from its noise at level K down
        through the levels above, exactly as the `gan` sampler walks them (x0 clamped for images)."""
        model, K = self.model, self.model.cfg.steps
        x = batch.chain[:, 0]
        for j, k in enumerate(range(K, batch.level, -1)):
            t = torch.full((len(x),), k, dtype=torch.long, device=x.device)
            x0 = model.predict_x0(model.G, x, t, None, batch.y).float()
            if model.cfg.is_image:
                x0 = x0.clamp(-1, 1)
            x = model.schedule.posterior_sample(x, x0, t, batch.chain[:, j + 1], t - 1)
        return x

    def loss(self, phase: Phase, batch: DistillBatch) -> Tensor:  # type: ignore[override]
        if phase.name == "G":
            loss = self._dm_loss(batch)
            if self.regress_weight:
                loss = loss + self.regress_weight * self._regress_loss(batch)
            if self.gan_weight:
                adv = F.softplus(-self._d(batch.x0_pred, batch.t_d, batch.n_gen, batch.y)).mean()
                self.stats.report("Loss/G/adv", adv)
                loss = loss + self.gan_weight * adv
            return loss
        if phase.name == "fake":
            return self._fake_loss(batch)
        if phase.name == "D":
            real = self._d(batch.x0, batch.t_d, batch.n_real, batch.y)
            fake = self._d(batch.x0_pred.detach(), batch.t_d, batch.n_gen, batch.y)
            self.stats.report("D/logit/real", real)
            self.stats.report("D/logit/fake", fake)
            loss = F.softplus(fake).mean() + F.softplus(-real).mean()
            self.stats.report("Loss/D/main", loss)
            return loss
        return self._r1(batch)

    def _dm_loss(self, batch: DistillBatch) -> Tensor:
        """The distribution-matching loss of the student's samples x0', noised to teacher levels t_dm,
        between the teacher's x0 estimate ("real") and the fake denoiser's ("fake"), per sample
        normalised by mean|x0' - real| over its elements (the scale). `dmd`: the MSE to a detached
        target, whose gradient in x0' is (fake - real) / scale. `sid`: SiD's loss (real - fake) .
        ((real - x0') - alpha (real - fake)) / scale, with the gradient also taken through both
        denoisers' inputs (their weights stay as they are: only G's parameters take gradients in
        this phase); its term in x0' alone is DMD's gradient, the norm `DM/grad_norm` reports for both.
        The fake denoiser runs in eval mode here, as the teacher does (dropout off)."""
        x0_pred, t = batch.x0_pred, batch.t_dm
        teacher = self.teacher.model
        sid = self.dm_loss == "sid" and x0_pred.requires_grad and torch.is_grad_enabled()  # a graph only to train G
        # fp32: eps -> x0 divides by sqrt(alpha_bar), down to 0.007 at 0.98 T of a linear chain;
        # bf16's three digits of eps would become errors of +-0.5 in x0.
        was_training = self.fake.training
        self.fake.eval()
        try:
            with torch.set_grad_enabled(sid), torch.autocast(x0_pred.device.type, enabled=False):
                x_t = teacher.schedule.q_sample(x0_pred if sid else x0_pred.detach(), t, batch.n_dm)
                real = teacher.predict_x0(self.teacher.net, x_t, t, None, batch.y).float()
                fake = teacher.predict_x0(self.fake, x_t, t, None, batch.y).float()
        finally:
            self.fake.train(was_training)
        with torch.no_grad():
            scale = (x0_pred - real).abs().flatten(1).mean(1).clamp_min(1e-12).reshape(-1, *[1] * (real.dim() - 1))
            grad = torch.nan_to_num((fake - real) / scale)
        if self.dm_loss == "sid":
            gap = real - fake
            per_sample = (gap * ((real - x0_pred) - SID_ALPHA * gap) / scale).flatten(1).mean(1)
        else:
            per_sample = 0.5 * (x0_pred - (x0_pred - grad).detach()).square().flatten(1).mean(1)
        self.stats.report("DM/grad_norm", grad.flatten(1).norm(dim=1))
        self.stats.report("DM/scale", scale.flatten())
        self.stats.report("Loss/G/dm", per_sample)
        self.stats.report_per_level("Loss/G/dm", per_sample, t, self.T)
        return per_sample.mean()

    def _regress_loss(self, batch: DistillBatch) -> Tensor:
        """The MSE between the student's one-step samples (its x0 estimate at its top level K, what NFE 1
        returns; the levels below learn by DM alone) and the teacher's ODE samples from the same noise
        (DMD's regression term, with MSE for LPIPS)."""
        if self.pairs is None:
            self.pairs = self._make_pairs(batch.x0.device)
        i = batch.pair_index
        noise, target, y = self.pairs.noise[i], self.pairs.target[i], None if self.pairs.y is None else self.pairs.y[i]
        top = torch.full((len(noise),), self.model.cfg.steps, dtype=torch.long, device=noise.device)
        x0 = self.model.predict_x0(self.model.G, noise, top, None, y).float()
        per_sample = (x0 - target).square().flatten(1).mean(1)
        self.stats.report("Loss/G/regress", per_sample)
        return per_sample.mean()

    @torch.no_grad()
    def _make_pairs(self, device: torch.device) -> RegressionPairs:
        """The teacher's DDIM samples (REGRESS_DDIM_STEPS steps from its top level) from the seeds
        REGRESS_SEED_BASE + i; the student gets the same noise at its own top level. A sample depends
        on its seed alone (`sample`), so a resumed run makes the same pairs."""
        teacher, n = self.teacher.model, self.regress_pairs
        seeds = list(range(REGRESS_SEED_BASE, REGRESS_SEED_BASE + n))
        y = sample_labels(self.model.cfg, None, seeds)
        noise = start_noise(seeds, teacher.cfg.shape)  # where `hybrid sample` starts the student's chain of each seed
        with torch.autocast(device.type, enabled=False):  # fp32, as in _dm_loss: eps -> x0 amplifies rounding
            target = sample_batched(teacher, seeds, batch=256, steps=min(REGRESS_DDIM_STEPS, self.T), sampler="ddim",
                                    device=device, net=self.teacher.net, labels=y)
        return RegressionPairs(noise.to(device), target.to(device), None if y is None else y.to(device))

    def _fake_loss(self, batch: DistillBatch) -> Tensor:
        """Plain denoising of the student's (detached) samples, in the teacher's parameterisation."""
        teacher, t = self.teacher.model, batch.t_fake
        x0 = batch.x0_pred.detach()
        x_t = teacher.schedule.q_sample(x0, t, batch.n_fake)
        out = run_generator(self.fake, x_t, t.float() / self.T, None, batch.y).float()
        per_sample = (out - teacher.prediction_target(x0, t, batch.n_fake)).square().flatten(1).mean(1)
        self.stats.report_per_level("Loss/fake/denoise", per_sample, t, self.T)
        return per_sample.mean()

    def _d(self, x0: Tensor, t: Tensor, noise: Tensor, y: Tensor | None) -> Tensor:
        """D's logits for samples x0 of classes y noised to teacher levels t (`noised_logits`)."""
        x_t = self.teacher.model.schedule.q_sample(x0, t, noise)
        return noised_logits(self.D, x_t, t.float() / self.T, y)

    def _r1(self, batch: DistillBatch) -> Tensor:
        x_t = self.teacher.model.schedule.q_sample(batch.x0, batch.t_d, batch.n_real)
        return self._lazy_r1(r1_penalty(self.D, x_t, None, batch.t_d.float() / self.T, batch.y))


def teacher_discriminator(teacher: Teacher, cfg: ModelConfig) -> FeatureDiscriminator:
    """`--d-features teacher`: trainable heads on the frozen teacher's encoder features of a sample at D's level
    (as LADD's discriminator reads its teacher's), on the teacher's device."""
    return FeatureDiscriminator(teacher.net, tuple(cfg.shape), num_classes=cfg.num_classes)


def student_model(teacher: Teacher) -> ModelConfig:
    """The student of a teacher: its network and parameterisation (it starts as the teacher's
    function), at levels evenly spaced below a level of the teacher's chain (`schedule_top`, set
    from --student-sigma by config.resolve_distill once the number of levels is known), sampled
    through itself (`gan`: the posterior step between levels that training simulates), and a
    discriminator for the data."""
    t = teacher.model.cfg
    d = default_model(tuple(t.shape), "hybrid").discriminator
    return dataclasses.replace(t, steps=1, schedule_steps=t.steps, schedule_top=None, sampler="gan", discriminator=d)


@dataclass
class DiffusionGANBatch:
    """The random draws of one Diffusion-GAN step. Tensors are [B, ...] on the training device."""

    x0: Tensor  # real data
    t: Tensor  # [B] long in 0..T: where D judges the real and the fake sample, diffused alike (0: as they are)
    alpha_bar: Tensor  # [B]: alpha_bar_t of the chain of this step's T (T may change within the step, after D)
    x_T: Tensor  # the generator's input noise (what `hybrid sample` draws from the seed at the chain's one level)
    z: Tensor | None
    n_real: Tensor  # the diffusion noise of the real sample
    n_fake: Tensor  # and of the fake one
    x0_pred: Tensor | None = None  # the generator's sample
    y: Tensor | None = None  # [B] long: the class of each real sample, which the generated one takes too (None: off)


DG_BETAS = (1e-4, 2e-2)  # the linear chain D's inputs are diffused along: beta_1 .. beta_T, whatever T is
DG_INTERVAL = 4  # D steps between adjustments of T (the paper's ada_interval)


def diffusion_gan_alpha_bar(T: int) -> Tensor:
    """alpha_bar[0..T] ([T + 1] float64, alpha_bar[0] = 1) of Diffusion-GAN's chain of T steps: betas
    linear in DG_BETAS, not rescaled with T (unlike `hybrid.schedule`'s linear chain), so a longer
    chain ends in more noise; this is what makes adapting T adapt the noise."""
    betas = torch.linspace(*DG_BETAS, T, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


def diffusion_gan_level_weights(T: int) -> Tensor:
    """Probabilities [T + 1] of the levels 0..T where D judges a sample: half at 0 (the samples as
    they are), half spread over 1..T in proportion to t (the paper's "priority" pi(t), which favours
    the noisier levels). The paper draws a table of 32 such levels (and 32 zeros) at each change of T
    and picks from it; drawing every level afresh keeps the same distribution without that state."""
    levels = torch.arange(T + 1, dtype=torch.float64)
    weights = 0.5 * levels / levels.sum()
    weights[0] = 0.5
    return weights


@register("diffusion-gan")
class DiffusionGAN(Objective):
    """Diffusion-GAN (Wang et al. 2023): a one-step generator, and a discriminator that judges real
    and generated samples diffused alike, y = sqrt(alpha_bar_t) x + sqrt(1 - alpha_bar_t) sigma eps,
    at levels t in 0..T (`diffusion_gan_level_weights`), told t / t_max.

    The chain's length T adapts to how well D tells real from fake: every DG_INTERVAL D steps,
    r_d = E[sign(D(real))] over those steps is set against a target; above it (D is overconfident on
    real data: overfitting) T grows, below it T shrinks, each time by (batch * DG_INTERVAL) /
    (ada_kimg * 1000) of the range t_min..t_max, so going the whole range takes ada_kimg kimg. T
    starts at t_min. The generator is the model's G at its one level: pure noise x_T and a latent z in,
    a sample out, as `hybrid sample` runs it (NFE 1).
    """

    @property
    def phases(self) -> tuple[Phase, ...]:  # type: ignore[override]
        return (*self.d_phases, Phase("G", "G"))

    def __init__(self, model: Model, stats: Stats, r1_gamma: float = 0.02, r1_every: int = 16, target: float = 0.6,
                 t_min: int = 10, t_max: int = 1000, ada_kimg: float = 100.0, noise: float = 0.05,
                 batch: int = 64) -> None:
        super().__init__(model, stats, r1_gamma=r1_gamma, r1_every=r1_every)
        self.target, self.t_min, self.t_max, self.noise = target, t_min, t_max, noise
        self.step_size = batch * DG_INTERVAL / (ada_kimg * 1000)  # of p, per adjustment
        self.device = next(model.G.parameters()).device
        self.p = 0.0  # where T stands in t_min..t_max, 0 to 1
        # sign(D(real)) summed since the last adjustment (on the device: no sync per step) and its count
        self.signs, self.count, self.d_steps = torch.zeros((), device=self.device), 0, 0
        self._set_T()

    @classmethod
    def build(cls, model: Model, stats: Stats, cfg: TrainConfig, **inputs: Any) -> Objective:
        return cls(model, stats, cfg.r1_gamma, cfg.r1_every, cfg.dg_target, cfg.dg_t_min, cfg.dg_t_max, cfg.dg_kimg,
                   cfg.dg_noise, cfg.batch)

    def _set_T(self) -> None:
        self.T = min(self.t_max, max(self.t_min, self.t_min + round(self.p * (self.t_max - self.t_min))))
        self.alpha_bar = diffusion_gan_alpha_bar(self.T).float().to(self.device)
        self.level_weights = diffusion_gan_level_weights(self.T).float().to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "signs": self.signs.detach().cpu(), "count": self.count, "d_steps": self.d_steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.p, self.count, self.d_steps = float(state["p"]), int(state["count"]), int(state["d_steps"])
        self.signs = state["signs"].to(self.device)
        self._set_T()

    def draw(self, x0: Tensor, gen: torch.Generator, y: Tensor | None = None) -> DiffusionGANBatch:  # type: ignore[override]
        B, dev = x0.shape[0], x0.device

        def randn() -> Tensor:
            return torch.randn(x0.shape, generator=gen, device=dev)

        t = torch.multinomial(self.level_weights, B, replacement=True, generator=gen)
        x_T = randn()
        zd = self.model.z_dim
        z = torch.randn((B, zd), generator=gen, device=dev) if zd else None
        return DiffusionGANBatch(x0=x0, t=t, alpha_bar=self.alpha_bar[t], x_T=x_T, z=z, n_real=randn(), n_fake=randn(),
                                 y=y)

    def begin(self, batch: DiffusionGANBatch, due: tuple[Phase, ...] | None = None) -> None:  # type: ignore[override]
        top = torch.ones(len(batch.x_T), dtype=torch.long, device=batch.x_T.device)  # the chain's one level
        batch.x0_pred = self.model.predict_x0(self.model.G, batch.x_T, top, batch.z, batch.y).float()

    def diffuse(self, x: Tensor, batch: DiffusionGANBatch, noise: Tensor) -> Tensor:
        """y ~ q(y_t | x): x [B, ...] diffused to the step's levels, noise of std sigma."""
        a = batch.alpha_bar.reshape(-1, *[1] * (x.dim() - 1))
        return a.sqrt() * x + (1 - a).sqrt() * (self.noise * noise)

    def _d(self, x: Tensor, batch: DiffusionGANBatch, noise: Tensor) -> Tensor:
        return noised_logits(self.model.D, self.diffuse(x, batch, noise), batch.t.float() / self.t_max, batch.y)

    def loss(self, phase: Phase, batch: DiffusionGANBatch) -> Tensor:  # type: ignore[override]
        if phase.name == "D":
            real = self._d(batch.x0, batch, batch.n_real)
            fake = self._d(batch.x0_pred.detach(), batch, batch.n_fake)
            self.stats.report("D/logit/real", real)
            self.stats.report("D/logit/fake", fake)
            loss = F.softplus(fake).mean() + F.softplus(-real).mean()
            self.stats.report("Loss/D/main", loss)
            self._observe(real)
            return loss
        if phase.name == "Dreg":
            x_t = self.diffuse(batch.x0, batch, batch.n_real)
            return self._lazy_r1(r1_penalty(self.model.D, x_t, None, batch.t.float() / self.t_max, batch.y))
        loss = F.softplus(-self._d(batch.x0_pred, batch, batch.n_fake)).mean()
        self.stats.report("Loss/G/adv", loss)
        return loss

    def _observe(self, real_logits: Tensor) -> None:
        """Count sign(D(real)) toward r_d; every DG_INTERVAL D steps, adjust T (a sync with the device,
        and a collective over ranks, so every rank keeps the same T)."""
        signs = real_logits.detach().sign()
        self.stats.report("DiffusionGAN/T", float(self.T))
        self.stats.report("DiffusionGAN/r_d", signs)
        self.signs, self.count = self.signs + signs.sum(), self.count + len(signs)
        self.d_steps += 1
        if self.d_steps % DG_INTERVAL == 0:
            sums, counts = distributed.sum_named({"r_d": self.signs}, {"r_d": torch.tensor(float(self.count))})
            self.adjust(sums["r_d"] / counts["r_d"])
            self.signs, self.count = torch.zeros((), device=self.device), 0

    def adjust(self, r_d: float) -> None:
        """Move T toward more noise when r_d exceeds the target, toward less when it falls short."""
        direction = (r_d > self.target) - (r_d < self.target)
        self.p = min(1.0, max(0.0, self.p + direction * self.step_size))
        self._set_T()
