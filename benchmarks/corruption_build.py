"""TIN-TC build: parallel efficiency, and cached evaluation against corrupting on the fly.

1. Build throughput (source images/s, all 70 conditions each) with one process and with all
   cores, on the same images in one run; parallel efficiency = speed-up / cores (goal >= 0.9).
2. Evaluating one model on all 70 conditions: from the cached set, against corrupting the images
   on the fly as the authors did (with the same number of processes for the corruption work);
   printed as a speed ratio (goal >= 10x).

    python benchmarks/corruption_build.py [--images 48] [--workers N] [--width 0.0625] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core.data import corruptions as C
from core.data.synthetic import make_classification, world_config
from core.evaluate import classification_records
from core.models import build_model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--width", type=float, default=1 / 16)
    p.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda)")
    args = p.parse_args()
    cls = make_classification(world_config("demo"))
    images = np.asarray(cls.images["test"][: args.images])
    labels = np.asarray(cls.labels["test"][: args.images])
    chunk = max(1, args.images // (4 * args.workers))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t = time.perf_counter()
        C.build_tintc(images, d / "one", workers=1, chunk=chunk, progress=False)
        t_one = time.perf_counter() - t
        t = time.perf_counter()
        C.build_tintc(images, d / "all", workers=args.workers, chunk=chunk, progress=False)
        t_all = time.perf_counter() - t
        same = all((d / "one" / C._file(*cs)).read_bytes() == (d / "all" / C._file(*cs)).read_bytes() for cs in C.CONDITIONS)
        speedup = t_one / t_all
        print(f"build: 1 process {args.images / t_one:.2f} images/s, {args.workers} processes {args.images / t_all:.2f} images/s; "
              f"speed-up {speedup:.2f}, parallel efficiency {speedup / args.workers:.3f} (identical bytes: {same})")

        torch.manual_seed(0)
        model = build_model("vgg19_bn_fc", cls.n_classes, 0, width=args.width).eval().to(args.device)
        t = time.perf_counter()
        cached = C.load_tintc(d / "all")
        acc_cached = classification_records(model, images, labels, cached)[1]
        t_cached = time.perf_counter() - t
        t = time.perf_counter()
        C.build_tintc(images, d / "fly", workers=args.workers, chunk=chunk, progress=False)  # the corruption work
        acc_fly = classification_records(model, images, labels, C.load_tintc(d / "fly"))[1]
        t_fly = time.perf_counter() - t
        assert [r["accuracy"] for r in acc_cached] == [r["accuracy"] for r in acc_fly]
        print(f"evaluate one model on 70 conditions x {args.images} images: cached {t_cached:.2f}s, "
              f"on the fly {t_fly:.2f}s; cached is {t_fly / t_cached:.1f}x faster")
        # the ratio is 1 + corruption time / model time: bounded by how fast the model is
        print(f"breakdown: corruption {t_fly - t_cached:.2f}s, model inference {t_cached:.2f}s "
              f"({71 * args.images / t_cached:.0f} images/s on {next(model.parameters()).device}); "
              f"the ratio grows with model speed (GPU) and is ~1 + corruption/inference")


if __name__ == "__main__":
    main()
