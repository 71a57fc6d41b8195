"""What a sweep says on the console: progress lines, the time left, and the closing summary table."""

from __future__ import annotations

import math
import sys


def _say(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def clock(seconds: float) -> str:
    """12 s, 3 min 05 s, 2 h 07 min."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_callback(quiet: bool, stopped_by: str = "the scheduler"):
    """A Tune callback printing one line per trial report: stage, ratio, seed, epoch, accuracy, FEV(e).
    `stopped_by` names the Tune scheduler that may end a trial early (its last report then says done
    without a status)."""
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self):
            self.shown = set()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if quiet or result.get("kind") is None:
                return
            # a restarted worker says its finished epochs again (one may have died with the old worker)
            key = (trial.trial_id, result.get("phase"), result.get("epoch"), result.get("done"))
            if key in self.shown:
                return
            self.shown.add(key)
            head = f"  {result.get('kind'):16s} ratio {result.get('ratio') or '-':>5s} seed {result.get('seed')}  "
            feve, corr = result.get("feve", math.nan), result.get("val_correlation", math.nan)
            # a neural-only model has no accuracy, a classifier no FEVe: only what the model has is said
            clean, val = result.get("clean_accuracy", math.nan), result.get("val_accuracy", math.nan)
            epoch = (f"  val acc {val:.3f}" if val == val else "") + (f"  val corr {corr:.3f}" if corr == corr else "")
            if result.get("done") is True and result.get("status") == "failed":
                _say(head + f"done: failed: {result.get('error', '')}")
            elif result.get("done") is True and result.get("status") is None:   # the epoch's own report, ended there
                _say(head + f"stopped by {stopped_by} after epoch {result.get('epoch')}" + epoch)
            elif result.get("done") is True:
                _say(head + f"done: {result.get('status')}" + (f", clean acc {clean:.3f}" if clean == clean else "")
                     + (f", FEVe {feve:.3f}" if feve == feve else ""))
            else:
                _say(head + f"{result.get('phase', '')} epoch {result.get('epoch')}" + epoch)

        def on_trial_error(self, iteration, trials, trial, **info):
            _say(f"  trial {trial.trial_id} failed: {trial.error_file or ''}")

    return Progress()


def readable(table):
    """The summary table as text cells: the report's number formats (robustness to 1 decimal, the rest to
    3), "-" where a value does not apply (null or NaN), and columns that apply to no row (sim_match without
    the similarity family) left out."""
    from analysis.html import decimals
    import polars as pl

    cols = []
    for name, dtype in table.schema.items():
        c = pl.col(name)
        if dtype == pl.Null:
            continue
        if dtype.is_float():
            missing = c.is_null() | c.is_nan()
            if table.select(missing.all()).item():
                continue
            places = decimals(name)
            text = c.map_elements(lambda v, d=places: f"{v:.{d}f}", return_dtype=pl.String)
            cols.append(pl.when(missing).then(pl.lit("-")).otherwise(text).alias(name))
        else:
            cols.append(c)
    return table.select(cols)


def summarize(spec, seconds: float, trained: int = 0, skipped: int = 0, estimate=None) -> None:
    import polars as pl

    from analysis.scores import robustness_scores
    from core.results import read_table
    from sweeps.stages import lake_root

    runs = pl.from_arrow(read_table(lake_root(spec), "runs"))
    runs = runs.filter(pl.col("sweep") == spec.sweep) if runs.height else runs
    acc = pl.from_arrow(read_table(lake_root(spec), "corruption_accuracy"))
    acc = acc.filter(pl.col("sweep") == spec.sweep) if acc.height else acc
    print(f"\nsweep '{spec.sweep}' finished in {clock(seconds)}: {trained} models run, {skipped} already in the lake"
          + (f" (at {clock(estimate[0])} the first estimate said {clock(estimate[1])} left; it took "
             f"{clock(seconds - estimate[0])})" if estimate else "") + f"; lake: {lake_root(spec)}")
    if runs.height == 0:
        print("no runs recorded")
        return
    ok = pl.col("status") == "ok"   # the means are over finished models only (a diverged model has no scores)
    by_kind = runs.group_by("kind").agg(
        pl.len().alias("models"), ok.sum().alias("ok"),
        pl.col("clean_accuracy").filter(ok).mean().alias("clean_acc"), pl.col("feve").filter(ok).mean().alias("FEVe"),
        pl.col("sim_match").filter(ok).mean().alias("sim_match"))
    acc = acc.filter(pl.col("run_id").is_in(runs.filter(ok)["run_id"].implode())) if acc.height else acc
    print("per kind: means over its ok models, unhealthy ones included (the report's controls say which to leave out)")
    try:
        rob = robustness_scores(acc, by=["kind"]).filter(pl.col("scope") == "overall").select("kind", "robustness")
        by_kind = by_kind.join(rob, on="kind", how="left")
    except ValueError as e:
        print(f"(no robustness scores: {e})")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_rows=100):
        print(readable(by_kind.sort("kind")))
    print("  (-: does not apply, e.g. a neural-only model's accuracy, a classifier's FEVe, or no Baseline to compare with)")
    bad = runs.filter(pl.col("status") != "ok")
    for r in bad.iter_rows(named=True):
        print(f"  {r['kind']} ratio {r['ratio'] or '-'} seed {r['seed']}: {r['status']}: {(r['error'] or '')[:200]}")
