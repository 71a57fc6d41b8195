"""Robustness scores relative to the Baseline (Hendrycks & Dietterich style; METHOD.md).

A_c = mean over severities and seeds of accuracy(c, severity, seed);
score = 100 * mean over corruptions c of A_c(model) / A_c(Baseline), overall and per category.
"""

from __future__ import annotations

import polars as pl

GROUP = ["kind", "ratio"]


def corruption_means(acc: pl.DataFrame, by: list[str] = GROUP) -> pl.DataFrame:
    """A_c per model group (kind, ratio): mean over severities and seeds."""
    return acc.group_by(by + ["corruption", "category"]).agg(pl.col("accuracy").mean().alias("A_c"))


def robustness_scores(acc: pl.DataFrame, baseline_kind: str = "baseline", by: list[str] = GROUP) -> pl.DataFrame:
    """One row per group and scope (`overall` or a category) with the robustness score in percent."""
    if acc.is_empty():
        return pl.DataFrame(schema={**{k: pl.String for k in by}, "scope": pl.String, "robustness": pl.Float64})
    a = corruption_means(acc, by)
    base = a.filter(pl.col("kind") == baseline_kind).group_by("corruption").agg(pl.col("A_c").mean().alias("A_base"))
    if base.is_empty():
        raise ValueError("no Baseline corruption accuracies: the robustness score is relative to the Baseline")
    rel = a.join(base, on="corruption").with_columns((pl.col("A_c") / pl.col("A_base")).alias("rel"))
    overall = rel.group_by(by).agg((100 * pl.col("rel").mean()).alias("robustness")).with_columns(pl.lit("overall").alias("scope"))
    per_cat = rel.group_by(by + ["category"]).agg((100 * pl.col("rel").mean()).alias("robustness")).rename({"category": "scope"})
    return pl.concat([overall.select(by + ["scope", "robustness"]), per_cat.select(by + ["scope", "robustness"])]).sort(by + ["scope"])
