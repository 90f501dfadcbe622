"""Training statistics reported by name anywhere in a step and collected once per tick.

Values stay on the device as running sums, so reporting never forces a CPU-GPU sync; the
sync happens once, in `collect`, which also pools the sums and counts of all ranks of a
multi-process run (the means are those of the global batch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hybridgan.training import distributed


class Stats:
    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, Tensor] = {}
        self._levels: dict[str, tuple[list[str], Tensor, Tensor]] = {}  # name -> (level names, sums [K], counts [K])

    def report(self, name: str, value: Tensor | float) -> None:
        """Add the elements of `value` to the running mean of `name`."""
        v = value.detach().float().flatten() if isinstance(value, Tensor) else torch.tensor([float(value)])
        if name in self._sums:
            self._sums[name] = self._sums[name] + v.sum().to(self._sums[name].device)
            self._counts[name] = self._counts[name] + v.numel()
        else:
            self._sums[name], self._counts[name] = v.sum(), torch.tensor(float(v.numel()))

    def report_per_level(self, name: str, values: Tensor, t: Tensor, T: int) -> None:
        """Per-sample values [B] at levels t [B]: reported as `name/tK` for each level K (T <= 8)
        or per quartile of the chain `name/qK` (T > 8), which shows where training struggles.

        All levels at once, as rows of a one-hot [K, B] mask: a handful of operations a call
        instead of seven per level (each row's masked sum is the one a single level's was)."""
        levels = T if T <= 8 else 4
        bucket = t - 1 if T <= 8 else ((t - 1) * 4) // T
        mask = (bucket == torch.arange(levels, device=t.device)[:, None]).float()  # [K, B]
        sums, counts = (values.detach().float() * mask).sum(1), mask.sum(1)
        if name in self._levels:
            names, total, number = self._levels[name]
            self._levels[name] = (names, total + sums, number + counts)
        else:
            names = [f"{name}/t{k + 1}" if T <= 8 else f"{name}/q{k}" for k in range(levels)]
            self._levels[name] = (names, sums, counts)

    def collect(self) -> dict[str, float]:
        """Means since the last collect over all ranks (names with no values are left out); then
        reset. A collective in a multi-process run: every rank must call it."""
        for names, total, number in self._levels.values():
            self._sums.update(zip(names, total.unbind()))
            self._counts.update(zip(names, number.unbind()))
        sums, counts = distributed.sum_named(self._sums, self._counts)
        out = {name: total / counts[name] for name, total in sums.items() if counts[name] > 0}
        self._sums.clear()
        self._counts.clear()
        self._levels.clear()
        return dict(sorted(out.items()))
