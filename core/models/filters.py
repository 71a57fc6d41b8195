"""The Gaussian low-pass a model can carry at its input (`baseline_lowpass`): one filter for training and
every evaluation, since the model applies it to whatever image it is given."""

from __future__ import annotations

import math

import torch


def lowpass_sigma(cutoff: float) -> float:
    """The s.d. in pixels of the Gaussian whose response is 1/2 at `cutoff` cycles per pixel."""
    return math.sqrt(math.log(2) / (2 * math.pi**2)) / cutoff


def lowpass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """A Gaussian low-pass of images x (B, C, H, W) float, half amplitude at `cutoff`
    cycles per pixel (separable convolution, reflected borders), on x's device."""
    sigma = lowpass_sigma(cutoff)
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
