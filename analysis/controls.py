"""Controls: what must hold in any healthy run, checked on the lake before anything is scored.

Model health (one row per finished model):
- a classifier above chance: clean accuracy above chance by more than 1.96 binomial standard errors
  over its test images, and not collapsed (at most 80% of its clean test images in one class);
- a live readout layer: at least 5% of the readout layer's channels respond to some test image
  (`runs.readout_alive`, measured after training);
- a neural model that predicts better than a constant: FEVe > 0 (all but MTL-Shuffled).

Run-level controls (the paper's own; the verdict heads every report and the main job's summary):
- every classifier healthy, no dead readout layer, every neural model's FEVe above zero;
- positive control: the Oracle, trained on the corruption kinds it is tested on, is more robust than
  the Baseline (the interval of its overall robustness, paired by seed with the Baseline, lies above
  100; analysis.precision);
- negative control: MTL-Shuffled's interval includes 100 (the Baseline): shuffled targets carry no
  information about the images, so co-training on them should neither help nor hurt; an interval above
  100 points at a leak of image information, one below at a recipe in which the extra task slows
  classification (both fail). Several ratios are judged together on the stratified estimate (the
  ratios averaged within each seed), never pooled as if they were seeds. With a single training seed
  the interval covers test images only, not training runs, which vary more: an interval below 100 is
  then "unclear"; one above 100 still fails, on purpose, because a leak is a code defect worth chasing
  from one model (a false alarm costs a look, a missed leak the study).
Every interval line carries the smallest effect the run could have detected (80% power, two-sided 5%),
so that "unclear" or "not shown" is read beside what the run could have shown.
An unhealthy model is kept out of scores, figures and regressions; the report names it and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from core.training import registry
from core.training.graph import CLASSIFIERS

COLLAPSE_SHARE = 0.8     # one class for more than this share of the clean test images
ALIVE_MIN = 0.05         # fewer live readout-layer channels than this: a dead layer
Z = 1.96
# models whose neural predictions must beat a constant (the recipes' feve_positive; MTL-Shuffled's
# targets carry no image information, so its FEVe is expected near zero and is not checked)
NEURAL_KINDS = tuple(k for k, r in registry.table().items() if r.feve_positive)


@dataclass
class Control:
    name: str
    status: str          # pass | fail | unclear
    detail: str


INCLUDE_UNHEALTHY_HELP = ("keep models that fail a health check (at chance, collapsed, dead readout layer, FEVe <= 0) in the "
                          "scores and figures; they stay named in the report and the controls verdict stays red "
                          "(default: left out)")


def chance_level(preds: pl.DataFrame) -> float:
    """1 / number of classes among the clean test labels (NaN with fewer than two: undecidable)."""
    clean = preds.filter(pl.col("condition") == "clean")
    n = clean["label"].n_unique() if clean.height else 0
    return 1.0 / n if n >= 2 else float("nan")


def model_health(runs: pl.DataFrame, preds: pl.DataFrame) -> pl.DataFrame:
    """One row per finished model: run_id, kind, ratio, seed, healthy (bool) and `problem` (why not)."""
    clean = preds.filter(pl.col("condition") == "clean") if preds.height else preds
    chance = chance_level(preds) if preds.height else float("nan")
    top = {}
    if clean.height:
        counts = clean.group_by("run_id", "predicted").agg(pl.len().alias("n"))
        share = counts.group_by("run_id").agg((pl.col("n").max() / pl.col("n").sum()).alias("top"),
                                              pl.col("n").sum().alias("images"))
        top = {r["run_id"]: (r["top"], r["images"]) for r in share.iter_rows(named=True)}
    rows = []
    for r in runs.filter(pl.col("status") == "ok").iter_rows(named=True):
        problems = []
        if r["kind"] in CLASSIFIERS:
            acc = r["clean_accuracy"]
            share, n = top.get(r["run_id"], (float("nan"), 0))
            if n and acc == acc and not math.isnan(chance):
                bar = chance + Z * math.sqrt(chance * (1 - chance) / n)
                if acc <= bar:
                    problems.append(f"at chance (clean accuracy {acc:.3f}, chance {chance:.3f}, needs > {bar:.3f})")
                if share > COLLAPSE_SHARE:
                    problems.append(f"collapsed ({share:.0%} of clean test images in one class)")
        alive = r.get("readout_alive")
        if alive is not None and alive == alive and alive < ALIVE_MIN:
            problems.append(f"dead readout layer ({alive:.0%} of its channels respond)")
        if r["kind"] in NEURAL_KINDS:
            feve = r.get("feve")
            if feve is None or feve != feve or feve <= 0:
                text = f"predicts the neurons no better than a constant (FEVe {feve if feve is not None else float('nan'):.3f})"
                r_avg = r.get("corr_avg")
                if r_avg is not None and r_avg == r_avg:   # beside the FEVe, what is left of the pattern
                    text += f"; its predictions correlate {r_avg:.2f} with the neurons' mean responses"
                problems.append(text)
        rows.append({"run_id": r["run_id"], "kind": r["kind"], "ratio": r["ratio"], "seed": r["seed"],
                     "healthy": not problems, "problem": "; ".join(problems)})
    schema = {"run_id": pl.String, "kind": pl.String, "ratio": pl.String, "seed": pl.Int64, "healthy": pl.Boolean,
              "problem": pl.String}
    return pl.DataFrame(rows, schema=schema)


def _fmt(row: dict) -> str:
    """'robustness 104.2 [97.1, 111.8] (3 seeds × 1000 images; smallest detectable effect 9.8%)'."""
    n = row["n_seeds"]
    mde = (f"smallest detectable effect {row['mde']:.1f}%" if n > 1 else
           f"smallest detectable effect {row['mde']:.1f}% over test images only, not over training runs")
    return (f"robustness {row['estimate']:.1f} [{row['low']:.1f}, {row['high']:.1f}] ({n} seed{'' if n == 1 else 's'} × "
            f"{row['n_images']} images; {mde})")


def _positive(row: dict) -> tuple[str, str]:
    if row["low"] > 100:
        return "pass", "its interval lies above 100"
    if row["estimate"] > 100:
        return "unclear", ("above 100, but its interval includes 100: this run could only have shown an effect above "
                           f"{row['mde']:.1f}% (more seeds or test images would decide)")
    return "fail", "not above 100: the Oracle trains on these corruption kinds, so suspect the code"


def _negative(row: dict) -> tuple[str, str]:
    if row["low"] <= 100 <= row["high"]:
        return "pass", "its interval includes 100"
    if row["low"] > 100 and row["n_seeds"] < 2:
        return "unclear", ("its interval lies above 100, but from one training seed: the interval covers test images, "
                           "not training runs, which vary more; a grid with several seeds (--preset controls) decides")
    if row["low"] > 100:
        return "fail", "its interval lies above 100: shuffled targets carry no image information, so suspect the code"
    if row["n_seeds"] < 2:
        # one model: the interval resamples test images only, not training runs, and one run's robustness moves
        # by more than that
        return "unclear", ("its interval lies below 100, but from one training seed: the interval covers test images, "
                           "not training runs, which vary more; a grid with several seeds (--preset controls) decides")
    return "fail", ("its interval lies below 100: co-training on shuffled targets hurt robustness (compare its clean "
                    "accuracy with the Baseline's: a recipe that slows the MTL classifier shows here)")


def _interval_control(comps: pl.DataFrame | None, kind: str, name: str, judge) -> Control:
    """A control on one kind's overall robustness against the Baseline, paired by seed (stratified over its
    ratios where it has several: analysis.precision), judged by `judge(row)`."""
    from analysis.precision import overall

    row = overall(comps, kind, "baseline") if comps is not None and not comps.is_empty() else None
    if row is None:
        return Control(name, "unclear", f"no healthy {kind} with robustness scores in this sweep")
    status, why = judge(row)
    over = " over its ratios (stratified)" if row["setting"] == "all" else ""
    return Control(name, status, f"{kind}{over} {_fmt(row)}: {why}")


def run_controls(health: pl.DataFrame, comps: pl.DataFrame | None, recorded=None) -> list[Control]:
    """The run-level controls, from the model health table and the seed-paired comparisons
    (analysis.precision.comparisons). `recorded`: the kinds of every run the sweep recorded, whatever its
    status (default: the health table's); a control whose kind is not among them was not run."""
    out = []

    def bad(pattern: str, kinds=None) -> pl.DataFrame:
        h = health.filter(pl.col("problem").str.contains(pattern))
        return h.filter(pl.col("kind").is_in(list(kinds))) if kinds else h

    def names(df: pl.DataFrame) -> str:
        return "; ".join(f"{r['kind']}[{r['ratio'] or '-'}, seed {r['seed']}]: {r['problem']}" for r in df.iter_rows(named=True))

    cls = bad("at chance|collapsed")
    n_cls = health.filter(pl.col("kind").is_in(list(CLASSIFIERS))).height
    out.append(Control("every classifier above chance", "fail" if cls.height else ("pass" if n_cls else "unclear"),
                       names(cls) if cls.height else f"{n_cls} classifier(s) checked"))
    dead = bad("dead readout")
    out.append(Control("no dead readout layer", "fail" if dead.height else ("pass" if health.height else "unclear"),
                       names(dead) if dead.height else f"{health.height} model(s) checked"))
    neural = bad("no better than a constant")
    n_neural = health.filter(pl.col("kind").is_in(list(NEURAL_KINDS))).height
    out.append(Control("neural predictions above zero FEVe", "fail" if neural.height else ("pass" if n_neural else "unclear"),
                       names(neural) if neural.height else
                       f"{n_neural} neural model(s) checked (the kinds whose targets carry image information; "
                       "MTL-Shuffled's and the other controls' FEVe is not expected above 0)"))

    # the run-level controls are the kinds whose recipe names them (the Oracle, MTL-Shuffled); one whose kind
    # the run does not train (a preset or --kinds without it) is said to be not run, and the verdict rests on
    # the others
    trained = set(recorded) if recorded is not None else set(health["kind"].to_list())
    for kind, r in registry.table().items():
        if not r.control:
            continue
        name, judge = ((f"positive control: {r.label} more robust than the Baseline", _positive) if r.control == "positive"
                       else (f"negative control: {r.label}'s interval should include 100 (the Baseline)", _negative))
        if kind not in trained:
            out.append(Control(name, "not run", f"this run trains no {r.label} (its preset or --kinds leave it out)"))
        else:
            out.append(_interval_control(comps, kind, name, judge))
    return out


def verdict(controls: list[Control]) -> str:
    """fail if any control failed, unclear if any is undecided, else pass (controls not run do not count)."""
    states = {c.status for c in controls}
    return "fail" if "fail" in states else ("unclear" if "unclear" in states else "pass")


def format_controls(controls: list[Control], world: str = "") -> str:
    """Plain-text lines for the main job's summary, after the world the run is in (its planted truth)."""
    mark = {"pass": "PASS", "fail": "FAIL", "unclear": "UNCLEAR", "not run": "NOT RUN"}
    lines = ([f"world: {world}"] if world else []) + [f"controls: {mark[verdict(controls)]}"]
    lines += [f"  [{mark[c.status]:7s}] {c.name}: {c.detail}" for c in controls]
    return "\n".join(lines)


def near_chance_categories(acc: pl.DataFrame, chance: float, factor: float = 1.5) -> dict[str, str]:
    """Categories where the Baseline's mean corrupted accuracy is at most `factor` x chance: a ratio
    to a near-chance denominator is noise that blows the axis up, so the figure warns instead."""
    if acc.is_empty() or chance != chance:
        return {}
    base = acc.filter(pl.col("kind") == "baseline").group_by("category").agg(pl.col("accuracy").mean().alias("a"))
    return {r["category"]: (f"the Baseline's {r['category']} accuracy {r['a']:.3f} is near chance ({chance:.3f}); "
                            f"its ratios are not shown in the figure")
            for r in base.iter_rows(named=True) if r["a"] <= factor * chance}
