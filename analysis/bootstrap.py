"""Per-image correctness as dense arrays, the input of every interval, and one model's clean-accuracy
interval over its test images.

`correctness` arranges the lake's per-image predictions of a set of models (models × conditions ×
images) for resampling; analysis.precision builds the seed-paired intervals from it. A single model's
clean accuracy (images only, one level) goes through `scipy.stats.bootstrap` with BCa intervals.
Everything is seeded: the same seed gives the same intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

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
