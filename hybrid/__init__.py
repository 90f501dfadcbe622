"""hybrid: what a model is — the noise schedule, the networks, the samplers, checkpoints."""

from hybridgan.hybrid.model import Model, ModelConfig
from hybridgan.hybrid.nets import NetConfig
from hybridgan.hybrid.schedule import Schedule

__version__ = "0.1.0"
__all__ = ["Model", "ModelConfig", "NetConfig", "Schedule", "__version__"]
