"""What the classifiers of a planted world read: the objects' shape or the class grating (the cue).

A planted world's images carry their class twice, in the object's shape and in a faint grating
(core.data.planted). Its test images are rendered again three ways, from the world's own random streams
(the first way is checked byte for byte against the stored test images):

  with cue     the stored test images: the shape and the grating of the image's own class
  shape only   the same objects and clutter without the grating
  conflict     the same objects with the grating of another class (class k + 1 + i mod 9, a fixed phase stream)

and every classifier of the sweep is scored on each: its accuracy with the cue and on the shape alone, and
under conflict the share of images it gives the shape's class and the share it gives the grating's. A
model that reads the shape keeps its accuracy without the cue; one that reads the cue falls to chance
(1 / classes) and follows the grating under conflict. Means over each kind's models, with the range over
seeds.

    python benchmarks/cue_reliance.py --storage results --sweep calibration-planted1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout


def test_variants(cfg, stored, labels):
    """(shape-only images, conflicting images, the conflict's cue classes) of the world `cfg`'s test split;
    raises ValueError if the re-rendered images with their cue differ from `stored`."""
    import numpy as np

    from core.data.planted import cue_layer
    from core.data.synthetic import object_masks

    if not np.array_equal(object_masks(cfg, "test")[0], np.asarray(stored)):
        raise ValueError("the test images rendered again differ from the stored ones (another version of the world's code?)")
    plain = object_masks(cfg, "test", cue=False)[0]
    y = np.asarray(labels)
    other = (y + 1 + np.arange(len(y)) % (cfg.n_classes - 1)) % cfg.n_classes
    grating = cue_layer(np.random.default_rng(0), other, cfg.image_size, cfg.n_classes, 1.0)
    conflict = np.clip(np.rint(plain.astype(np.float32) + grating), 0, 255).astype(np.uint8)
    return plain, conflict, other


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True, type=Path, help="a sweep's --storage (lake/ and models/ inside)")
    p.add_argument("--sweep", help="the sweep (default: the latest in the lake)")
    args = p.parse_args(argv)
    if not (args.storage / "lake").is_dir():
        p.error(f"--storage {args.storage}: no lake/ folder there (a sweep's --storage?)")

    import numpy as np
    import polars as pl
    import torch

    from analysis.load import load
    from core.config import from_dict
    from core.data.canonical import ClassificationSet
    from core.data.synthetic import WorldConfig
    from core.training.inference import predict_logits
    from core.training.kinds import load_model

    torch.set_num_threads(2)
    lake = load(str(args.storage / "lake"), args.sweep)
    runs = lake.runs.filter((pl.col("status") == "ok") & pl.col("clean_accuracy").is_not_null()
                           & pl.col("clean_accuracy").is_not_nan())
    if runs.height == 0:
        print(f"sweep {lake.sweep}: no healthy classifier to score")
        return 1
    path = json.loads(runs["data"][0])["classification_path"]
    source = json.loads((Path(path) / "manifest.json").read_text()).get("source", {})
    if source.get("type") != "synthetic" or source.get("config", {}).get("planted") is None:
        print(f"sweep {lake.sweep}: {path} is not a planted synthetic world (no cue to read)")
        return 1
    cfg = from_dict(WorldConfig, source["config"], where=f"{path}/manifest.json")
    test = ClassificationSet.load(path)
    y = np.asarray(test.labels["test"])
    try:
        plain, conflict, other = test_variants(cfg, test.images["test"], y)
    except ValueError as e:
        print(f"{path}: {e}")
        return 1

    def predicted(model, x):
        return predict_logits(model, torch.from_numpy(x[:, None].copy()), amp=False).argmax(1).numpy()

    table: dict[str, list[tuple[float, float, float, float]]] = {}
    for r in runs.sort(["kind", "seed"]).iter_rows(named=True):
        model, _ = load_model(args.storage / "models" / r["run_id"])
        if not model.has_classifier:
            continue
        pc = predicted(model, conflict)
        row = (float(r["clean_accuracy"]), float((predicted(model, plain) == y).mean()), float((pc == y).mean()),
               float((pc == other).mean()))
        table.setdefault(r["kind"], []).append(row)
        print(f"  {r['run_id']} (seed {r['seed']}): with cue {row[0]:.3f}, shape only {row[1]:.3f}, "
              f"conflict: shape {row[2]:.3f}, cue {row[3]:.3f}", flush=True)
    print(f"sweep {lake.sweep}: planted {cfg.planted:g}, cue agreement {cfg.cue_agreement:g}, {len(y)} test images, "
          f"chance {1 / cfg.n_classes:.2f}; means over seeds [lowest, highest]")
    print(f"{'kind':14s}{'models':>7s}{'with cue':>22s}{'shape only':>22s}{'conflict: shape':>22s}{'conflict: cue':>22s}")
    for kind, rows in table.items():
        a = np.array(rows)
        cells = "".join(f"{m:>6.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(a.mean(0), a.min(0), a.max(0)))
        print(f"{kind:14s}{len(rows):>7d}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
