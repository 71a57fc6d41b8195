"""Adversarial robustness of a classifier, with Foolbox 3 (foolbox==3.3.4, pure Python on PyTorch).

- PGD accuracy (L2 and L∞) at a list of ε, in pixel units of images scaled to [0, 1]. An image
  counts as robust at ε only if no attack at any ε' ≤ ε fooled the model: an adversarial found
  inside a smaller ball lies inside the larger one too, so accuracy falls monotonically in ε and
  each ε's estimate is as tight as the attacks allow. At ε = 0 it is the clean accuracy.
- The minimal L2 perturbation found by a decision-based attack (HopSkipJump, which sees only the
  predicted label) on a sample of correctly classified images: its median, as in the literature.

Why Foolbox: torchattacks 3.5.1 pins requests~=2.25 (it would downgrade what Ray needs); Foolbox
3.3.4 installs and runs on this stack (its PGD and HopSkipJump were run in tests/test_adversarial.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

L2_EPS = (0.0, 0.25, 0.5, 1.0, 2.0)             # a 64x64 image in [0, 1] has norm up to 64
LINF_EPS = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)


class _PixelModel(nn.Module):
    """x in [0, 1] (N, 1, H, W) -> logits, with the model's own standardisation (and bf16 on CUDA)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        dev = x.device
        z = self.model.prep(None, x).contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            return self.model(z).float()


def _foolbox():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # foolbox imports scipy.ndimage.filters
        import foolbox
    return foolbox


def _fmodel(model):
    fb = _foolbox()
    dev = next(model.parameters()).device
    return fb, fb.PyTorchModel(_PixelModel(model).eval(), bounds=(0.0, 1.0), device=dev)


def pgd_accuracy(model, images_u8: np.ndarray, labels: np.ndarray, norm: str = "l2", epsilons=L2_EPS,
                 steps: int = 10, batch: int = 128, seed: int = 0, cumulative: bool = True) -> np.ndarray:
    """Per image and ε: still correct under PGD (bool (len(eps), N)), cumulative over smaller ε
    (`cumulative=False`: each ε's own attack only)."""
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm {norm!r}; expected l2 or linf")
    eps = [float(e) for e in epsilons]
    if eps != sorted(eps) or eps[0] < 0:
        raise ValueError(f"epsilons {eps}: expected non-negative and increasing")
    model.eval()
    fb, fmodel = _fmodel(model)
    dev = next(model.parameters()).device
    # Madry et al.'s step: 2.5·ε/steps, relative to ε
    attack = (fb.attacks.L2PGD if norm == "l2" else fb.attacks.LinfPGD)(rel_stepsize=2.5 / steps, steps=steps)
    torch.manual_seed(seed)
    out = []
    for a in range(0, len(labels), batch):
        x = torch.from_numpy(np.asarray(images_u8[a:a + batch], dtype=np.float32) / 255.0)[:, None].to(dev)
        y = torch.as_tensor(np.array(labels[a:a + batch]), dtype=torch.long, device=dev)
        _, _, success = attack(fmodel, x, y, epsilons=eps)          # (len(eps), B): fooled
        out.append((~success).cpu().numpy())
    robust = np.concatenate(out, axis=1)
    return np.logical_and.accumulate(robust, axis=0) if cumulative else robust


def minimal_l2(model, images_u8: np.ndarray, labels: np.ndarray, pool_u8: np.ndarray, pool_pred: np.ndarray,
               steps: int = 8, seed: int = 0) -> np.ndarray:
    """HopSkipJump's L2 perturbation for each image, inf where it has no starting point.

    HopSkipJump starts from an image the model already labels differently. Foolbox's default start
    (uniform noise blended in) fails on weak models that give noise the true class, so the start is
    the nearest image of `pool_u8` whose predicted label (`pool_pred`) differs from the label."""
    model.eval()
    fb, fmodel = _fmodel(model)
    dev = next(model.parameters()).device
    attack = fb.attacks.HopSkipJumpAttack(steps=steps, initial_gradient_eval_steps=50, max_gradient_eval_steps=200)
    torch.manual_seed(seed)
    np.random.seed(seed)
    x = np.asarray(images_u8, dtype=np.float32).reshape(len(labels), -1) / 255.0
    pool = np.asarray(pool_u8, dtype=np.float32).reshape(len(pool_pred), -1) / 255.0
    dist = np.full(len(labels), np.inf)
    starts, which = [], []
    for i, y in enumerate(np.asarray(labels)):
        cand = np.flatnonzero(np.asarray(pool_pred) != y)
        if len(cand):
            starts.append(pool[cand[np.argmin(((pool[cand] - x[i]) ** 2).sum(1))]])
            which.append(i)
    if not which:
        return dist
    shape = (len(which), 1, *np.asarray(images_u8).shape[1:])
    xt = torch.from_numpy(x[which].reshape(shape)).to(dev)
    st = torch.from_numpy(np.stack(starts).reshape(shape)).to(dev)
    y = torch.as_tensor(np.asarray(labels)[which], dtype=torch.long, device=dev)
    _, adv, success = attack(fmodel, xt, y, epsilons=None, starting_points=st)
    d = (adv - xt).flatten(1).norm(dim=1)
    dist[which] = torch.where(success, d, torch.full_like(d, float("inf"))).cpu().numpy()
    return dist


def median_interval(d: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of `d` from its order statistics (the binomial sign-test
    interval): at least `level` coverage; with 8 values it is the whole range (99.2%)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(d, dtype=float))
    n = len(x)
    j = int(binom.ppf((1 - level) / 2, n, 0.5))           # x_(j) and x_(n-j+1), 1-indexed; j >= 1
    j = max(1, j if binom.cdf(j - 1, n, 0.5) <= (1 - level) / 2 else j - 1)
    return float(x[j - 1]), float(x[n - j])


def adversarial_records(model, images_u8: np.ndarray, labels: np.ndarray, n_images: int, n_decision: int,
                        steps: int, decision_steps: int, l2_eps=L2_EPS, linf_eps=LINF_EPS, seed: int = 0) -> list[dict]:
    """Rows of the `adversarial` table for one model: PGD-L2 and PGD-L∞ accuracy per ε on the first
    n_images test images, and HopSkipJump's median minimal L2 on the first n_decision of them that
    the model classifies correctly."""
    from core.evaluate import predict_classes

    fb = _foolbox()
    x, y = np.asarray(images_u8[:n_images]), np.asarray(labels[:n_images])
    rows = []
    for norm, eps in (("l2", l2_eps), ("linf", linf_eps)):
        robust = pgd_accuracy(model, x, y, norm, eps, steps, seed=seed)
        for e, r in zip(eps, robust):
            rows.append({"attack": "pgd", "norm": norm, "epsilon": float(e), "accuracy": float(r.mean()),
                         "n_images": len(y), "median_l2": None, "l2_low": None, "l2_high": None, "steps": steps,
                         "library": f"foolbox {fb.__version__}"})
    if n_decision > 0:
        pred = predict_classes(model, x)
        ok = np.flatnonzero(pred == y)[:n_decision]
        if len(ok):
            d = minimal_l2(model, x[ok], y[ok], x, pred, decision_steps, seed=seed)
            lo, hi = median_interval(d)
            rows.append({"attack": "hop_skip_jump", "norm": "l2", "epsilon": None,
                         "accuracy": float(np.isinf(d).mean()), "n_images": int(len(ok)),
                         "median_l2": float(np.median(d)), "l2_low": lo, "l2_high": hi, "steps": decision_steps,
                         "library": f"foolbox {fb.__version__}"})
    return rows
