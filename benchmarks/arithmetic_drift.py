"""Whether a CPU fit's arithmetic depends on the machine: the same training steps of the demo's model
(VGG-11-BN at width 1/8, channels_last, SGD with momentum, one fixed batch of random 64x64 images) run
in fresh processes under different settings, side by side, and compared with the first setting:

  1 thread                 the sweeps' default on CPU (one torch thread per model, models run side by side)
  2 threads                another intra-op thread count (what `python -m core.training --threads 2` does)
  1 thread, AVX2 kernels   oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2):
                           what a machine without AVX-512 runs
  1 thread, repeated       the reference setting again: run-to-run determinism

For each setting: the largest difference from the reference in the first forward pass's logits, in the
first step's gradients and in the weights after --steps steps, whether the weights are bit-identical, and
the training speed over the steps after the first two (images/s, the median of --repeats alternating
rounds, and its ratio to the reference's): the price of pinning the kernels for every machine.
Training is chaotic, so a difference in the last bits grows over a fit into the spread of another seed
(docs/benchmarks.md, "Precision"); only bit-identical arithmetic gives the same model.

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
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
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
    speed = (steps - 2) * len(x) / (time.perf_counter() - start) if start is not None else float("nan")
    torch.save({**first, "weights": m.state_dict(), "speed": speed}, out)


def largest(a, b) -> float:
    if isinstance(a, dict):
        return max(largest(a[k], b[k]) for k in a)
    return float((a.double() - b.double()).abs().max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="training steps per setting (default 30; at least 3)")
    p.add_argument("--repeats", type=int, default=3, help="rounds over the settings; speeds are medians (default 3)")
    p.add_argument("--child", nargs=2, metavar=("THREADS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.steps, args.child[1])
        return 0
    if args.steps < 3:
        p.error("--steps: expected at least 3 (the first two are warm-up for the speed)")
    if args.repeats < 1:
        p.error("--repeats: expected at least 1")
    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.steps} steps per setting, each in a fresh process, {args.repeats} rounds", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        results, speeds = {}, {name: [] for name, _, _ in SETTINGS}
        for rep in range(args.repeats):            # the settings alternate: a noisy machine hits all alike
            for name, threads, env in SETTINGS:
                out = str(Path(tmp) / f"{rep}-{len(results)}.pt")
                run_env = {**os.environ, "OMP_NUM_THREADS": str(threads), **env}
                subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", str(threads), out],
                               env=run_env, check=True)
                r = torch.load(out)
                speeds[name].append(r.pop("speed"))
                results.setdefault(name, r)
        ref_name = SETTINGS[0][0]
        ref, ref_speed = results[ref_name], statistics.median(speeds[ref_name])
        rows = []
        for name, r in results.items():
            w = largest(ref["weights"], r["weights"])
            speed = statistics.median(speeds[name])
            rows.append({"setting": name, "logits": largest(ref["logits"], r["logits"]),
                         "gradients": largest(ref["grads"], r["grads"]), "weights": w, "identical": w == 0.0,
                         "speed": speed, "ratio": speed / ref_speed})
    print(f"largest absolute difference from '{ref_name}' (and training speed):")
    print(f"{'setting':<26}{'first logits':>14}{'first gradients':>17}{'weights after':>15}  bit-identical"
          f"{'images/s':>10}{'ratio':>7}")
    for r in rows:
        print(f"{r['setting']:<26}{r['logits']:>14.2e}{r['gradients']:>17.2e}{r['weights']:>15.2e}  "
              f"{'yes' if r['identical'] else 'no':<13}{r['speed']:>10.0f}{r['ratio']:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
