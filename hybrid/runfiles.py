"""The files of a run directory and the JSON-lines records in them.

One place for the names that training writes and metrics, reports and experiments read:

    RUN_DIR/config.json, log.txt, stats.jsonl, metrics.jsonl, bench.jsonl, samples/, checkpoints/
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

CONFIG = "config.json"  # the resolved training configuration
LOG = "log.txt"  # what the console showed
STATS = "stats.jsonl"  # one record per tick: losses, D logits, img/s
METRICS = "metrics.jsonl"  # one record per metric per training-time evaluation
BENCH = "bench.jsonl"  # one record per `hybrid bench` setting
SAMPLES = "samples"  # PNG grids from fixed seeds, one per snapshot
CHECKPOINTS = "checkpoints"  # checkpoint-<kimg:06d>.pt


def duration(seconds: float | None) -> str:
    """A run's time as the log and reports show it: 42s, 3m 05s, 1h 02m; – when unknown."""
    if seconds is None:
        return "–"
    minutes, s = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {s:02d}s" if minutes else f"{s}s"


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON object as a line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file; [] when absent; lines cut short by a kill are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def versions() -> dict[str, str]:
    """Versions of what can change a number: torch, torch-fidelity, hybridgan, Python."""
    import torch

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {"torch": torch.__version__, "torch_fidelity": version("torch-fidelity"), "hybridgan": version("hybridgan"),
            "python": platform.python_version()}


def git_commit() -> str | None:
    """The commit of the checkout this package runs from ("+dirty" with uncommitted changes); None
    when installed from a wheel or git is missing."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def machine() -> str:
    """The hardware a number was measured on: CPU model and core count, and the GPU if there is one."""
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}"


def provenance() -> dict[str, Any]:
    """Where a record comes from: versions, git commit, machine, the command line and the time (UTC)."""
    return {"versions": versions(), "git_commit": git_commit(), "machine": machine(), "command": shlex.join(sys.argv),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
