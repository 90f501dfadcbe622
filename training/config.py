"""The training configuration: one frozen dataclass, written to RUN_DIR/config.json.

Fields left as None are "auto": `resolve` fills them from the data and the objective, and the
resolved config is what the run records, so `hybrid train --config RUN_DIR/config.json`
reproduces it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.model import ModelConfig
from hybridgan.hybrid.nets import NetConfig, check_net_config
from hybridgan.hybrid.samplers import Sampler
from hybridgan.hybrid.schedule import Schedule, base_levels
from hybridgan.training import PRESETS, preset_names


@dataclass(frozen=True)
class TrainConfig:
    data: str = "digits"  # dataset name or path (see `hybrid data list`)
    resolution: int | None = None  # image side in pixels (None: the dataset's own)
    objective: str = "hybrid"  # hybrid | ddgan | ddpm | distill | diffusion-gan
    cond: bool = False  # class-conditional: G and D take each sample's class (labelled data only)
    teacher: str | None = None  # distill: the teacher, a checkpoint of `hybrid train --objective ddpm`
    teacher_sha256: str | None = None  # distill: the teacher file's SHA-256 (set by the run; a resumed run checks it)
    fake_updates: int | None = None  # distill: fake-denoiser (and D) updates per student update (None: 2)
    gan_weight: float | None = None  # distill: weight of the adversarial loss beside distribution matching (None: default_gan_weight)
    teacher_levels: int | None = None  # distill: the student's lowest levels that stay the teacher's denoiser, a frozen
    # copy saved with the student (None: 0)
    student_sigma: float | tuple[float, ...] | None = None  # distill: the teacher's noise level at the student's top level,
    # its levels evenly spaced below (None: 1.0 for one level, else 2.5), or one per level
    gan_sigma: float | None = None  # distill: the highest noise level (EDM sigma) at which D judges samples (default 0:
    # clean; None in a run recorded before the option: every level, which its resume keeps)
    regress_weight: float | None = None  # distill: weight of the regression onto the teacher's ODE samples (None: 0)
    dm_loss: str | None = None  # distill: the distribution-matching loss, "dmd" or "sid" (None: dmd)
    dm_sigma_min: float | None = None  # distill: the lowest noise level (EDM sigma) of the distribution-matching
    # gradient (0: the teacher's first level; None, kept as None: 2% of its chain, DMD2's)
    d_features: str | None = None  # distill: what D reads, "own" (its own network on the samples) or "teacher" (heads on
    # the frozen teacher's encoder features) (None: teacher for a hybrid teacher of images, else own)
    regress_pairs: int | None = None  # distill: how many (noise, teacher sample) pairs the regression uses (None: 1024)
    dg_target: float | None = None  # diffusion-gan: the r_d = E[sign(D(real))] that T is adjusted toward (None: 0.6)
    dg_t_min: int | None = None  # diffusion-gan: the shortest chain D's inputs are diffused along, where T starts (None: 10)
    dg_t_max: int | None = None  # diffusion-gan: the longest (None: 1000); D is told t / dg_t_max
    dg_kimg: float | None = None  # diffusion-gan: kimg for T to cross from dg_t_min to dg_t_max at the fastest (None: 100)
    dg_noise: float | None = None  # diffusion-gan: the std sigma of the diffusion noise, relative to the data (None: 0.05)
    kimg: float = 40.0  # training length in thousands of real samples shown
    minutes: float = 0.0  # stop after this much training time (summed over resumed sessions); 0: no limit
    batch: int | None = None  # global batch size (None: 16 for images, 128 for vectors)
    seed: int = 0  # seeds weights, data order and noise
    lr_g: float | None = None  # generator learning rate (None: 2e-4)
    lr_d: float | None = None  # discriminator learning rate (None: by data)
    betas: tuple[float, float] = (0.5, 0.9)  # Adam betas of both networks (Denoising Diffusion GANs)
    lr_decay: str = "constant"  # constant, or cosine: both rates fall to 5% by the end of the run (its kimg or minutes)
    denoise_weight: float | None = None  # weight of the denoising loss in the hybrid generator loss
    r1_gamma: float | None = None  # R1 penalty weight on real data (None: 0.005 for the hybrid on images, else 0.02)
    r1_every: int = 16  # lazy R1: apply every this many steps (scaled up accordingly)
    d_pair: str | None = None  # what D judges beside x_t: x_prev (Denoising Diffusion GANs) or x0 (None: by data and objective)
    d_noise: float = 0.0  # std of Gaussian noise added to the real and the fake sample D judges (instance noise; 0: off)
    d_augment: str = "none"  # none | translate: random shifts of each pair D judges, real and fake alike (images)
    ema_kimg: float | None = None  # half-life of the generator EMA in kimg (None: 5 for the hybrid on images, else 10)
    ema_rampup: float = 0.05  # EMA half-life at most this fraction of the images seen so far
    mixture: int = 1  # generators samples are drawn from, one sample each in turn: G_ema and its states at the
    # mixture - 1 latest multiples of mixture_kimg before now (1: G_ema alone)
    mixture_kimg: float = 20.0  # kimg between the generator states kept for the mixture
    xflip: bool = False  # random horizontal flips of real images
    precision: str = "auto"  # auto | fp32 | bf16 (autocast); auto: bf16 for image models on native-bf16 hardware
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False  # torch.compile G and D (in place: checkpoints unchanged); falls back to eager if it cannot
    tick_kimg: float = 4.0  # kimg between progress lines and stats records
    snapshot_kimg: float = 20.0  # kimg between checkpoints and sample grids
    eval_kimg: float = 0.0  # kimg between evaluations (0: only at the end if metrics given)
    metrics: tuple[str, ...] = ()  # metrics evaluated during training (see `hybrid eval --help`)
    extractor: str = "inception"  # feature space of those metrics: inception, dinov2, pixels, classifier, a TorchScript file
    eval_num: int = 1000  # samples per evaluation
    grid_seeds: int = 64  # fixed seeds of the sample grid
    model: ModelConfig | None = None  # the networks and the chain (None: by data and objective)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **as_tuples(changes))


SEQUENCES = ("betas", "metrics", "student_sigma")  # tuples in a TrainConfig; JSON and Python callers may give lists


def as_tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if k in SEQUENCES and isinstance(v, list) else v for k, v in d.items()}


def config_from_dict(d: dict[str, Any], source: str = "config") -> TrainConfig:
    """A TrainConfig from JSON-like data; keys starting with "_" are comments."""
    d = {k: v for k, v in d.items() if not k.startswith("_")}
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise UserError(f"{source}: unknown option(s) {unknown}; known: {sorted(known)}")
    d = as_tuples(d)
    if d.get("model") is not None:
        try:
            d["model"] = ModelConfig.from_dict(d["model"])
        except (TypeError, ValueError, KeyError) as e:
            raise UserError(f"{source}: bad model section ({e})") from None
    return TrainConfig(**d)


def read_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--config {path}: cannot read a JSON config ({e})") from None
    if not isinstance(d, dict):
        raise UserError(f"--config {path}: expected a JSON object of options")
    return config_from_dict(d, source=f"--config {path}")




def read_preset(name: str) -> TrainConfig:
    """A shipped preset (training/presets/NAME.json): a partial config like config.json."""
    path = PRESETS / f"{name}.json"
    if not path.is_file():
        raise UserError(f"--preset {name!r}: unknown preset; choose one of {', '.join(preset_names())}")
    return read_config(path)


OBJECTIVE_NAMES = ("hybrid", "ddgan", "ddpm", "distill", "diffusion-gan")
OBJECTIVES_WITH_D = ("hybrid", "ddgan", "distill", "diffusion-gan")
GAN_CHAINS = ("hybrid", "ddgan")  # objectives whose default chain is a short one of x0-predicting GAN steps
LR_DECAYS = ("cosine", "constant")
D_PAIRS = ("x_prev", "x0")
D_AUGMENTS = ("none", "translate")
SAMPLERS = tuple(s.value for s in Sampler)
LR_FLOOR = 0.05  # cosine decay ends at this fraction of the starting rate (DDGAN: 1e-5 / 1.6e-4)


def lr_scale(decay: str, budget_used: float) -> float:
    """Learning-rate multiplier when `budget_used` (0 to 1) of the run's kimg or minutes is spent."""
    if decay == "constant":
        return 1.0
    progress = min(1.0, budget_used)
    return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))


def default_model(shape: tuple[int, ...], objective: str) -> ModelConfig:
    """The network and chain that suit the data shape and objective."""
    if objective == "diffusion-gan":
        # ddgan's networks (with a latent z) at one level: x_T is pure noise there, so the generator
        # maps noise to a sample in one evaluation and the chain's schedule never enters.
        return dataclasses.replace(default_model(shape, "ddgan"), steps=1, sampler="gan")
    gan = objective in GAN_CHAINS
    chain = dict(steps=4, schedule="vp", prediction="x0") if gan else dict(steps=1000, schedule="linear", prediction="eps")
    if len(shape) == 1:
        # Vectors: a log-SNR chain, whose small last step leaves the generator one mode to denoise
        # (vp's must pick among modes); width 128 for the thousands of steps a toy GAN needs.
        # docs/benchmarks.md#vectors
        if gan:
            chain["schedule"] = "logsnr"
        g = NetConfig(channels=128, num_blocks=3, z_dim=8 if gan else 0, fourier=6)
        d = NetConfig(channels=128, num_blocks=3, act="leaky_relu", fourier=6)
    else:
        # The hybrid: a cosine chain, whose levels each keep a different share of the signal (vp's
        # top two are nearly pure noise): docs/benchmarks.md#chain-denoising-weight-and-r1
        if objective == "hybrid":
            chain["schedule"] = "cosine"
        res = shape[1]
        mult = (1, 2, 2) if res <= 16 else (1, 2, 2, 2)
        g = NetConfig(channels=32 if res <= 16 else 64, channel_mult=mult, num_blocks=1 if res <= 16 else 2,
                      attn_resolutions=() if res <= 16 else (16,), z_dim=32 if gan else 0)
        d = NetConfig(channels=32 if res <= 16 else 64, channel_mult=mult, act="leaky_relu")
    return ModelConfig(shape=tuple(shape), generator=g, discriminator=d if gan else None, **chain)


def valid_betas(betas: Any) -> bool:
    """Adam's betas: a tuple of two finite numbers in [0, 1)."""
    return isinstance(betas, tuple) and len(betas) == 2 and all(is_nonnegative_number(b) and b < 1 for b in betas)


def is_nonnegative_number(value: Any) -> bool:
    """A finite int or float >= 0; not a bool, a string or a number too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def resolve(cfg: TrainConfig, data_shape: tuple[int, ...], model_changes: dict[str, Any] | None = None,
            classes: tuple[float, ...] | None = None) -> TrainConfig:
    """Fill every None with its value for this data; check the combination.

    model_changes: chain (steps, schedule) and generator options applied to the default model.
    classes: with cond, each class's share of the data (training.data.class_shares).
    """
    if cfg.objective not in OBJECTIVE_NAMES:
        raise UserError(f"--objective {cfg.objective!r}: choose one of {', '.join(OBJECTIVE_NAMES)}")
    if cfg.objective == "distill":
        check_distill(cfg)
    if cfg.objective == "diffusion-gan":
        check_diffusion_gan(cfg, model_changes or {})
    if cfg.d_pair is not None and cfg.d_pair not in D_PAIRS:
        raise UserError(f"--d-pair {cfg.d_pair!r}: choose one of {', '.join(D_PAIRS)}")
    if isinstance(cfg.mixture, bool) or not isinstance(cfg.mixture, int) or cfg.mixture < 1:
        raise UserError(f"--mixture {cfg.mixture!r}: expected a whole number of generators >= 1 (1: G_ema alone)")
    if not is_nonnegative_number(cfg.mixture_kimg) or cfg.mixture_kimg == 0:
        raise UserError(f"mixture_kimg {cfg.mixture_kimg!r}: expected a finite number of kimg > 0 (in a config file)")
    numbers = {"d_noise": cfg.d_noise, "ema_rampup": cfg.ema_rampup}
    numbers |= {name: getattr(cfg, name) for name in ("r1_gamma", "ema_kimg") if getattr(cfg, name) is not None}
    for name, value in numbers.items():
        if not is_nonnegative_number(value):
            where = "in a config file" if name.startswith("ema_") else "--" + name.replace("_", "-")  # no EMA flags
            raise UserError(f"{name} {value!r}: expected a finite number >= 0 ({where})")
    if cfg.d_noise and cfg.objective not in ("hybrid", "ddgan"):
        raise UserError(f"--d-noise {cfg.d_noise}: --objective {cfg.objective} has no discriminator to give noise to")
    if cfg.d_augment not in D_AUGMENTS:
        raise UserError(f"--d-augment {cfg.d_augment!r}: choose one of {', '.join(D_AUGMENTS)}")
    if cfg.d_augment != "none" and (cfg.objective not in ("hybrid", "ddgan") or len(data_shape) != 3):
        raise UserError(f"--d-augment {cfg.d_augment}: needs images and a discriminator (--objective hybrid or ddgan)")
    if not valid_betas(cfg.betas):
        raise UserError(f"betas {cfg.betas!r}: expected Adam's two betas in [0, 1) (--betas B1,B2)")
    if cfg.lr_decay not in LR_DECAYS:
        raise UserError(f"--lr-decay {cfg.lr_decay!r}: choose one of {', '.join(LR_DECAYS)}")
    image = len(data_shape) == 3
    model = start = cfg.model or default_model(data_shape, cfg.objective)
    if model_changes and cfg.objective == "distill" and model_changes.get("schedule") not in (None, model.schedule):
        raise UserError(f"--schedule {model_changes['schedule']}: a student's levels are its teacher's ({model.schedule}); drop it")
    if model_changes:
        try:
            model = with_model_overrides(model, **model_changes)
        except TypeError as e:
            raise UserError(f"bad network option: {e}") from None
    model = conditioned(model, cfg, classes)
    for net in (model.generator, model.discriminator):
        if net is not None:
            try:
                check_net_config(net)
            except ValueError as e:
                raise UserError(f"bad network option in the config: {e}") from None
    if model.sampler not in (None, *SAMPLERS):
        raise UserError(f"--sampler {model.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if tuple(model.shape) != tuple(data_shape):
        raise UserError(f"the model expects samples of shape {tuple(model.shape)}, the data has {tuple(data_shape)}")
    if cfg.objective == "distill":  # its discriminator follows --d-features
        return resolve_distill(cfg, model, start)
    if model.frozen_levels:
        raise UserError(f"frozen_levels {model.frozen_levels} in the model config: only a distilled student keeps "
                        "its teacher's levels (--objective distill --teacher-levels); set it to 0")
    if cfg.objective in OBJECTIVES_WITH_D and model.discriminator is None:
        raise UserError(f"--objective {cfg.objective} needs a discriminator, the model config has none")
    resolved = cfg.replace(
        model=model,
        # Small batches: in a fixed training time more steps beat larger batches, for every objective
        # (GPU presets set their own): docs/benchmarks.md#batch-and-learning-rates
        batch=cfg.batch or (16 if image else 128),
        # lr_G 2e-4 (Ho et al.'s CIFAR-10 rate), measured best on digits at batch 16; D learns faster than
        # G moves (10x on images, 5x on vectors): docs/benchmarks.md#batch-and-learning-rates and
        # docs/benchmarks.md#discriminator-learning-rate
        lr_g=cfg.lr_g or 2e-4,
        lr_d=cfg.lr_d or (2e-3 if image else 1e-3),
        # The hybrid on images judges the clean estimate (noisy x_{t-1} pairs left D at chance); ddgan
        # keeps its published pairs, and vectors too (x0 pairs lost toy modes):
        # docs/benchmarks.md#what-the-discriminator-judges
        d_pair=cfg.d_pair or ("x0" if image and cfg.objective == "hybrid" else "x_prev"),
        # The hybrid on images: denoising weight 0.03 and R1 0.005 with the cosine chain beat vp / 0.01 /
        # 0.02 on digits at 140 kimg; ddgan keeps the published R1:
        # docs/benchmarks.md#chain-denoising-weight-and-r1 (vectors: docs/benchmarks.md#vectors)
        denoise_weight=cfg.denoise_weight if cfg.denoise_weight is not None else (0.03 if image else 0.1),
        r1_gamma=cfg.r1_gamma if cfg.r1_gamma is not None else (0.005 if image and cfg.objective == "hybrid" else 0.02),
        # The hybrid on images: a 5-kimg EMA half-life beat 10 on digits at 140 kimg (the 5% cap keeps
        # shorter runs unchanged); ddpm and ddgan keep 10: docs/benchmarks.md#generator-ema
        ema_kimg=cfg.ema_kimg if cfg.ema_kimg is not None else (5.0 if image and cfg.objective == "hybrid" else 10.0),
    )
    return resolve_diffusion_gan(resolved) if cfg.objective == "diffusion-gan" else resolved


def conditioned(model: ModelConfig, cfg: TrainConfig, classes: tuple[float, ...] | None) -> ModelConfig:
    """The model with the data's classes when cfg.cond. A distilled student is conditional when its
    teacher is, on the teacher's number of classes."""
    if cfg.objective == "distill" and bool(model.classes) != cfg.cond:
        state = "class-conditional: pass --cond" if model.classes else "unconditional: drop --cond"
        raise UserError(f"--teacher {cfg.teacher}: the teacher is {state}")
    if not cfg.cond or classes is None:
        return model
    if model.classes and len(model.classes) != len(classes):
        raise UserError(f"--cond: the data has {len(classes)} classes, the model {len(model.classes)}")
    return dataclasses.replace(model, classes=classes)


CHAIN_OPTIONS = ("steps", "schedule", "prediction", "sampler")  # ModelConfig fields; the other model options are the generator's


def with_model_overrides(model: ModelConfig, **changes: Any) -> ModelConfig:
    """Replace chain fields (CHAIN_OPTIONS) and generator fields given as keyword arguments."""
    chain = {k: v for k, v in changes.items() if k in CHAIN_OPTIONS and v is not None}
    net = {k: v for k, v in changes.items() if k not in chain and v is not None}
    generator = dataclasses.replace(model.generator, **net) if net else model.generator
    return dataclasses.replace(model, generator=generator, **chain)



REGRESS_PAIRS = 1024  # distill: default --regress-pairs
DM_LOSSES = ("dmd", "sid")  # distill --dm-loss: DMD's gradient, or SiD's loss taken through both denoisers
D_FEATURES = ("own", "teacher")  # distill --d-features: D's own network, or heads on the frozen teacher's features
REGRESS_PAIRS_MAX = 1_000_000
# distill: default --student-sigma, the teacher's noise level at the student's top level. A one-level
# student returns the eps teacher's x0 = (x - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) there, every
# error of its eps times sigma: 1.0 beat 2.5 (SiD's sigma_init) at 1 NFE on digits; with more levels
# 2.5 gave the better samples at their full NFE (docs/distill.md#the-students-top-level).
STUDENT_SIGMA = 2.5
STUDENT_SIGMA_ONE_LEVEL = 1.0
# distill: default --gan-sigma, the noise up to which D judges samples. 0 (clean samples): judged at
# every teacher level, D saw mostly noise and stayed at chance; on clean samples it separates real from
# fake and the one-step student loses its speckle (digits) and lands on the modes (25 Gaussians):
# docs/distill.md#what-the-discriminator-judges.
GAN_SIGMA = 0.0
# distill: default --gan-weight by data and discriminator. The distribution-matching loss is a mean
# over a sample's elements, D's loss is not, so the same balance takes a weight ~ 1 / elements: 256
# for 16x16 digits against 2 for the mixtures (same page). Heads on the teacher's features take 5x the
# weight of a D of its own (docs/distill.md#the-gan-weight-on-the-teachers-features).
GAN_WEIGHT_IMAGES = 0.01
GAN_WEIGHT_TEACHER_FEATURES = 0.05
GAN_WEIGHT_VECTORS = 1.0


# distill: the share of the teacher's chain the distribution-matching gradient is taken over (DMD2's
# range); --dm-sigma-min moves the lower end.
DM_LEVELS = (0.02, 0.98)


def dm_levels(schedule: Schedule, sigma_min: float | None) -> tuple[int, int]:
    """The teacher levels (lowest, highest) of the distribution-matching gradient: from the level of noise
    `sigma_min` (0: the first level; None: DM_LEVELS' lower share, DMD2's) to DM_LEVELS' upper share, above
    which an eps teacher's x0 estimate amplifies its errors too far (`--dm-sigma-min` above it: UserError)."""
    T = schedule.T
    hi = max(1, round(DM_LEVELS[1] * T))
    if sigma_min is None:
        lo = max(1, round(DM_LEVELS[0] * T))
    else:
        lo = schedule.level_of_sigma(sigma_min) if sigma_min > 0 else 1
    if lo > hi:
        a = float(schedule.alpha_bar[hi])
        raise UserError(f"--dm-sigma-min {sigma_min:g}: above the teacher's level {hi} of {T} (98% of its chain, "
                        f"sigma {((1 - a) / a) ** 0.5:.3g}), the highest the distribution matching uses")
    return lo, hi


def default_gan_weight(image: bool, d_features: str) -> float:
    if not image:
        return GAN_WEIGHT_VECTORS
    return GAN_WEIGHT_TEACHER_FEATURES if d_features == "teacher" else GAN_WEIGHT_IMAGES


def check_distill(cfg: TrainConfig) -> None:
    """What a distillation run cannot take: options of the other objectives' discriminators."""
    if cfg.model is None:
        raise UserError("--objective distill needs --teacher PATH: a checkpoint of `hybrid train --objective ddpm`")
    if cfg.d_noise or cfg.d_augment != "none":
        raise UserError("--d-noise/--d-augment: distill's discriminator judges noised samples already; drop them")
    for name, least in (("fake_updates", 1), ("regress_pairs", 1), ("teacher_levels", 0)):
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise UserError(f"{name} {value!r}: expected a whole number >= {least} (--{name.replace('_', '-')})")
    if cfg.regress_pairs is not None and cfg.regress_pairs > REGRESS_PAIRS_MAX:
        raise UserError(f"regress_pairs {cfg.regress_pairs}: at most {REGRESS_PAIRS_MAX:,} (--regress-pairs)")
    for name in ("gan_weight", "regress_weight", "gan_sigma", "dm_sigma_min"):
        value = getattr(cfg, name)
        if value is not None and not is_nonnegative_number(value):
            raise UserError(f"{name} {value!r}: expected a finite number >= 0 (--{name.replace('_', '-')})")
    sigmas = cfg.student_sigma if isinstance(cfg.student_sigma, tuple) else (cfg.student_sigma,)
    if cfg.student_sigma is not None and not (sigmas and all(is_nonnegative_number(s) and s > 0 for s in sigmas)):
        raise UserError(f"student_sigma {cfg.student_sigma!r}: expected a finite number > 0, or one per level "
                        "(--student-sigma)")
    if cfg.dm_loss is not None:
        check_dm_loss(cfg.dm_loss)
    if cfg.d_features is not None and cfg.d_features not in D_FEATURES:
        raise UserError(f"d_features {cfg.d_features!r}: expected one of {', '.join(D_FEATURES)} (--d-features)")


def check_dm_loss(dm_loss: str) -> None:
    """A distillation loss by name, from the command line, a config file or a resumed run's config.json."""
    if dm_loss not in DM_LOSSES:
        raise UserError(f"dm_loss {dm_loss!r}: expected one of {', '.join(DM_LOSSES)} (--dm-loss)")


def student_levels(teacher: Schedule, sigmas: tuple[float, ...], steps: int) -> dict[str, Any]:
    """The ModelConfig fields of a student with one level at each of `sigmas` (the teacher's levels
    of those EDM sigmas, in increasing order), or one line on what is wrong with them."""
    text = ",".join(f"{s:g}" for s in sigmas)
    if len(sigmas) != steps:
        raise UserError(f"--student-sigma {text}: {len(sigmas)} sigmas for --steps {steps}; give one sigma, or one "
                        "per level")
    levels = sorted(teacher.level_of_sigma(s) for s in sigmas)
    same = next((a for a, b in zip(levels, levels[1:]) if a == b), None)
    if same is not None:
        raise UserError(f"--student-sigma {text}: two sigmas fall on the teacher's level {same} (of {teacher.T}); "
                        "give sigmas further apart")
    return {"schedule_top": levels[-1], "schedule_levels": tuple(levels)}


def kept_teacher_levels(model: ModelConfig, n: int | None, start: ModelConfig | None) -> ModelConfig:
    """The student with its lowest n levels kept as the teacher's (None: as its config has it), each
    exactly at its teacher level; one line where the student could not run the teacher's network."""
    n = model.frozen_levels if n is None else n
    if not n:
        return dataclasses.replace(model, frozen_levels=0)
    if n >= model.steps:
        raise UserError(f"--teacher-levels {n}: the student has {model.steps} levels and trains the ones above the "
                        "teacher's; give fewer, or raise --steps")
    if start is not None and (model.generator, model.prediction) != (start.generator, start.prediction):
        raise UserError(f"--teacher-levels {n}: the kept levels run a copy of the teacher's network, so the student "
                        "keeps the teacher's network and parameterisation; drop the network options")
    levels = model.schedule_levels or tuple(base_levels(model.steps, model.schedule_steps, model.schedule_top))
    return dataclasses.replace(model, frozen_levels=n, schedule_levels=levels)


def resolve_distill(cfg: TrainConfig, model: ModelConfig, start: ModelConfig | None = None) -> TrainConfig:
    """The defaults of a distillation run (training.objectives.Distill) and its chain's checks;
    start: the model before network options changed it (the teacher's, for a new run)."""
    base = model.schedule_steps
    if base is None or not 1 <= model.steps <= base:
        raise UserError(f"--steps {model.steps}: a student's chain is 1..{base} of its teacher's levels (e.g. --steps 1, 2 or 4)")
    sigma = cfg.student_sigma
    if isinstance(sigma, tuple) and len(sigma) == 1:
        sigma = sigma[0]
    if sigma is None and model.schedule_top is None:
        sigma = STUDENT_SIGMA_ONE_LEVEL if model.steps == 1 else STUDENT_SIGMA
    if isinstance(sigma, tuple):  # one level per sigma
        model = dataclasses.replace(model, **student_levels(Schedule(model.schedule, base), sigma, model.steps))
    elif sigma is not None:  # the top is the teacher's level of noise sigma (a config without sigma keeps its own)
        top = Schedule(model.schedule, base).level_of_sigma(sigma)
        model = dataclasses.replace(model, schedule_top=top, schedule_levels=None)
    if model.steps > model.schedule_top:
        where = f"--student-sigma {sigma}" if sigma is not None else "the config's"
        raise UserError(f"--steps {model.steps}: the student's top level is the teacher's level {model.schedule_top} "
                        f"({where}), too low for {model.steps} levels; raise --student-sigma")
    if model.schedule_levels is not None and len(model.schedule_levels) != model.steps:
        raise UserError(f"--steps {model.steps}: the config lists {len(model.schedule_levels)} student levels "
                        f"{model.schedule_levels}; give --student-sigma again")
    model = kept_teacher_levels(model, cfg.teacher_levels, start)
    dm_levels(Schedule(model.schedule, base), cfg.dm_sigma_min)  # a --dm-sigma-min above the levels: one line
    image = len(model.shape) == 3
    d_features = cfg.d_features or "own"
    if d_features == "teacher":  # D is the objective's: heads on the teacher (training.objectives.Distill)
        model = dataclasses.replace(model, discriminator=None)
    elif model.discriminator is None:  # e.g. the config of a run with --d-features teacher
        model = dataclasses.replace(model, discriminator=default_model(tuple(model.shape), "hybrid").discriminator)
    return cfg.replace(
        model=model,
        student_sigma=sigma,
        teacher_levels=model.frozen_levels,
        d_features=d_features,
        batch=cfg.batch or (16 if image else 128),
        lr_g=cfg.lr_g or 2e-4,
        lr_d=cfg.lr_d or (2e-3 if image else 1e-3),
        d_pair=cfg.d_pair or "x0",  # unused: D judges one noised sample (recorded for the config's completeness)
        denoise_weight=cfg.denoise_weight if cfg.denoise_weight is not None else 0.0,
        r1_gamma=cfg.r1_gamma if cfg.r1_gamma is not None else 0.02,
        ema_kimg=cfg.ema_kimg if cfg.ema_kimg is not None else 10.0,
        # 2 fake-denoiser updates per student update: on digits better than DMD2's 5 at equal images
        # and than 1 at equal time, single pilots (docs/distill.md#choosing-the-defaults).
        fake_updates=cfg.fake_updates or 2,
        gan_weight=cfg.gan_weight if cfg.gan_weight is not None else default_gan_weight(image, d_features),
        gan_sigma=cfg.gan_sigma if cfg.gan_sigma is not None else GAN_SIGMA,
        regress_weight=cfg.regress_weight if cfg.regress_weight is not None else 0.0,
        regress_pairs=cfg.regress_pairs or REGRESS_PAIRS,
        dm_loss=cfg.dm_loss if cfg.dm_loss is not None else "dmd",
    )


def check_diffusion_gan(cfg: TrainConfig, model_changes: dict[str, Any]) -> None:
    """What a Diffusion-GAN run cannot take: a chain for its one-step generator, the other
    objectives' discriminator options, and out-of-range options of its own."""
    for name in ("steps", "schedule", "prediction"):
        if model_changes.get(name) is not None:
            raise UserError(f"--{name} {model_changes[name]}: diffusion-gan's generator maps noise to a sample in one "
                            "step (NFE 1; its x0 is the sample), so it has no chain to set; drop it")
    if cfg.d_noise or cfg.d_augment != "none":
        raise UserError("--d-noise/--d-augment: diffusion-gan's discriminator judges diffused samples already; drop them")
    if cfg.dg_target is not None and (not is_nonnegative_number(cfg.dg_target) or cfg.dg_target > 1):
        raise UserError(f"dg_target {cfg.dg_target!r}: expected a number in 0..1 (--dg-target)")
    for name in ("dg_t_min", "dg_t_max"):
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000):
            raise UserError(f"{name} {value!r}: expected a whole number of levels in 1..10000 (--{name.replace('_', '-')})")
    t_min, t_max = cfg.dg_t_min or DG_T_RANGE[0], cfg.dg_t_max or DG_T_RANGE[1]
    if t_min > t_max:
        raise UserError(f"--dg-t-min {t_min} above --dg-t-max {t_max}: T adapts between them; give t_min <= t_max")
    for name in ("dg_kimg", "dg_noise"):
        value = getattr(cfg, name)
        if value is not None and (not is_nonnegative_number(value) or value == 0):
            raise UserError(f"{name} {value!r}: expected a finite number > 0 (--{name.replace('_', '-')})")


DG_T_RANGE = (10, 1000)  # Diffusion-GAN's T_min..T_max with StyleGAN2 (its CIFAR-10 and image defaults)


def resolve_diffusion_gan(cfg: TrainConfig) -> TrainConfig:
    """The defaults of a Diffusion-GAN run (training.objectives.DiffusionGAN): the paper's settings
    of its StyleGAN2 variant (target 0.6, T in 10..1000, 100 kimg to cross it, noise std 0.05); the
    networks, rates, batch, R1 and EMA those of ddgan here."""
    if cfg.model.steps != 1 or cfg.model.prediction != "x0":
        raise UserError(f"the model config has a {cfg.model.steps}-level chain predicting {cfg.model.prediction}: "
                        "diffusion-gan's generator maps noise to a sample in one step (steps 1, prediction x0)")
    return cfg.replace(
        d_pair="x0",  # unused: D judges one diffused sample (recorded for the config's completeness)
        denoise_weight=0.0,
        dg_target=cfg.dg_target if cfg.dg_target is not None else 0.6,
        dg_t_min=cfg.dg_t_min or DG_T_RANGE[0],
        dg_t_max=cfg.dg_t_max or DG_T_RANGE[1],
        dg_kimg=cfg.dg_kimg or 100.0,
        dg_noise=cfg.dg_noise or 0.05,
    )
