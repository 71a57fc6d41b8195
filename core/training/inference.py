"""Inference on a trained model: class logits and predicted rates in batches, on the model's device."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from core.measures import correlation
from core.models.mtl import MultiTaskModel
from core.training.data import NeuralBatchSource


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def _predict(model: MultiTaskModel, x_u8: torch.Tensor, head, batch: int, amp: bool) -> torch.Tensor:
    """Batched eval-mode forward of uint8 images through `head(model, x)`, on the model's device."""
    model.eval().to(memory_format=torch.channels_last)   # the layout fit trains in, on every device
    dev = next(model.parameters()).device
    out = []
    for a in range(0, len(x_u8), batch):
        x = model.prep(x_u8[a:a + batch].to(dev)).contiguous(memory_format=torch.channels_last)
        # bf16 autocast on CUDA only (torch.autocast refuses some device types even when disabled)
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp and dev.type == "cuda" else contextlib.nullcontext():
            out.append(head(model, x).float())
    return torch.cat(out)


def predict_logits(model: MultiTaskModel, x_u8: torch.Tensor, batch: int = 512, amp: bool = True) -> torch.Tensor:
    """Class logits (N, classes) for uint8 images (N, 1, H, W)."""
    return _predict(model, x_u8, MultiTaskModel.forward, batch, amp)


def predict_rates(model: MultiTaskModel, x_u8: torch.Tensor, batch: int = 512, amp: bool = True) -> torch.Tensor:
    """Predicted firing rates (N, K) for uint8 images (N, 1, H, W)."""
    return _predict(model, x_u8, MultiTaskModel.predict_neural, batch, amp)


def accuracy(model, x, y, amp) -> float:
    return float((predict_logits(model, x, amp=amp).argmax(1) == y.to(x.device)).float().mean())


def neural_val(model, src: NeuralBatchSource, amp) -> float:
    pred = predict_rates(model, src.images[src.index], amp=amp).cpu().numpy()
    return float(np.nanmean(correlation(src.targets.cpu().numpy(), pred, src.mask.cpu().numpy())))
