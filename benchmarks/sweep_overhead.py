"""Orchestration overhead: the same small grid through Ray Tune + Ray Train and in-process.

Trains the same Baseline models (smoke preset, N seeds, no TIN-TC) twice in one run: one after
another in this process with `core.training.kinds.run_kind`, and as a sweep through Ray Tune +
Ray Train (`sweeps/ratio_grid.py --kinds baseline`). Prints both wall times, their ratio, and the
orchestration seconds per trial (Tune's per-trial time minus the worker's own time in `run_kind`).

    python benchmarks/sweep_overhead.py [--seeds 4]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--preset", default="smoke")
    args = p.parse_args()
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        from core.presets import get_preset
        from core.training.kinds import load_sources, run_kind, tintc_source

        preset = get_preset(args.preset)
        from core.data.corruptions import ensure_tintc

        # shared inputs built once, outside both timings, where the sweep looks for them
        sources = load_sources(preset, d / "data", log=None)
        images, folder = tintc_source(preset, sources, d / "data")
        tintc = ensure_tintc(images, folder, seed=0, log=None, progress=False)
        t = time.perf_counter()
        fit_seconds = []
        for s in seeds:
            t1 = time.perf_counter()
            run_kind("baseline", preset, "", s, d / "inproc" / str(s), sources, tintc=tintc, log=None)
            fit_seconds.append(time.perf_counter() - t1)
        t_in = time.perf_counter() - t

        t = time.perf_counter()
        r = subprocess.run([sys.executable, str(ROOT / "sweeps" / "ratio_grid.py"), "--preset", args.preset, "--kinds", "baseline",
                            "--seeds", ",".join(map(str, seeds)), "--storage", str(d / "ray"), "--data-root", str(d / "data"),
                            "--quiet"], capture_output=True, text=True)
        t_ray = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"sweep failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        runs = pl.scan_parquet(str(d / "ray" / "lake" / "runs" / "**" / "*.parquet"), hive_partitioning=True).collect()
        train_ray = float(runs["train_seconds"].sum())
        train_in = sum(fit_seconds)
        print(f"{len(seeds)} Baseline models, preset {args.preset}:")
        print(f"  in-process, one after another: {t_in:.1f}s (fits {train_in:.1f}s)")
        print(f"  Ray Tune + Ray Train sweep:    {t_ray:.1f}s (training epochs {train_ray:.1f}s in total, 2 trials at a time)")
        print(f"  ratio sweep/in-process: {t_ray / t_in:.2f}; orchestration per trial: "
              f"{(t_ray - t_in) / len(seeds):.1f}s beyond the in-process cost (includes ray.init, ~5-13 s once)")


if __name__ == "__main__":
    main()
