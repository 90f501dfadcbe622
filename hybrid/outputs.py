"""Where samples are written, checked before any work: a command that would fail to write its
result says so in one line before it samples (this module imports no torch, so that check is fast)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hybridgan.hybrid.errors import UserError


def seed_file(seed: int, label: int | None = None) -> str:
    """The file name of one seed's image in a folder output: seed000123.png, or 3/seed000123.png for
    class 3 (one sub-folder per class, the layout `--data FOLDER` reads as labelled)."""
    name = f"seed{seed:06d}.png"
    return name if label is None else f"{label}/{name}"


def check_output(out: str | Path, seeds: list[int], overwrite: bool = False, image: bool | None = None,
                 labels: list[int] | None = None) -> Path:
    """Refuse an output that `write_samples` could not write: a wrong suffix, a place that is not a
    writable folder, files already there (unless `overwrite`), and, once `image` is known, vectors
    to a folder. labels: each seed's class, for sub-folders per class. Raises UserError naming --out."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in ("", ".png", ".npy"):
        raise UserError(f"--out {out}: use a .png (grid), a .npy (raw samples) or a folder name")
    if not suffix and image is False:
        raise UserError(f"--out {out}: vector samples go to a .npy or a .png scatter plot, not a folder")
    if (suffix and out.is_dir()) or (not suffix and out.exists() and not out.is_dir()):
        raise UserError(f"--out {out}: exists as a {'folder' if out.is_dir() else 'file'}; give another name")
    labels = [None] * len(seeds) if labels is None else labels
    targets = [out] if suffix else [out / seed_file(s, k) for s, k in zip(seeds, labels)]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(f"--out {out}: {existing[0]}{more} exist(s); pass --overwrite to replace, or choose another name")
    _check_writable(out if not suffix else out.parent, out)
    return out


def _check_writable(folder: Path, out: Path) -> None:
    """Create and remove a file in `folder`, or in its nearest existing ancestor when it is yet to be made."""
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"--out {out}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hybrid-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {folder} ({e.strerror or e}); choose another place") from None
