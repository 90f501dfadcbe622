"""training: how a model is made — data, objectives, the trainer loop, stats.

`TrainConfig` and `train` load lazily (they import torch), so the command line starts fast.
"""

from importlib import import_module
from pathlib import Path
from typing import Any

__all__ = ["PRESETS", "TrainConfig", "preset_names", "train"]
PRESETS = Path(__file__).with_name("presets")  # the shipped presets, training/presets/NAME.json
_HOMES = {"TrainConfig": "config", "train": "trainer"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.json"))
