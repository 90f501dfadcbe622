"""training: how a model is made — data, objectives, the trainer loop, stats."""

from hybridgan.training.config import TrainConfig
from hybridgan.training.trainer import train

__all__ = ["TrainConfig", "train"]
