"""The report's tables of intervals, each quantity in one number format: robustness scores and effects
to one decimal, accuracies to three."""

from __future__ import annotations

import polars as pl

SCOPES = ("overall", "noise", "blur", "weather", "digital")


def interval_text(statistic: str = "robustness") -> pl.Expr:
    """'estimate [low, high]' of a comparisons table's rows."""
    d = 1 if statistic == "robustness" else 3
    # a fixed number of decimals (0.910, not 0.91; -0.050, not -0.05): the columns read alike
    return pl.format("{} [{}, {}]", *(pl.col(c).map_elements(lambda v: f"{v:.{d}f}", return_dtype=pl.String)
                                       for c in ("estimate", "low", "high")))


def robustness_table(comps: pl.DataFrame, reference: str) -> pl.DataFrame:
    """One row per (kind, setting) against `reference`: overall and per category 'estimate [low, high]',
    seeds, test images and the smallest detectable effect of the overall score."""
    d = comps.filter((pl.col("statistic") == "robustness") & (pl.col("reference") == reference)
                     & pl.col("level").is_in(["overall", "category"]))
    if d.is_empty():
        return d
    wide = d.with_columns(interval_text().alias("v")).pivot(on="scope", index=["kind", "setting"], values="v")
    info = d.filter(pl.col("level") == "overall").select(
        "kind", "setting", pl.col("n_seeds").alias("seeds"), pl.col("n_images").alias("images"),
        pl.col("mde").round(1).alias("smallest detectable effect (%)"),
        # one seed: the p-value covers test images only, not training runs, so it is not shown as evidence
        pl.when(pl.col("n_seeds") > 1).then(pl.col("p_value").round(3)).otherwise(None).alias("p"))
    cols = ["kind", "setting"] + [s for s in SCOPES if s in wide.columns]
    return wide.select(cols).join(info, on=["kind", "setting"], how="left")


def clean_table(comps: pl.DataFrame) -> pl.DataFrame:
    """Clean accuracy per group, and its paired difference from the Baseline."""
    d = comps.filter(pl.col("statistic") == "clean_accuracy")
    own = d.filter(pl.col("reference") == "").select("kind", "setting", interval_text("clean_accuracy").alias("clean accuracy"),
                                                     pl.col("n_seeds").alias("seeds"))
    diff = d.filter(pl.col("reference") == "baseline").select(
        "kind", "setting", interval_text("clean_accuracy").alias("minus the Baseline's (paired)"))
    return own.join(diff, on=["kind", "setting"], how="left")
