"""The rates `--plan` and the time-left line rest on (sweeps/timing.py), read back from a finished sweep.

For every model of a finished sweep, the FLOPs `--plan` counts for its fit and for its evaluation against
what the lake recorded: `train_seconds` (the fit) and `wall_seconds` (the whole trial: data, fit,
evaluation, attacks, the lake's records). Prints, per kind and over all models, the fit rate
(fit GFLOP / train seconds / threads), the evaluation rate (evaluation GFLOP over the seconds left after
the fit and the fixed per-model cost), and each model's planned seconds beside its actual ones, with the
ratio of the sums: the figure to set FIT_GFLOPS and EVAL_GFLOPS from, and the check that they fit.

    python benchmarks/plan_rates.py --preset demo --storage results              # the demo as run by default
    python benchmarks/plan_rates.py --preset demo --kinds baseline,mtl_monkey --seeds 0,1 --storage runs/x

Takes the main job's own flags (the same spec finds the same run ids). Read-only: it trains nothing.
The sweep must have run alone on the machine: a job beside it slows every model.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout


def main(argv=None) -> int:
    import polars as pl

    from core.presets import get_preset
    from core.results.lake import read_table
    from sweeps import plan as planning, timing
    from sweeps.cli import resolve_common
    from sweeps.ratio_grid import parser
    from sweeps.stages import lake_root, plan, trial_threads

    args = parser().parse_args(argv)
    spec, _ = resolve_common(args, kinds=args.kinds)
    preset = get_preset(spec.preset)
    info = planning._prepared_info(spec, preset)
    if info is None:
        print(f"{spec.data_root}: the sweep's data are not prepared there; give the --data-root it ran with")
        return 2
    n = planning._sizes(spec, preset)
    tasks = [t for w in plan(spec, info) for t in w]
    costs = planning._task_costs(spec, tasks, preset, n)
    runs = pl.from_arrow(read_table(lake_root(spec), "runs"))
    runs = runs.filter(pl.col("run_id").is_in(list(costs)) & (pl.col("status") == "ok")) if runs.height else runs
    if runs.height == 0:
        print(f"{lake_root(spec)}: no finished model of this sweep in the lake")
        return 2
    threads = trial_threads(spec)
    rows = []
    for r in runs.iter_rows(named=True):
        fit, ev, _ = costs[r["run_id"]]
        rows.append({"kind": r["kind"], "seed": r["seed"], "fit_gflop": fit / 1e9, "eval_gflop": ev / 1e9,
                     "train_s": r["train_seconds"], "wall_s": r["wall_seconds"],
                     "planned_s": timing.model_seconds(fit, ev, threads)})
    t = pl.DataFrame(rows).with_columns(
        rest_s=pl.col("wall_s") - pl.col("train_s") - timing.MODEL_SECONDS)
    by = t.group_by("kind").agg(
        pl.len().alias("models"),
        (pl.col("fit_gflop").sum() / pl.col("train_s").sum() / threads).alias("fit_GFLOP/s"),
        (pl.col("eval_gflop").sum() / pl.col("rest_s").sum().clip(1e-9) / threads).alias("eval_GFLOP/s"),
        pl.col("wall_s").mean().alias("wall_s"), pl.col("planned_s").mean().alias("planned_s")).sort("kind")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=50, float_precision=2):
        print(by)
    fit_rate = t["fit_gflop"].sum() / t["train_s"].sum() / threads
    ev = t.filter(pl.col("eval_gflop") > 0)
    eval_rate = ev["eval_gflop"].sum() / max(1e-9, ev["rest_s"].sum()) / threads if ev.height else float("nan")
    # least squares over the models: wall = per-model seconds + fit FLOPs / fit rate + evaluation FLOPs / its rate
    import numpy as np

    a = np.column_stack([np.ones(t.height), t["fit_gflop"].to_numpy() / threads, t["eval_gflop"].to_numpy() / threads])
    coef, *_ = np.linalg.lstsq(a, t["wall_s"].to_numpy(), rcond=None)
    fitted = a @ coef
    print(f"least squares of wall seconds: {coef[0]:.1f} s per model + fit at {1 / coef[1]:.1f} GFLOP/s + evaluation at "
          f"{(1 / coef[2]) if coef[2] > 0 else float('inf'):.1f} GFLOP/s; worst model off by "
          f"{np.max(np.abs(fitted / t['wall_s'].to_numpy() - 1)):.0%}, the sum by {fitted.sum() / t['wall_s'].sum() - 1:+.1%}")
    print(f"all {t.height} models, {threads} thread(s) each: fit {fit_rate:.1f} GFLOP/s (sweeps/timing.py: "
          f"{timing.FIT_GFLOPS}), evaluation {eval_rate:.1f} GFLOP/s (sweeps/timing.py: {timing.EVAL_GFLOPS}); "
          f"planned/actual model seconds {t['planned_s'].sum() / t['wall_s'].sum():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
