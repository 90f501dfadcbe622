"""The report's plots (matplotlib, Agg backend): several runs overlaid, one colour per run."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only (before pyplot is imported)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402

COLUMNS = 3  # subplots per row
PANEL = (4.2, 3.0)  # inches per subplot
DPI = 90
WIDE_RANGE = 50  # max / min above which a log_wide panel gets a log y axis
SAMPLER_STYLE = {"gan": "-", "ddpm": "--", "ddim": ":"}

DrawPanel = Callable[[Axes, str], bool]  # draws one panel; False when it had nothing to draw


def colour(index: int) -> str:
    return f"C{index % 10}"


def panels(path: Path, names: list[str], draw: DrawPanel, title: str) -> bool:
    """A grid of subplots, one per name, with one shared legend below; saved as PNG.

    Returns False (and writes no file) when no panel had anything to draw.
    """
    rows, cols = math.ceil(len(names) / COLUMNS), min(len(names), COLUMNS)
    fig = plt.figure(figsize=(PANEL[0] * cols, PANEL[1] * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    drew = False
    for ax, name in zip(axes.flat, names):
        drew |= draw(ax, name)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=min(len(handles), 4),
                   fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    if drew:
        fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return drew


def plot_lines(path: Path, series: dict[str, dict[str, tuple[list[float], list[float]]]], xlabel: str,
               title: str, styles: dict[str, dict[str, Any]],
               marks: dict[str, tuple[float, str]] | None = None) -> bool:
    """series: panel name -> curve label -> (x, y). styles: curve label -> matplotlib kwargs.
    marks: panel name -> (y, label) of a dashed horizontal reference line."""
    def draw(ax: Axes, name: str) -> bool:
        if marks and name in marks:
            y, label = marks[name]
            ax.axhline(y, color="#888", linestyle="--", linewidth=1)
            ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7, color="#555",
                        va="bottom")
        for label, (x, y) in series[name].items():
            ax.plot(x, y, label=label, marker="o" if len(x) < 30 else None, markersize=3, linewidth=1.3,
                    **styles.get(label, {}))
        ax.set_xlabel(xlabel, fontsize=8)
        return any(len(x) for x, _ in series[name].values())

    return panels(path, list(series), draw, title)


def plot_nfe(path: Path, series: dict[str, dict[str, tuple[list[int], list[float], list[float]]]], title: str,
             styles: dict[str, dict[str, Any]], log_wide: set[str]) -> bool:
    """series: panel name -> curve label -> (nfe, mean, std); error bars are one std over seeds.

    Panels named in `log_wide` get a log y axis when their values span more than WIDE_RANGE.
    """
    def draw(ax: Axes, name: str) -> bool:
        ticks: set[int] = set()
        for label, (nfe, mean, std) in series[name].items():
            ax.errorbar(nfe, mean, yerr=std, label=label, marker="o", markersize=4, capsize=3, linewidth=1.3,
                        **styles.get(label, {}))
            ticks |= set(nfe)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
        ax.minorticks_off()
        values = [v for _, mean, _ in series[name].values() for v in mean if v > 0]
        if name in log_wide and values and max(values) / min(values) > WIDE_RANGE:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.set_xlabel("NFE (generator evaluations per sample)", fontsize=8)
        return bool(ticks)

    return panels(path, list(series), draw, title)
