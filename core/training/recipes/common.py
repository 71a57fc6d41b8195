"""Training configs shared by recipes: how a kind's config is made from its preset."""

from __future__ import annotations

from core.training.config import TrainConfig


def classification_config(preset, common: dict, ratio: str) -> TrainConfig:
    """SGD on classification at the preset's learning rate (the Baseline's recipe)."""
    return TrainConfig(mode="classification", lr=preset.lr, **common)


def mtl_config(preset, common: dict, ratio: str) -> TrainConfig:
    """Classification + neural targets at `ratio`, the readout's own Adam where the preset gives one."""
    return TrainConfig(mode="mtl", ratio=ratio, lr=preset.lr, readout_lr=preset.readout_lr,
                       learn_cls_weight=preset.learn_cls_weight, **common)


def neural_config(preset, common: dict, ratio: str) -> TrainConfig:
    """A Gaussian readout (and the core below it) on the neural trials, Poisson loss, Adam."""
    return TrainConfig(mode="neural", lr=preset.neural_lr, optimizer="adam", **{**common, "max_epochs": preset.neural_epochs})


def similarity_config(preset, common: dict, ratio: str) -> TrainConfig:
    return TrainConfig(mode="similarity", lr=preset.lr, **common)
