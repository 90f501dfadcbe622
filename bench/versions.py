"""Two versions of the code side by side: this checkout and an older commit, each importable as
`hybridgan` in its own worker processes. What the comparison scripts (step_speed.py,
inception_speed.py, shared_machine.py) share.

The old commit is `git archive`d into a temporary folder (no worktree, nothing in .git
changes); this checkout is linked there as well, so that each worker imports the version its
PYTHONPATH names, not whatever `pip install -e` points `hybridgan` at. Workers of the two
versions run in alternation, round after round (ABBA order), so a drift in the machine's load
falls on both alike; each number printed is a median over rounds.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Version:
    label: str  # "old abc1234" or "new def5678" (+dirty where the checkout has uncommitted changes)
    path: Path  # a folder holding `hybridgan`: what PYTHONPATH starts with in this version's workers


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def versions(old: str | None) -> Iterator[list[Version]]:
    """[old, new] (or [new] without `old`), in a temporary folder removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="hybrid-bench-") as tmp:
        out = []
        if old:
            sha = git("rev-parse", "--short", f"{old}^{{commit}}")
            (Path(tmp) / "old" / "hybridgan").mkdir(parents=True)
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", sha], check=True,
                                     capture_output=True).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12
                tar.extractall(Path(tmp) / "old" / "hybridgan", **safe)
            out.append(Version(f"old {sha}", Path(tmp) / "old"))
        (Path(tmp) / "new").mkdir()
        (Path(tmp) / "new" / "hybridgan").symlink_to(ROOT, target_is_directory=True)
        dirty = "+dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
        out.append(Version(f"new {git('rev-parse', '--short', 'HEAD')}{dirty}", Path(tmp) / "new"))
        yield out


def run_worker(script: str, version: Version, args: Sequence[str], env: dict[str, str] | None = None,
               timeout: float | None = None) -> dict:
    """Run `python SCRIPT --worker ARGS` importing `version`; its last stdout line is JSON. A failure
    comes back as {"error": its last stderr line}."""
    environ = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(
        [str(version.path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        proc = subprocess.run([sys.executable, script, "--worker", *args], env=environ, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_import(version: Version) -> None:
    """The worker of `version` imports that version's code (and not an installed one)."""
    code = "import hybridgan, pathlib; print(pathlib.Path(hybridgan.__file__).resolve().parent)"
    env = {**os.environ, "PYTHONPATH": str(version.path)}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    want = (version.path / "hybridgan").resolve()
    if Path(got) != want:
        raise SystemExit(f"{version.label}: `import hybridgan` found {got}, not {want}")


def abba(items: Sequence, rounds: int) -> Iterator[tuple[int, object]]:
    """(round, item) for each round, the items in turn and in reverse order on odd rounds."""
    for r in range(rounds):
        for item in (items if r % 2 == 0 else list(reversed(items))):
            yield r, item


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def header(script: str, args: object) -> str:
    """Lines that say when, where and under what load a table was measured."""
    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), model)
    bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"# hybrid {script}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}\n"
            f"# {model}, {os.cpu_count()} CPUs, torch {torch.__version__}, avx512_bf16 {bf16}, amx {amx}\n"
            f"# load average before: {load}; {args}")


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
