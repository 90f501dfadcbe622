"""Training throughput on a shared machine: idle, and with another process keeping one core busy.

    python bench/shared_machine.py [--old REV] [--minutes 0.5] [--rounds 2] [--busy-cpu 0]

Each run is `hybrid train` (the default digits hybrid, batch 16) in its own process for
--minutes of training time, under one thread policy, with the machine idle or with a busy loop
(`while True: pass`) pinned to --busy-cpu and started a second before. img/s is the images
trained over the training seconds recorded in stats.jsonl after the first tick (the warm-up).
Policies:

- default: what `hybrid train` does by itself (this checkout: follow the idle cores,
  hybrid.devices.CPUThreads; with --old also the old commit's, torch's default threads);
- all cores: OMP_NUM_THREADS=<cores>, OpenMP's default waiting (spinning, then sleeping);
- all cores, passive: the same with OMP_WAIT_POLICY=PASSIVE (waiting threads sleep at once);
- 1 thread: OMP_NUM_THREADS=1.

Runs alternate policy by policy, idle and busy, for --rounds rounds; medians are printed. Run it
on an otherwise quiet machine: the "idle" column is only idle if nothing else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from versions import check_import, header, median, table, versions  # noqa: E402


def policies(cores: int) -> list[tuple[str, dict[str, str]]]:
    return [("default", {}), ("all cores", {"OMP_NUM_THREADS": str(cores)}),
            ("all cores, passive", {"OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE"}),
            ("1 thread", {"OMP_NUM_THREADS": "1"})]


@contextlib.contextmanager
def busy_loop(cpu: int | None):
    """A process spinning on one CPU (pinned where the OS allows it), for the duration."""
    if cpu is None:
        yield
        return
    code = f"import os\nif hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1.0)
        yield
    finally:
        proc.kill()
        proc.wait()


def train_img_s(version_path: Path, env: dict[str, str], minutes: float) -> tuple[float, str]:
    """img/s of a `hybrid train` run after its first tick, and its log line about threads."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        environ.update(env, PYTHONPATH=str(version_path))
        cmd = [sys.executable, "-m", "hybridgan.cli", "train", "--data", "digits", "--kimg", "100000",
               "--minutes", str(minutes), "--tick-every", "0.4", "--snapshot-every", "100000", "--run-dir", str(run),
               "--quiet"]
        proc = subprocess.run(cmd, env=environ, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"hybrid train failed: {proc.stderr.strip().splitlines()[-1:]}")
        ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
        first, last = (ticks[0], ticks[-1]) if len(ticks) > 1 else ({"kimg": 0.0, "seconds": 0.0}, ticks[-1])
        log = (run / "log.txt").read_text()
        threads = next((re.search(r"  (threads \d+( of \d+)?)", line).group(1) for line in log.splitlines()
                        if "  threads " in line), "")
        return 1000 * (last["kimg"] - first["kimg"]) / max(last["seconds"] - first["seconds"], 1e-9), threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", default=None, help="also run the old commit's default policy (e.g. main)")
    parser.add_argument("--minutes", type=float, default=0.5, help="training time per run (default 0.5)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per policy and load (default 2)")
    parser.add_argument("--busy-cpu", type=int, default=0, help="the CPU the busy loop is pinned to (default 0)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(header("bench/shared_machine.py", f"--minutes {args.minutes}, --rounds {args.rounds}, busy loop on CPU {args.busy_cpu}"))
    with versions(args.old) as vs:
        for v in vs:
            check_import(v)
        runs = [(f"{v.label}: default", v.path, {}) for v in vs]
        runs += [(f"{vs[-1].label}: {name}", vs[-1].path, env) for name, env in policies(cores)[1:]]
        img: dict[tuple[str, bool], list[float]] = {}
        threads: dict[tuple[str, bool], str] = {}
        for r in range(args.rounds):
            for label, path, env in runs if r % 2 == 0 else reversed(runs):
                for busy in (False, True) if r % 2 == 0 else (True, False):
                    with busy_loop(args.busy_cpu if busy else None):
                        rate, line = train_img_s(path, env, args.minutes)
                    img.setdefault((label, busy), []).append(rate)
                    threads[(label, busy)] = line or f"threads {env.get('OMP_NUM_THREADS', 'default')}"
                    print(f"# round {r}: {label}, {'busy' if busy else 'idle'}: {rate:.1f} img/s ({threads[(label, busy)]})",
                          flush=True)
    rows = []
    for label, _, _ in runs:
        idle, busy = median(img[(label, False)]), median(img[(label, True)])
        rows.append([label, f"{idle:.1f}", f"{busy:.1f}", f"{busy / idle:.2f}x", threads[(label, False)], threads[(label, True)]])
    print()
    print(table(["policy", "idle img/s", "one core busy img/s", "busy / idle", "threads idle", "threads busy"], rows))


if __name__ == "__main__":
    main()
