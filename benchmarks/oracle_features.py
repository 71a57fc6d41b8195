"""What the Oracle's conv3_1 does under each corruption, against the Baseline of the same seed.

The Oracle trains on the TIN-TC corruption kinds with a cosine consistency between each clean image's
conv3_1 map and its corrupted copy's: that fixes the direction of the map, not its size. For every
Oracle and Baseline of a sweep (paired by seed) and every corruption (severity 3 by default) this prints,
over the test images: the mean cosine between the clean and the corrupted conv3_1 map, the mean ratio of
their norms (corrupted / clean), and each model's accuracy on that corruption (from the lake), so that a
corruption on which the Oracle is less robust than the Baseline can be read beside what happened to its
features.

    python benchmarks/oracle_features.py --storage results-controls [--sweep controls] [--severity 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout


def features(model, images_u8, batch: int = 256):
    """conv3_1 maps (N, C*H*W) of uint8 images (N, H, W), eval mode, on the CPU."""
    import torch

    out = []
    with torch.no_grad():
        for a in range(0, len(images_u8), batch):
            x = model.prep(torch.from_numpy(images_u8[a:a + batch].copy())[:, None])
            out.append(model.features(x).flatten(1))
    return torch.cat(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True, type=Path, help="a sweep's --storage (lake/ and models/ inside)")
    p.add_argument("--sweep", help="the sweep (default: the latest in the lake)")
    p.add_argument("--data-root", default="data", help="where the sweep's TIN-TC cache lies (default ./data)")
    p.add_argument("--severity", type=int, default=3, help="corruption severity (default 3)")
    p.add_argument("--images", type=int, default=500, help="test images (default 500)")
    args = p.parse_args()

    import numpy as np
    import polars as pl
    import torch
    import torch.nn.functional as F

    from analysis.load import load
    from core.data.corruptions import CORRUPTIONS, run_test_sets
    from core.errors import ConfigError
    from core.training.kinds import load_model

    torch.set_num_threads(2)
    lake = load(str(args.storage / "lake"), args.sweep)
    runs = lake.runs.filter(pl.col("status") == "ok")
    pairs = []
    for seed in sorted(set(runs.filter(pl.col("kind") == "oracle")["seed"].to_list())):
        ids = {k: runs.filter((pl.col("kind") == k) & (pl.col("seed") == seed))["run_id"].to_list() for k in ("baseline", "oracle")}
        if ids["baseline"] and ids["oracle"]:
            pairs.append((seed, ids["baseline"][0], ids["oracle"][0]))
    if not pairs:
        print("no Oracle with a Baseline of the same seed in this sweep")
        return 1
    import json

    try:
        clean, tintc = run_test_sets(json.loads(runs.filter(pl.col("kind") == "oracle")["data"][0]), args.data_root,
                                     args.images)
    except ConfigError as e:
        print(e)
        return 1
    acc = lake.acc.filter(pl.col("severity") == args.severity)
    print(f"sweep {lake.sweep}: {len(pairs)} seed(s), {len(clean)} test images, severity {args.severity}")
    print(f"{'corruption':18s} {'cos B':>6s} {'cos O':>6s} {'norm B':>7s} {'norm O':>7s} {'acc B':>6s} {'acc O':>6s}")
    rows = {c: [] for c in CORRUPTIONS}
    for seed, b_id, o_id in pairs:
        models = {k: load_model(args.storage / "models" / rid)[0] for k, rid in (("B", b_id), ("O", o_id))}
        f0 = {k: features(m, clean) for k, m in models.items()}
        for c in CORRUPTIONS:
            xc = np.asarray(tintc[(c, args.severity)])[: len(clean)]
            r = []
            for k, m in models.items():
                f1 = features(m, xc)
                r += [float(F.cosine_similarity(f0[k], f1, dim=1).mean()),
                      float((f1.norm(dim=1) / f0[k].norm(dim=1).clamp_min(1e-8)).mean())]
            a = {k: acc.filter((pl.col("run_id") == rid) & (pl.col("corruption") == c))["accuracy"].to_list()
                 for k, rid in (("B", b_id), ("O", o_id))}
            rows[c].append(r + [a["B"][0] if a["B"] else float("nan"), a["O"][0] if a["O"] else float("nan")])
    for c, r in rows.items():
        m = np.mean(np.array(r), 0)
        print(f"{c:18s} {m[0]:6.3f} {m[2]:6.3f} {m[1]:7.3f} {m[3]:7.3f} {m[4]:6.3f} {m[5]:6.3f}")
    print("cos: mean cosine of the clean and corrupted conv3_1 maps; norm: mean ratio of their norms "
          "(corrupted / clean); acc: accuracy on the corruption at this severity; B Baseline, O Oracle, "
          "means over seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
