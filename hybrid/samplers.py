"""Samplers: reverse the chain with the generator, one seed per sample.

All three samplers walk a decreasing list of levels T = s_K > ... > s_1 > s_0 = 0. At each
level the generator estimates x_0, and x at the next level is drawn from
q(x_s | x_t, x_0) (`gan`, `ddpm`: ancestral) or set deterministically (`ddim`, eta = 0).
NFE = K, the number of levels visited before 0.

Every random number of sample i comes from its own generator seeded with seeds[i], drawn on
the CPU in a fixed order, so a sample depends only on its seed: not on the batch it is drawn
in, nor on the device. A model that keeps earlier states of its generator (`Model.past`) draws
sample i with generator seeds[i] mod K of its K generators: a mixture in equal shares.

A class-conditional model draws sample i of the class labels[i]; without labels, each seed picks
its class from the training data's class shares (`seed_classes`), from a random stream of its
own, so the noise of a seed is the same whichever class it is drawn with.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
import torch
from torch import Tensor

from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.model import Model, ModelConfig

SEED_BASE = 1_000_000  # default seeds of sample, eval and bench start here, apart from the training grids' 0..63
CLASS_STREAM = 1  # a seed's class is drawn from numpy's stream (seed, CLASS_STREAM), apart from its noise


class Sampler(str, Enum):
    GAN = "gan"  # posterior sampling through the generator with a fresh latent z at each step
    DDPM = "ddpm"  # ancestral sampling
    DDIM = "ddim"  # deterministic (eta = 0) steps


class SeedNoise:
    """Draws standard normal noise for a batch whose row i comes from seed seeds[i].

    Each seed's generator draws noise of one shape in chunks of several draws at a time (the
    chunk length depends only on the shape), so a long chain costs one call per seed every
    few steps instead of every step, and row i still depends on seeds[i] alone.
    """

    CHUNK_ELEMENTS = 1 << 16  # at most this many numbers per seed and shape in one draw

    def __init__(self, seeds: list[int]) -> None:
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self._buffers: dict[tuple[int, ...], tuple[Tensor, int]] = {}

    def randn(self, *shape: int) -> Tensor:
        buffer, used = self._buffers.get(shape, (None, 0))
        if buffer is None or used == buffer.shape[1]:
            chunk = max(1, min(64, self.CHUNK_ELEMENTS // max(1, math.prod(shape))))
            buffer, used = torch.stack([torch.randn((chunk, *shape), generator=g) for g in self.gens]), 0
        self._buffers[shape] = (buffer, used + 1)
        return buffer[:, used]


def start_noise(seeds: list[int], shape: tuple[int, ...]) -> Tensor:
    """[N, *shape]: the noise each seed's chain starts from at its top level (the seed's first draw)."""
    return SeedNoise(seeds).randn(*shape)


def default_sampling(cfg: ModelConfig, fast: bool = False) -> tuple[str, int]:
    """(sampler, NFE) a model is meant to be sampled with: its whole chain, with the model's own
    sampler (`cfg.sampler`) or by default through the generator (`gan`) for short chains and
    ancestrally (`ddpm`) for long ones; for long chains 50 deterministic DDIM steps (at most T)
    when `fast` (training-time sample grids)."""
    if cfg.steps <= 8:
        return cfg.sampler or Sampler.GAN.value, cfg.steps
    return (Sampler.DDIM.value, min(50, cfg.steps)) if fast else (cfg.sampler or Sampler.DDPM.value, cfg.steps)


def resolve_sampling(cfg: ModelConfig, sampler: str | None = None, nfe: int | None = None) -> tuple[str, int]:
    """(sampler, NFE) of a request, defaults filled in: the model's own sampler and NFE
    (`default_sampling`), or its whole chain for another sampler. An unknown sampler or an NFE
    outside 1..T is a UserError."""
    default_sampler, default_nfe = default_sampling(cfg)
    sampler = sampler or default_sampler
    if sampler not in {s.value for s in Sampler}:
        raise UserError(f"sampler {sampler!r}: choose one of {', '.join(s.value for s in Sampler)}")
    nfe = nfe or (default_nfe if sampler == default_sampler else cfg.steps)
    if not 1 <= nfe <= cfg.steps:
        raise UserError(f"NFE {nfe}: the model has T = {cfg.steps} levels; choose an NFE in 1..{cfg.steps}")
    return sampler, nfe


def levels(T: int, nfe: int) -> list[int]:
    """NFE levels from T down to 1, evenly spaced, always including T. T=4, nfe=2 -> [4, 2]."""
    if not 1 <= nfe <= T:
        raise ValueError(f"the number of steps must be in 1..{T}, got {nfe}")
    return sorted({round(T - i * T / nfe) for i in range(nfe)}, reverse=True)


def check_path(path: list[int], top: int) -> list[int]:
    """A chain's levels as given: from `top` (where the chain starts) strictly down, each >= 1."""
    if not path or path[0] != top:
        raise ValueError(f"the levels must start at {top}, where the chain starts; got {path}")
    if not all(a > b >= 1 for a, b in zip(path, path[1:])):
        raise ValueError(f"the levels must fall strictly and stay >= 1; got {path}")
    return list(path)


def seed_classes(shares: tuple[float, ...] | list[float], seeds: list[int]) -> Tensor:
    """[N] long: the class of each seed, drawn with probabilities `shares` (a conditional model's
    training-data frequencies) from the seed's own stream; depends on the seed alone."""
    cdf = np.cumsum(np.asarray(shares, dtype=np.float64))
    u = [np.random.default_rng([int(s), CLASS_STREAM]).random() * cdf[-1] for s in seeds]
    return torch.as_tensor(np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1), dtype=torch.long)


def sample_labels(cfg: ModelConfig, labels: Tensor | list[int] | None, seeds: list[int]) -> Tensor | None:
    """The class of each sample as a [N] long tensor: `labels` checked against the model (a UserError
    names what is wrong), drawn by seed for a conditional model without them, None for an
    unconditional model."""
    if labels is None:
        return seed_classes(cfg.classes, seeds) if cfg.num_classes else None
    if not cfg.num_classes:
        raise UserError("--class: the model is not class-conditional (train it with --cond)")
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(labels) != len(seeds):
        raise ValueError(f"{len(labels)} labels for {len(seeds)} seeds")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < cfg.num_classes:
        bad = int(labels.max()) if int(labels.max()) >= cfg.num_classes else int(labels.min())
        raise UserError(f"--class {bad}: the model has classes 0..{cfg.num_classes - 1}")
    return labels


@torch.no_grad()
def sample(
    model: Model,
    seeds: list[int],
    steps: int | None = None,
    sampler: str = "gan",
    device: torch.device | str = "cpu",
    net: torch.nn.Module | None = None,
    start: tuple[int, Tensor] | None = None,
    path: list[int] | None = None,
    mixture: int | None = None,
    labels: Tensor | list[int] | None = None,
) -> Tensor:
    """Draw one sample per seed. Returns [N, *shape] float32 on the CPU.

    steps: the NFE (default: the starting level). net: the generator to use (default: the
    model's generators, `Model.generators`: sample i from the one at seeds[i] mod their number).
    mixture: how many of the model's generators to draw from (default all; 1: G_ema alone).
    start: (level k, x_k [N, *shape]) to run the chain from x_k at level k instead
    of from pure noise at level T (the seeds then give only the latents and posterior noise).
    path: the levels to visit, from the start down (e.g. [4, 1]: NFE 2 that ends at level 1);
    default: `steps` levels evenly spaced (`levels`).
    labels: a class-conditional model's class of each sample ([N]; default: drawn by seed, `seed_classes`).
    """
    nets = [net] if net is not None else model.generators(mixture)
    sampler, device = Sampler(sampler), torch.device(device)
    labels = sample_labels(model.cfg, labels, seeds)
    if len(nets) == 1:
        return _chain(model, nets[0], seeds, steps, sampler, device, start, path, labels)
    out = torch.empty(len(seeds), *model.cfg.shape)
    for k, member in enumerate(nets):
        rows = [i for i, seed in enumerate(seeds) if seed % len(nets) == k]
        if rows:
            part = None if start is None else (start[0], start[1][rows])
            y = None if labels is None else labels[rows]
            out[rows] = _chain(model, member, [seeds[i] for i in rows], steps, sampler, device, part, path, y)
    return out


def mixture_text(model: Model, mixture: int | None = None) -> str:
    """', a mixture of K generators' for descriptions of samples, or '' for one generator."""
    count = len(model.generators(mixture))
    return f", a mixture of {count} generators" if count > 1 else ""


def _chain(model: Model, net: torch.nn.Module, seeds: list[int], steps: int | None, sampler: Sampler,
           device: torch.device, start: tuple[int, Tensor] | None, path: list[int] | None,
           labels: Tensor | None = None) -> Tensor:
    """`sample` with one generator."""
    shape = model.cfg.shape
    noise = SeedNoise(seeds)
    first = noise.randn(*shape)  # = start_noise(seeds, shape); drawn either way: later draws do not depend on `start`
    top, x = start if start is not None else (model.cfg.steps, first)
    if not 1 <= top <= model.cfg.steps:
        raise ValueError(f"the starting level must be in 1..{model.cfg.steps}, got {top}")
    x = x.float().to(device)
    if path is not None and steps is not None and steps != len(path):
        raise ValueError(f"steps {steps} and the {len(path)} levels {path} disagree")
    path = (check_path(path, top) if path is not None else levels(top, steps or top)) + [0]
    y = None if labels is None else labels.to(device)
    for t_level, s_level in zip(path[:-1], path[1:]):
        z = noise.randn(model.z_dim).to(device) if model.z_dim else None
        t = torch.full((len(seeds),), t_level, dtype=torch.long, device=device)
        s = torch.full_like(t, s_level)
        x0 = model.predict_x0(model.net_at(net, t_level), x, t, z, y).float()
        if model.cfg.is_image:  # images live in [-1, 1]; clipping the estimate helps eps models
            x0 = x0.clamp(-1, 1)
        if sampler == Sampler.DDIM:
            eps = model.schedule.x0_to_eps(x, t, x0)
            x = model.schedule.q_sample(x0, s, eps)
        else:
            x = model.schedule.posterior_sample(x, x0, t, noise.randn(*shape).to(device), s)
    return x.cpu()


def sample_batched(model: Model, seeds: list[int], batch: int = 256, start: tuple[int, Tensor] | None = None,
                   progress: bool = False, **kwargs) -> Tensor:
    """`sample` in chunks of `batch` seeds; the result does not depend on `batch`. progress: a
    tqdm bar on stderr (samples, rate, time left) where stderr is a terminal."""
    from tqdm import tqdm

    labels = kwargs.pop("labels", None)

    def chunk(i: int) -> Tensor:
        part = None if start is None else (start[0], start[1][i : i + batch])
        y = None if labels is None else labels[i : i + batch]
        return sample(model, seeds[i : i + batch], start=part, labels=y, **kwargs)

    with tqdm(total=len(seeds), desc="sampling", unit="img", disable=None if progress else True, leave=False) as bar:
        parts = []
        for i in range(0, len(seeds), batch):
            parts.append(chunk(i))
            bar.update(len(parts[-1]))
    return torch.cat(parts)
