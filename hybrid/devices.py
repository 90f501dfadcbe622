"""Where a model runs and in what precision: chosen once, here, for training, sampling and metrics."""

from __future__ import annotations

import math
import os
import time

import torch

from hybridgan.hybrid.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: choose auto, cpu or cuda")
    return torch.device(name)


PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise UserError(f"--precision {name!r}: choose {', '.join(PRECISIONS)}")


def resolve_precision(name: str, device: torch.device, image: bool) -> torch.dtype | None:
    """The autocast dtype, or None for plain float32. Chosen once per run."""
    check_precision(name)
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    # Conv nets gain from bf16 where the hardware computes in it; the toy MLPs are too small to gain.
    return torch.bfloat16 if image and has_native_bf16(device) else None


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix arithmetic runs in hardware: on the CPU, AVX512-BF16 or AMX.

    Without them oneDNN emulates bf16 convolutions with fp32 AVX-512: on a 2-core Xeon
    without either, the digits training step took 2.5x the CPU time of fp32 (1094 vs 429 ms).
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the getattr
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


# --------------------------------------------------------------------------------- CPU threads


def _cpu_jiffies(cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) clock ticks of these CPUs since boot, from Linux's /proc/stat; None elsewhere.
    Steal time counts as busy: the hypervisor gave the core to someone else."""
    try:
        lines = open("/proc/stat").read().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [float(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


class CPUThreads:
    """Torch's intra-op threads for CPU training, following the cores other processes leave idle.

    OpenMP splits each operation evenly over its threads and waits for the slowest: where another
    process keeps a core busy, the thread sharing that core holds up every operation, and the
    waiting threads spin. On 2 cores with one kept busy the digits step fell from ~110 img/s on one
    thread to ~3 img/s on two (docs/benchmarks.md#a-shared-machine). So a run uses all its
    cores (torch's default) where they are idle, and one fewer per core that other processes keep
    busy: measured for 0.2 s at the start, then every CHECK_SECONDS from the CPU time the machine
    spent minus our own, a change taken when two checks in a row agree.

    Thread counts round sums differently, so a run that changed its count is not bitwise
    repeatable; OMP_NUM_THREADS pins the count (and turns this off), as it does for torch.
    Linux only (/proc/stat); elsewhere, and for CUDA or multi-process runs, torch's default stays.
    """

    CHECK_SECONDS = 5.0

    def __init__(self, enabled: bool = True, clock=time.perf_counter, cpu_time=time.process_time) -> None:
        self.clock, self.cpu_time = clock, cpu_time  # wall seconds; this process's CPU seconds (all threads)
        self.most = torch.get_num_threads()  # torch's choice (or the caller's): the count when idle
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        self.enabled = enabled and "OMP_NUM_THREADS" not in os.environ and self.most > 1 and \
            _cpu_jiffies(self.cpus) is not None
        self._last: tuple[float, float, float, float] | None = None  # (wall, busy, total, our CPU seconds)
        self._proposed: int | None = None

    def start(self) -> str:
        """Choose the count from 0.2 s of the machine's load; a line for the log."""
        if not self.enabled:
            why = "OMP_NUM_THREADS" if "OMP_NUM_THREADS" in os.environ else "torch's default"
            return f"threads {torch.get_num_threads()} ({why})"
        self._sample()
        time.sleep(0.2)
        others = self._others()
        threads = self._threads_for(others)
        torch.set_num_threads(threads)
        return (f"threads {threads} of {self.most}: other processes keep {others:.1f} cores busy "
                "(OMP_NUM_THREADS pins the count)")

    def __enter__(self) -> CPUThreads:
        return self

    def __exit__(self, *exc) -> None:
        """Give back torch's count as it was before `start` (a Python caller's later work keeps it)."""
        if self.enabled:
            torch.set_num_threads(self.most)

    def poll(self) -> str | None:
        """Called every step; every CHECK_SECONDS, a new count where the load changed (and a log line)."""
        if not self.enabled or self._last is None or self.clock() - self._last[0] < self.CHECK_SECONDS:
            return None
        others = self._others()
        threads = self._threads_for(others)
        current = torch.get_num_threads()
        if threads == current or threads != self._proposed:
            self._proposed = threads if threads != current else None
            return None
        self._proposed = None
        torch.set_num_threads(threads)
        return f"threads {current} -> {threads}: other processes keep {others:.1f} cores busy (OMP_NUM_THREADS pins the count)"

    def _threads_for(self, others: float) -> int:
        busy = math.ceil(others - 0.25)  # a core more than a quarter busy holds up the threads that share it
        return max(1, min(self.most, len(self.cpus) - busy))

    def _sample(self) -> tuple[float, float, float, float]:
        busy, total = _cpu_jiffies(self.cpus) or (0.0, 0.0)
        previous, self._last = self._last, (self.clock(), busy, total, self.cpu_time())
        return previous or self._last

    def _others(self) -> float:
        """Cores other processes kept busy since the last sample (ours: this process's CPU time)."""
        t0, busy0, total0, ours0 = self._sample()
        _, busy1, total1, ours1 = self._last
        if total1 <= total0:
            return 0.0
        cores = len(self.cpus) * (busy1 - busy0) / (total1 - total0)
        wall = self._last[0] - t0
        return max(0.0, cores - (ours1 - ours0) / wall) if wall > 0 else 0.0
