"""Orchestration overhead: the same Baseline models through Ray Tune + Ray Train and in-process.

Both sides do the same work in the same process, after the same start-up and warm-up:
  in-process  the data as a single-model run loads them (`load_sources`, `ensure_tintc` on the
              cache, hashes verified), then `core.training.kinds.run_kind("baseline", ...)` for each
              seed, one after another: training, evaluation on TIN-TC, the attacks
  Ray         `sweeps/ratio_grid.py --kinds baseline --no-report --quiet` called as a function
              (`resolve_common` + `run_sweep`): its data preparation, one Tune trial + Ray Train run
              per seed whose training function calls the same `run_kind`, the lake records, the
              summary; once per `--train-workers` mode: 0 = Train V2's local mode in a reused Tune
              trial process (the default), 1 = a Train worker group of one per model
Start-up, paid once and printed apart, not in the ratio: the interpreter and imports (both sides
share them) and `ray.init` (a sweep pays it once, whatever its size). Warm-up, untimed: one model on
each side (the first Tune/Train use in the driver, the first fit in this process). The synthetic
world and its TIN-TC cache are built once, before all of it, in a folder both sides read.
Same resources: every model trains with one torch thread (what a sweep trial gets), and the
sweep runs --max-concurrent trials at a time (default 1, like the in-process side; above 1 the
sweep overlaps trials, which the in-process side cannot). Repeats alternate in-process, Ray
(each mode), in-process, ...; each Ray repeat writes to fresh storage (a sweep skips models already
in its lake). Prints the medians, their ratios and the orchestration seconds per model.

    python benchmarks/sweep_overhead.py                  # 4 models per side, both modes, 3 repeats: about 4 minutes on 2 cores
    python benchmarks/sweep_overhead.py --seeds 1 --train-workers 0
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
from core.training.bundles import load_sources  # noqa: E402
from core.training.kinds import run_kind, tintc_source  # noqa: E402
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


def ray_sweep(preset_name: str, data_root: Path, storage: Path, seeds: list[int], max_concurrent: int, workers: int) -> float:
    """Wall seconds of the same models as a sweep (its printed summary swallowed)."""
    args = ratio_grid.parser().parse_args([
        "--preset", preset_name, "--kinds", "baseline", "--seeds", ",".join(map(str, seeds)), "--storage", str(storage),
        "--data-root", str(data_root), "--device", "cpu", "--max-concurrent", str(max_concurrent), "--no-report", "--quiet",
        "--train-workers", str(workers)])
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
    p.add_argument("--seeds", type=int, default=4, help="Baseline models per repeat and side (default 4)")
    p.add_argument("--train-workers", default="0,1", help="sweep modes to time, comma-separated: 0 local mode, 1 worker "
                                                          "group (default both)")
    p.add_argument("--preset", default="smoke", help="training preset (default smoke)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per side, at least 3 (default 3)")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials the sweep runs at once (default 1)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    args = p.parse_args()
    modes = [m.strip() for m in args.train_workers.split(",") if m.strip()]
    if args.repeats < 3 or args.seeds < 1 or args.max_concurrent < 1:
        p.error("--repeats at least 3, --seeds and --max-concurrent at least 1")
    if not modes or any(m not in ("0", "1") for m in modes) or len(set(modes)) != len(modes):
        p.error(f"--train-workers {args.train_workers!r}: expected 0, 1 or 0,1")
    modes = [int(m) for m in modes]
    name = {0: "local mode (--train-workers 0)", 1: "worker group (--train-workers 1)"}
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
        warm = {m: ray_sweep(args.preset, data_root, d / f"warm-ray{m}", seeds[:1], args.max_concurrent, m) for m in modes}
        print(f"warm-up, 1 model per side (untimed): in-process {w_in:.1f}s, "
              + ", ".join(f"Ray {name[m]} {warm[m]:.1f}s" for m in modes))

        t_in, t_ray = [], {m: [] for m in modes}
        for r in range(args.repeats):
            t_in.append(in_process(preset, data_root, d / f"inproc-{r}", seeds))
            for m in modes:
                t_ray[m].append(ray_sweep(args.preset, data_root, d / f"ray{m}-{r}", seeds, args.max_concurrent, m))
                status = lake_status(d / f"ray{m}-{r}")
                if status.count("ok") != len(seeds):
                    sys.exit(f"repeat {r + 1}, {name[m]}: the sweep recorded {status}, expected {len(seeds)} ok models")
            print(f"  repeat {r + 1}: in-process {t_in[-1]:.1f}s, " + ", ".join(f"{name[m]} {t_ray[m][-1]:.1f}s" for m in modes))
        a = statistics.median(t_in)
        print(f"{len(seeds)} Baseline model(s), preset {args.preset}, 1 torch thread per model, sweep up to "
              f"{args.max_concurrent} trial(s) at a time; medians of {args.repeats} alternating repeats:")
        print(f"  in-process: {a:.1f}s")
        per = {}
        for m in modes:
            b = statistics.median(t_ray[m])
            per[m] = statistics.median((y - x) / len(seeds) for x, y in zip(t_in, t_ray[m]))
            print(f"  Ray Tune + Ray Train, {name[m]}: {b:.1f}s   ratio Ray/in-process {b / a:.2f}   orchestration "
                  f"{per[m]:.1f}s per model beyond the in-process cost (median over repeats)")
        if len(modes) == 2 and per[0] > 0:
            print(f"  worker group / local mode orchestration per model: {per[1] / per[0]:.1f}x")
        print(f"  plus ray.init {t_ray_init:.1f}s once per sweep (either mode)")


if __name__ == "__main__":
    main()
