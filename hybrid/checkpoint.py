"""Checkpoint files: plain containers written atomically, read with weights_only=True.

A checkpoint is a dict {"format": FORMAT, "version": VERSION, "config": {...}, ...state...}.
It holds no pickled classes or code, so loading a stranger's file cannot run code.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from hybridgan.hybrid.errors import UserError

FORMAT = "hybrid-checkpoint"
VERSION = 1
_NAME = re.compile(r"^checkpoint-(\d{6,})\.pt$")


def checkpoint_name(kimg: int) -> str:
    return f"checkpoint-{kimg:06d}.pt"


def checkpoint_kimg(path: str | Path) -> int | None:
    """The kimg a checkpoint's file name records (`checkpoint_name`'s inverse); None for any other name."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one under `path`, never a
    partial one. On failure (disk full, read-only folder) the temporary file is removed and
    an OSError naming `path` is raised.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; any problem with the file is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; give the path of a checkpoint-*.pt file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a checkpoint file (not a torch archive; truncated, corrupt or another kind of file)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} was refused: it holds pickled objects or code, not the plain data of a hybrid checkpoint; "
            "load only checkpoints written by `hybrid train`"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise UserError(f"{path} is not a readable checkpoint (truncated or corrupt: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path} is not a hybrid checkpoint; give a checkpoint-*.pt written by `hybrid train`")
    if ckpt.get("version", 0) > VERSION:
        raise UserError(
            f"{path} has checkpoint format version {ckpt['version']}, newer than this hybrid "
            f"understands ({VERSION}); upgrade hybrid"
        )
    return ckpt


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints in `folder`, oldest first (temporary files are never listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(kimg, p) for p in folder.iterdir() if (kimg := checkpoint_kimg(p)) is not None]
    return [p for _, p in sorted(found)]


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """The model bundle of a checkpoint, with the EMA generator ready to sample. Needs only the file."""
    return model_from(load(path, map_location), path)


def model_from(ckpt: dict[str, Any], path: str | Path):
    """The model bundle of a checkpoint already read with `load` (path: for the error message)."""
    from hybridgan.hybrid.model import Model, ModelConfig

    try:
        model = Model(ModelConfig.from_dict(ckpt["config"]["model"]))
        model.G.load_state_dict(ckpt["G"])
        model.G_ema.load_state_dict(ckpt["G_ema"])
        model.load_past(ckpt.get("G_past", []))
        if model.frozen is not None:
            model.frozen.load_state_dict(ckpt["frozen"])
        if model.D is not None and "D" in ckpt:
            model.D.load_state_dict(ckpt["D"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: the checkpoint's config and weights do not fit together ({str(e)[:160]})") from None
    return model.eval()
