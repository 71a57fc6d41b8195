"""Bootstrap error bars from the per-image predictions: test images and seeds resampled together.

One replicate draws the test images with replacement (the same draw for every model, since all
models saw the same images: the comparison is paired) and, within every model group (kind, ratio),
its seeds with replacement; it then recomputes A_c, the Baseline's A_c and the robustness scores
exactly as `analysis.scores` does. Intervals are percentiles of the replicates. A single model's
clean accuracy (images only, one level) goes through `scipy.stats.bootstrap` with BCa intervals.
Everything is seeded: the same seed gives the same intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.scores import BASELINE, MissingBaseline
from core.data.corruptions import CORRUPTIONS

CORR_NAMES = list(CORRUPTIONS)


@dataclass
class Correctness:
    """Per-image correctness as dense arrays, for fast resampling."""

    runs: pl.DataFrame            # run_id, kind, ratio, seed: the order of axis 0
    conditions: list[tuple[str, int]]  # (corruption, severity): axis 1 of `corrupt`
    images: np.ndarray            # image indices: the last axis
    clean: np.ndarray             # (runs, images) float32, 1 = correct
    corrupt: np.ndarray           # (runs, conditions, images) float32
    dropped: list[str]            # one message per run left out, and why


def correctness(preds: pl.DataFrame, runs: pl.DataFrame) -> Correctness:
    """Arrange `predictions` rows of the classifiers in `runs` (status ok) into dense arrays.

    Only images that every kept run was evaluated on under every condition are used; a run whose
    predictions are missing or incomplete is dropped with a message.
    """
    dropped = []
    runs = runs.filter(pl.col("status") == "ok").select("run_id", "kind", "ratio", "seed").unique("run_id").sort(
        "kind", "ratio", "seed", "run_id")
    p = preds.filter(pl.col("run_id").is_in(runs["run_id"].implode())).select("run_id", "condition", "severity", "image", "correct")
    have = set(p["run_id"].unique().to_list())
    for r in runs.iter_rows(named=True):
        if r["run_id"] not in have:
            dropped.append(f"{r['kind']} ratio {r['ratio'] or '-'} seed {r['seed']}: no per-image predictions")
    runs = runs.filter(pl.col("run_id").is_in(list(have)))
    conditions = sorted({(c, int(s)) for c, s in p.select("condition", "severity").unique().iter_rows() if c != "clean"},
                        key=lambda cs: (CORR_NAMES.index(cs[0]) if cs[0] in CORR_NAMES else 99, cs[0], cs[1]))
    if runs.is_empty():
        return Correctness(runs, conditions, np.zeros(0, np.int64), np.zeros((0, 0), np.float32),
                           np.zeros((0, len(conditions), 0), np.float32), dropped)
    # images evaluated by every run under every condition
    per = p.group_by("image").agg(pl.len().alias("n"))
    full = (1 + len(conditions)) * runs.height
    images = np.sort(per.filter(pl.col("n") == full)["image"].to_numpy())
    if len(images) < per.height:
        dropped.append(f"{per.height - len(images)} of {per.height} test images were not evaluated by every model "
                       "under every condition and are left out of the bootstrap")
    run_idx = {r: i for i, r in enumerate(runs["run_id"].to_list())}
    cond_idx = {cs: i + 1 for i, cs in enumerate(conditions)}
    cond_idx[("clean", 0)] = 0
    p = p.filter(pl.col("image").is_in(images.tolist()))
    ri = np.array([run_idx[r] for r in p["run_id"].to_list()])
    ci = np.array([cond_idx[(c, int(s)) if c != "clean" else ("clean", 0)] for c, s in
                   zip(p["condition"].to_list(), p["severity"].to_list())])
    ii = np.searchsorted(images, p["image"].to_numpy())
    dense = np.zeros((runs.height, 1 + len(conditions), len(images)), np.float32)
    dense[ri, ci, ii] = p["correct"].to_numpy().astype(np.float32)
    return Correctness(runs, conditions, images, dense[:, 0], dense[:, 1:], dropped)


def _groups(runs: pl.DataFrame, pool_ratios: bool = False) -> list[tuple[str, str, np.ndarray]]:
    out = []
    kinds = runs["kind"].to_list()
    ratios = ["all" if pool_ratios and r else (r or "") for r in runs["ratio"].to_list()]
    for key in sorted(set(zip(kinds, ratios))):
        out.append((key[0], key[1], np.array([i for i, k in enumerate(zip(kinds, ratios)) if k == key])))
    return out


def _interval(reps: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1 - level) / 2
    return np.nanquantile(reps, a, axis=0), np.nanquantile(reps, 1 - a, axis=0)


def _seed_resample(x: np.ndarray, b: np.ndarray, sel: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Mean over a replicate's resampled seeds, its seed-to-seed part rescaled by sqrt(k/(k-1)).

    Resampling k seeds with replacement spreads their mean by only (k-1)/k of the seed variance (2/3
    for 3 seeds): the intervals came out too narrow (a simulated lake with no effect: 84% coverage
    of 100 at a nominal 95%; tests/test_calibration.py). Each replicate keeps the mean of all its
    seeds (under its own image weights) and rescales the deviation the seed draw adds to it."""
    k = len(members)
    drawn = x[b, sel].mean(1)
    if k < 2:
        return drawn
    every = x[b, members[None, :]].mean(1)
    return every + np.sqrt(k / (k - 1)) * (drawn - every)


def bootstrap_scores(cor: Correctness, n_boot: int = 250, seed: int = 0, level: float = 0.95,
                     baseline_kind: str = BASELINE, pool_ratios: bool = False) -> pl.DataFrame:
    """Point estimates and percentile intervals per group (kind, ratio) for the robustness score
    (overall, per category, per corruption) and the clean accuracy. With `pool_ratios`, a kind's
    models over all its ratios form one group (ratio `all`), resampled like seeds.

    Columns: kind, ratio, statistic (robustness | clean_accuracy), level, scope, estimate, low,
    high, n_models, n_images, n_boot.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if cor.runs.is_empty() or len(cor.images) == 0:
        raise MissingBaseline("no per-image predictions to bootstrap")
    rng = np.random.default_rng(seed)
    n = len(cor.images)
    # image weights: row 0 is the point estimate (every image once), rows 1.. the replicates
    w = np.vstack([np.full((1, n), 1.0 / n), rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n]).astype(np.float32)
    corr_names = [c for c in CORR_NAMES if any(cs[0] == c for cs in cor.conditions)]
    avg = np.zeros((len(cor.conditions), len(corr_names)), np.float32)  # mean over severities
    for j, (c, _) in enumerate(cor.conditions):
        avg[j, corr_names.index(c)] = 1.0
    avg /= avg.sum(0, keepdims=True)
    a_c = np.einsum("rcn,bn,ck->brk", cor.corrupt, w, avg, optimize=True)     # (B+1, runs, corruptions)
    clean = np.einsum("rn,bn->br", cor.clean, w)                               # (B+1, runs)

    groups = _groups(cor.runs, pool_ratios)
    g_ac, g_clean = {}, {}
    for kind, ratio, members in groups:
        k = len(members)
        draws = np.vstack([np.arange(k)[None], rng.integers(0, k, size=(n_boot, k))])  # row 0: every seed once
        sel = members[draws]                                                   # (B+1, k)
        b = np.arange(n_boot + 1)[:, None]
        g_ac[(kind, ratio)] = _seed_resample(a_c, b, sel, members)             # (B+1, corruptions)
        g_clean[(kind, ratio)] = _seed_resample(clean, b, sel, members)
    base_keys = [g for g in g_ac if g[0] == baseline_kind]
    if not base_keys:
        raise MissingBaseline(f"no '{baseline_kind}' models with per-image predictions: every robustness score is "
                              "relative to the Baseline")
    # the Baseline pools all its models (it has no ratio); with one group this is that group's resample
    base = np.mean([g_ac[g] for g in base_keys], axis=0) if len(base_keys) > 1 else g_ac[base_keys[0]]
    # the rule of analysis.scores: a corruption with the Baseline at 0 (point estimate) is left out of every
    # replicate; a replicate whose resampled Baseline is 0 on a kept corruption leaves it out of that replicate
    keep = base[0] > 0
    if not keep.any():
        raise MissingBaseline("the Baseline's accuracy is 0 on every corruption: no relative score is defined")
    base, corr_names = base[:, keep], [c for c, k in zip(corr_names, keep) if k]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_all = {g: np.where(base > 0, v[:, keep] / base, np.nan) for g, v in g_ac.items()}

    cats = [CORRUPTIONS[c] for c in corr_names]
    rows = []
    for (kind, ratio, members) in groups:
        rel = rel_all[(kind, ratio)]
        scopes = [("overall", "overall", np.nanmean(rel, 1))]
        scopes += [("category", cat, np.nanmean(rel[:, [i for i, x in enumerate(cats) if x == cat]], 1))
                   for cat in ("noise", "blur", "weather", "digital") if cat in cats]
        scopes += [("corruption", c, rel[:, i]) for i, c in enumerate(corr_names)]
        common = {"kind": kind, "ratio": ratio, "n_models": len(members), "n_images": n, "n_boot": n_boot}
        for lvl, scope, v in scopes:
            v = 100 * v
            lo, hi = _interval(v[1:], level)
            rows.append({**common, "statistic": "robustness", "level": lvl, "scope": scope,
                         "estimate": float(v[0]), "low": float(lo), "high": float(hi)})
        v = g_clean[(kind, ratio)]
        lo, hi = _interval(v[1:], level)
        rows.append({**common, "statistic": "clean_accuracy", "level": "clean", "scope": "clean",
                     "estimate": float(v[0]), "low": float(lo), "high": float(hi)})
    cols = ["kind", "ratio", "statistic", "level", "scope", "estimate", "low", "high", "n_models", "n_images", "n_boot"]
    return pl.DataFrame(rows).select(cols)


def clean_accuracy_bca(cor: Correctness, n_boot: int = 250, seed: int = 0, level: float = 0.95) -> pl.DataFrame:
    """Per model: clean accuracy with a BCa interval over test images (scipy.stats.bootstrap).

    BCa is undefined when every image is right (or every one wrong); such a model gets the
    degenerate interval [acc, acc]."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(seed)
    rows = []
    for i, r in enumerate(cor.runs.iter_rows(named=True)):
        x = cor.clean[i].astype(np.float64)
        acc = float(x.mean()) if len(x) else float("nan")
        if len(x) > 1 and 0 < acc < 1:
            res = bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=level, method="BCa", rng=rng)
            lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        else:
            lo = hi = acc
        rows.append({"run_id": r["run_id"], "kind": r["kind"], "ratio": r["ratio"], "seed": r["seed"],
                     "clean_accuracy": acc, "low": lo, "high": hi, "n_images": len(x)})
    return pl.DataFrame(rows, schema={"run_id": pl.String, "kind": pl.String, "ratio": pl.String, "seed": pl.Int64,
                                      "clean_accuracy": pl.Float64, "low": pl.Float64, "high": pl.Float64,
                                      "n_images": pl.Int64})
