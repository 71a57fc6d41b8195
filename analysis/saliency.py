"""Saliency sources, the cumulative-mass mask and the norm ratios ϱ, ϱ̄ (docs/method.md, the representation analysis).

- `cumulative_mask(map, 0.7)`: the highest-density pixels of a saliency map up to a cumulative 0.7
  of its mass (ties broken by pixel order, so the mask is deterministic).
- `rho(I, M) = ||I ⊙ M||² / ||I||²`, and `rho_bar(I_r, I_o, M) = (ϱ(I_r) − ϱ(I_o)) / (1 − ϱ(I_o))`.
- Sources: `spectral_residual` (built in, offline: Hou & Zhang 2007 with a centre bias), maps supplied
  as files (`load_maps`: DeepGaze II/IIE computed elsewhere; its weights cannot be fetched at run
  time), and on the synthetic world the objects' true masks (`core.data.synthetic.object_masks`).

OpenCV's saliency module lives in opencv-contrib, which replaces the opencv-python that the corruption
package pulls in (same `cv2` import), so the built-in source is written here in NumPy/SciPy instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from core.errors import DataError

MASS = 0.7


def cumulative_mask(maps: np.ndarray, mass: float = MASS) -> np.ndarray:
    """Boolean mask(s) of the highest-valued pixels whose values sum to `mass` of the map's total.

    maps: (H, W) or (N, H, W), non-negative. The pixel that crosses the threshold is included, so
    the mask holds at least `mass` and, without its smallest pixel, less than `mass`."""
    m = np.asarray(maps, dtype=np.float64)
    single = m.ndim == 2
    m = m[None] if single else m
    if m.ndim != 3:
        raise ValueError(f"saliency maps: expected (H, W) or (N, H, W), got shape {m.shape}")
    if (m < 0).any() or not np.isfinite(m).all():
        raise DataError("saliency maps: expected finite, non-negative values")
    flat = m.reshape(len(m), -1)
    total = flat.sum(1, keepdims=True)
    if (total <= 0).any():
        raise DataError("saliency maps: a map sums to zero; nothing is salient")
    p = flat / total
    order = np.argsort(-p, axis=1, kind="stable")
    csum = np.cumsum(np.take_along_axis(p, order, 1), axis=1)
    k = (csum < mass - 1e-12).sum(1) + 1          # pixels needed to reach `mass`
    keep = np.arange(p.shape[1])[None] < k[:, None]
    out = np.zeros_like(keep)
    np.put_along_axis(out, order, keep, 1)
    out = out.reshape(m.shape)
    return out[0] if single else out


def rho(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """ϱ(I) = ||salient(I)||² / ||I||² over the last two axes (masks broadcast against images)."""
    x = np.asarray(images, dtype=np.float64)
    num = (np.square(x) * np.asarray(masks, dtype=np.float64)).sum((-2, -1))
    den = np.square(x).sum((-2, -1))
    return num / den


def rho_bar(recon: np.ndarray, original: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """ϱ̄ = (ϱ(I_r) − ϱ(I_o)) / (1 − ϱ(I_o)): 0 when the reconstruction spends its power like the
    original, 1 when it spends all of it in the salient region, negative when less than the original."""
    ro = rho(original, masks)
    return (rho(recon, masks) - ro) / (1.0 - ro)


def start_spread(values: np.ndarray, converged: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How much a per-start measure (K starts, N images, R norms) moved between starts, over the starts
    whose result converged: (spread, range, count). `spread` (N, R) is max - min over those starts, NaN
    where fewer than two converged (one start gives no spread, and 0 would claim a stability nobody saw);
    `range` (R,) is the range over starts of each start's median over images, NaN where fewer than two
    starts have a converged image; `count` (N, R) is how many starts converged (a ϱ̄ that is not finite, as for
    an image with no power, counts there but gives no spread)."""
    v = np.where(converged, np.asarray(values, dtype=np.float64), np.nan)
    count = np.asarray(converged).sum(axis=0)
    hi = np.where(np.isnan(v), -np.inf, v).max(axis=0)
    lo = np.where(np.isnan(v), np.inf, v).min(axis=0)
    spread = np.where(np.isfinite(v).sum(axis=0) >= 2, hi - lo, np.nan)
    med = np.array([[np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else np.nan for c in v[k].T]
                    for k in range(len(v))])   # (K, R)
    ok = np.isfinite(med)
    rng = np.array([np.ptp(med[ok[:, j], j]) if ok[:, j].sum() >= 2 else np.nan for j in range(med.shape[1])])
    return spread, rng, count


def spectral_residual(images: np.ndarray, avg: int = 3, blur_sigma: float | None = None,
                      centre_sigma: float | None = 0.3) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang 2007) times a Gaussian centre bias; (N, H, W) -> maps
    that sum to 1. `centre_sigma` is the bias's s.d. as a fraction of the image side (None: no bias);
    `blur_sigma` defaults to 1/16 of the side (Hou & Zhang smooth with a Gaussian of a few pixels)."""
    x = np.asarray(images, dtype=np.float64)
    single = x.ndim == 2
    x = x[None] if single else x
    n, h, w = x.shape
    f = np.fft.fft2(x - x.mean((-2, -1), keepdims=True))
    log_amp = np.log(np.abs(f) + 1e-8)
    residual = log_amp - ndimage.uniform_filter(log_amp, size=(1, avg, avg), mode="wrap")
    s = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2
    sigma = blur_sigma if blur_sigma is not None else max(h, w) / 16
    s = ndimage.gaussian_filter(s, sigma=(0, sigma, sigma), mode="nearest")
    if centre_sigma is not None:
        yy, xx = np.meshgrid((np.arange(h) - (h - 1) / 2) / h, (np.arange(w) - (w - 1) / 2) / w, indexing="ij")
        s = s * np.exp(-(yy ** 2 + xx ** 2) / (2 * centre_sigma ** 2))[None]
    s = s / s.sum((-2, -1), keepdims=True)
    return s[0] if single else s


def load_maps(path: str | os.PathLike, n: int, size: tuple[int, int]) -> np.ndarray:
    """Saliency maps supplied by the user, one per reconstructed image, in image order.

    Accepted: a `.npy` of shape (N, H, W); a `.npz` with an array `maps` of that shape; or a folder of
    `<index>.npy` or `<index>.png` files (index = position among the reconstructed test images,
    0-based). Maps of another size are resized bilinearly to the model's input size; at least `n`
    maps are needed."""
    p = Path(path)
    if p.is_dir():
        maps = []
        for i in range(n):
            npy, png = p / f"{i}.npy", p / f"{i}.png"
            if npy.is_file():
                maps.append(np.load(npy, allow_pickle=False).astype(np.float64))
            elif png.is_file():
                from PIL import Image

                maps.append(np.asarray(Image.open(png).convert("F"), dtype=np.float64))
            else:
                raise DataError(f"--saliency-maps {p}: missing {npy.name} or {png.name} (one map per image, 0..{n - 1})")
        shapes = {m.shape for m in maps}
        if len(shapes) != 1:
            raise DataError(f"--saliency-maps {p}: maps of different shapes {sorted(shapes)}")
        arr = np.stack(maps)
    elif p.suffix == ".npy" and p.is_file():
        arr = np.load(p, allow_pickle=False)
    elif p.suffix == ".npz" and p.is_file():
        with np.load(p, allow_pickle=False) as z:
            if "maps" not in z:
                raise DataError(f"--saliency-maps {p}: no array named 'maps' (it holds {', '.join(z.files)})")
            arr = z["maps"]
    else:
        raise DataError(f"--saliency-maps {p}: expected a .npy, a .npz with 'maps', or a folder of <index>.npy/.png")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 3:
        raise DataError(f"--saliency-maps {p}: expected shape (N, H, W), got {arr.shape}")
    if len(arr) < n:
        raise DataError(f"--saliency-maps {p}: {len(arr)} maps for {n} images")
    arr = arr[:n]
    if (arr < 0).any() or not np.isfinite(arr).all():
        raise DataError(f"--saliency-maps {p}: expected finite, non-negative values")
    if arr.shape[1:] != tuple(size):
        zoom = (1, size[0] / arr.shape[1], size[1] / arr.shape[2])
        arr = np.clip(ndimage.zoom(arr, zoom, order=1), 0, None)
    return arr
