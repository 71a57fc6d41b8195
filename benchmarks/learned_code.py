"""Whether a co-trained model's conv3_1 keeps the planted world's shape code when the image is corrupted.

In a planted world (core.data.planted) the shape units respond to the object itself, so a corruption of
the displayed image leaves their true rates unchanged: the invariant code a robust model could learn.
MTL-True co-trains on those rates, MTL-Monkey on a Monkey Predictor's estimate of them from the
simulated recording; both learn to predict the code from clean images only. This
prints, for every such model of a sweep and every corruption (severity 3 by default), the mean over shape
units of the correlation across test images between the model's predicted rates and the true rates of the
clean image, so that "the model encodes what the simulated V1 encodes" can be checked where it matters:
on the corrupted images the robustness score is measured on. Means over each kind's models.

    python benchmarks/learned_code.py --storage results --sweep calibration-planted1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

READOUT_KINDS = ("mtl_true", "mtl_monkey")


def unit_correlations(pred, true):
    """Per-unit Pearson correlation across images of two (N, K) arrays (nan for a constant unit)."""
    import numpy as np

    a, b = pred - pred.mean(0), true - true.mean(0)
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(0) / den, np.nan)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True, type=Path, help="a sweep's --storage (lake/ and models/ inside)")
    p.add_argument("--sweep", help="the sweep (default: the latest in the lake)")
    p.add_argument("--data-root", default="data", help="where the sweep's TIN-TC cache lies (default ./data)")
    p.add_argument("--severity", type=int, default=3, choices=range(1, 6), help="corruption severity (default 3)")
    p.add_argument("--images", type=int, default=1000, help="test images, at most the sweep's (default 1000)")
    args = p.parse_args(argv)
    if args.images < 2:
        p.error("--images: expected at least 2 (a correlation needs two images)")
    if not (args.storage / "lake").is_dir():
        p.error(f"--storage {args.storage}: no lake/ folder there (a sweep's --storage?)")

    import numpy as np
    import polars as pl
    import torch

    from analysis.load import load
    from core.data import NeuralSet
    from core.data.corruptions import CORRUPTIONS, run_test_sets
    from core.errors import ConfigError
    from core.training.inference import predict_rates
    from core.training.kinds import load_model

    torch.set_num_threads(2)
    lake = load(str(args.storage / "lake"), args.sweep)
    runs = lake.runs.filter((pl.col("status") == "ok") & pl.col("kind").is_in(READOUT_KINDS))
    if runs.height == 0:
        print(f"sweep {lake.sweep}: no healthy {' or '.join(READOUT_KINDS)} model to read")
        return 1
    info = json.loads(runs["data"][0])
    neural = NeuralSet.load(info["neural_path"])
    shape_file = Path(info["neural_path"]) / "v1_n_shape.npy"     # the population's parameters, beside it
    n_shape = int(np.load(shape_file).reshape(-1)[0]) if shape_file.is_file() else 0
    if "cls_true_rates_test" not in neural.arrays:
        print(f"sweep {lake.sweep}: not a planted world ({info['neural_path']})")
        return 1
    if n_shape == 0:
        print(f"sweep {lake.sweep}: a planted world without shape units (planted at 0): no shape code to read")
        return 1
    try:
        clean, tintc = run_test_sets(info, args.data_root, args.images)
    except ConfigError as e:
        print(e)
        return 1
    true = np.asarray(neural.arrays["cls_true_rates_test"], np.float32)[: len(clean), :n_shape]
    conditions = ["clean", *CORRUPTIONS]
    table: dict[str, dict[str, list[float]]] = {}
    for r in runs.sort(["kind", "seed"]).iter_rows(named=True):
        model, _ = load_model(args.storage / "models" / r["run_id"])
        row = table.setdefault(r["kind"], {c: [] for c in conditions})
        for c in conditions:
            x = clean if c == "clean" else np.asarray(tintc[(c, args.severity)])[: len(clean)]
            pred = predict_rates(model, torch.from_numpy(x[:, None].copy()), amp=False).numpy()[:, :n_shape]
            row[c].append(float(np.nanmean(unit_correlations(pred, true))))
        print(f"  {r['run_id']} (seed {r['seed']}): clean {row['clean'][-1]:.2f}, mean over corruptions "
              f"{np.mean([row[c][-1] for c in CORRUPTIONS]):.2f}", flush=True)
    kinds = list(table)
    print(f"sweep {lake.sweep}: {n_shape} shape units, {len(clean)} test images, severity {args.severity}; "
          "correlation of the predicted rates with the true rates of the clean image, mean over shape units")
    print(f"{'condition':18s}" + "".join(f"{k:>12s}" for k in kinds))
    for c in conditions:
        print(f"{c:18s}" + "".join(f"{np.mean(table[k][c]):12.2f}" for k in kinds))
    print(f"{'kept (mean/clean)':18s}" + "".join(
        f"{np.mean([np.mean(table[k][c]) for c in CORRUPTIONS]) / np.mean(table[k]['clean']):12.2f}" for k in kinds))
    print("models per kind: " + ", ".join(f"{k} {len(table[k]['clean'])}" for k in kinds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
