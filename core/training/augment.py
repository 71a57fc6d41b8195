"""Classification augmentation as batched tensor ops on the data's device.

Random crop with 4 px zero padding, horizontal flip and rotation within +-15 degrees, composed
into one affine transform per image and applied with a single `grid_sample`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 4, max_deg: float = 15.0) -> torch.Tensor:
    """x: (B, C, H, W) float in [0, 1] (zero = padding fill) -> augmented batch, same shape."""
    B, _, H, W = x.shape
    dev = x.device
    u = torch.rand(B, 4, generator=gen, device=gen.device).to(dev)
    angle = (u[:, 0] * 2 - 1) * math.radians(max_deg)
    flip = torch.where(u[:, 1] < 0.5, -1.0, 1.0).to(dev)
    # integer crop offsets in [-pad, pad] pixels, as a padded random crop
    tx = torch.floor(u[:, 2] * (2 * pad + 1)) - pad
    ty = torch.floor(u[:, 3] * (2 * pad + 1)) - pad
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(B, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = tx * 2 / W
    theta[:, 1, 2] = ty * 2 / H
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
