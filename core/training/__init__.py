"""Training: losses, the ratio cycler, the fit loop, and the paper's model kinds."""

from core.training.config import TrainConfig
from core.training.fit import FitResult, fit

__all__ = ["FitResult", "TrainConfig", "fit"]
