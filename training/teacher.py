"""Teachers: trained diffusion models that a `distill` run turns into a few-step student.

A teacher is a `hybrid` checkpoint of `--objective ddpm` (its EMA generator is the frozen
denoiser). The run records the teacher's path and SHA-256 and re-reads the file when it resumes,
so a student's checkpoints stay small and a changed teacher is refused, not silently used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hybrid import checkpoint as ckpt_io
from hybrid.errors import UserError
from hybrid.model import Model


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
