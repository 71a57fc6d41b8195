"""Seed-paired comparisons: estimates, small-sample intervals and the smallest effect a run could detect.

Seed s of every kind starts from the same initial weights and sees the same classification batches
(core.training.fit), so kinds are compared within a seed first, then across seeds. For a kind K at
one setting (a ratio, or α) against a reference R (the Baseline, or MTL-Shuffled at the same ratio):

    d_s = ln( mean_c A_c(K, s) / A_c(R, s) )        over the corruptions c of a scope
                                                    (overall, one category, one corruption)

with A_c the accuracy on corruption c averaged over its severities and the test images. The
estimate is 100·exp(mean_s d_s) (for one seed, the paper's score against its own Baseline).

Two sources of noise, both in the interval:
- seeds: the d_s scatter from training run to training run; their sample variance s² over k seeds,
- test images: every seed is scored on the same images, so part of their sampling error is common
  to all seeds and does not shrink with k. A paired bootstrap over test images (the same draw for
  every model) gives the covariance of the d_s across seeds; its mean off-diagonal entry c is that
  common part (the part that differs between seeds is already inside s²).
Var(mean_s d_s) = s²/k + c; the interval gives the seed term the t quantile of its k-1 degrees of
freedom and the image term the normal one (`seed_interval`): with 3-8 seeds it keeps its level on
simulated lakes, where a percentile bootstrap over seeds does not (tests/test_calibration.py). With
one seed there is no s²: the interval covers test images only, and the report says so.

The smallest detectable effect (80% power, two-sided 5% test) is the interval's half-width plus the
same at the 80% quantile (2.80·SE with many seeds) on the ln scale, reported as a percentage: a
"not shown" is read beside it.

Several ratios are never pooled as if they were seeds: a kind's estimate over its ratios is the
stratified one, d_s averaged over the ratios within seed s, then the same interval over seeds.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import special

from analysis.bootstrap import CORR_NAMES, Correctness
from analysis.scores import BASELINE, CATEGORIES, MissingBaseline
from core.data.corruptions import CORRUPTIONS

POWER = 0.80
ALL = "all"      # the setting of a kind's stratified estimate over its ratios (or alphas)


def _references() -> dict[str, tuple[str, ...]]:
    """What each kind is compared with besides the Baseline (the recipes' `twin`, the comparison that
    isolates the neural content, then its `explained_by`, the simpler explanations), by seed."""
    from core.training import registry

    return {k: tuple(x for x in (r.twin, *r.explained_by) if x) for k, r in registry.table().items()}


def _fixed(kind: str) -> bool:
    """A kind without a grid setting (the Baseline, its low-pass twin): every setting of another kind is
    compared with its model of the same seed."""
    from core.training import registry

    try:
        return registry.get(kind).grid == "seed"
    except Exception:   # noqa: BLE001 - a kind the registry does not know (an old lake): compared by setting
        return False
COLUMNS = {"kind": pl.String, "setting": pl.String, "reference": pl.String, "statistic": pl.String,
           "level": pl.String, "scope": pl.String, "estimate": pl.Float64, "low": pl.Float64, "high": pl.Float64,
           "se": pl.Float64, "df": pl.Float64, "seed_sd": pl.Float64, "image_sd": pl.Float64, "mde": pl.Float64,
           "p_value": pl.Float64, "n_seeds": pl.Int64, "n_images": pl.Int64, "seeds": pl.String}


def image_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot+1, n) weights over test images: row 0 every image once (the point estimate), rows 1..
    a multinomial resample each, the same for every model (the comparison is paired)."""
    return np.vstack([np.full((1, n), 1.0 / n), rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n])


def _half_width(a: float, c: float, k: int, q: float) -> float:
    """Half-width at quantile q: the seed term with its t quantile (k - 1 degrees of freedom), the image
    term with the normal one (its variance comes from every test image)."""
    tq = float(special.stdtrit(k - 1, q)) if k > 1 else 0.0
    zq = float(special.ndtri(q))
    return math.sqrt(tq * tq * a + zq * zq * c)


def seed_interval(x: np.ndarray, level: float = 0.95, power: float = POWER) -> dict:
    """Mean over seeds of x[0] (one value per seed) with its standard error, interval, p-value and
    smallest detectable effect. x: (1 + n_boot, k), rows 1.. the image-bootstrap replicates of each
    seed's value.

    SE² = a + c: a = s²/k, s² the sample variance over seeds; c the mean covariance between two seeds'
    values over the image replicates (the image noise every seed shares; for one seed, its variance).
    Each term gets its own quantile: half-width² = t²_{k-1}·a + z²·c. (Welch-Satterthwaite degrees of
    freedom covered 92.7-94% at 3 seeds on simulated lakes: with 2 degrees of freedom s² is often small
    by chance, which then raises the degrees of freedom exactly when the interval is already too
    narrow; t_{k-1} for the whole SE covered 99.8% where the image term dominates.)"""
    x = np.asarray(x, dtype=np.float64)
    k = x.shape[1]
    est = float(x[0].mean())
    reps = x[1:][np.isfinite(x[1:]).all(1)]
    if len(reps) >= 2:
        cov = np.atleast_2d(np.cov(reps, rowvar=False))
        c = float((cov.sum() - np.trace(cov)) / (k * (k - 1))) if k > 1 else float(cov[0, 0])
        c = max(c, 0.0)
    else:
        c = float("nan")
    seed_var = float(x[0].var(ddof=1)) if k > 1 else 0.0
    a = seed_var / k
    se = math.sqrt(a + c) if math.isfinite(c) else float("nan")
    half = _half_width(a, c, k, 0.5 + level / 2) if math.isfinite(c) else float("nan")
    mde = half + _half_width(a, c, k, power) if math.isfinite(c) else float("nan")
    p = float("nan")
    if math.isfinite(c) and a + c > 0:
        # the two-sided p-value that matches the interval: the level at which its half-width is |est|
        from scipy.optimize import brentq

        f = lambda q: _half_width(a, c, k, q) - abs(est)   # noqa: E731
        p = 1.0 if f(0.5) >= 0 else (2 * (1 - brentq(f, 0.5, 1 - 1e-15)) if f(1 - 1e-15) > 0 else 0.0)
    return {"estimate": est, "se": se, "df": float(k - 1) if k > 1 else math.inf, "low": est - half,
            "high": est + half, "mde": mde, "p_value": p, "seed_sd": math.sqrt(seed_var) if k > 1 else float("nan"),
            "image_sd": math.sqrt(c) if math.isfinite(c) else float("nan"), "n_seeds": k}


SEEDS_CAP = 1000   # seeds_for looks no further


def seeds_for(s2: float, c: float, effect: float, level: float = 0.95, power: float = POWER, cap: int = SEEDS_CAP) -> float:
    """The smallest number of seeds k >= 2 whose smallest detectable effect (`seed_interval`'s: t with k - 1
    degrees of freedom on the seed term s2 / k, the normal quantile on the image term c) is at most `effect`
    (ln scale). s2: the variance over seeds of the per-seed value; c: the variance of the mean that more seeds
    do not shrink (the test images' noise every seed shares). inf where no count up to `cap` does, always so when
    the image term alone is too large ((z_level + z_power)·sqrt(c) >= effect); NaN for an effect that is not
    positive or a variance that is not finite."""
    if not (effect > 0 and math.isfinite(effect) and math.isfinite(s2) and math.isfinite(c)):
        return math.nan
    if (special.ndtri(0.5 + level / 2) + special.ndtri(power)) * math.sqrt(c) >= effect:
        return math.inf
    for n in range(2, cap + 1):
        a = s2 / n
        if _half_width(a, c, n, 0.5 + level / 2) + _half_width(a, c, n, power) <= effect:
            return float(n)
    return math.inf


def seeds_needed(x: np.ndarray, level: float = 0.95, power: float = POWER, cap: int = SEEDS_CAP) -> float:
    """How many seeds would detect an effect of the size `x` estimates, with probability `power`, at `level`
    (`seeds_for` with this run's spread from seed to seed and image noise held fixed). A rough planning figure:
    a spread read from a few seeds is loosely known, and the estimate itself is noisy. NaN where there is
    nothing to plan from (fewer than 2 seeds, no image replicates, an estimate of 0 or not finite); inf where
    no run of up to `cap` seeds would do."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        return math.nan
    r = seed_interval(x, level, power)
    return seeds_for(r["seed_sd"] ** 2, r["image_sd"] ** 2, abs(r["estimate"]), level, power, cap)


class Paired:
    """The per-seed values every comparison is built from, for one set of image weights."""

    def __init__(self, cor: Correctness, n_boot: int, seed: int):
        if cor.runs.is_empty() or len(cor.images) == 0:
            raise MissingBaseline("no per-image predictions to compare")
        w = image_weights(len(cor.images), n_boot, np.random.default_rng(seed)).astype(np.float32)
        self.corr_names = [c for c in CORR_NAMES if any(cs[0] == c for cs in cor.conditions)]
        avg = np.zeros((len(cor.conditions), len(self.corr_names)), np.float32)   # mean over severities
        for j, (c, _) in enumerate(cor.conditions):
            avg[j, self.corr_names.index(c)] = 1.0
        avg /= np.maximum(avg.sum(0, keepdims=True), 1)
        self.a_c = np.einsum("rcn,bn,ck->brk", cor.corrupt, w, avg, optimize=True).astype(np.float64)  # (B+1, runs, C)
        self.clean = np.einsum("rn,bn->br", cor.clean, w).astype(np.float64)                            # (B+1, runs)
        self.effective = self._effective_robustness()
        self.n_images = len(cor.images)
        runs = cor.runs.with_row_index("i")
        self.groups: dict[tuple[str, str], dict[int, int]] = {}    # (kind, setting) -> seed -> run row
        for r in runs.iter_rows(named=True):
            self.groups.setdefault((r["kind"], r["ratio"] or ""), {})[int(r["seed"])] = int(r["i"])

    def _effective_robustness(self) -> np.ndarray:
        """(B+1, runs): each model's corrupted accuracy (the mean over corruptions) beyond what its clean
        accuracy predicts, in logits, from the line fitted through every classifier of the run (Taori et al.
        2020; Miller et al. 2021). The line is fitted once, on the point estimates."""
        def logit(p):
            p = np.clip(p, 1e-4, 1 - 1e-4)
            return np.log(p / (1 - p))

        y, x = logit(self.a_c.mean(2)), logit(self.clean)
        if x.shape[1] >= 2 and np.ptp(x[0]) > 0:
            slope, icept = np.polyfit(x[0], y[0], 1)
        else:
            slope, icept = 0.0, float(y[0].mean()) if y.size else 0.0
        return y - (icept + slope * x)

    def scopes(self, keep: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
        """(level, scope, corruption indices) for the corruptions in `keep`."""
        names = [c for c, k in zip(self.corr_names, keep) if k]
        idx = {c: i for i, c in enumerate(self.corr_names)}
        out = [("overall", "overall", np.array([idx[c] for c in names]))]
        for cat in CATEGORIES:
            sel = [idx[c] for c in names if CORRUPTIONS[c] == cat]
            if sel:
                out.append(("category", cat, np.array(sel)))
        out += [("corruption", c, np.array([idx[c]])) for c in names]
        return out

    def log_ratio(self, runs_k: list[int], runs_r: list[int], sel: np.ndarray) -> np.ndarray:
        """(B+1, seeds): ln(mean over `sel` of A_c(K, s) / A_c(R, s)) per replicate and seed."""
        num, den = self.a_c[:, runs_k][:, :, sel], self.a_c[:, runs_r][:, :, sel]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(den > 0, num / den, np.nan).mean(2)
            return np.log(rel)


def _settings(p: Paired, kind: str) -> list[str]:
    return sorted((s for k, s in p.groups if k == kind), key=_setting_key)


def _setting_key(s: str) -> tuple:
    from core.training.cycler import ratio_value

    if ":" in s:
        return (0, ratio_value(s))
    if s.startswith("α="):
        return (1, float(s[2:]))
    return (2, s)


def _common_seeds(*groups: dict[int, int]) -> list[int]:
    return sorted(set.intersection(*(set(g) for g in groups))) if groups else []


def as_score(res: dict) -> dict:
    """A `seed_interval` result on the ln scale as the reported score: estimate, low, high as 100·exp, the
    smallest detectable effect as a percentage."""
    return {"estimate": 100 * math.exp(res["estimate"]), "low": 100 * math.exp(res["low"]),
            "high": 100 * math.exp(res["high"]), "mde": 100 * math.expm1(res["mde"])}


def _row(kind, setting, reference, statistic, level, scope, res, n_images, seeds, scale) -> dict:
    """One output row; `scale` turns the ln-scale result into the reported one (100·exp for scores)."""
    out = {"kind": kind, "setting": setting, "reference": reference, "statistic": statistic, "level": level,
           "scope": scope, "n_images": n_images, "seeds": ",".join(map(str, seeds)), "n_seeds": res["n_seeds"],
           "se": res["se"], "df": res["df"], "seed_sd": res["seed_sd"], "image_sd": res["image_sd"],
           "p_value": res["p_value"]}
    if scale == "score":
        out.update(as_score(res))
    else:
        out.update(estimate=res["estimate"], low=res["low"], high=res["high"], mde=res["mde"])
    return out


def comparisons(cor: Correctness, n_boot: int = 250, seed: int = 0, level: float = 0.95,
                baseline_kind: str = BASELINE, references: dict | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Every seed-paired comparison the lake allows, and notes on what was left out.

    Rows (statistic):
    - `robustness`: kind K at a setting (or `all`, stratified over its settings) against the Baseline,
      and against its references (the recipe's `twin` and `explained_by`: at the same setting, or, for a
      kind without a grid, its model of the same seed); estimate, interval and `mde` (smallest detectable
      effect, in %) on the score scale, per scope (overall, category, corruption);
    - `clean_accuracy`: each group's clean accuracy (reference empty) with its interval over seeds and
      images, and K minus the reference (paired) for the comparisons above;
    - `effective_robustness`: K minus the reference in effective robustness (logits of corrupted accuracy
      beyond the line through every classifier's clean and corrupted accuracy; level overall).
    """
    references = _references() if references is None else references
    p = Paired(cor, n_boot, seed)
    notes: list[str] = []
    rows: list[dict] = []
    base = p.groups.get((baseline_kind, ""))
    if not base:
        raise MissingBaseline(f"no '{baseline_kind}' models with per-image predictions: every robustness score is "
                              "relative to the Baseline")
    # the rule of analysis.scores: a corruption on which a Baseline seed scores 0 has no ratio: left out
    keep = (p.a_c[0, list(base.values())] > 0).all(0)
    if not keep.any():
        raise MissingBaseline("the Baseline's accuracy is 0 on every corruption: no relative score is defined")
    for c, k in zip(p.corr_names, keep):
        if not k:
            notes.append(f"paired comparisons: a Baseline seed scores 0 on {c}, so it is left out of every comparison")
    scopes = p.scopes(keep)

    for (kind, setting), members in sorted(p.groups.items(), key=lambda kv: (kv[0][0], _setting_key(kv[0][1]))):
        s = sorted(members)
        res = seed_interval(p.clean[:, [members[x] for x in s]], level)
        rows.append(_row(kind, setting, "", "clean_accuracy", "clean", "clean", res, p.n_images, s, "plain"))

    def compare(kind: str, ref_kind: str):
        settings = _settings(p, kind)
        per_setting = {}
        for st in settings:
            g = p.groups[(kind, st)]
            r = p.groups.get((ref_kind, "")) if _fixed(ref_kind) else p.groups.get((ref_kind, st))
            if r is None:
                continue
            seeds = _common_seeds(g, r)
            lost = sorted(set(g) - set(seeds))
            if lost:
                notes.append(f"{kind} {st or '-'} against {ref_kind}: seeds {', '.join(map(str, lost))} have no "
                             f"{ref_kind} of the same seed and are left out of this paired comparison")
            if not seeds:
                continue
            per_setting[st] = (seeds, [g[x] for x in seeds], [r[x] for x in seeds])
        blocks = list(per_setting.items())
        if len(per_setting) > 1:   # stratified over settings: seeds present at every setting, averaged within seed
            seeds = _common_seeds(*({x: 0 for x in v[0]} for v in per_setting.values()))
            if seeds:
                blocks.append((ALL, (seeds, None, None)))
        for st, (seeds, rk, rr) in blocks:
            for lvl, scope, sel in scopes:
                if st == ALL:
                    d = np.mean([p.log_ratio([v[1][v[0].index(x)] for x in seeds], [v[2][v[0].index(x)] for x in seeds], sel)
                                 for v in per_setting.values()], axis=0)
                else:
                    d = p.log_ratio(rk, rr, sel)
                if not np.isfinite(d[0]).all():
                    continue
                rows.append(_row(kind, st, ref_kind, "robustness", lvl, scope, seed_interval(d, level), p.n_images,
                                 seeds, "score"))
            for stat, arr in (("clean_accuracy", p.clean), ("effective_robustness", p.effective)):
                if st == ALL:
                    diff = np.mean([arr[:, [v[1][v[0].index(x)] for x in seeds]] - arr[:, [v[2][v[0].index(x)] for x in seeds]]
                                    for v in per_setting.values()], axis=0)
                else:
                    diff = arr[:, rk] - arr[:, rr]
                rows.append(_row(kind, st, ref_kind, stat, "clean" if stat == "clean_accuracy" else "overall",
                                 stat.split("_")[0], seed_interval(diff, level), p.n_images, seeds, "plain"))

    present = {k for k, _ in p.groups}
    for kind in sorted(present - {baseline_kind}):
        compare(kind, baseline_kind)
        for ref in references.get(kind, ()):
            if ref in present and ref != kind:
                compare(kind, ref)
    return pl.DataFrame(rows, schema=COLUMNS), notes


def overall(table: pl.DataFrame, kind: str, reference: str, setting: str | None = None) -> dict | None:
    """The overall-robustness row of one comparison (`setting` None: the stratified one where the kind
    has several settings, else its only one)."""
    t = table.filter((pl.col("kind") == kind) & (pl.col("reference") == reference) & (pl.col("statistic") == "robustness")
                     & (pl.col("level") == "overall"))
    if setting is not None:
        t = t.filter(pl.col("setting") == setting)
    elif t.height > 1:
        t = t.filter(pl.col("setting") == ALL)
    return t.row(0, named=True) if t.height else None
