"""Reconstruction speed: `analysis.reconstruct.reconstruct` against a bare projected-gradient loop.

The work `python -m analysis.reconstruct` does for one model: --images test images x the --norms
budgets reconstructed together (one batch of images x norms), each step a forward to --layer
(conv3_1), the mean squared activation difference, backward, the gradient blurred (sigma 1 pixel),
an optimizer step (--optimizer adam: Adam lr 0.01, the Baseline's and Oracle's; sgd: SGD lr 5, the
co-trained models') and the projection of every reconstruction onto its norm ball.
  reconstruct  the project's function, with the model prepared as the command prepares it (eval
               mode, no parameter gradients, channels_last on CUDA)
  bare         the same computation written out plainly (the module's own blur and projection):
               target activations, starting noise, the steps, the final losses, the copy back
Both start from the same noise; their reconstructions must agree (printed). The comparison runs the
optimiser alone (`check_steps=0`); afterwards one run with the command's default check is timed against it.
The model is VGG-19-BN at --width with untrained weights (the work does not depend on them); the
targets are the first demo-world test images with Gaussian noise of severity 2 (the command's default
target, `noisy_targets`), 64 x 64 like Tiny ImageNet.
Same start-up and warm-up on both sides: one process, the model and targets built once, then each
side runs --warmup-steps steps untimed. Then the sides alternate (reconstruct, bare, reconstruct, ...),
--repeats times each (at least 3), each run timed as a whole call (set-up and final losses included);
prints median steps/s (a step advances every reconstruction of the batch once), reconstructions x
steps/s, and the ratio.

    python benchmarks/reconstruct_speed.py                                   # CPU, width 1/16: about 1 minute
    python benchmarks/reconstruct_speed.py --width 1 --images 70 --device cuda   # the paper preset: 70 images x 3 norms
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis.constrained import _blur, project, reconstruct  # noqa: E402
from analysis.reconstruct import parse_norms  # noqa: E402
from analysis.reconstruct_inputs import noisy_targets  # noqa: E402
from core.data.synthetic import make_classification, world_config  # noqa: E402
from core.models import build_model  # noqa: E402
from core.training.inference import resolve_device  # noqa: E402

LR = {"adam": 0.01, "sgd": 5.0}   # analysis.reconstruct.default_optimizer


def bare(f, target, norms, steps, optimizer, lr, sigma=1.0, seed=0, init_fraction=0.1):
    """The same projected-gradient reconstruction as a plain loop; returns the reconstructions (CPU)."""
    N, R, dev = len(target), len(norms), target.device
    radius = torch.tensor(norms, device=dev, dtype=torch.float32).repeat(N)
    with torch.no_grad():
        goal = f(target).float().repeat_interleave(R, dim=0)
    x = torch.randn((N * R, *target.shape[1:]), generator=torch.Generator().manual_seed(seed)).to(dev)
    x = x * (init_fraction * radius / x.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    x = x.contiguous(memory_format=torch.channels_last) if dev.type == "cuda" else x
    x.requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr) if optimizer == "sgd" else torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        (f(x).float() - goal).square().flatten(1).sum(1).sum().backward()
        x.grad = _blur(x.grad, sigma)
        opt.step()
        with torch.no_grad():
            x.copy_(project(x, radius))
    with torch.no_grad():
        (f(x).float() - goal).square().flatten(1).sum(1).cpu()
    return x.detach().float().cpu().numpy().reshape(N, R, *target.shape[1:])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=1 / 16, help="VGG-19-BN channel multiplier (default 1/16; the paper: 1)")
    p.add_argument("--images", type=int, default=8, help="test images (default 8, the demo preset's; paper preset: 70)")
    p.add_argument("--norms", default="5,15,60", help="norm budgets (default 5,15,60, the command's)")
    p.add_argument("--steps", type=int, default=100, help="steps per timed run (default 100)")
    p.add_argument("--warmup-steps", type=int, default=5, help="untimed steps per side before the repeats (default 5)")
    p.add_argument("--layer", default="conv3_1", help="layer whose activations are matched (default conv3_1)")
    p.add_argument("--optimizer", choices=sorted(LR), default="adam", help="adam (lr 0.01) or sgd (lr 5) (default adam)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per side, at least 3 (default 3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1; 0: torch's default)")
    args = p.parse_args()
    if args.repeats < 3 or args.steps < 1:
        p.error("--repeats at least 3, --steps at least 1")
    norms = parse_norms(args.norms)
    dev = resolve_device(args.device)
    if args.threads and dev.type == "cpu":
        torch.set_num_threads(args.threads)
    cls = make_classification(world_config("demo"))
    if args.images > len(cls.labels["test"]):
        p.error(f"--images: the demo world has {len(cls.labels['test'])} test images")
    torch.manual_seed(0)
    model = build_model("vgg19_bn_fc", cls.n_classes, 0, args.width, image_size=cls.image_shape[0]).to(dev)
    model.eval().requires_grad_(False)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    targets = noisy_targets(np.asarray(cls.images["test"][: args.images]))
    with torch.no_grad():
        x0 = model.prep(torch.from_numpy(targets[:, None]).to(dev))

    def f(z):
        return model.features(z, args.layer)

    lr = LR[args.optimizer]
    # the optimiser alone (check_steps=0: what the bare loop does); the check is timed after the comparison
    sides = {"reconstruct": lambda steps: reconstruct(f, x0, norms, steps, args.optimizer, lr, check_steps=0).x,
             "bare": lambda steps: bare(f, x0, norms, steps, args.optimizer, lr)}

    def timed(side, steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        x = sides[side](steps)   # both end with a copy to the CPU: the device's work is done
        return time.perf_counter() - t, x

    for side in sides:   # warm-up, untimed
        timed(side, args.warmup_steps)
    n_rec = len(x0) * len(norms)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, torch threads: {torch.get_num_threads()}"
    print(f"device {dev} ({name}); vgg19_bn_fc width {args.width:g} to {args.layer}; {len(x0)} images x {len(norms)} "
          f"norms = {n_rec} reconstructions per step, {args.optimizer} lr {lr:g}, {args.steps} steps per run")
    t, outs = {s: [] for s in sides}, {}
    for r in range(args.repeats):
        for side in sides:
            dt, outs[side] = timed(side, args.steps)
            t[side].append(dt)
        print(f"  repeat {r + 1}: " + ", ".join(f"{s} {args.steps / t[s][-1]:.1f} steps/s" for s in sides))
    a, b = (statistics.median(t[s]) for s in sides)
    diff = float(np.abs(outs["reconstruct"] - outs["bare"]).max())
    print(f"medians of {args.repeats} alternating repeats: reconstruct {args.steps / a:.1f} steps/s "
          f"({n_rec * args.steps / a:.0f} reconstruction-steps/s), bare {args.steps / b:.1f} steps/s; "
          f"ratio reconstruct/bare {b / a:.3f}; largest difference between their reconstructions {diff:.2g}")
    print(f"at reconstruct's speed one model takes {400 * a / args.steps:.0f} s for the demo preset's 400 steps, "
          f"{8000 * a / args.steps / 60:.1f} min for the paper preset's 8,000")
    # the check the command runs after the optimiser (default: up to as many steps, until every loss settled)
    t1 = time.perf_counter()
    rec = reconstruct(f, x0, norms, args.steps, args.optimizer, lr)
    t_all = time.perf_counter() - t1
    print(f"with the check (default --check-steps): {t_all:.1f} s against {a:.1f} s without, "
          f"{t_all / a:.2f}x; converged {int(rec.converged.sum())} of {rec.converged.size}")


if __name__ == "__main__":
    main()
