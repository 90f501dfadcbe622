"""The run directory: its files, its single-writer lock, and the records a run appends."""

from __future__ import annotations

import fcntl
import os
import re
import sys
from pathlib import Path
from typing import TextIO

from hybridgan.hybrid import runfiles
from hybridgan.hybrid.checkpoint import list_checkpoints
from hybridgan.hybrid.errors import UserError


def data_slug(data: str) -> str:
    """A folder-name form of a data source: toy:25gaussians -> toy-25gaussians, ./a/my_images/ -> my_images."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(data.rstrip("/")).name if not data.startswith("toy:") else data).strip("-")
    return slug or "data"


def next_run_dir(root: str | Path, data: str, objective: str) -> Path:
    """root/NNNNN-<data>-<objective> with the next free number; never an existing folder."""
    root = Path(root)
    taken = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else []) if (m := re.match(r"^(\d{5})-", p.name))]
    return root / f"{max(taken, default=-1) + 1:05d}-{data_slug(data)}-{objective}"


class RunDir:
    """Paths inside a run directory, and the lock that makes its owner the only writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / runfiles.CHECKPOINTS
        self.samples = self.path / runfiles.SAMPLES
        self.config = self.path / runfiles.CONFIG
        self.stats = self.path / runfiles.STATS
        self.metrics = self.path / runfiles.METRICS
        self.log = self.path / runfiles.LOG
        self._lock_file: TextIO | None = None

    def has_content(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def latest_checkpoint(self) -> Path | None:
        found = list_checkpoints(self.checkpoints)
        return found[-1] if found else None

    def create(self) -> None:
        try:
            for folder in (self.path, self.checkpoints, self.samples):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--run-dir {self.path}: cannot create it ({e.strerror})") from None
        if not os.access(self.path, os.W_OK):
            raise UserError(f"--run-dir {self.path}: not writable; choose another folder")

    def lock(self) -> None:
        """Hold an exclusive flock on RUN_DIR/.lock for the life of the process. The kernel
        drops it when the process dies, so a killed run never leaves a stale lock."""
        f = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise UserError(
                f"--run-dir {self.path}: another `hybrid train` is writing to it; wait for it or choose another folder"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f
        # Partial checkpoint files of a writer that was killed; as the only writer now, drop them.
        for stale in self.checkpoints.glob(".checkpoint-*.tmp"):
            stale.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


class Console:
    """Prints to the terminal (through tqdm when a bar is showing) and appends to log.txt."""

    def __init__(self, log_path: Path | None = None, quiet: bool = False) -> None:
        self.log_path, self.quiet = log_path, quiet
        self.bar = None

    def __call__(self, message: str) -> None:
        if not self.quiet:
            if self.bar is not None:
                self.bar.write(message, file=sys.stdout)
            else:
                print(message, flush=True)
        if self.log_path is not None:
            with open(self.log_path, "a") as f:
                f.write(message + "\n")
