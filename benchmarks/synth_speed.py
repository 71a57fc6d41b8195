"""Synthetic-world generation speed: the classification set against the simulated recording.

The two parts of `core.data.synthetic.make_world`, each timed on its own in one process:
  classification  `make_classification`: train/val/test images rendered with their labels
  neural          `make_neural`: its own image pool rendered, the V1 population sampled and
                  calibrated, rates and Poisson trials (one per training image, repeats per test image)
Images/s counts rendered images (the neural part does more work per image: the V1 model).
Same start-up and warm-up on both sides: one process; before any timing each part runs once on a
tiny world of the same preset (a few images per split). Then the parts alternate (classification,
neural, classification, neural, ...), --repeats times each (at least 3); prints the median seconds
and images/s of each, their ratio, and the world's total (the sum of the medians).

    python benchmarks/synth_speed.py                     # demo world, about 15 s
    python benchmarks/synth_speed.py --preset tin_like   # the Tiny-ImageNet-sized world (minutes per repeat)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from core.data.synthetic import WORLD_PRESETS, make_classification, make_neural, world_config  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="demo", help=f"world preset: {', '.join(WORLD_PRESETS)} (default demo)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per part, at least 3 (default 3)")
    args = p.parse_args()
    if args.repeats < 3:
        p.error("--repeats: at least 3")
    cfg = world_config(args.preset)
    tiny = world_config(args.preset, train_per_class=2, val_per_class=1, test_per_class=1,
                        neural_train_images=16, neural_test_images=2)
    make_classification(tiny)   # warm-up, untimed
    make_neural(tiny)
    t, n = {"classification": [], "neural": []}, {}
    for r in range(args.repeats):
        t0 = time.perf_counter()
        c = make_classification(cfg)
        t["classification"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        neural, _ = make_neural(cfg)
        t["neural"].append(time.perf_counter() - t0)
        n = {"classification": sum(len(v) for v in c.labels.values()), "neural": len(neural.images)}
        del c, neural
        print(f"  repeat {r + 1}: classification {t['classification'][-1]:.2f}s, neural {t['neural'][-1]:.2f}s")
    tc, tn = statistics.median(t["classification"]), statistics.median(t["neural"])
    n_cls, n_neu = n["classification"], n["neural"]
    print(f"preset {args.preset}, medians of {args.repeats} alternating repeats: classification {n_cls} images in "
          f"{tc:.2f}s ({n_cls / tc:.0f} images/s); neural {n_neu} images + {cfg.n_neurons} neurons in {tn:.2f}s "
          f"({n_neu / tn:.0f} images/s); ratio neural/classification images/s {(n_neu / tn) / (n_cls / tc):.2f}; "
          f"world total {tc + tn:.2f}s")


if __name__ == "__main__":
    main()
