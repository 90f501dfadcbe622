"""hybridgan: adversarially-trained diffusion models (diffusion-GAN hybrids).

The Python API, the same functions the `hybrid` command line calls:

    import hybridgan

    model = hybridgan.load("runs/00000-digits-hybrid/checkpoints/checkpoint-000040.pt")
    images = hybridgan.sample(model, seeds=range(64), nfe=4)        # [64, 1, 16, 16] in [-1, 1]
    result = hybridgan.evaluate(images, ref="digits", metrics=["fid", "kid"])
    print(result["fid"])
    run_dir = hybridgan.train(hybridgan.TrainConfig(data="my_images/", kimg=100))

Subpackages: `hybridgan.hybrid` (what a model is), `hybridgan.training` (how it is made),
`hybridgan.metrics` (how it is judged), `hybridgan.cli` (the command line).

Importing this package is cheap (the command line's --help does not wait for torch); each
function imports what it needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hybridgan.hybrid.model import Model
    from hybridgan.metrics.evaluate import EvalResult
    from hybridgan.training.config import TrainConfig

__version__ = "0.1.0"
__all__ = ["TrainConfig", "__version__", "evaluate", "load", "sample", "train"]

def __getattr__(name: str) -> Any:
    if name == "TrainConfig":  # lazily: the config module imports torch
        from hybridgan.training.config import TrainConfig

        return TrainConfig
    raise AttributeError(f"module 'hybridgan' has no attribute {name!r}")


def load(path: str | Path, device: str | torch.device = "cpu") -> Model:
    """The model of a checkpoint file (`hybrid train` writes them), in eval mode on `device`.

    Only the file is needed; it is read with torch.load(weights_only=True), so a file that
    holds code is refused (hybridgan.hybrid.errors.UserError).
    """
    from hybridgan.hybrid.checkpoint import load_model

    return load_model(path).to(_device(device))


def sample(model: Model | str | Path, seeds: Iterable[int] | None = None, *, num: int = 64, nfe: int | None = None,
           sampler: str | None = None, levels: list[int] | None = None, device: str | torch.device = "auto", batch: int = 64,
           mixture: int | None = None, labels: int | Iterable[int] | None = None,
           progress: bool = False) -> torch.Tensor:
    """One sample per seed: float32 [N, C, H, W] images in [-1, 1], or [N, D] vectors, on the CPU.

    model: a Model or a checkpoint path. seeds: default 1000000..1000000+num-1, the seeds `hybrid
    sample`, `eval` and `bench` draw by default (training grids use 0..63); a sample depends only
    on its seed. nfe: network evaluations per sample (default: the model's own, its chain length
    T). sampler: gan | ddpm | ddim (default: the model's own). levels: the levels the chain
    visits, from T down (instead of `nfe` evenly spaced ones). batch: samples per network call
    (does not change the samples). mixture: how many of the model's generators to draw from
    (default all). labels: a class-conditional model's class for every sample (an int) or for
    each (one per seed); default: each seed draws its class from the training data's class
    shares. progress: a bar on stderr where it is a terminal.
    """
    from hybridgan.hybrid.errors import UserError
    from hybridgan.hybrid.samplers import SEED_BASE, resolve_sampling, sample_batched, sample_labels

    model = load(model, "cpu") if isinstance(model, (str, Path)) else model
    seeds = list(range(SEED_BASE, SEED_BASE + num)) if seeds is None else [int(s) for s in seeds]
    if levels is not None:
        if nfe is not None and nfe != len(levels):
            raise UserError(f"NFE {nfe} and the levels {levels} ({len(levels)} of them) disagree; give one of them")
        nfe = len(levels)
    sampler, nfe = resolve_sampling(model.cfg, sampler, nfe)
    if isinstance(labels, int):
        labels = [labels] * len(seeds)
    y = sample_labels(model.cfg, None if labels is None else list(labels), seeds)
    dev = _device(device)
    return sample_batched(model.to(dev), seeds, batch=batch, steps=nfe, path=levels, sampler=sampler, device=dev,
                          mixture=mixture, labels=y, progress=progress)


def evaluate(samples: Any, ref: str | Path | torch.Tensor | None = None, *, metrics: Iterable[str] = (),
             num: int | None = None, ref_num: int | None = None, nfe: int | None = None, sampler: str | None = None,
             seeds: Iterable[int] | None = None, batch: int = 64, mixture: int | None = None,
             resolution: int | None = None, extractor: str = "inception", extractor_weights: str | None = None,
             inception_weights: str | None = None, per_class: bool = False, device: str | torch.device = "auto",
             progress: bool = False) -> EvalResult:
    """FID, KID, IS, precision/recall, `classes` (images) or modes, SWD, MMD (vectors).

    samples: a tensor (float images in [-1, 1] or uint8 [N, C, H, W]; vectors [N, D]), a Model,
    or a path: a checkpoint, a folder of images, a .npy / .npz. ref: a dataset name (`hybrid data
    list`), a folder, a .npy, a tensor like `samples` (default for a checkpoint: its training
    data), or a .npz of statistics (mu, sigma; FID only). Reference features are cached on disk
    (~/.cache/hybrid). metrics: default fid,kid for images. A model is sampled at evaluation
    seeds 1000000.. (or `seeds`), `num` of them (1000). resolution: for samples given as a path,
    compare both sets resized to this side. extractor: the feature space, inception, dinov2,
    pixels, classifier or a TorchScript file (`hybrid eval --help`); extractor_weights: its
    weights file. per_class: a class-conditional model is also judged class by class
    (result.by_class[k]: num / K samples of class k against the reference images of class k).

    Returns an EvalResult: result["fid"], result.values (all numbers), result.table().
    """
    import torch

    from hybridgan.metrics.evaluate import EvalConfig, evaluate_source, evaluate_tensor, load_reference
    from hybridgan.training.data import load_dataset

    cfg = EvalConfig(metrics=tuple(metrics), num=num, ref_num=ref_num, steps=nfe, sampler=sampler,
                     seeds=tuple(int(s) for s in seeds) if seeds is not None else None, batch=batch, mixture=mixture,
                     resolution=resolution, extractor=extractor, extractor_weights=extractor_weights,
                     inception_weights=inception_weights, per_class=per_class, progress=progress)
    dev = _device(device)
    if isinstance(samples, (str, Path)):
        if isinstance(ref, torch.Tensor):
            raise TypeError("samples given as a path take a dataset name or path as ref, not a tensor")
        return evaluate_source(str(samples), None if ref is None else str(ref), cfg, dev, load_data=load_dataset)
    if ref is None:
        raise TypeError("say what to compare the samples with: ref='digits', a folder, a .npy or a tensor")
    if resolution is not None:
        raise TypeError("resolution applies to samples given as a path; resize tensors before evaluating them")
    if isinstance(ref, torch.Tensor):
        return evaluate_tensor(samples, ref, "tensor", cfg, dev)
    shape = tuple(samples.shape[1:]) if isinstance(samples, torch.Tensor) else samples.cfg.shape
    side = shape[-1] if len(shape) == 3 else None  # the reference is loaded at the samples' side
    return evaluate_tensor(samples, load_reference(load_dataset, str(ref), side, option="ref "), str(ref), cfg, dev)


def train(config: TrainConfig | None = None, run_dir: str | Path | None = None, resume: str | None = None,
          quiet: bool = True, **options: Any) -> Path:
    """Train a model as `hybrid train` does, into the same run directory (returned).

    config: a TrainConfig (default: the embedded digits run); options: fields of it to change,
    e.g. train(data="toy:25gaussians", kimg=50). resume: "auto" (the newest checkpoint in
    run_dir) or a checkpoint path, continued with `options` as the changes (e.g. kimg=200). Bad
    options raise hybridgan.hybrid.errors.UserError.
    """
    from hybridgan.hybrid.errors import UserError
    from hybridgan.training import TrainConfig
    from hybridgan.training import train as run_training

    cfg = config or TrainConfig()
    try:
        cfg = cfg.replace(**options)
    except TypeError as e:  # an option TrainConfig does not have
        raise UserError(f"train: {e}") from None
    # A resumed run takes its config from the checkpoint; `options` are then the changes asked for (kimg, ...).
    changes = {name: getattr(cfg, name) for name in options}  # as the config holds them (lists as tuples)
    return run_training(cfg, run_dir=run_dir, resume=resume, changes=changes, quiet=quiet)


def _device(device: str | torch.device) -> torch.device:
    import torch

    from hybridgan.hybrid.devices import resolve_device

    return device if isinstance(device, torch.device) else resolve_device(str(device))
