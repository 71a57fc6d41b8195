"""The paper's two-factor regression (statsmodels formula API) and the pooled interaction model.

Per pool (MTL-Monkey, MTL-Shuffled; every ratio × seed is one model):
    robustness ~ clean_accuracy + feve
and, beyond the paper, over both pools at once:
    robustness ~ (clean_accuracy + feve) * pool
whose `feve:pool` term tests whether the neural-performance coefficient differs between real and
shuffled targets. Standardised coefficients come from the same fit on z-scored variables.
"""

from __future__ import annotations

import polars as pl


class TooFewModels(ValueError):
    """Not enough models (or no spread in a factor) to fit the regression."""


TABLE_SCHEMA = {"model": pl.String, "term": pl.String, "coef": pl.Float64, "std_err": pl.Float64, "t": pl.Float64,
                "p_value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "std_coef": pl.Float64,
                "n": pl.Int64, "r2": pl.Float64, "r2_adj": pl.Float64, "f_pvalue": pl.Float64}


def _check(df: pl.DataFrame, cols: list[str], n_params: int, what: str) -> pl.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise TooFewModels(f"{what}: no {', '.join(missing)} for any model")
    d = df.select(cols).drop_nulls().filter(pl.all_horizontal(pl.col(c).is_finite() for c in cols if df.schema[c].is_float()))
    if d.height < n_params + 1:
        raise TooFewModels(f"{what}: {d.height} model(s) with finite {', '.join(cols)}; the fit has {n_params} "
                           f"parameters and needs at least {n_params + 1} (run more ratios or seeds)")
    for c in cols:
        if d.schema[c].is_float() and float(d[c].std() or 0.0) == 0.0:
            raise TooFewModels(f"{what}: {c} is the same ({d[c][0]:.4g}) for every model, so its effect cannot be estimated")
    return d


def _rows(model: str, fit, std_fit, n: int) -> list[dict]:
    ci = fit.conf_int()
    out = []
    for term in fit.params.index:
        out.append({"model": model, "term": term, "coef": float(fit.params[term]), "std_err": float(fit.bse[term]),
                    "t": float(fit.tvalues[term]), "p_value": float(fit.pvalues[term]),
                    "ci_low": float(ci.loc[term, 0]), "ci_high": float(ci.loc[term, 1]),
                    "std_coef": float(std_fit.params[term]) if std_fit is not None and term in std_fit.params.index else float("nan"),
                    "n": n, "r2": float(fit.rsquared), "r2_adj": float(fit.rsquared_adj), "f_pvalue": float(fit.f_pvalue)})
    return out


def _z(d, cols):
    d = d.copy()
    for c in cols:
        d[c] = (d[c] - d[c].mean()) / d[c].std(ddof=1)
    return d


def two_factor(models: pl.DataFrame, neural: str = "feve", label: str = "pool") -> pl.DataFrame:
    """OLS `robustness ~ clean_accuracy + <neural>` over one pool's models; a tidy coefficient table."""
    import statsmodels.formula.api as smf

    d = _check(models, ["robustness", "clean_accuracy", neural], 3, label).to_pandas()
    formula = f"robustness ~ clean_accuracy + {neural}"
    fit = smf.ols(formula, data=d).fit()
    std = smf.ols(formula, data=_z(d, ["robustness", "clean_accuracy", neural])).fit()
    return pl.DataFrame(_rows(label, fit, std, len(d)), schema=TABLE_SCHEMA)


def interaction(pools: dict[str, pl.DataFrame], neural: str = "feve", reference: str | None = None) -> pl.DataFrame:
    """OLS `robustness ~ (clean_accuracy + <neural>) * pool` over several pools (reference level first).

    The `<neural>:pool[T.x]` row tests whether the neural coefficient of pool x differs from the
    reference pool's. Standardised coefficients z-score the continuous variables over all pools.
    """
    import pandas as pd
    import statsmodels.formula.api as smf

    names = list(pools)
    if len(names) < 2:
        raise TooFewModels("interaction model: needs two pools (e.g. mtl_monkey and mtl_shuffled)")
    ref = reference or names[-1]
    frames = []
    for name, df in pools.items():
        d = _check(df, ["robustness", "clean_accuracy", neural], 3, name).to_pandas()
        d["pool"] = name
        frames.append(d)
    d = pd.concat(frames, ignore_index=True)
    d["pool"] = pd.Categorical(d["pool"], categories=[ref] + [n for n in names if n != ref])
    formula = f"robustness ~ (clean_accuracy + {neural}) * C(pool, Treatment('{ref}'))"
    n_params = 3 * len(names)
    if len(d) < n_params + 1:
        raise TooFewModels(f"interaction model: {len(d)} models for {n_params} parameters")
    fit = smf.ols(formula, data=d).fit()
    std = smf.ols(formula, data=_z(d, ["robustness", "clean_accuracy", neural])).fit()
    out = pl.DataFrame(_rows("interaction", fit, std, len(d)), schema=TABLE_SCHEMA)
    # readable term names: C(pool, Treatment('x'))[T.y] -> pool[T.y]
    return out.with_columns(pl.col("term").str.replace(r"C\(pool, Treatment\('[^']*'\)\)", "pool"))


def regressions(model_table: pl.DataFrame, pools: dict[str, str], neural: str = "feve",
                interaction_label: str = "interaction") -> tuple[pl.DataFrame, list[str]]:
    """All regressions that can be fitted from `model_table` (one row per model, status ok), with one
    message per regression that could not be, saying what is missing. `pools` maps kind -> label."""
    ok = model_table.filter(pl.col("status") == "ok")
    tables, notes, have = [], [], {}
    for kind, label in pools.items():
        d = ok.filter(pl.col("kind") == kind)
        try:
            tables.append(two_factor(d, neural, label))
            have[label] = d
        except TooFewModels as e:
            notes.append(str(e))
    if len(have) >= 2:
        try:
            tables.append(interaction(have, neural, reference=list(have)[-1])
                          .with_columns(pl.lit(interaction_label).alias("model")))
        except TooFewModels as e:
            notes.append(str(e))
    elif len(pools) >= 2:
        notes.append("interaction model: needs both pools to be fitted first")
    table = pl.concat(tables) if tables else pl.DataFrame(schema=TABLE_SCHEMA)
    return table, notes


def format_table(t: pl.DataFrame) -> str:
    """Plain-text regression table (for terminals and notes)."""
    lines = []
    for model in t["model"].unique(maintain_order=True):
        m = t.filter(pl.col("model") == model)
        r = m.row(0, named=True)
        lines.append(f"{model}: n = {r['n']}, R² = {r['r2']:.3f} (adj. {r['r2_adj']:.3f}), F-test p = {r['f_pvalue']:.3g}")
        lines.append(f"  {'term':<34}{'coef':>10}{'std.err':>10}{'t':>8}{'p':>11}{'std.coef':>10}")
        for r in m.iter_rows(named=True):
            lines.append(f"  {r['term']:<34}{r['coef']:>10.3f}{r['std_err']:>10.3f}{r['t']:>8.2f}{r['p_value']:>11.3g}"
                         f"{r['std_coef']:>10.3f}")
    return "\n".join(lines)

