"""Synthetic-world generation speed: images/s for the classification set and the simulated recording.

    python benchmarks/synth_speed.py [--preset demo]
"""

import argparse
import time

from core.data.synthetic import make_classification, make_neural, world_config


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="demo")
    args = p.parse_args()
    cfg = world_config(args.preset)
    t = time.perf_counter()
    c = make_classification(cfg)
    t_cls = time.perf_counter() - t
    t = time.perf_counter()
    n, _ = make_neural(cfg)
    t_neu = time.perf_counter() - t
    n_cls = sum(len(v) for v in c.labels.values())
    n_neu = len(n.images)
    print(f"preset {args.preset}: classification {n_cls} images in {t_cls:.2f}s ({n_cls / t_cls:.0f}/s); "
          f"neural {n_neu} images + {cfg.n_neurons} neurons in {t_neu:.2f}s ({n_neu / t_neu:.0f}/s); "
          f"total {t_cls + t_neu:.2f}s")


if __name__ == "__main__":
    main()
