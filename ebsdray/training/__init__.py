"""Training of the diffusion denoisers: a plain loop that also runs inside Ray Train workers."""

from ebsdray.training.config import TrainConfig
from ebsdray.training.loop import train

__all__ = ["TrainConfig", "train"]
