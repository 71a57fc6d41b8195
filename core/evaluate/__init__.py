"""Evaluation of trained models: clean and corrupted accuracy with per-image predictions, neural metrics."""

from __future__ import annotations

import numpy as np
import torch

from core.data.corruptions import CORRUPTIONS
from core.measures import neural_metrics
from core.models.mtl import MultiTaskModel
from core.training.data import as_u8
from core.training.inference import predict_logits, predict_rates


def predict_classes(model: MultiTaskModel, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Predicted class per image; images uint8 (N, H, W). Batched, on the model's device, no grad."""
    with torch.inference_mode():
        return predict_logits(model, as_u8(images), batch).argmax(1).cpu().numpy()


def classification_records(model: MultiTaskModel, clean: np.ndarray, labels: np.ndarray,
                           tintc: dict[tuple[str, int], np.ndarray] | None = None, batch: int = 512) -> tuple[float, list[dict], list[dict]]:
    """Clean accuracy, `corruption_accuracy` rows and `predictions` rows (one per image and condition).

    `tintc` maps (corruption, severity) to the corrupted copies of `clean`, in the same order.
    """
    labels = np.asarray(labels)
    for (c, s), x in (tintc or {}).items():
        if len(x) != len(labels):
            raise ValueError(f"TIN-TC condition {c}/{s} has {len(x)} images but {len(labels)} labels were given")
    conditions = [("clean", 0, clean)] + [(c, s, x) for (c, s), x in (tintc or {}).items()]
    acc_rows, pred_rows, clean_acc = [], [], float("nan")
    for name, sev, x in conditions:
        pred = predict_classes(model, np.asarray(x), batch)
        correct = pred == labels
        if name == "clean":
            clean_acc = float(correct.mean())
        else:
            acc_rows.append({"corruption": name, "category": CORRUPTIONS[name], "severity": sev,
                             "accuracy": float(correct.mean()), "n_images": int(len(labels))})
        pred_rows += [{"condition": name, "severity": sev, "image": i, "label": int(l), "predicted": int(p), "correct": bool(c)}
                      for i, (l, p, c) in enumerate(zip(labels, pred, correct))]
    return clean_acc, acc_rows, pred_rows


def neural_test_metrics(model: MultiTaskModel, neural) -> dict[str, float]:
    """FEV, FEVe and correlations on the repeated test trials (and against true rates when known)."""
    with torch.inference_mode():
        pred = predict_rates(model, as_u8(neural.images[neural.test_image_index])).cpu().numpy()
    true = neural.true_rates[neural.test_image_index] if neural.true_rates is not None else None
    return neural_metrics(neural.test_responses, pred, neural.test_mask, true)


def alive_fraction(model: MultiTaskModel, images: np.ndarray, layer: str | None = None, batch: int = 256) -> float:
    """Share of the channels of `layer` (default: the readout layer) that respond (> 0 after the
    ReLU) to at least one of `images`: 0 is a dead layer (e.g. an Oracle whose consistency loss
    collapsed conv3_1), which no readout or classifier above it can use."""
    layer = layer or model.readout_layer
    dev = next(model.parameters()).device
    model.eval()
    alive = None
    x_all = as_u8(images)
    with torch.inference_mode():
        for a in range(0, len(x_all), batch):
            f = model.features(model.prep(x_all[a:a + batch].to(dev)), layer)   # (B, C, H, W)
            hit = (f > 0).flatten(2).any(2).any(0)                                # (C,)
            alive = hit if alive is None else alive | hit
    return float(alive.float().mean()) if alive is not None else float("nan")
