"""training: how a model is made — data, objectives, the trainer loop, stats."""

from training.config import TrainConfig
from training.trainer import train

__all__ = ["TrainConfig", "train"]
