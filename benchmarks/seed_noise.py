"""How noisy is the instrument? Seed-to-seed noise of robustness at a preset's scale, and the seeds it takes.

Trains k seeds of the Baseline, MTL-Shuffled and MTL-Monkey (with their Monkey Predictors) through the
main job (`sweeps/ratio_grid.py --kinds ... --seeds 0..k-1`, one ratio), then reads the lake and prints:
- per kind: robustness of each model against the mean of the Baselines (the paper's score, one model at
  a time), the s.d. over seeds of its ln (sigma), and the s.d. of clean accuracy;
- per co-trained kind, paired by seed (analysis.precision): the mean and s.d. over seeds of
  d_s = ln(robustness against the Baseline of the same seed), and the image term (the s.d. of the
  mean that comes from the test images, common to all seeds);
- the seeds per arm a comparison needs for an effect of +14% (the paper's MTL-Monkey) at 80% power,
  two-sided 5%: unpaired from sigma, paired from the s.d. of d_s and the image term.
A `summary.json` beside the lake keeps the figures.

    python benchmarks/seed_noise.py --seeds 8                       # about 25-35 minutes on 2 cores (demo)
    python benchmarks/seed_noise.py --analyse /path/to/storage      # figures of a lake that exists
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

EFFECT = 1.14      # the paper's MTL-Monkey: 1.141 x Baseline
KINDS = ("baseline", "monkey_predictor", "mtl_shuffled", "mtl_monkey")


def seeds_needed(sd: float, image_var: float = 0.0, effect: float = EFFECT) -> float:
    """Seeds for a two-sided 5% test at 80% power of ln(effect), from the per-seed s.d. of the compared quantity
    and the variance of the mean that does not shrink with seeds (the test images): analysis.precision.seeds_for,
    the count at which the run's own smallest detectable effect reaches it; infinite where the images alone are
    too few or more than 1,000 seeds would be needed."""
    from analysis.precision import seeds_for

    return seeds_for(sd * sd, image_var, math.log(effect))


def analyse(storage: Path, sweep: str | None = None, n_boot: int = 250) -> dict:
    import numpy as np
    import polars as pl

    from analysis import bootstrap as bs
    from analysis.precision import comparisons, overall
    from analysis.load import load
    from analysis.scores import model_table

    lake = load(str(storage), sweep)
    ok = lake.runs.filter(pl.col("status") == "ok")
    models = model_table(ok, lake.acc.filter(pl.col("run_id").is_in(ok["run_id"].implode())))
    cor = bs.correctness(lake.preds, ok.filter(pl.col("kind") != "monkey_predictor"))
    table, _ = comparisons(cor, n_boot=n_boot)
    out = {"sweep": lake.sweep, "n_images": int(len(cor.images)), "kinds": {}}
    for kind in ("baseline", "mtl_shuffled", "mtl_monkey", "mtl_oracle", "oracle"):
        m = models.filter(pl.col("kind") == kind)
        if m.is_empty():
            continue
        ln = np.log(m["robustness"].to_numpy() / 100)
        acc = m["clean_accuracy"].to_numpy()
        row = {"seeds": int(m.height), "robustness_mean": float(m["robustness"].mean()),
               "sigma_ln_robustness": float(ln.std(ddof=1)) if m.height > 1 else math.nan,
               "clean_accuracy_mean": float(acc.mean()), "clean_accuracy_sd": float(acc.std(ddof=1)) if m.height > 1 else math.nan}
        # per arm, unpaired: the difference of two arms' means has twice one arm's variance
        row["seeds_needed_unpaired"] = seeds_needed(math.sqrt(2) * row["sigma_ln_robustness"]) if m.height > 1 else math.nan
        for ref in ("baseline", "mtl_shuffled"):
            if ref == kind:
                continue
            r = overall(table, kind, ref)
            if r is None:
                continue
            d_sd, img = r["seed_sd"], r["image_sd"]
            row[f"vs_{ref}"] = {"estimate": r["estimate"], "low": r["low"], "high": r["high"], "paired_sd": d_sd,
                                "image_sd": img, "mde_pct": r["mde"], "n_seeds": r["n_seeds"],
                                "seeds_needed_paired": seeds_needed(d_sd, img * img)}
        out["kinds"][kind] = row
    return out


def show(res: dict) -> str:
    lines = [f"sweep {res['sweep']}: {res['n_images']} test images",
             f"{'kind':14s} {'seeds':>5s} {'robust.':>8s} {'sigma ln':>9s} {'acc (sd)':>14s} {'seeds for +14%':>15s}"]
    for kind, r in res["kinds"].items():
        lines.append(f"{kind:14s} {r['seeds']:5d} {r['robustness_mean']:8.1f} {r['sigma_ln_robustness']:9.3f} "
                     f"{r['clean_accuracy_mean']:7.3f} ({r['clean_accuracy_sd']:.3f}) {r['seeds_needed_unpaired']:15.0f}")
    lines.append("paired by seed (d_s = ln robustness against the reference of the same seed):")
    for kind, r in res["kinds"].items():
        for ref in ("baseline", "mtl_shuffled"):
            c = r.get(f"vs_{ref}")
            if c:
                lines.append(f"  {kind} vs {ref}: {c['estimate']:.1f} [{c['low']:.1f}, {c['high']:.1f}] over {c['n_seeds']} seeds; "
                             f"s.d. of d_s {c['paired_sd']:.3f}, image term {c['image_sd']:.3f}; smallest detectable "
                             f"effect {c['mde_pct']:.1f}%; seeds for +14%: {c['seeds_needed_paired']:.0f}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=8, help="seeds per kind, 0..k-1 (default 8)")
    p.add_argument("--preset", default="demo", help="training preset (default demo)")
    p.add_argument("--ratio", default="2:1", help="the co-trained kinds' ratio (default 2:1, the demo's)")
    p.add_argument("--storage", type=Path, default=Path("results-seed-noise"), help="where the sweep writes (default "
                   "./results-seed-noise; a re-run trains only what is missing)")
    p.add_argument("--data-root", default="data", help="data and caches (default ./data)")
    p.add_argument("--set", default="", help="training overrides passed to the sweep (its --set)")
    p.add_argument("--analyse", type=Path, metavar="STORAGE", help="only analyse the lake of an existing storage")
    p.add_argument("--sweep", help="with --analyse: the sweep to read (default the latest)")
    args = p.parse_args()
    storage = args.analyse
    if storage is None:
        cmd = [sys.executable, str(ROOT / "sweeps" / "ratio_grid.py"), "--preset", args.preset, "--kinds", ",".join(KINDS),
               "--seeds", ",".join(map(str, range(args.seeds))), "--ratios", args.ratio, "--storage", str(args.storage),
               "--data-root", args.data_root, "--no-report", "--quiet"] + (["--set", args.set] if args.set else [])
        print("running:", " ".join(cmd), flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd)
        print(f"sweep finished in {time.time() - t0:.0f} s (exit {rc})", flush=True)
        if rc != 0:
            return rc
        storage = args.storage
    res = analyse(storage, args.sweep)
    print(show(res))
    (Path(storage) / "seed_noise.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
