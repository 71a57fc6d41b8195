"""A synthetic world with a planted answer: how much co-training on its simulated V1 should help is set
by one dial, from a true null to strong.

Every image of a planted world carries its class twice:
- in the object's shape (as in the default world), which a classifier learns slowly and which survives
  most corruptions, and
- in a faint high-frequency grating over the whole image (the cue), one (frequency, orientation) pair per
  class with a random phase per image: easy to learn, destroyed by noise, blur, pixelation, JPEG and
  low contrast. It shows the image's own class with probability `cue_agreement` (WorldConfig), another
  class otherwise, so the shape must be learned too. A model trained on labels alone leans on the cue.
The simulated population has two kinds of unit; the dial `planted` (0..1) is the share of shape units:
- shape units: complex-cell energy at low spatial frequency on the object layer (the object on its flat
  background: no clutter, no cue), receptive fields tiling the region where objects lie, divided by the
  population's mean energy (contrast-normalised). Their code is class-informative and stable under
  corruption: a model whose conv3_1 encodes it should be more robust.
- cue units: energy at the cue's frequencies and orientations on the full image, not normalised: they
  encode the same fragile cue a label-trained model uses.
At `planted` 0 (the null) the population encodes only the cue, so co-training on it cannot make a model
more robust than the Baseline; at 1 it encodes only shape. `tests/test_planted.py` proves the
construction with linear classifiers before any CNN is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CUE_FREQUENCIES = (0.35, 0.45)   # cycles per pixel
# grey levels: faint beside the clutter (s.d. about 6-14) and an object's contrast (35-80), yet a linear
# read-out of the amplitude spectrum classifies the demo world's images from it at 0.96; at 4 grey levels
# that read-out kept 0.62 of its accuracy under the corruptions, at 1.5 0.52, at 1.0 0.47
# (core.data.planted.construction_check): a fainter cue drowns sooner when a corruption attenuates it
CUE_AMPLITUDE = 1.0
SHAPE_FREQUENCY = 0.08           # cycles per pixel: a 12.5-pixel period, objects are 18-34 pixels across
SHAPE_GRID = 15.0                # shape units' centres tile ±this many pixels around the image centre
MAX_RATE = 40.0


def cue_of(k: int, n_classes: int) -> tuple[float, float]:
    """(frequency, orientation) of class k's cue: two frequencies × ceil(n/2) orientations, all distinct."""
    n_orient = max(1, math.ceil(n_classes / len(CUE_FREQUENCIES)))
    return CUE_FREQUENCIES[k % len(CUE_FREQUENCIES)], (k // len(CUE_FREQUENCIES)) * math.pi / n_orient


def cue_classes(rng: np.random.Generator, labels: np.ndarray, n_classes: int, agreement: float) -> np.ndarray:
    """The class each image's cue shows: its own with probability `agreement`, else another drawn uniformly
    (at 1 nothing is drawn, so a world at full agreement is the one it was before the setting existed)."""
    labels = np.asarray(labels)
    if agreement >= 1:
        return labels
    other = (labels + rng.integers(1, n_classes, len(labels))) % n_classes
    return np.where(rng.random(len(labels)) < agreement, labels, other)


def cue_layer(rng: np.random.Generator, labels: np.ndarray, size: int, n_classes: int,
              agreement: float = 1.0) -> np.ndarray:
    """(B, size, size) float32: each image's class grating, amplitude CUE_AMPLITUDE, a random phase; the
    grating shows the image's class with probability `agreement` (cue_classes)."""
    c = np.arange(size, dtype=np.float32) - (size - 1) / 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, len(labels)).astype(np.float32)
    out = np.empty((len(labels), size, size), np.float32)
    for i, k in enumerate(cue_classes(rng, labels, n_classes, agreement)):
        f, th = cue_of(int(k), n_classes)
        out[i] = CUE_AMPLITUDE * np.cos(2 * np.pi * f * (xx * math.cos(th) + yy * math.sin(th)) + phase[i])
    return out


DEGRADE_BLUR = 2.5       # pixels: the largest Gaussian blur of a degraded recorded stimulus
DEGRADE_NOISE = 50.0     # grey levels: the largest s.d. of its additive Gaussian noise
DEGRADE_CONTRAST = 0.3   # the lowest contrast it is shown at (1: unchanged)


def degrade(rng: np.random.Generator, images: np.ndarray, share: float) -> np.ndarray:
    """The recording's viewing conditions: a share `share` of the images (uint8 (N, H, W)) shown degraded, each
    with a random blur, additive noise and contrast (each applied with probability 2/3, at a strength drawn
    uniformly up to its limit); the rest unchanged. Generic degradations, not the test set's corruptions."""
    from scipy.ndimage import gaussian_filter

    out = np.asarray(images, np.float32).copy()
    for i in np.flatnonzero(rng.random(len(out)) < share):
        blur, noise, contrast = rng.random(3) < 2 / 3
        x = out[i]
        if contrast:
            m = x.mean()
            x = m + rng.uniform(DEGRADE_CONTRAST, 1.0) * (x - m)
        if blur:
            x = gaussian_filter(x, rng.uniform(0.5, DEGRADE_BLUR))
        if noise:
            x = x + rng.normal(0.0, rng.uniform(5.0, DEGRADE_NOISE), x.shape)
        out[i] = x
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _gabor_pairs(size, centers, freqs, orients, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """Even and odd zero-mean, unit-norm Gabor filters, (K, size*size) each."""
    c = np.arange(size, dtype=np.float32) - (size - 1) / 2
    yy, xx = np.meshgrid(c, c, indexing="ij")
    dx, dy = xx[None] - centers[:, 0, None, None], yy[None] - centers[:, 1, None, None]
    ct, st = np.cos(orients)[:, None, None], np.sin(orients)[:, None, None]
    env = np.exp(-(dx**2 + dy**2) / (2 * sigmas[:, None, None] ** 2))
    arg = 2 * np.pi * freqs[:, None, None] * (ct * dx + st * dy)
    out = []
    for f in (env * np.cos(arg), env * np.sin(arg)):
        f = f - f.mean(axis=(1, 2), keepdims=True)
        f /= np.linalg.norm(f.reshape(len(f), -1), axis=1)[:, None, None]
        out.append(f.reshape(len(f), -1).astype(np.float32))
    return out[0], out[1]


def _energy(images: np.ndarray, even: np.ndarray, odd: np.ndarray, chunk: int = 4096) -> np.ndarray:
    out = np.empty((len(images), len(even)), np.float32)
    for a in range(0, len(images), chunk):
        x = (np.asarray(images[a:a + chunk], np.float32).reshape(-1, even.shape[1]) - 128.0) / 64.0
        out[a:a + chunk] = np.sqrt((x @ even.T) ** 2 + (x @ odd.T) ** 2)
    return out


@dataclass(frozen=True)
class PlantedPopulation:
    """Shape units (the first `n_shape`) and cue units; arrays over units."""

    n_shape: int
    center: np.ndarray        # (K, 2) pixels from the image centre
    frequency: np.ndarray     # (K,)
    orientation: np.ndarray   # (K,)
    sigma: np.ndarray         # (K,)
    gain: np.ndarray          # (K,)
    baseline: np.ndarray      # (K,)
    image_size: int

    @classmethod
    def sample(cls, rng: np.random.Generator, n: int, size: int, planted: float, n_classes: int) -> "PlantedPopulation":
        s = size / 64.0
        n_shape = int(round(planted * n))
        side = max(1, math.ceil(math.sqrt(n_shape / 4)))           # a grid of positions, 4 orientations each
        g = np.linspace(-SHAPE_GRID * s, SHAPE_GRID * s, side) if side > 1 else np.zeros(1)
        grid = np.array([(x, y) for y in g for x in g], np.float32)
        pos = grid[np.arange(n_shape) // 4 % len(grid)] + rng.uniform(-2, 2, (n_shape, 2)).astype(np.float32) * s
        sh_or = (np.arange(n_shape) % 4) * np.pi / 4 + rng.uniform(-0.1, 0.1, n_shape)
        n_cue = n - n_shape
        cues = [cue_of(int(k), n_classes) for k in np.arange(n_cue) % n_classes]
        return cls(
            n_shape=n_shape,
            center=np.concatenate([pos, rng.uniform(-22, 22, (n_cue, 2)).astype(np.float32) * s]),
            frequency=np.concatenate([np.full(n_shape, SHAPE_FREQUENCY / s), [f / s for f, _ in cues]]).astype(np.float32),
            orientation=np.concatenate([sh_or, [t for _, t in cues]]).astype(np.float32),
            sigma=np.concatenate([np.full(n_shape, 0.45 / SHAPE_FREQUENCY * s), np.full(n_cue, 3.0 * s)]).astype(np.float32),
            gain=np.ones(n, np.float32),
            baseline=rng.uniform(0.1, 0.5, n).astype(np.float32),
            image_size=size,
        )

    def drive(self, images: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """(N, K) non-negative drive: shape units on the object layers, contrast-normalised; cue units on
        the full images."""
        even, odd = _gabor_pairs(self.image_size, self.center, self.frequency, self.orientation, self.sigma)
        k = self.n_shape
        out = np.empty((len(images), len(even)), np.float32)
        if k:
            e = _energy(objects, even[:k], odd[:k])
            out[:, :k] = e / (e.mean(1, keepdims=True) + 0.05)     # divisive normalisation over the shape units
        if k < len(even):
            out[:, k:] = _energy(images, even[k:], odd[k:])
        return out

    def rates(self, images: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """Noise-free mean spike counts (N, K): expansive, then saturating at MAX_RATE."""
        return self.baseline[None] + MAX_RATE * np.tanh(self.gain[None] * self.drive(images, objects) ** 1.5 / MAX_RATE)

    def calibrated(self, images, objects, rng: np.random.Generator, mean_rate: float) -> "PlantedPopulation":
        d = self.drive(images, objects) ** 1.5
        target = mean_rate * np.exp(rng.normal(0, 0.4, len(self.gain))).astype(np.float32)
        gain = np.maximum(target - self.baseline, 0.1) / np.maximum(d.mean(0), 1e-6)
        return PlantedPopulation(**{**self.__dict__, "gain": gain.astype(np.float32)})

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items() if k != "image_size"}


def _ridge_fit(x: np.ndarray, y: np.ndarray, n_classes: int, lam: float):
    """A linear one-vs-all ridge classifier on standardised features: (mean, sd, weights)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    t = np.eye(n_classes)[y] * 2 - 1
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ t)
    return mu, sd, w


def _ridge_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    mu, sd, w = model
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    return float(((z @ w).argmax(1) == y).mean())


def spectrum(images: np.ndarray) -> np.ndarray:
    """Log Fourier amplitudes of each image, (N, H*(W//2+1)): what a linear model can read a random-phase
    grating from (raw pixels cannot: the cue's phase is random)."""
    return np.abs(np.fft.rfft2(np.asarray(images, np.float32))).reshape(len(images), -1)


def construction_check(cfg, values=(0.0, 0.5, 1.0), n_test: int = 150, severities=(1, 2, 3, 4, 5),
                       lam: float = 10.0) -> dict:
    """The planted answer, shown with the world's own code before any CNN is trained. For the world `cfg`
    at each planted value in `values`: a linear classifier on the population's noise-free rates, and one
    on the pixels' amplitude spectrum, trained on clean training images, tested on clean test images and
    under each of the 14 corruptions (the mean over `severities`, as TIN-TC scores them). The population
    sees the corrupted image: its cue units respond to it, its shape units to the object, which no
    corruption of the display changes. Returns {"pixels": ..., value: ...}, each with the clean accuracy,
    the accuracy per corruption and the retention: the mean over corruptions of accuracy / clean accuracy.
    (The images are the same at every value: only the population differs.)"""
    from dataclasses import replace

    from core.data.corruptions import CORRUPTIONS, condition_seed, corrupt_gray
    from core.data.synthetic import _render_split, _stream, make_neural

    cfg = replace(cfg, planted=values[0])
    splits = {}
    for split, per_class in (("train", cfg.train_per_class), ("test", cfg.test_per_class)):
        rng = _stream(cfg.seed, f"classification/{split}")
        y = rng.permutation(np.repeat(np.arange(cfg.n_classes), per_class))
        x, obj = _render_split(cfg, f"classification/{split}", y, rng)
        splits[split] = (x, obj, y)
    x, obj, y = splits["train"]
    xt, ot, yt = (a[:n_test] for a in splits["test"])
    corrupted = {(c, s): np.stack([corrupt_gray(im, c, s, condition_seed(0, i, c, s)) for i, im in enumerate(xt)])
                 for c in CORRUPTIONS for s in severities}

    def score(features, model) -> dict:
        clean = _ridge_accuracy(model, features(xt), yt)
        acc = {cs: _ridge_accuracy(model, features(ci), yt) for cs, ci in corrupted.items()}
        per = {c: float(np.mean([a for (cc, _), a in acc.items() if cc == c])) for c in CORRUPTIONS}
        return {"clean": clean, "corrupted": per,
                "retention": float(np.mean([a / clean for a in per.values()])) if clean > 0 else float("nan")}

    out = {"chance": 1.0 / cfg.n_classes,
           "pixels": score(spectrum, _ridge_fit(spectrum(x), y, cfg.n_classes, lam))}
    for v in values:
        _, pop = make_neural(replace(cfg, planted=v))
        out[v] = score(lambda im: pop.rates(im, ot), _ridge_fit(pop.rates(x, obj), y, cfg.n_classes, lam))
    return out
