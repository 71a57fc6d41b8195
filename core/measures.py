"""Neural prediction measures on repeated test trials (numpy), per neuron.

`responses` are (M images, R repeats, K neurons) with an optional boolean `mask` of the same
shape (sessions record different neurons; images have different numbers of repeats). With a
full mask these equal neuralpredictors' `explainable_var`/`fev` (checked in the tests):

    TotalVar = var of all test trials (ddof 1)
    NoiseVar = mean over images of the variance across repeats (ddof 1)
    FEV      = (TotalVar - NoiseVar) / TotalVar
    FEVe     = 1 - (mean (r - r_hat)^2 - NoiseVar) / (TotalVar - NoiseVar)
"""

from __future__ import annotations

import numpy as np


def _mask(responses, mask):
    r = np.asarray(responses, dtype=np.float64)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    return r, m


def repeat_mean(responses, mask=None) -> np.ndarray:
    """Mean over the valid repeats per image and neuron: (M, R, K) -> (M, K) (0 where none)."""
    r, m = _mask(responses, mask)
    return (r * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)


def variance_components(responses, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(TotalVar, NoiseVar) per neuron."""
    r, m = _mask(responses, mask)
    n = m.sum(axis=(0, 1))
    mean = (r * m).sum(axis=(0, 1)) / np.maximum(n, 1)
    total = (((r - mean) ** 2) * m).sum(axis=(0, 1)) / np.maximum(n - 1, 1)
    n_img = m.sum(axis=1)  # (M, K)
    img_mean = repeat_mean(r, m)
    img_var = (((r - img_mean[:, None]) ** 2) * m).sum(axis=1) / np.maximum(n_img - 1, 1)
    has = n_img >= 2
    noise = (img_var * has).sum(axis=0) / np.maximum(has.sum(axis=0), 1)
    return total, noise


def fev(responses, mask=None) -> np.ndarray:
    """Fraction of explainable variance per neuron (explainable / total)."""
    total, noise = variance_components(responses, mask)
    return (total - noise) / total


def feve(responses, predictions, mask=None) -> np.ndarray:
    """Fraction of explainable variance explained per neuron; `predictions` are (M, K). NaN for a neuron
    with no explainable variance (TotalVar <= NoiseVar): its FEVe is undefined, not a number to average."""
    r, m = _mask(responses, mask)
    total, noise = variance_components(r, m)
    err = (((r - np.asarray(predictions, np.float64)[:, None]) ** 2) * m).sum(axis=(0, 1)) / np.maximum(m.sum(axis=(0, 1)), 1)
    explainable = total - noise
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(explainable > 0, 1 - (err - noise) / np.where(explainable > 0, explainable, 1), np.nan)


def _corr(a, b, w):
    n = w.sum(0)
    ma, mb = (a * w).sum(0) / n, (b * w).sum(0) / n
    da, db = (a - ma) * w, (b - mb) * w
    return (da * db).sum(0) / np.sqrt((da**2).sum(0) * (db**2).sum(0) + 1e-12)


def correlation_per_trial(responses, predictions, mask=None) -> np.ndarray:
    """Pearson correlation per neuron between every single trial and the prediction for its image."""
    r, m = _mask(responses, mask)
    p = np.broadcast_to(np.asarray(predictions, np.float64)[:, None], r.shape)
    M, R, K = r.shape
    return _corr(r.reshape(M * R, K), p.reshape(M * R, K), m.reshape(M * R, K).astype(float))


def correlation_to_average(responses, predictions, mask=None) -> np.ndarray:
    """Pearson correlation per neuron between the repeat-averaged response and the prediction."""
    r, m = _mask(responses, mask)
    n = m.sum(axis=1)
    avg = repeat_mean(r, m)
    return _corr(avg, np.asarray(predictions, np.float64), (n > 0).astype(float))


def correlation(a, b, mask=None) -> np.ndarray:
    """Pearson correlation per column of two (N, K) arrays (masked entries ignored)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = np.ones(a.shape) if mask is None else np.asarray(mask, float)
    return _corr(a, b, w)


def neural_metrics(responses, predictions, mask=None, true_rates=None) -> dict[str, float]:
    """Population summaries (means over neurons) of FEV, FEVe and the correlations."""
    per_neuron = feve(responses, predictions, mask)
    defined = np.isfinite(per_neuron)
    out = {
        "fev": float(np.mean(fev(responses, mask))),
        # the rule for an undefined ratio: neurons without explainable variance are left out of the mean and
        # counted (feve_neurons: how many are in it); with none left, FEVe is NaN
        "feve": float(np.mean(per_neuron[defined])) if defined.any() else float("nan"),
        "feve_neurons": int(defined.sum()),
        "corr_trial": float(np.mean(correlation_per_trial(responses, predictions, mask))),
        "corr_avg": float(np.mean(correlation_to_average(responses, predictions, mask))),
    }
    if true_rates is not None:  # synthetic world: against the noise-free rates
        out["corr_true"] = float(np.mean(correlation(true_rates, predictions)))
    return out
