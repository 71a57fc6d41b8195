"""Data: the synthetic world, Tiny ImageNet, neural recordings, corruptions; one canonical on-disk form."""

from core.data.canonical import ClassificationSet, NeuralSet

__all__ = ["ClassificationSet", "NeuralSet"]
