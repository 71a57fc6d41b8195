"""Losses: Poisson and MSE for neural targets, learned-uncertainty task weighting, Oracle consistency."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def poisson_loss(rate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Sum over trials and neurons of rate - y*log(rate) (Poisson negative log-likelihood up to a constant)."""
    loss = rate - target * torch.log(rate + eps)
    return (loss * mask).sum() if mask is not None else loss.sum()


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return F.mse_loss(pred, target)
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1)


class UncertaintyWeighting(nn.Module):
    """Kendall et al.: L = exp(-s_c) CE + s_c/2 + exp(-s_n) MSE/2 + s_n/2, with learnable log-variances.

    With `learn_cls=False` the classification term is plain CE (weight 1, as the Baseline's) and only
    the neural weight is learned: at equilibrium exp(-s_c) = 1/(2·CE), 0.2-0.5 through a short run,
    which trains the classifier of an MTL model at a fraction of the Baseline's learning rate."""

    def __init__(self, learn_cls: bool = True):
        super().__init__()
        self.learn_cls = learn_cls
        self.log_var_cls = nn.Parameter(torch.zeros(()), requires_grad=learn_cls)
        self.log_var_neural = nn.Parameter(torch.zeros(()))

    def classification(self, ce: torch.Tensor) -> torch.Tensor:
        if not self.learn_cls:
            return ce
        return torch.exp(-self.log_var_cls) * ce + 0.5 * self.log_var_cls

    def neural(self, mse: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.exp(-self.log_var_neural) * mse + 0.5 * self.log_var_neural


def consistency_loss(f_clean: torch.Tensor, f_corrupt: torch.Tensor) -> torch.Tensor:
    """Oracle representation matching: mean over images of 1 - cos(f(clean), f(corrupted)), the
    feature maps flattened (the authors' CosineEmbeddingLoss with target 1). Unlike a Euclidean
    distance it cannot be minimised by collapsing the layer to zero."""
    return (1 - F.cosine_similarity(f_clean.flatten(1), f_corrupt.flatten(1), dim=1, eps=1e-8)).mean()
