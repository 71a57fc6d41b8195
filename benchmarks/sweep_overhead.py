"""Orchestration overhead: the same Baseline models through Ray Tune + Ray Train and in-process.

Both sides do the same work in the same process, after the same start-up and warm-up:
  in-process  the data as a single-model run loads them (`load_sources`, `ensure_tintc` on the
              cache, hashes verified), then `core.training.kinds.run_kind("baseline", ...)` for each
              seed, one after another: training, evaluation on TIN-TC, the attacks
  Ray         `sweeps/ratio_grid.py --kinds baseline --no-report --quiet` called as a function
              (`resolve_common` + `run_sweep`): its data preparation, one Tune trial + Ray Train run
              per seed whose worker calls the same `run_kind`, the lake records, the summary
Start-up, paid once and printed apart, not in the ratio: the interpreter and imports (both sides
share them) and `ray.init` (a sweep pays it once, whatever its size). Warm-up, untimed: one model on
each side (the first Tune/Train use in the driver, the first fit in this process). The synthetic
world and its TIN-TC cache are built once, before all of it, in a folder both sides read.
Same resources: every model trains with one torch thread (what a sweep trial gets), and the
sweep runs --max-concurrent trials at a time (default 1, like the in-process side; above 1 the
sweep overlaps trials, which the in-process side cannot). Repeats alternate in-process, Ray,
in-process, Ray, ...; each Ray repeat writes to fresh storage (a sweep skips models already in
its lake). Prints the medians, their ratio and the orchestration seconds per model.

    python benchmarks/sweep_overhead.py                  # 1 model per side, 3 repeats: about 2 minutes on 2 cores
    python benchmarks/sweep_overhead.py --seeds 4 --max-concurrent 2
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

from core.data.corruptions import ensure_tintc  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.training.kinds import load_sources, run_kind, tintc_source  # noqa: E402
from sweeps import ratio_grid  # noqa: E402
from sweeps.cli import resolve_common, start_ray  # noqa: E402
from sweeps.runner import run_sweep  # noqa: E402

T_IMPORTS = time.perf_counter() - T_START


def in_process(preset, data_root: Path, out: Path, seeds: list[int]) -> float:
    """Wall seconds of the in-process side: data as a single-model run loads them, then each model."""
    t = time.perf_counter()
    sources = load_sources(preset, data_root, log=None)
    images, folder = tintc_source(preset, sources, data_root)
    tintc = ensure_tintc(images, folder, seed=0, log=None, progress=False)
    for s in seeds:
        run_kind("baseline", preset, "", s, out / str(s), sources, data_root=data_root, tintc=tintc, log=None,
                 overrides={"threads": 1, "device": "cpu"})
    return time.perf_counter() - t


def ray_sweep(preset_name: str, data_root: Path, storage: Path, seeds: list[int], max_concurrent: int) -> float:
    """Wall seconds of the same models as a sweep (its printed summary swallowed)."""
    args = ratio_grid.parser().parse_args([
        "--preset", preset_name, "--kinds", "baseline", "--seeds", ",".join(map(str, seeds)), "--storage", str(storage),
        "--data-root", str(data_root), "--device", "cpu", "--max-concurrent", str(max_concurrent), "--no-report", "--quiet"])
    t = time.perf_counter()
    spec, ray_kwargs = resolve_common(args, kinds=args.kinds)
    with contextlib.redirect_stdout(io.StringIO()):
        run_sweep(spec, ray_kwargs, args)
    return time.perf_counter() - t


def lake_status(storage: Path) -> list[str]:
    import polars as pl

    from core.results import read_table

    runs = pl.from_arrow(read_table(str(storage / "lake"), "runs"))
    return runs["status"].to_list() if runs.height else []


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1, help="Baseline models per repeat and side (default 1)")
    p.add_argument("--preset", default="smoke", help="training preset (default smoke)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per side, at least 3 (default 3)")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials the sweep runs at once (default 1)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    args = p.parse_args()
    if args.repeats < 3 or args.seeds < 1 or args.max_concurrent < 1:
        p.error("--repeats at least 3, --seeds and --max-concurrent at least 1")
    preset = get_preset(args.preset)
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        data_root = d / "data"
        # shared inputs, built once before any timing, where both sides look for them
        sources = load_sources(preset, data_root, log=None)
        images, folder = tintc_source(preset, sources, data_root)
        ensure_tintc(images, folder, seed=0, log=None, progress=False)

        t = time.perf_counter()
        start_ray(None, args.num_cpus, log=None)
        t_ray_init = time.perf_counter() - t
        print(f"start-up: interpreter imports {T_IMPORTS:.1f}s (both sides), ray.init {t_ray_init:.1f}s (a sweep pays it "
              f"once; not in the ratio)")

        w_in = in_process(preset, data_root, d / "warm-inproc", seeds[:1])
        w_ray = ray_sweep(args.preset, data_root, d / "warm-ray", seeds[:1], args.max_concurrent)
        print(f"warm-up, 1 model per side (untimed): in-process {w_in:.1f}s, Ray {w_ray:.1f}s")

        t_in, t_ray = [], []
        for r in range(args.repeats):
            t_in.append(in_process(preset, data_root, d / f"inproc-{r}", seeds))
            t_ray.append(ray_sweep(args.preset, data_root, d / f"ray-{r}", seeds, args.max_concurrent))
            status = lake_status(d / f"ray-{r}")
            if status.count("ok") != len(seeds):
                sys.exit(f"repeat {r + 1}: the sweep recorded {status}, expected {len(seeds)} ok models")
            print(f"  repeat {r + 1}: in-process {t_in[-1]:.1f}s, Ray {t_ray[-1]:.1f}s")
        a, b = statistics.median(t_in), statistics.median(t_ray)
        per = statistics.median((y - x) / len(seeds) for x, y in zip(t_in, t_ray))
        print(f"{len(seeds)} Baseline model(s), preset {args.preset}, 1 torch thread per model, sweep up to "
              f"{args.max_concurrent} trial(s) at a time; medians of {args.repeats} alternating repeats:")
        print(f"  in-process: {a:.1f}s   Ray Tune + Ray Train: {b:.1f}s   ratio Ray/in-process {b / a:.2f}")
        print(f"  orchestration: {per:.1f}s per model beyond the in-process cost (median over repeats), "
              f"plus ray.init {t_ray_init:.1f}s once per sweep")


if __name__ == "__main__":
    main()
