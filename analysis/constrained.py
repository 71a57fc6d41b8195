"""Constrained reconstruction by projected gradient descent (paper §4.4, Fig. 5), and its spectral control.

    x* = argmin_x ||f(x) − f(x0)||²  subject to  ||x||₂ ≤ r

f is a trained model's layer (default conv3_1), x0 a target image, r a norm budget, all in the model's
standardised input space, batched over images × norms. The objective is the paper's: the squared norm
of the activation difference, summed over the layer's elements (a per-element mean would make SGD at the
paper's lr 5 take steps C·H·W times smaller; Adam does not care). Following the authors' demo, the start
is noise and the gradient is smoothed by a Gaussian blur (σ = 1 pixel) before each step, and x is
projected onto the ball after every step. The paper used SGD lr 5 for the MTL models and Adam lr 0.01 for
the Baseline and Oracle, 8000 steps; here every kind gets Adam lr 0.01 by default (see default_optimizer).
Each reconstruction records its loss relative to ||f(x0)||² and how much the loss still fell, and how far
it swung, over the optimiser's last tenth of the steps, both in units of ||f(x0)||². Then, by default, a
check runs on from the optimiser's result (per step, the lower of a projected L-BFGS step and a projected
gradient step, each with a monotone line search, so the loss never rises): the result is the point it ends
at (closer to the argmin the method defines than the optimiser's own, which is kept as `main_x`;
`check_steps=0` keeps the paper's procedure exactly), what it still found says whether the optimiser had
stalled, and its own tail whether the result has settled. On the demo's models the check moves the
optimiser's results by most of their norm and adds high spatial frequencies (docs/method.md, representation
analysis): what is compared is the settled point, not the optimiser's image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.errors import ConfigError

# converged: over the last tenth of the steps the loss neither fell nor swung by 1% or more of the
# target's activation energy ||f(x0)||² (the problem's own scale: a loss already at 1% of it that still
# falls by a tenth of itself has converged; one swinging at a high value, an oversized SGD step, has not)
CONVERGED = 0.01
CHECK_TAIL = 20   # the last line-search steps of the check that judge whether the result has settled
SETTLED = 1e-4    # the check goes on until every loss fell by less than this over its last CHECK_TAIL steps


PAPER_OPTIMIZER = {"co-trained": ("sgd", 5.0), "other": ("adam", 0.01)}   # the paper's per-kind choice


def default_optimizer(kind: str) -> tuple[str, float]:
    """Adam lr 0.01 for every kind: one optimiser, so that a difference in ϱ̄ is one of models. The
    paper's SGD lr 5 for the co-trained models (PAPER_OPTIMIZER; `--optimizer mtl_monkey=sgd:5`) did not
    converge on the demo's MTL models (measured on the demo lake, 400 steps: the loss swung by a median
    3.6-11% of ||f(x0)||² over the last tenth of the steps and ended at 4.6-11 times ||f(x0)||² at r = 60,
    against 0.005-0.036 for every kind with Adam lr 0.01, 23-24 of 24 reconstructions converged each)."""
    return ("adam", 0.01)


# ----------------------------------------------------------------------------- the optimisation


def project(x, radius):
    """Scale each sample of x (B, ...) onto the ball ||x_b||₂ ≤ radius_b (no change inside it)."""
    import torch

    norm = x.flatten(1).norm(dim=1)
    scale = torch.clamp(radius / norm.clamp_min(1e-12), max=1.0)
    return x * scale.view(-1, *([1] * (x.dim() - 1)))


def _blur(g, sigma: float):
    import torch
    import torch.nn.functional as F

    k = int(math.ceil(3 * sigma))
    t = torch.arange(-k, k + 1, dtype=g.dtype, device=g.device)
    w = torch.exp(-t ** 2 / (2 * sigma ** 2))
    w = w / w.sum()
    c = g.shape[1]
    g = F.conv2d(F.pad(g, (k, k, 0, 0), mode="reflect"), w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(g, (0, 0, k, k), mode="reflect"), w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@dataclass
class Reconstruction:
    x: np.ndarray          # (N, R, C, H, W) reconstructions, image-major
    loss: np.ndarray       # (N, R) final ||f(x) − f(x0)||², summed over the layer's elements
    norm: np.ndarray       # (N, R) achieved ||x||₂
    seconds: float
    target_activation: np.ndarray = None   # (N,) ||f(x0)||²: loss / this = relative loss
    tail_drop: np.ndarray = None           # (N, R) fall of the loss over the last tenth of the steps / ||f(x0)||²
    tail_swing: np.ndarray = None          # (N, R) max − min of the loss over the last tenth of the steps / ||f(x0)||²
    trivial_loss: np.ndarray = None        # (N, R) the loss at x0 shrunk into the ball, a feasible point any optimum beats
    # the check (a monotone line search run on from the optimiser's result, see `reconstruct`)
    main_loss: np.ndarray = None           # (N, R) the loss where the optimiser stopped, before the check
    check_gain: np.ndarray = None          # (N, R) how much lower the check went / ||f(x0)||² (>= CONVERGED: a stall)
    check_tail_drop: np.ndarray = None     # (N, R) the check's fall over its last CHECK_TAIL steps / ||f(x0)||²
    main_x: np.ndarray = None              # (N, R, C, H, W) the optimiser's own result, before the check
    # several starts (`reconstruct(..., starts=K)`): every field above is the best start's
    start_loss: np.ndarray = None          # (N, R, K) the final loss of each start
    start_x: np.ndarray = None             # (K, N, R, C, H, W) each start's reconstruction
    best_start: np.ndarray = None          # (N, R) the start the result comes from
    per_start: "Reconstruction" = None     # every start's record, (K·N, R), start-major

    def start_converged(self) -> np.ndarray:
        """(K, N, R): whether each start's result converged (a single start: (1, N, R))."""
        if self.per_start is None:
            return self.converged[None]
        K = len(self.start_x)
        return self.per_start.converged.reshape(K, *self.loss.shape)

    @property
    def stalled(self) -> np.ndarray:
        """(N, R): the optimiser had settled short of the optimum: over its last tenth its loss neither
        fell nor swung by CONVERGED of ||f(x0)||², yet the check went on to a loss lower by that much or
        more (a stall, which the tail alone cannot see). An optimiser still falling or swinging at the end
        was not finished rather than stalled (its tail says so)."""
        if self.check_gain is None:
            return np.zeros(self.loss.shape, bool)
        return (self.check_gain >= CONVERGED) & (self.tail_drop < CONVERGED) & (self.tail_swing < CONVERGED)

    @property
    def converged(self) -> np.ndarray:
        """(N, R): the result is settled. With the check (the default): over the check's last CHECK_TAIL
        steps the monotone line search fell by less than CONVERGED of ||f(x0)||², so the point it ends at
        (the result) is one that the check's steps (L-BFGS and gradient) no longer improve. Without it: over
        the optimiser's last tenth the loss fell and swung by less than that. Either way the result is
        no worse than the trivial feasible point (a run stuck at a bad value neither falls nor swings,
        but loses to it)."""
        if self.check_tail_drop is not None:
            ok = self.check_tail_drop < CONVERGED
        else:
            swing = self.tail_swing if self.tail_swing is not None else np.zeros_like(self.tail_drop)
            ok = (self.tail_drop < CONVERGED) & (swing < CONVERGED)
        if self.trivial_loss is not None:   # no worse than it by 0.1% of ||f(x0)||² (float error at a zero loss)
            ok &= self.loss <= self.trivial_loss + 1e-3 * self.target_activation[:, None]
        return ok


def reconstruct(f: Callable, target, norms, steps: int, optimizer: str = "adam", lr: float = 0.01,
                blur_sigma: float = 1.0, seed: int = 0, init_fraction: float = 0.1,
                callback: Callable | None = None, log: Callable | None = None, label: str = "",
                reduction: str = "sum", check_steps: int | None = None, starts: int = 1) -> Reconstruction:
    """Projected-gradient reconstruction of f(target) for every (image, norm) pair at once.

    target: tensor (N, C, H, W) in f's input space, on f's device. norms: R budgets. The start is
    Gaussian noise of norm `init_fraction`·r; `callback(step, x)` sees every optimiser iterate (after
    projection). Then the check: up to `check_steps` (default as many as `steps`, at least 20; 0 to skip,
    which is the paper's procedure exactly) of projected L-BFGS with a backtracking (Armijo) line search per
    reconstruction (`_check_descent`), from where the optimiser stopped, ending early once every reconstruction
    has settled (fell by < SETTLED of ||f(x0)||² over the last CHECK_TAIL steps). It never raises the
    loss, so the result is the better of the two points; how much it still found (`check_gain`) says
    whether the optimiser had stalled, and its own tail whether the result has settled
    (`Reconstruction.converged`). `tail_drop` and `tail_swing` describe the optimiser's own last tenth,
    before the check; `main_x` is the optimiser's own result (the paper's procedure). With `starts` K > 1,
    every (image, norm) is reconstructed from K noises (`start_seed`; start 0 is the one a single start
    uses, and the check stops each reconstruction on its own, so start 0 ends where a single start does),
    all in one batch, and the result is the start that ended lowest (closest to the argmin); `start_loss`,
    `start_x` and `per_start` keep every start."""
    import torch

    if optimizer not in ("sgd", "adam"):
        raise ConfigError(f"optimizer {optimizer!r}: expected sgd or adam")
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"reduction {reduction!r}: expected sum (the squared norm) or mean (over the layer's elements)")
    if steps < 1:
        raise ConfigError(f"steps {steps}: expected at least 1")
    norms = [float(r) for r in norms]
    if not norms or min(norms) <= 0:
        raise ConfigError(f"norms {norms}: expected positive budgets")
    if starts < 1:
        raise ConfigError(f"starts {starts}: expected at least 1")
    n_img = len(target)
    target = target.repeat(starts, 1, 1, 1) if starts > 1 else target   # start-major: start k is rows k*N ...
    N, R = len(target), len(norms)
    dev = target.device
    radius = torch.tensor(norms, device=dev, dtype=torch.float32).repeat(N)          # (N*R,), image-major
    with torch.no_grad():
        goal1 = f(target).float()
        goal = goal1.repeat_interleave(R, dim=0)
        target_act = goal1.square().flatten(1).sum(1).cpu().numpy()
    x = torch.cat([torch.randn((n_img * R, *target.shape[1:]), generator=torch.Generator().manual_seed(start_seed(seed, k)))
                   for k in range(starts)]).to(dev)
    x = x * (init_fraction * radius / x.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    x = x.contiguous(memory_format=torch.channels_last) if dev.type == "cuda" else x
    x.requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr) if optimizer == "sgd" else torch.optim.Adam([x], lr=lr)

    def per_image_loss(z):   # always the summed squared norm (what is recorded and compared)
        return (f(z).float() - goal).square().flatten(1).sum(1)

    # the optimised objective: the summed squared norm, or (reduction "mean") its mean over the layer's
    # elements, which makes SGD's steps C·H·W times smaller (Adam is indifferent): one reading of the paper
    # (SGD lr 5), if the authors averaged
    scale_obj = 1.0 / goal1[0].numel() if reduction == "mean" else 1.0
    with torch.no_grad():   # the trivial feasible point: the target itself, shrunk into the ball
        t_rep = target.repeat_interleave(R, dim=0)
        trivial = per_image_loss(t_rep * torch.clamp(radius / t_rep.flatten(1).norm(dim=1), max=1.0).view(-1, 1, 1, 1))

    t0 = time.perf_counter()
    every = max(1, steps // 5)
    tail_from = steps - max(1, steps // 10)   # the loss here against the final one: still falling? swinging?
    before_tail, lo, hi = None, None, None
    for step in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        cur_loss = per_image_loss(x)
        (cur_loss.sum() * scale_obj).backward()  # samples are independent (eval mode): sum = per-sample gradients
        if step > tail_from:   # the loss of the iterate before this step, for every step of the tail
            d = cur_loss.detach()
            lo, hi = (d, d.clone()) if lo is None else (torch.minimum(lo, d), torch.maximum(hi, d))
        if blur_sigma and blur_sigma > 0:
            x.grad = _blur(x.grad, blur_sigma)
        opt.step()
        with torch.no_grad():
            x.copy_(project(x, radius))
        if step == tail_from:
            with torch.no_grad():
                before_tail = per_image_loss(x)
        if callback is not None:
            callback(step, x.detach())
        if log and (step % every == 0 or step == steps):
            with torch.no_grad():
                cur = per_image_loss(x)
            log(f"  {label} step {step}/{steps}: activation loss {cur.mean().item():.4g} "
                f"({time.perf_counter() - t0:.1f}s)")
    shape = (N, R)
    scale = np.repeat(np.where(target_act > 0, target_act, np.nan), R).reshape(shape)   # ||f(x0)||² per (image, norm)
    with torch.no_grad():
        main_np = per_image_loss(x).cpu().numpy().reshape(shape)   # where the optimiser stopped
    if before_tail is None:   # a single step: nothing to compare with
        drop = swing = np.full(shape, np.nan)
    else:   # the optimiser's own last tenth (the check below does not enter it)
        drop = (before_tail.cpu().numpy().reshape(shape) - main_np) / scale
        lo_np = np.minimum(lo.cpu().numpy().reshape(shape), main_np)
        hi_np = np.maximum(hi.cpu().numpy().reshape(shape), main_np)
        swing = (hi_np - lo_np) / scale
    check_steps = max(CHECK_TAIL, steps) if check_steps is None else check_steps
    check, main_x = (None, None, None), None
    if check_steps > 0:
        main_x = x.detach().float().cpu().numpy().reshape(N, R, *target.shape[1:])   # the optimiser's own result
        x, hist = _check_descent(per_image_loss, x.detach(), radius, check_steps,
                                 torch.from_numpy(scale.reshape(-1)).to(dev))
        end = hist[-1].reshape(shape)
        tail = min(len(hist) - 1, CHECK_TAIL)   # the last 20 line-search steps judge the result
        check = (main_np, (main_np - end) / scale, (hist[-1 - tail].reshape(shape) - end) / scale)
        if log:
            log(f"  {label} check ({len(hist) - 1} line-search steps): activation loss {end.mean():.4g}, lowered by "
                f">= 1% of ||f(x0)||² in {int((check[1] >= CONVERGED).sum())} of {N * R} ({time.perf_counter() - t0:.1f}s)")
    with torch.no_grad():
        loss = per_image_loss(x)
        norm = x.flatten(1).norm(dim=1)
    rec = Reconstruction(x.detach().float().cpu().numpy().reshape(N, R, *target.shape[1:]),
                         loss.cpu().numpy().reshape(shape), norm.cpu().numpy().reshape(shape), time.perf_counter() - t0,
                         target_act, drop, swing, trivial.cpu().numpy().reshape(shape), *check, main_x=main_x)
    return _best_of_starts(rec, starts) if starts > 1 else rec


def start_seed(seed: int, k: int) -> int:
    """The noise seed of start k: `seed` itself for start 0 (what a single start uses), then seeds derived
    from (seed, k), so that runs with --seed 0 and --seed 1 share no start."""
    return seed if k == 0 else int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def _best_of_starts(rec: Reconstruction, starts: int) -> Reconstruction:
    """rec over (K·N, R), start-major -> the start with the lowest final loss per (image, norm), every
    per-reconstruction field taken from it; `start_loss` (N, R, K) and `start_x` (K, N, R, ...) keep all."""
    K = starts
    N, R = rec.loss.shape[0] // K, rec.loss.shape[1]
    by_start = rec.loss.reshape(K, N, R)
    best = by_start.argmin(axis=0)   # (N, R)

    def pick(a):
        if a is None:
            return None
        a = a.reshape(K, N, R, *a.shape[2:])
        idx = best.reshape(1, N, R, *([1] * (a.ndim - 3)))
        return np.take_along_axis(a, idx, axis=0)[0]

    return Reconstruction(pick(rec.x), pick(rec.loss), pick(rec.norm), rec.seconds, rec.target_activation[:N],
                          pick(rec.tail_drop), pick(rec.tail_swing), pick(rec.trivial_loss), pick(rec.main_loss),
                          pick(rec.check_gain), pick(rec.check_tail_drop), main_x=pick(rec.main_x),
                          start_loss=by_start.transpose(1, 2, 0), start_x=rec.x.reshape(K, N, R, *rec.x.shape[2:]),
                          best_start=best, per_start=rec)


def _dot(a, b):
    return (a.flatten(1) * b.flatten(1)).sum(1)


def _backtrack(loss_fn, x, g, cur, d, t, radius, pending, c: float = 1e-4):
    """For each reconstruction in `pending`: halve t (at most 30 times) until x' = P(x + t·d) passes
    loss(x') ≤ loss(x) + c·<g, x' − x> (Armijo along the projection arc) and loss(x') < loss(x) (a step that
    lowers nothing is no step). Returns x with the accepted steps taken, their losses (cur elsewhere), the
    accepted mask and the step lengths (t as accepted)."""
    import torch

    nxt, new_loss, acc, done = x.clone(), cur.clone(), torch.zeros_like(pending), ~pending
    with torch.no_grad():
        for _ in range(30):
            cand = project(x + t.view(-1, 1, 1, 1) * d, radius)
            new = loss_fn(cand)
            ok = (new <= cur + c * _dot(g, cand - x)) & (new < cur) & ~done
            nxt[ok], new_loss[ok] = cand[ok], new[ok]
            acc |= ok
            done |= ok
            if bool(done.all()):
                break
            t = torch.where(done, t, t / 2)
    return nxt, new_loss, acc, t


def _lbfgs_direction(g, pairs, fallback_scale):
    """−H·g by L-BFGS's two-loop recursion, per reconstruction, over the curvature pairs (s, y, 1/<s, y>)
    (a pair with <s, y> ≤ 0 for a reconstruction has weight 0 there and drops out), with H₀ = γ·I and
    γ = <s, y>/<y, y> of its newest usable pair, or fallback_scale. Where the result is not a descent
    direction: −fallback_scale·g."""
    import torch

    q, alphas = g.clone(), []
    for s, y, rho in reversed(pairs):
        a = rho * _dot(s, q)
        q = q - a.view(-1, 1, 1, 1) * y
        alphas.append(a)
    gamma = torch.zeros_like(fallback_scale)
    for s, y, rho in reversed(pairs):   # newest first: the first usable pair sets the scale
        gamma = torch.where((gamma == 0) & (rho > 0), _dot(s, y) / _dot(y, y).clamp_min(1e-30), gamma)
    r = torch.where(gamma > 0, gamma, fallback_scale).view(-1, 1, 1, 1) * q
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        r = r + (a - rho * _dot(y, r)).view(-1, 1, 1, 1) * s
    d = -r
    return torch.where((_dot(g, d) < 0).view(-1, 1, 1, 1), d, -fallback_scale.view(-1, 1, 1, 1) * g)


def _check_descent(loss_fn, x, radius, steps: int, scale=None, memory: int = 10):
    """The check of `reconstruct`: projected L-BFGS and a projected gradient step, each with a monotone
    backtracking line search, per reconstruction. Every step tries both x' = P(x + t·d), d the L-BFGS
    direction from the last `memory` steps' curvature pairs (t from twice the last accepted one, at most 1,
    L-BFGS's natural step), and x' = P(x − t·g) (t from twice its last accepted one; first a tenth of the
    budget over ||g||), and each reconstruction takes the lower; one that finds neither within 30 halvings
    stays put for this step. g is the plain gradient: a blurred step projected back onto the sphere of a
    binding budget can point uphill, and a check preconditioned by the optimiser's blur (with tangent
    projections on the sphere) reached about the same losses on the demo's models, more slowly, with the
    same rise in high-frequency power. Both searches accept only a point that passes Armijo's condition
    along the projection arc and lowers the loss, so the loss never rises. Plain projected gradient descent
    settled 0.3–3% of ||f(x0)||² above where quasi-Newton steps go at budgets that do not bind
    (ill-conditioned; measured on the demo's models). With `scale` (N*R,), ||f(x0)||² of each, a reconstruction stops (is frozen) once
    its loss fell by less than SETTLED of its scale over the last CHECK_TAIL steps, so that its result does
    not depend on which other reconstructions share the batch; the check ends when all have stopped, after
    at most `steps`. Returns the final x and the loss (N*R,) before every step and after the last (numpy
    arrays, in a list)."""
    import torch

    x, hist, pairs = x.clone(), [], []
    prev, t_qn, t_pg = None, None, None
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        xg = x.clone().requires_grad_(True)
        cur = loss_fn(xg)
        g, = torch.autograd.grad(cur.sum(), xg)
        cur = cur.detach()
        hist.append(cur.cpu().numpy())
        if scale is not None and len(hist) > CHECK_TAIL:   # settled ones stop here
            fell = (torch.from_numpy(hist[-1 - CHECK_TAIL]).to(cur.device) - cur) / scale
            active &= fell.nan_to_num(0.0) >= SETTLED
            if not bool(active.any()):
                break
        if prev is not None:
            s, y = x - prev[0], g - prev[1]
            sy = _dot(s, y)
            usable = sy > 1e-10 * s.flatten(1).norm(dim=1) * y.flatten(1).norm(dim=1)
            if bool(usable.any()):   # a pair no reconstruction can use would only push out one that some can
                pairs = (pairs + [(s, y, torch.where(usable, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy)))])[-memory:]
        fresh = 0.1 * radius / g.flatten(1).norm(dim=1).clamp_min(1e-12)
        t = torch.ones_like(fresh) if t_qn is None else torch.clamp(2 * t_qn, max=1.0)
        nxt, new, acc, t = _backtrack(loss_fn, x, g, cur, _lbfgs_direction(g, pairs, fresh), t, radius, active)
        t_qn = torch.where(acc, t, torch.ones_like(t))
        t = fresh if t_pg is None else t_pg
        nxt_pg, new_pg, acc_pg, t = _backtrack(loss_fn, x, g, cur, -g, t, radius, active)
        t_pg = torch.where(acc_pg, 2 * t, fresh)
        take_pg = acc_pg & (~acc | (new_pg < new))   # each reconstruction takes the lower of its two steps
        nxt[take_pg] = nxt_pg[take_pg]
        prev, x = (x, g), nxt
    with torch.no_grad():
        hist.append(loss_fn(x).cpu().numpy())
    return x, hist


def high_frequency_share(images: np.ndarray, cutoff: float = 0.25) -> np.ndarray:
    """Share of each image's power (over the last two axes) above `cutoff` cycles per pixel: what a
    reconstruction holds that a smooth image does not (the demo's targets: about 0.03)."""
    x = np.asarray(images, dtype=np.float64)
    fy, fx = np.fft.fftfreq(x.shape[-2]), np.fft.fftfreq(x.shape[-1])
    high = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) > cutoff
    power = np.abs(np.fft.fft2(x)) ** 2
    return (power * high).sum(axis=(-2, -1)) / np.maximum(power.sum(axis=(-2, -1)), 1e-300)


def spectral_control(recon: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The original with the reconstruction's Fourier amplitude spectrum and the original's phase
    (over the last two axes; original broadcasts against recon)."""
    fr = np.fft.fft2(np.asarray(recon, dtype=np.float64))
    fo = np.fft.fft2(np.asarray(original, dtype=np.float64))
    return np.real(np.fft.ifft2(np.abs(fr) * np.exp(1j * np.angle(fo))))
