"""Multi-task assembly: one VGG core, a classification head, and a Gaussian readout on one layer."""

from __future__ import annotations

import torch
from torch import nn

from core.models.filters import lowpass
from core.models.readouts import GaussianReadout, positive_rate
from core.models.registry import create_model


class MultiTaskModel(nn.Module):
    """`forward(x)` gives class logits; `predict_neural(x)` gives positive rates (B, K).

    BatchNorm statistics are shared by both tasks' batches, as in the authors' code (a fit may normalise
    neural batches of other images with the classification's running statistics: TrainData.neural_bn).
    """

    def __init__(self, core: nn.Module, n_neurons: int = 0, readout_layer: str = "conv3_1",
                 image_size: int = 64, gamma: float = 0.5, init_mu_range: float = 0.3, init_sigma_range: float = 0.6,
                 input_lowpass: float = 0.0):
        super().__init__()
        self.core = core
        # a Gaussian low-pass (half amplitude at this many cycles per pixel; 0: none) in front of the core, at
        # training and at every evaluation alike (Li et al. 2023's blurring as preprocessing)
        self.input_lowpass = float(input_lowpass)
        self.readout_layer = readout_layer
        # input standardisation travels with the model: any uint8 image can be fed to `prep`
        self.register_buffer("pixel_mean", torch.tensor(0.5))
        self.register_buffer("pixel_std", torch.tensor(0.25))
        self.readout = (
            GaussianReadout(core.feature_shape(readout_layer, image_size), n_neurons,
                            init_mu_range=init_mu_range, init_sigma_range=init_sigma_range, gamma=gamma)
            if n_neurons else None
        )

    def set_pixel_stats(self, mean: float, std: float) -> None:
        self.pixel_mean.fill_(mean)
        self.pixel_std.fill_(std)

    def prep(self, x_u8: torch.Tensor, augmented: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (B, 1, H, W) (or floats in [0, 1] via `augmented`) -> standardised float input."""
        x = x_u8.float() / 255.0 if augmented is None else augmented
        if self.input_lowpass:
            x = lowpass(x, self.input_lowpass)
        return (x - self.pixel_mean) / self.pixel_std

    @property
    def has_classifier(self) -> bool:
        return self.core.head is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.core(x)

    def features(self, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
        layer = layer or self.readout_layer
        return self.core.forward_intermediates(x, [layer])[layer]

    def predict_neural(self, x: torch.Tensor) -> torch.Tensor:
        if self.readout is None:
            raise RuntimeError("this model has no neural readout")
        return positive_rate(self.readout(self.features(x)))


def build_model(name: str, n_classes: int, n_neurons: int, width: float, classify: bool = True,
                readout_layer: str = "conv3_1", image_size: int = 64, dropout: float = 0.5,
                gamma: float = 0.5, init_mu_range: float = 0.3, init_sigma_range: float = 0.6,
                input_lowpass: float = 0.0) -> MultiTaskModel:
    core = create_model(name, n_classes=n_classes, in_chans=1, width=width, dropout=dropout,
                        stop_at=None if classify else readout_layer)
    return MultiTaskModel(core, n_neurons, readout_layer, image_size, gamma, init_mu_range, init_sigma_range,
                          input_lowpass)
