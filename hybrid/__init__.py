"""hybrid: what a model is — the noise schedule, the networks, the samplers, checkpoints.

Its names load lazily, so that `hybridgan.hybrid.errors` (which the command line imports at
start-up) does not wait for torch.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["Model", "ModelConfig", "NetConfig", "Schedule", "__version__"]
_HOMES = {"Model": "model", "ModelConfig": "model", "NetConfig": "nets", "Schedule": "schedule"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
