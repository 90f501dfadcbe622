"""Teachers: trained diffusion models that a `distill` run turns into a few-step student.

A teacher is a `hybrid` checkpoint of `--objective ddpm` (its EMA generator is the frozen
denoiser), or a diffusers UNet2DModel folder with its DDPM scheduler's config (optional extra
`[diffusers]`). The run records the teacher's path and SHA-256 and re-reads the file when it resumes,
so a student's checkpoints stay small and a changed teacher is refused, not silently used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hybridgan.hybrid import checkpoint as ckpt_io
from hybridgan.hybrid.errors import UserError
from hybridgan.hybrid.model import Model


@dataclass
class Teacher:
    """A frozen denoiser: `model.G_ema` with the teacher's schedule and parameterisation."""

    model: Model
    path: str
    sha256: str

    @property
    def net(self):
        return self.model.G_ema


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_teacher(path: str | None, data_shape: tuple[int, ...], expected_sha256: str | None = None) -> Teacher:
    """Read and check a teacher for data of `data_shape`; with `expected_sha256` (a resumed run),
    refuse a file that is not the one the run started with. Every problem is one UserError line."""
    if not path:
        raise UserError("--objective distill needs --teacher PATH: a checkpoint of `hybrid train --objective ddpm`")
    if is_diffusers_folder(path):
        return load_diffusers_teacher(path, data_shape, expected_sha256)
    if not Path(path).is_file():
        raise UserError(f"--teacher {path}: no such file; give a checkpoint of `hybrid train --objective ddpm`")
    sha256 = file_sha256(path)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise UserError(f"--teacher {path}: the file has changed since the run started (SHA-256 {sha256[:12]}..., the "
                        f"run recorded {expected_sha256[:12]}...); give the teacher the run was started with")
    try:
        state = ckpt_io.load(path)
    except UserError as e:
        raise UserError(f"--teacher: {e}") from None
    objective = state.get("config", {}).get("objective")
    if objective != "ddpm":
        raise UserError(f"--teacher {path}: a checkpoint of --objective {objective}, not a diffusion model; "
                        "give a checkpoint of `hybrid train --objective ddpm`")
    model = ckpt_io.model_from(state, path)
    if tuple(model.cfg.shape) != tuple(data_shape):
        raise UserError(f"--teacher {path} was trained on samples of shape {tuple(model.cfg.shape)}, the data has "
                        f"{tuple(data_shape)}; distill it on the data it was trained on")
    model.requires_grad_(False).eval()
    return Teacher(model=model, path=str(path), sha256=sha256)


# ------------------------------------------------------------------------------------ diffusers

DIFFUSERS_SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}  # diffusers' beta_schedule -> ours


class DiffusersEps(torch.nn.Module):
    """A diffusers UNet2DModel as our networks are called: net(x_t, t / T, z) -> eps. diffusers'
    timestep k (0..T-1) is our level k + 1 (its alpha_bar[k] holds k + 1 steps of noise)."""

    def __init__(self, unet: torch.nn.Module, T: int) -> None:
        super().__init__()
        self.unet, self.T = unet, T

    def forward(self, x: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        return self.unet(x, (t * self.T).round().long() - 1).sample


def is_diffusers_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def load_diffusers_teacher(path: str | Path, data_shape: tuple[int, ...], expected_sha256: str | None) -> Teacher:
    """A `save_pretrained` folder of a diffusers UNet2DModel: config.json and its weights, with the
    scheduler's scheduler_config.json beside them or in ../scheduler (a pipeline's layout)."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise UserError(f"--teacher {path}: a diffusers folder needs diffusers: pip install 'hybrid[diffusers]'") from None
    folder = Path(path)
    sched_file = next((p for p in (folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json")
                       if p.is_file()), None)
    if sched_file is None:
        raise UserError(f"--teacher {path}: no scheduler_config.json beside the UNet or in ../scheduler; save the "
                        "scheduler with it (DDPMScheduler.save_pretrained)")
    sched = json.loads(sched_file.read_text())
    sha256 = _folder_sha256([p for p in sorted(folder.iterdir()) if p.is_file()] + [sched_file])
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise UserError(f"--teacher {path}: the files have changed since the run started; give the teacher the run "
                        "was started with")
    kind = DIFFUSERS_SCHEDULES.get(sched.get("beta_schedule", "linear"))
    T = int(sched.get("num_train_timesteps", 1000))
    # Our linear chain of T levels rescales Ho et al.'s betas by 1000 / T; diffusers' keeps them, so only T = 1000 agrees.
    linear_ok = (sched.get("beta_start", 1e-4), sched.get("beta_end", 0.02), T) == (1e-4, 0.02, 1000)
    if kind is None or (kind == "linear" and not linear_ok) or sched.get("prediction_type", "epsilon") != "epsilon":
        raise UserError(f"--teacher {path}: only epsilon-predicting teachers with a linear (1e-4..0.02 over 1000 steps) "
                        f"or squaredcos_cap_v2 schedule are supported; {sched_file.name} says {sched.get('beta_schedule')} "
                        f"over {T} steps, {sched.get('prediction_type', 'epsilon')}")
    try:
        # low_cpu_mem_usage=False: the default asks for the `accelerate` package, warning on stderr without it.
        unet = UNet2DModel.from_pretrained(str(folder), low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"--teacher {path}: not a readable diffusers UNet2DModel ({str(e).splitlines()[0][:120]})") from None
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    if shape != tuple(data_shape):
        raise UserError(f"--teacher {path} was trained on samples of shape {shape}, the data has {tuple(data_shape)}; "
                        "distill it on the data it was trained on")
    from hybridgan.training.config import default_model  # the student's own network: diffusers' UNet is not ours

    cfg = dataclasses.replace(default_model(shape, "ddpm"), steps=T, schedule=kind, prediction="eps")
    model = Model(cfg)
    model.G_ema = DiffusersEps(unet, T)
    model.requires_grad_(False).eval()
    return Teacher(model=model, path=str(path), sha256=sha256)


def _folder_sha256(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0" + file_sha256(p).encode())
    return digest.hexdigest()
