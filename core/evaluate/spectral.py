"""Spectral sensitivity (Li, Ortega Caro et al. 2023): a classifier's accuracy on test images low-pass and
high-pass filtered at a ladder of cut-offs. A model that prefers low spatial frequencies keeps its
accuracy under low-pass filtering and loses it under high-pass filtering; comparing kinds shows whether a
gain in robustness follows a shift in frequency preference.

The filters are ideal radial ones in the Fourier domain: low-pass keeps every frequency up to the cut-off
(cycles per pixel), high-pass every frequency from it up, plus the mean (so the image keeps its
brightness). Filtered images are rounded back to uint8, as every image a model sees."""

from __future__ import annotations

import numpy as np

CUTOFFS = (0.03, 0.06, 0.12, 0.25)      # cycles per pixel; 0.5 is the Nyquist frequency


def filtered(images: np.ndarray, kind: str, cutoff: float) -> np.ndarray:
    """uint8 (N, H, W) images low- or high-passed at `cutoff` cycles per pixel."""
    if kind not in ("low", "high"):
        raise ValueError(f"filter {kind!r}; expected low or high")
    x = np.asarray(images, np.float64)
    h, w = x.shape[-2:]
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    keep = f <= cutoff if kind == "low" else f >= cutoff
    keep[0, 0] = True
    y = np.fft.irfft2(np.fft.rfft2(x) * keep, s=(h, w))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def spectral_records(model, images: np.ndarray, labels: np.ndarray, cutoffs=CUTOFFS, batch: int = 512) -> list[dict]:
    """`spectral` rows: accuracy per (filter, cut-off) on `images`."""
    from core.evaluate import predict_classes

    labels = np.asarray(labels)
    rows = []
    for kind in ("low", "high"):
        for c in cutoffs:
            pred = predict_classes(model, filtered(images, kind, c), batch)
            rows.append({"filter": kind, "cutoff": float(c), "accuracy": float((pred == labels).mean()),
                         "n_images": int(len(labels))})
    return rows
