"""Robustness scores relative to the Baseline (Hendrycks & Dietterich style; docs/method.md, Evaluation).

A_c = mean over severities and seeds of accuracy(c, severity, seed);
score = 100 * mean over corruptions c of A_c(model) / A_c(Baseline), where A_c(Baseline) is the
mean over the Baseline's seeds. Reported overall, per category (noise, blur, weather, digital) and
per corruption, for model groups (kind, ratio) and for single models (one run, one seed).

The one rule for an undefined ratio: a corruption on which the Baseline's A_c is 0 has no relative
score; it is left out of every score (here and in analysis.bootstrap alike) and named by
`undefined_corruptions`, which the report lists in its notes. Only when every corruption is so is
there nothing to score (MissingBaseline).
"""

from __future__ import annotations

import polars as pl

GROUP = ["kind", "ratio"]
BASELINE = "baseline"
CATEGORIES = ("noise", "blur", "weather", "digital")


class MissingBaseline(ValueError):
    """The lake holds no Baseline corruption accuracies, so no relative score exists."""


def accuracy_by_severity(acc: pl.DataFrame, by: list[str] = GROUP) -> pl.DataFrame:
    """Accuracy per group × corruption × severity: mean and standard deviation over seeds."""
    return (acc.group_by(by + ["corruption", "category", "severity"])
            .agg(pl.col("accuracy").mean().alias("accuracy"), pl.col("accuracy").std().alias("accuracy_sd"),
                 pl.col("run_id").n_unique().alias("n_models"))
            .sort(by + ["corruption", "severity"]))


def corruption_means(acc: pl.DataFrame, by: list[str] = GROUP) -> pl.DataFrame:
    """A_c per group: mean over severities and seeds."""
    return (acc.group_by(by + ["corruption", "category"]).agg(pl.col("accuracy").mean().alias("A_c"))
            .sort(by + ["corruption"]))


def baseline_means(acc: pl.DataFrame, baseline_kind: str = BASELINE) -> pl.DataFrame:
    """A_c of the Baseline per corruption: mean over its severities and seeds."""
    base = acc.filter(pl.col("kind") == baseline_kind)
    if base.is_empty():
        raise MissingBaseline("no Baseline corruption accuracies in the lake: every robustness score is relative "
                              "to the Baseline, so train the 'baseline' kind (e.g. --kinds baseline)")
    out = base.group_by("corruption").agg(pl.col("accuracy").mean().alias("A_base"))
    if (out["A_base"] <= 0).all():
        raise MissingBaseline("the Baseline's accuracy is 0 on every corruption: no relative score is defined")
    return out.filter(pl.col("A_base") > 0)   # the rule: a corruption with a Baseline at 0 is left out


def undefined_corruptions(acc: pl.DataFrame, baseline_kind: str = BASELINE) -> list[str]:
    """Corruptions left out of every score because the Baseline's A_c on them is 0 (sorted)."""
    base = acc.filter(pl.col("kind") == baseline_kind)
    if base.is_empty():
        return []
    means = base.group_by("corruption").agg(pl.col("accuracy").mean().alias("A_base"))
    return sorted(means.filter(pl.col("A_base") <= 0)["corruption"].to_list())


def _scores(rel: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    overall = (rel.group_by(by).agg((100 * pl.col("rel").mean()).alias("robustness"))
               .with_columns(pl.lit("overall").alias("level"), pl.lit("overall").alias("scope")))
    per_cat = (rel.group_by(by + ["category"]).agg((100 * pl.col("rel").mean()).alias("robustness"))
               .rename({"category": "scope"}).with_columns(pl.lit("category").alias("level")))
    per_c = (rel.group_by(by + ["corruption"]).agg((100 * pl.col("rel").mean()).alias("robustness"))
             .rename({"corruption": "scope"}).with_columns(pl.lit("corruption").alias("level")))
    cols = by + ["level", "scope", "robustness"]
    return pl.concat([overall.select(cols), per_cat.select(cols), per_c.select(cols)])


def robustness_scores(acc: pl.DataFrame, baseline_kind: str = BASELINE, by: list[str] = GROUP) -> pl.DataFrame:
    """One row per group and scope: level `overall`, `category` (noise, ...) or `corruption` (its name).

    Raises MissingBaseline when there is nothing to be relative to.
    """
    if acc.is_empty():
        return pl.DataFrame(schema={**{k: pl.String for k in by}, "level": pl.String, "scope": pl.String,
                                    "robustness": pl.Float64})
    rel = (corruption_means(acc, by).join(baseline_means(acc, baseline_kind), on="corruption")
           .with_columns((pl.col("A_c") / pl.col("A_base")).alias("rel")))
    level_order = pl.col("level").replace_strict({"overall": 0, "category": 1, "corruption": 2}, return_dtype=pl.Int8)
    return _scores(rel, by).sort(by + [level_order, "scope"])


def model_table(runs: pl.DataFrame, acc: pl.DataFrame, baseline_kind: str = BASELINE) -> pl.DataFrame:
    """One row per trained classifier: its own robustness (one seed) overall and per category, relative
    to the Baseline's mean over seeds, beside clean accuracy, FEVe and correlations from `runs`."""
    info = runs.select("run_id", "kind", "ratio", "ratio_value", "seed", "status", "clean_accuracy", "fev", "feve",
                       "corr_trial", "corr_avg", "corr_true", *[c for c in ("alpha", "sim_match") if c in runs.columns])
    if acc.is_empty():
        return info.filter(pl.lit(False))
    by = ["run_id"]
    sc = robustness_scores(acc, baseline_kind, by=by).filter(pl.col("level") != "corruption")
    wide = sc.pivot(on="scope", index="run_id", values="robustness")
    wide = wide.rename({c: ("robustness" if c == "overall" else f"robustness_{c}") for c in wide.columns if c != "run_id"})
    return info.join(wide, on="run_id", how="inner").sort("kind", "ratio_value", "seed")


def group_summary(runs: pl.DataFrame, scores: pl.DataFrame | None) -> pl.DataFrame:
    """Per (kind, ratio): models, ok, clean accuracy, FEVe, correlations, overall robustness."""
    out = (runs.group_by(GROUP).agg(
        pl.len().alias("models"), (pl.col("status") == "ok").sum().alias("ok"),
        pl.col("seed").unique().sort().cast(pl.String).str.join(",").alias("seed ids"),
        pl.col("ratio_value").first(),
        pl.col("clean_accuracy").mean(), pl.col("feve").mean(), pl.col("corr_avg").mean(), pl.col("corr_true").mean(),
        *([pl.col("sim_match").mean()] if "sim_match" in runs.columns else [])))
    if scores is not None and not scores.is_empty():
        ov = scores.filter(pl.col("level") == "overall").select(GROUP + ["robustness"])
        out = out.join(ov, on=GROUP, how="left", nulls_equal=True)
    return out.sort("kind", "ratio_value", nulls_last=True)

