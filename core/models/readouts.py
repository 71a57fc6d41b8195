"""Gaussian readout: each neuron reads the core's features at one learned position.

Per neuron: a position mu in [-1, 1] grid units (init U(-0.3, 0.3)) and a per-axis sigma (init
U(0, 0.6)); in training the position is sampled from N(mu, sigma) per image, in eval it is mu;
features are read by bilinear `grid_sample` (align_corners=True) and weighted by a per-neuron
feature vector (init 1/C) plus a bias (init: mean response of the first training batch).
Parameter shapes and arithmetic follow neuralpredictors' `Gaussian2d`, checked in the tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GaussianReadout(nn.Module):
    def __init__(self, in_shape: tuple[int, int, int], n_neurons: int, init_mu_range: float = 0.3,
                 init_sigma_range: float = 0.6, gamma: float = 0.5):
        super().__init__()
        c, _, _ = in_shape
        self.in_shape, self.n_neurons, self.gamma = tuple(in_shape), n_neurons, gamma
        self.init_mu_range, self.init_sigma_range = init_mu_range, init_sigma_range
        self.mu = nn.Parameter(torch.empty(1, n_neurons, 1, 2))
        self.sigma = nn.Parameter(torch.empty(1, n_neurons, 1, 2))
        self.features = nn.Parameter(torch.empty(1, c, 1, n_neurons))
        self.bias = nn.Parameter(torch.empty(n_neurons))
        self.generator: torch.Generator | None = None   # for the sampled read positions (a fit sets its own)
        self.reset_parameters()

    def reset_parameters(self, mean_activity: torch.Tensor | None = None) -> None:
        with torch.no_grad():
            self.mu.uniform_(-self.init_mu_range, self.init_mu_range)
            self.sigma.uniform_(0, self.init_sigma_range)
            self.features.fill_(1.0 / self.in_shape[0])
            self.initialize_bias(mean_activity)

    def initialize_bias(self, mean_activity: torch.Tensor | None) -> None:
        with torch.no_grad():
            if mean_activity is None:
                self.bias.zero_()
            else:
                self.bias.copy_(mean_activity.to(self.bias))

    def grid(self, batch_size: int, sample: bool) -> torch.Tensor:
        with torch.no_grad():
            self.mu.clamp_(-1, 1)
            self.sigma.clamp_(min=0)
        shape = (batch_size, self.n_neurons, 1, 2)
        norm = self.mu.new_empty(shape).normal_(generator=self.generator) if sample else self.mu.new_zeros(shape)
        return torch.clamp(norm * self.sigma + self.mu, -1, 1)

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> torch.Tensor:
        """(B, C, H, W) features -> (B, K) linear readout (before the output nonlinearity)."""
        B, c = x.shape[:2]
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"readout expects features {self.in_shape}, got {tuple(x.shape[1:])}")
        sample = self.training if sample is None else sample
        g = self.grid(B, sample).to(x.dtype)
        y = F.grid_sample(x, g, align_corners=True)  # (B, C, K, 1)
        feat = self.features.view(1, c, self.n_neurons).to(x.dtype)
        return (y.squeeze(-1) * feat).sum(1) + self.bias.to(x.dtype)

    def regularizer(self) -> torch.Tensor:
        """L1 on feature weights, times gamma (summed, as neuralpredictors' 'sum' reduction)."""
        return self.gamma * self.features.abs().sum()


def positive_rate(y: torch.Tensor) -> torch.Tensor:
    """Output nonlinearity elu(y - 1) + 1: positive firing rates."""
    return F.elu(y - 1.0) + 1.0
