"""Whether a CPU fit's arithmetic depends on the machine: the same training steps of a demo-sized model
(VGG-11-BN at width 1/8, channels_last, SGD with momentum 0.75 at lr 0.1 as the demo, one fixed batch of
32 random 64x64 images and labels) run in fresh processes under different settings and compared with
the first:

  1 thread                 the sweeps' default on CPU (one torch thread per model, models run side by side)
  2 threads                another intra-op thread count (what `python -m core.training --threads 2` does)
  1 thread, AVX2 kernels   oneDNN's and ATen's kernels limited to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2,
                           ATEN_CPU_CAPABILITY=avx2), as on a CPU without AVX-512; MKL, numpy and the
                           GPU libraries are not pinned by these
  1 thread, repeated       the reference setting again: run-to-run determinism

For each setting: the CPU capability ATen ran with; the largest difference from the reference in the
first forward pass's logits and the first step's gradients; after --steps steps, the largest difference
in the trained parameters (BatchNorm's running statistics left out) and its size relative to them
(||difference|| / ||parameters||); whether the parameters are bit-identical to the reference's in every
round; and the training speed over the steps after the first two (images/s, the median over --repeats
rounds whose order rotates, and its ratio to the reference's). Training is chaotic, so a difference in
the first step grows over a fit into the spread of another seed (docs/benchmarks.md, "Precision").

    python benchmarks/arithmetic_drift.py            # about 80 s on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = [
    ("1 thread", 1, {}),
    ("2 threads", 2, {}),
    ("1 thread, AVX2 kernels", 1, {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}),
    ("1 thread, repeated", 1, {}),
]


def child(threads: int, steps: int, out: str) -> None:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    from core.models.vgg import vgg11_bn_fc

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = vgg11_bn_fc(n_classes=10, in_chans=1, width=1 / 8, dropout=0.0).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.75, weight_decay=5e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 64, 64, generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), generator=g)
    first, start = {}, None
    for step in range(steps):
        if step == 2:
            start = time.perf_counter()
        opt.zero_grad()
        logits = m(x)
        F.cross_entropy(logits, y).backward()
        if step == 0:
            first = {"logits": logits.detach().clone(),
                     "grads": {n: p.grad.detach().clone() for n, p in m.named_parameters()}}
        opt.step()
    speed = (steps - 2) * len(x) / (time.perf_counter() - start)
    torch.save({**first, "params": {n: p.detach().clone() for n, p in m.named_parameters()}, "speed": speed,
                "capability": torch.backends.cpu.get_cpu_capability()}, out)


def largest(a, b) -> float:
    if isinstance(a, dict):
        return max(largest(a[k], b[k]) for k in a)
    return float((a.double() - b.double()).abs().max())


def relative(a: dict, b: dict) -> float:
    """||a - b|| / ||a|| over all tensors together."""
    import torch

    num = sum(float(torch.sum((a[k].double() - b[k].double()) ** 2)) for k in a)
    den = sum(float(torch.sum(a[k].double() ** 2)) for k in a)
    return (num / den) ** 0.5


def run_child(tmp: str, index: int, rep: int, steps: int) -> dict:
    import torch

    name, threads, env = SETTINGS[index]
    out = str(Path(tmp) / f"{rep}-{index}.pt")
    done = subprocess.run([sys.executable, __file__, "--steps", str(steps), "--child", str(threads), out],
                          env={**os.environ, "OMP_NUM_THREADS": str(threads), **env}, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"arithmetic_drift: the run '{name}' failed (exit {done.returncode}): {tail}")
    return torch.load(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="training steps per setting (default 30; at least 3)")
    p.add_argument("--repeats", type=int, default=3, help="rounds over the settings; speeds are medians (default 3, "
                   "at least 3)")
    p.add_argument("--child", nargs=2, metavar=("THREADS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.steps, args.child[1])
        return 0
    if args.steps < 3:
        p.error("--steps: expected at least 3 (the first two are warm-up for the speed)")
    if args.repeats < 3:
        p.error("--repeats: expected at least 3")
    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.steps} steps "
          f"per setting, each in a fresh process, {args.repeats} rounds", flush=True)
    n = len(SETTINGS)
    runs: dict[int, list[dict]] = {i: [] for i in range(n)}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):            # the order rotates: a noisy machine hits every setting alike
            for k in range(n):
                i = (k + rep) % n
                runs[i].append(run_child(tmp, i, rep, args.steps))
    ref = runs[0][0]
    ref_speed = statistics.median(r["speed"] for r in runs[0])
    print("against '1 thread' (first round; bit-identical: in every round):")
    print(f"{'setting':<24}{'capability':>11}{'first logits':>14}{'first grads':>13}{'params after':>14}"
          f"{'relative':>10}  {'bit-identical':<14}{'images/s':>9}{'ratio':>7}")
    for i, (name, _, _) in enumerate(SETTINGS):
        r = runs[i][0]
        identical = all(largest(ref["params"], x["params"]) == 0.0 for x in runs[i])
        speed = statistics.median(x["speed"] for x in runs[i])
        print(f"{name:<24}{r['capability']:>11}{largest(ref['logits'], r['logits']):>14.1e}"
              f"{largest(ref['grads'], r['grads']):>13.1e}{largest(ref['params'], r['params']):>14.1e}"
              f"{relative(ref['params'], r['params']):>10.3f}  {'yes' if identical else 'no':<14}"
              f"{speed:>9.0f}{speed / ref_speed:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
