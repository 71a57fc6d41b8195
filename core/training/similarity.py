"""Representational-similarity regularisation (Li et al. 2019; docs/method.md).

L = CE + α·L_sim, with, over sampled image pairs (i, j), i ≠ j,

    L_sim = mean (atanh S^model_ij − atanh S^target_ij)²          (S clamped to ±(1 − 1e-5))
    S^model_ij = Σ_l softmax(γ)_l · cos(f_l(x_i) − μ_l, f_l(x_j) − μ_l)

μ_l a per-channel running mean of layer l's activations (momentum 0.9, no gradient), γ trainable
and initialised to zero; S^target is the cosine similarity of mean-centred target vectors: the
Monkey Predictor's predicted responses (sim_monkey), the same shuffled across images
(sim_shuffled), or the images' pixels (sim_pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-5


def pair_cosine(v: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of rows i and j of v (P, D) -> (len(i),)."""
    return F.cosine_similarity(v[i].flatten(1), v[j].flatten(1), dim=1, eps=1e-8)


def similarity_loss(s_model: torch.Tensor, s_target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """mean (atanh S_model − atanh S_target)²; zero iff the two similarity sets agree."""
    a = torch.atanh(s_model.clamp(-1 + eps, 1 - eps))
    b = torch.atanh(s_target.clamp(-1 + eps, 1 - eps))
    return (a - b).square().mean()


class SimilarityRegularizer(nn.Module):
    """Holds γ (trainable layer weights) and the running channel means μ_l of the chosen layers."""

    def __init__(self, channels: dict[str, int], momentum: float = 0.9):
        super().__init__()
        self.layers = list(channels)
        self.momentum = momentum
        self.gamma = nn.Parameter(torch.zeros(len(self.layers)))
        for k, (name, c) in enumerate(channels.items()):
            self.register_buffer(f"mu_{k}", torch.zeros(c))
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.gamma, 0)

    def model_similarity(self, feats: dict[str, torch.Tensor], i: torch.Tensor, j: torch.Tensor,
                         update: bool = True) -> torch.Tensor:
        """S^model for the pairs (i, j) of the images whose features are `feats[layer]` (N, C, H, W)."""
        w = self.weights()
        first = not bool(self.seen)
        s = 0.0
        for k, name in enumerate(self.layers):
            f = feats[name].float()
            mu = getattr(self, f"mu_{k}")
            if update:
                with torch.no_grad():
                    m = f.mean((0, 2, 3))
                    mu.copy_(m if first else self.momentum * mu + (1 - self.momentum) * m)
            c = f - mu.view(1, -1, 1, 1)
            s = s + w[k] * pair_cosine(c, i, j)
        if update:
            self.seen.fill_(True)
        return s


@dataclass
class SimilarityPool:
    """Regularisation images and their target vectors (mean-centred over the pool)."""

    images: torch.Tensor      # (P, 1, H, W) uint8
    vectors: torch.Tensor     # (P, D) float32, centred

    @staticmethod
    def from_targets(images: torch.Tensor, vectors: torch.Tensor) -> "SimilarityPool":
        v = vectors.float()
        return SimilarityPool(images, v - v.mean(0, keepdim=True))

    @staticmethod
    def pixels(images: torch.Tensor) -> "SimilarityPool":
        """The pixel-similarity control: the images' own pixels as targets."""
        return SimilarityPool.from_targets(images, images.flatten(1).float() / 255.0)

    def shuffled(self, seed: int) -> "SimilarityPool":
        """Each target dimension permuted across images independently (as MTL-Shuffled)."""
        g = torch.Generator().manual_seed(seed)
        v = self.vectors.cpu()
        cols = [v[torch.randperm(len(v), generator=g), k] for k in range(v.shape[1])]
        return SimilarityPool.from_targets(self.images, torch.stack(cols, 1).to(self.vectors.device))

    def to(self, device) -> "SimilarityPool":
        return SimilarityPool(self.images.to(device), self.vectors.to(device))

    def __len__(self):
        return int(self.images.shape[0])

    def sample_pairs(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """n pairs (i, j) with i ≠ j, uniformly."""
        i = torch.randint(len(self), (n,), generator=gen)
        j = (i + torch.randint(1, len(self), (n,), generator=gen)) % len(self)
        return i, j


def similarity_match(model, images_u8: torch.Tensor, targets: torch.Tensor, layers: list[str],
                     batch: int = 256) -> float:
    """How brain-like a model's image-pair geometry is: Pearson correlation over all pairs of the
    given images between atanh S^model (equal layer weights, channel means over these images) and
    atanh S^target (mean-centred target vectors, e.g. the neural test responses averaged over repeats).
    The same for every model kind, so it can stand in for FEVe in the robustness regression."""
    model.eval()
    dev = next(model.parameters()).device
    feats: dict[str, list] = {k: [] for k in layers}
    with torch.no_grad():
        for a in range(0, len(images_u8), batch):
            x = model.prep(images_u8[a:a + batch].to(dev))
            out = model.core.forward_intermediates(x, layers)
            for k in layers:
                feats[k].append(out[k].float())
        n = len(images_u8)
        i, j = torch.triu_indices(n, n, 1, device=dev)
        s = 0.0
        for k in layers:
            f = torch.cat(feats[k])
            c = (f - f.mean((0, 2, 3), keepdim=True)).flatten(1)
            s = s + pair_cosine(c, i, j) / len(layers)
        t = targets.to(dev).float()
        st = pair_cosine(t - t.mean(0, keepdim=True), i, j)
        a = torch.atanh(s.clamp(-1 + EPS, 1 - EPS))
        b = torch.atanh(st.clamp(-1 + EPS, 1 - EPS))
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))
