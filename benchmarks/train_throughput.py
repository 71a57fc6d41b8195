"""Training throughput: `fit`'s training steps against a bare PyTorch loop, side by side.

Same model, batch size, data (uint8 on the device) and work per step (standardise, forward,
cross-entropy, backward, SGD step; no augmentation in either). Runs alternate between the two so
that drift on a shared machine hits both; prints the median images/s of each and their ratio.

    python benchmarks/train_throughput.py [--width 0.0625] [--images 2048] [--repeats 3] [--device auto]

It also counts the model's FLOPs per training image (forward + backward, torch's FlopCounterMode)
and, on a GPU, prints model FLOP utilisation: achieved FLOP/s over the device's dense bf16 peak
(`--peak-tflops`, default from the device name: H100/H200 989.4).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from core.data.synthetic import make_classification, world_config
from core.models import build_model
from core.training.config import TrainConfig
from core.training.fit import fit
from core.training.data import TrainData, as_u8, pixel_stats
from core.training.fit import resolve_device


def bare_loop(model, x_u8, y, batch, epochs, dev, amp) -> float:
    """images/s of a plain loop over the same tensors (first epoch excluded as warm-up, as for fit)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.75, weight_decay=5e-4)
    mean, std = model.pixel_mean, model.pixel_std
    model.train()
    n_steps = len(y) // batch
    gen = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen).to(dev)
        t0 = time.perf_counter()
        for s in range(n_steps):
            idx = perm[s * batch:(s + 1) * batch]
            x = (x_u8[idx].float() / 255.0 - mean) / std
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x).float()
            F.cross_entropy(logits, y[idx]).backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        rates.append(n_steps * batch / (time.perf_counter() - t0))
    return statistics.mean(rates[1:]) if len(rates) > 1 else rates[0]


PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1}


def train_flops_per_image(model, x_u8, y, batch, dev, amp) -> float:
    """FLOPs of one training step (forward + backward) divided by the batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    mean, std = model.pixel_mean, model.pixel_std
    x = (x_u8[:batch].float() / 255.0 - mean) / std
    counter = FlopCounterMode(display=False)
    with counter:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x).float()
        F.cross_entropy(logits, y[:batch]).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=1 / 16)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first of each is warm-up)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: from the GPU's name)")
    args = p.parse_args()
    dev = resolve_device(args.device)
    amp = dev.type == "cuda"
    per = max(1, args.images // 10)
    cls = make_classification(world_config("demo", n_classes=10, train_per_class=per, val_per_class=8, test_per_class=1))
    mean, std = pixel_stats(cls.images["train"])
    data = TrainData(cls.n_classes, {s: (as_u8(cls.images[s]), torch.as_tensor(np.array(cls.labels[s]))) for s in ("train", "val")})
    x_dev, y_dev = data.cls["train"][0].to(dev), data.cls["train"][1].to(dev)

    def model():
        torch.manual_seed(0)
        m = build_model("vgg19_bn_fc", cls.n_classes, 0, width=args.width)
        m.set_pixel_stats(mean, std)
        m.to(dev)
        if dev.type == "cuda":
            m.to(memory_format=torch.channels_last)
        return m

    cfg = TrainConfig(mode="classification", width=args.width, batch_size=args.batch, max_epochs=args.epochs,
                      augment=False, lr=0.01, device=str(dev), patience=10**6)
    bare, ours = [], []
    for r in range(args.repeats):
        b = bare_loop(model(), x_dev, y_dev, args.batch, args.epochs, dev, amp)
        res = fit(model(), data, cfg, log=None)
        o = statistics.mean(e["images_per_s"] for e in res.epochs[1:]) if len(res.epochs) > 1 else res.images_per_s
        bare.append(b)
        ours.append(o)
        print(f"repeat {r + 1}: bare {b:.1f} img/s, fit {o:.1f} img/s, ratio {o / b:.3f}")
    b, o = statistics.median(bare), statistics.median(ours)
    flops = train_flops_per_image(model(), x_dev, y_dev, args.batch, dev, amp)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device {dev} ({name}), vgg19_bn_fc width {args.width:g}, batch {args.batch}, {len(y_dev)} images: "
          f"bare {b:.1f} img/s, fit {o:.1f} img/s, fit/bare ratio {o / b:.3f}")
    print(f"model FLOPs per training image (fwd+bwd): {flops / 1e9:.3f} GFLOP; achieved: fit "
          f"{o * flops / 1e12:.2f} TFLOP/s, bare {b * flops / 1e12:.2f} TFLOP/s")
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    if peak:
        print(f"model FLOP utilisation against {peak:g} TFLOP/s dense bf16: fit {o * flops / 1e12 / peak:.1%}, "
              f"bare {b * flops / 1e12 / peak:.1%}")


if __name__ == "__main__":
    main()
