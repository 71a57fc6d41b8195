"""Training throughput: `fit` against a bare PyTorch loop that does the same work, side by side.

Two modes (--modes, default both):
  classification  the Baseline's steps: standardise, forward, cross-entropy, backward, SGD step
  mtl             core.training's MTL path: before each optimizer step the ratio cycler's batches
                  (--ratio n:c, neural:classification), neural batches drawn by fit's NeuralStream
                  from a predictor's responses to every training image (core.training.bundles.mtl_data,
                  masked MSE), classification batches (cross-entropy), both through the learned
                  uncertainty weighting; SGD (plus the readout's own Adam with --readout-lr > 0)

Every run validates and checkpoints after every epoch, as the sweeps' fits do: `fit` with its own
per-epoch validation, LR schedule, best-weights copy and checkpoint; the bare loop validates through
the same prediction functions (accuracy, and the neural correlation in mode mtl) and torch.saves
the model and optimizer state. Two figures per run:
  steps   images/s over the training steps only (validation and checkpoint not counted)
  epoch   images/s over whole epochs: steps + validation + checkpoint, the trainer's real throughput
Images are counted as `fit` counts them: every classification and every neural image of a step.

Same start-up and warm-up on every side: one process; the data are built once, before any run;
every run builds its model afresh and its first epoch is warm-up, not counted. Runs alternate
bare, fit, bare, fit, ... within each mode; medians of --repeats (at least 3) and fit/bare ratios.
No augmentation on either side. It also counts the model FLOPs per training image (torch's
FlopCounterMode) and, on a GPU, model FLOP utilisation against the device's dense bf16 peak.

    python benchmarks/train_throughput.py                        # CPU, width 1/16: 2-3 minutes on 2 cores
    python benchmarks/train_throughput.py --width 1 --images 8192 --device cuda   # the paper's width, on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.data.synthetic import make_classification, world_config  # noqa: E402
from core.models import build_model  # noqa: E402
from core.training.config import TrainConfig  # noqa: E402
from core.training.cycler import parse_ratio, schedule  # noqa: E402
from core.training.data import TrainData, as_u8, pixel_stats  # noqa: E402
from core.training.data import NeuralStream  # noqa: E402
from core.training.fit import fit  # noqa: E402
from core.training.inference import accuracy as _accuracy, neural_val as _neural_val, resolve_device  # noqa: E402
from core.training.bundles import Sources, mtl_data, predictor_targets  # noqa: E402
from core.training.losses import UncertaintyWeighting, masked_mse  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1}


def bare_stepper(model, data: TrainData, mode: str, cfg: TrainConfig, dev, amp):
    """(step(s, perm) -> images, optimizers): fit's per-step work for `mode`, written out plainly."""
    weighting = UncertaintyWeighting(cfg.learn_cls_weight).to(dev) if mode == "mtl" else None
    own_readout = mode == "mtl" and cfg.readout_lr > 0
    skip = {id(p) for p in model.readout.parameters()} if own_readout else set()
    groups = [{"params": [p for p in model.parameters() if id(p) not in skip], "weight_decay": cfg.weight_decay}]
    if weighting is not None:
        groups.append({"params": [p for p in weighting.parameters() if p.requires_grad], "weight_decay": 0.0})
    opts = [torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)]
    if own_readout:
        opts.append(torch.optim.Adam(model.readout.parameters(), lr=cfg.readout_lr, weight_decay=cfg.weight_decay))
    x_u8, y = data.cls["train"]
    B = min(cfg.batch_size, len(y))
    plan = schedule(len(y) // B, cfg.ratio) if mode == "mtl" else None
    stream = NeuralStream(len(data.neural_train), B, torch.Generator().manual_seed(1)) if mode == "mtl" else None
    src = data.neural_train

    def prep(u8):
        x = model.prep(u8)
        return x.contiguous(memory_format=torch.channels_last)   # as fit, on every device

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp)

    def step(s, perm) -> int:
        n = 0
        for o in opts:
            o.zero_grad(set_to_none=True)
        for kind in (plan[s] if plan else ["classification"]):
            if kind == "neural":
                idx = stream.next().to(dev)
                with autocast():
                    rate = model.predict_neural(prep(src.images[src.index[idx]])).float()
                loss = weighting.neural(masked_mse(rate, src.targets[idx], src.mask[idx]))
            else:
                idx = perm[s * B:(s + 1) * B]
                with autocast():
                    logits = model(prep(x_u8[idx])).float()
                ce = F.cross_entropy(logits, y[idx])
                loss = weighting.classification(ce) if weighting is not None else ce
            loss.backward()
            n += len(idx)
        for o in opts:
            o.step()
        return n

    return step, opts, len(y) // B


def run_bare(model, data, mode, cfg, dev, amp, ckpt_dir: Path) -> dict:
    """Steps-only and whole-epoch images/s of the bare loop (first epoch excluded)."""
    data = data.to(dev)
    step, opts, n_steps = bare_stepper(model, data, mode, cfg, dev, amp)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(cfg.max_epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(data.cls["train"][1]), generator=gen).to(dev)
        n = sum(step(s, perm) for s in range(n_steps))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t_steps = time.perf_counter() - t0
        _accuracy(model, *data.cls["val"], amp)
        if mode == "mtl":
            _neural_val(model, data.neural_val, amp)
        torch.save({"model": model.state_dict(), "optimizer": [o.state_dict() for o in opts]}, ckpt_dir / "bare.pt")
        rows.append((n, t_steps, time.perf_counter() - t0))
    return _rates(rows)


def run_fit(model, data, cfg, ckpt_dir: Path) -> dict:
    """The same figures for `fit` (steps from its own epoch rows; whole epochs between its reports)."""
    stamps = []
    res = fit(model, data, cfg, report=lambda row, path: stamps.append(time.perf_counter()), checkpoint_dir=ckpt_dir, log=None)
    rows = [(e["images_per_s"] * e["train_seconds"], e["train_seconds"], b - a)
            for e, a, b in zip(res.epochs, [stamps[0]] + stamps, stamps)]
    return _rates(rows)


def _rates(rows) -> dict:
    """rows: (images, step seconds, epoch seconds) per epoch; the first is warm-up."""
    rows = rows[1:] if len(rows) > 1 else rows
    n = sum(r[0] for r in rows)
    return {"steps": n / sum(r[1] for r in rows), "epoch": n / sum(r[2] for r in rows)}


def flops_per_image(model, data, mode, cfg, dev, amp) -> float:
    """Model FLOPs (forward + backward) per training image over one period of the ratio schedule."""
    from torch.utils.flop_counter import FlopCounterMode

    data = data.to(dev)
    step, _, n_steps = bare_stepper(model, data, mode, cfg, dev, amp)
    period = min(n_steps, parse_ratio(cfg.ratio)[1] if mode == "mtl" else 1)
    perm = torch.arange(len(data.cls["train"][1]), device=dev)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        n = sum(step(s, perm) for s in range(period))
    return counter.get_total_flops() / n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="classification,mtl", help="comma list of classification, mtl (default both)")
    p.add_argument("--width", type=float, default=1 / 16, help="VGG-19-BN channel multiplier (default 1/16; the paper: 1)")
    p.add_argument("--images", type=int, default=1024, help="classification training images, 10 classes (default 1024)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128, the paper's)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, the first of each is warm-up (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per side, at least 3 (default 3)")
    p.add_argument("--ratio", default="1:1", help="mode mtl: neural:classification batches (default 1:1)")
    p.add_argument("--neurons", type=int, default=64, help="mode mtl: neurons in the readout (default 64; paper data: 458)")
    p.add_argument("--readout-lr", type=float, default=0.0,
                   help="mode mtl: the readout's own Adam lr (default 0: one SGD, the paper's; the CPU presets use 1e-2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads on the CPU (default 1, as each sweep trial trains; 0: torch's default)")
    p.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: from the GPU's name)")
    p.add_argument("--recipe", default="paper", choices=("paper", "quiet"),
                   help="fit's recipe: paper (plateau schedule, a best-weights copy per improvement, the running "
                        "BatchNorm statistics) or quiet (cosine, final weights, the BatchNorm pass over 1,024 images "
                        "before every validation: the short presets'); default paper")
    p.add_argument("--checkpoint-every", type=int, default=1, help="fit's epochs between checkpoints (default 1)")
    p.add_argument("--compile", action="store_true", help="fit with torch.compile on the core (CUDA; TrainConfig.compile)")
    p.add_argument("--fit-only", action="store_true", help="time fit alone, no bare loop (one repeat allowed: a large "
                   "--images, e.g. a Tiny-ImageNet-sized epoch)")
    args = p.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("classification", "mtl") for m in modes):
        p.error(f"--modes {args.modes}: expected classification and/or mtl")
    if (args.repeats < 3 and not args.fit_only) or args.repeats < 1 or args.epochs < 2:
        p.error("--repeats must be at least 3 (1 with --fit-only) and --epochs at least 2 (the first epoch is warm-up)")
    parse_ratio(args.ratio)
    dev = resolve_device(args.device)
    amp = dev.type == "cuda"
    if args.threads and dev.type == "cpu":
        torch.set_num_threads(args.threads)

    # data, built once before any timing: demo-world images; the MTL targets are the responses of a
    # predictor (untrained: the values do not change the work) to every image, as in mtl_data
    cls = make_classification(world_config("demo", n_classes=10, train_per_class=max(1, args.images // 10),
                                           val_per_class=8, test_per_class=1))
    mean, std = pixel_stats(cls.images["train"])
    size = cls.image_shape[0]
    datas = {"classification": TrainData(cls.n_classes, {s: (as_u8(cls.images[s]), torch.as_tensor(np.array(cls.labels[s])))
                                                         for s in ("train", "val")})}
    if "mtl" in modes:
        torch.manual_seed(1)
        predictor = build_model("vgg19_bn_fc", cls.n_classes, args.neurons, args.width, classify=False, image_size=size)
        predictor.set_pixel_stats(mean, std)
        src = Sources(cls, None)
        datas["mtl"] = mtl_data(src, predictor_targets(src, predictor.to(dev).eval()))
        del predictor

    def model(mode):
        torch.manual_seed(0)
        m = build_model("vgg19_bn_fc", cls.n_classes, args.neurons if mode == "mtl" else 0, args.width, image_size=size)
        m.set_pixel_stats(mean, std)
        m.to(dev)
        return m.to(memory_format=torch.channels_last)

    def config(mode):
        quiet = dict(schedule="cosine", select="final", neural_grad="mean", bn_images=1024) if args.recipe == "quiet" else {}
        return TrainConfig(mode=mode, width=args.width, batch_size=args.batch, max_epochs=args.epochs, augment=False,
                           lr=0.01, device=str(dev), patience=10**6, ratio=args.ratio if mode == "mtl" else "1:1",
                           readout_lr=args.readout_lr if mode == "mtl" else 0.0, threads=args.threads,
                           checkpoint_every=args.checkpoint_every, compile=args.compile, **quiet)

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    where = f"{name}, torch threads: {torch.get_num_threads()}" if dev.type == "cpu" else name
    print(f"recipe {args.recipe}, checkpoint every {args.checkpoint_every} epoch(s){', torch.compile' if args.compile else ''}")
    print(f"device {dev} ({where}), vgg19_bn_fc width {args.width:g}, batch {args.batch}, {len(cls.labels['train'])} "
          f"training images + {len(cls.labels['val'])} validation images, {args.epochs} epochs per run (first = warm-up), "
          f"{args.repeats} repeats, bare/fit alternating")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            res = {"bare": [], "fit": []}
            for r in range(args.repeats):
                d = Path(tmp) / f"{mode}-{r}"
                (d / "bare").mkdir(parents=True)
                if not args.fit_only:
                    res["bare"].append(run_bare(model(mode), datas[mode], mode, config(mode), dev, amp, d / "bare"))
                res["fit"].append(run_fit(model(mode), datas[mode], config(mode), d / "fit"))
                o = res["fit"][-1]
                if args.fit_only:
                    print(f"  {mode} repeat {r + 1}: fit steps {o['steps']:.1f} img/s, whole epochs {o['epoch']:.1f} img/s "
                          f"({len(cls.labels['train']) / o['epoch']:.2f} s per epoch of {len(cls.labels['train'])} images)")
                    continue
                b = res["bare"][-1]
                print(f"  {mode} repeat {r + 1}: steps bare {b['steps']:.1f} fit {o['steps']:.1f} img/s; "
                      f"whole epochs bare {b['epoch']:.1f} fit {o['epoch']:.1f} img/s")
            results[mode] = {side: {k: statistics.median(x[k] for x in runs) for k in ("steps", "epoch")}
                             for side, runs in res.items() if runs}

    print(f"medians of {args.repeats} repeats, images/s (classification + neural images):")
    print(f"  {'mode':<16}{'figure':<34}{'bare':>10}{'fit':>10}{'fit/bare':>10}")
    for mode, m in results.items():
        label = mode if mode == "classification" else f"mtl {args.ratio}"
        if "bare" not in m:
            print(f"  {label:<16}fit: steps {m['fit']['steps']:.1f}, whole epochs {m['fit']['epoch']:.1f} img/s (no bare loop)")
            continue
        for k, what in (("steps", "training steps only"), ("epoch", "whole epochs (+ validation, ckpt)")):
            b, o = m["bare"][k], m["fit"][k]
            print(f"  {label:<16}{what:<34}{b:>10.1f}{o:>10.1f}{o / b:>10.3f}")
        print(f"  {label:<16}fit: whole epochs / steps only {m['fit']['epoch'] / m['fit']['steps']:.3f} "
              f"(bare {m['bare']['epoch'] / m['bare']['steps']:.3f})")

    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    for mode, m in results.items():
        flops = flops_per_image(model(mode), datas[mode], mode, config(mode), dev, amp)
        steps, epoch = (m["fit"][k] * flops / 1e12 for k in ("steps", "epoch"))
        line = (f"{mode}: {flops / 1e9:.3f} GFLOP per training image (fwd+bwd); fit achieves {steps:.3f} TFLOP/s "
                f"in its steps, {epoch:.3f} over whole epochs")
        if peak:
            line += f"; MFU against {peak:g} TFLOP/s dense bf16: {steps / peak:.1%} (steps), {epoch / peak:.1%} (whole epochs)"
        print(line)


if __name__ == "__main__":
    main()
