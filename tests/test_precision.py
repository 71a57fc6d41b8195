"""Seed-paired intervals (analysis.precision), each part against an independent computation by hand."""

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import bootstrap as bs
from analysis.precision import comparisons, overall, seed_interval, seeds_needed
from core.data.corruptions import CORRUPTIONS
from test_analysis import lake_like

Z = stats.norm.ppf(0.975)


def lake(models: dict[tuple[str, str, int], np.ndarray], conds) -> bs.Correctness:
    """models[(kind, ratio, seed)] = correctness (conditions, images); clean = the first condition's."""
    rows = [{"run_id": f"{k}-{r}-{s}", "kind": k, "ratio": r, "seed": s} for k, r, s in models]
    x = np.stack(list(models.values())).astype(np.float32)
    return bs.Correctness(pl.DataFrame(rows), conds, np.arange(x.shape[-1]), x[:, 0], x, [])


def log_ratio_by_hand(cor, kind_row, ref_row, weights=None):
    """ln(mean_c A_c(kind) / A_c(ref)), A_c the mean over severities and (weighted) images."""
    w = np.full(cor.corrupt.shape[-1], 1 / cor.corrupt.shape[-1]) if weights is None else weights
    corrs = list(dict.fromkeys(c for c, _ in cor.conditions))
    a = {}
    for row in (kind_row, ref_row):
        for c in corrs:
            idx = [j for j, (cc, _) in enumerate(cor.conditions) if cc == c]
            a[(row, c)] = np.mean([cor.corrupt[row, j] @ w for j in idx])
    return np.log(np.mean([a[(kind_row, c)] / a[(ref_row, c)] for c in corrs]))


def test_paired_estimate_and_interval_match_an_independent_computation():
    """Baseline seeds 0-2, MTL-Monkey seeds 0-1: seeds 0 and 1 are paired. The estimate is 100·exp of the
    mean of the two seeds' ln ratios; the interval's image term equals the covariance of the two over a
    plain loop bootstrap of the images (other random numbers, same procedure), its seed term s²/k with
    the t quantile of 1 degree of freedom."""
    preds, runs = lake_like()
    cor = bs.correctness(preds, runs)
    table, notes = comparisons(cor, n_boot=1000, seed=1)
    row = overall(table, "mtl_monkey", "baseline")
    ids = cor.runs["run_id"].to_list()
    pairs = [(ids.index(f"mtl_monkey-1:1-{s}"), ids.index(f"baseline--{s}")) for s in (0, 1)]
    d = np.array([log_ratio_by_hand(cor, k, b) for k, b in pairs])
    assert row["estimate"] == pytest.approx(100 * np.exp(d.mean()), rel=1e-5)
    assert row["n_seeds"] == 2 and row["seeds"] == "0,1" and row["n_images"] == 150
    rng = np.random.default_rng(7)
    n = cor.corrupt.shape[-1]
    reps = np.array([[log_ratio_by_hand(cor, k, b, np.bincount(idx, minlength=n) / n) for k, b in pairs]
                     for idx in (rng.integers(0, n, n) for _ in range(300))])
    c = np.cov(reps, rowvar=False)[0, 1]
    half = np.sqrt(stats.t.ppf(0.975, 1) ** 2 * d.var(ddof=1) / 2 + Z**2 * max(c, 0))
    lo, hi = np.log(row["low"] / 100), np.log(row["high"] / 100)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.2)
    assert (lo + hi) / 2 == pytest.approx(d.mean(), abs=1e-6)
    # seeded: the same seed gives the same table, another seed another image term
    assert comparisons(cor, n_boot=1000, seed=1)[0].equals(table)
    assert not comparisons(cor, n_boot=1000, seed=2)[0].equals(table)
    # the Baseline's own clean accuracy: the mean over its seeds and images
    base = table.filter((pl.col("kind") == "baseline") & (pl.col("statistic") == "clean_accuracy")).row(0, named=True)
    want = preds.filter((pl.col("kind") == "baseline") & (pl.col("condition") == "clean"))["correct"].mean()
    assert base["estimate"] == pytest.approx(want, rel=1e-6) and base["low"] < want < base["high"]


def test_images_are_resampled_paired_across_models():
    """One seed each, two models that fail on mostly the same images: the ln ratio's interval matches the
    delta-method standard error of the paired ratio (covariance term included). Drawing images per model
    (unpaired) would be ~3x wider; resampling no images would give width 0."""
    rng = np.random.default_rng(0)
    n = 600
    b = rng.random(n) < 0.5
    m = np.where(rng.random(n) < 0.1, rng.random(n) < 0.6, b)   # 90% of images: the same outcome
    cor = lake({("baseline", "", 0): b[None], ("mtl_monkey", "1:1", 0): m[None]}, [("gaussian_noise", 1)])
    mb, mm = b.mean(), m.mean()
    cov = np.cov(np.stack([m, b]).astype(float), ddof=0)
    paired = np.sqrt((cov[0, 0] / mb**2 + mm**2 * cov[1, 1] / mb**4 - 2 * mm * cov[0, 1] / mb**3) / n) / (mm / mb)
    unpaired = np.sqrt((cov[0, 0] / mb**2 + mm**2 * cov[1, 1] / mb**4) / n) / (mm / mb)
    assert unpaired > 2.5 * paired
    row = overall(comparisons(cor, n_boot=2000, seed=3)[0], "mtl_monkey", "baseline")
    assert np.log(row["high"] / row["low"]) / 2 == pytest.approx(Z * paired, rel=0.15)
    assert row["n_seeds"] == 1 and np.isnan(row["seed_sd"])


def test_the_seed_spread_enters_with_its_t_quantile():
    """Four seeds whose MTL models lie far apart (accuracy 0.3 .. 0.6), many images: the half-width is the
    seed term, t_{3, 0.975}·s/sqrt(k) on the ln scale, within 3% (the image term adds a little). A normal
    quantile (1.96 in place of 3.18), an image-only interval or a doubled width each fail this."""
    rng = np.random.default_rng(1)
    n = 4000
    models = {}
    for s, p in enumerate((0.3, 0.4, 0.5, 0.6)):
        models[("baseline", "", s)] = (rng.random(n) < 0.5)[None]
        models[("mtl_monkey", "1:1", s)] = (rng.random(n) < p)[None]
    cor = lake(models, [("gaussian_noise", 1)])
    ids = cor.runs["run_id"].to_list()
    d = np.array([log_ratio_by_hand(cor, ids.index(f"mtl_monkey-1:1-{s}"), ids.index(f"baseline--{s}")) for s in range(4)])
    row = overall(comparisons(cor, n_boot=500, seed=0)[0], "mtl_monkey", "baseline")
    half = np.log(row["high"] / row["low"]) / 2
    seed_half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert half == pytest.approx(seed_half, rel=0.03)
    assert row["seed_sd"] == pytest.approx(d.std(ddof=1), rel=1e-6) and row["df"] == 3
    # the smallest detectable effect: the same with the 80% quantile added, as a percentage
    mde = np.expm1(seed_half + stats.t.ppf(0.8, 3) * d.std(ddof=1) / 2)
    assert row["mde"] == pytest.approx(100 * mde, rel=0.05)


def test_ratios_are_averaged_within_seed_never_pooled_as_seeds():
    """Two ratios × three seeds whose seed effect is shared by both ratios (as paired seeds share their
    initial weights): the stratified row averages the ratios within each seed and rests on 3 seeds, not 6.
    Pooling the six (ratio, seed) models as seeds would halve the seed term's variance and give 5 degrees
    of freedom: narrower than the seeds allow."""
    rng = np.random.default_rng(2)
    n = 3000
    models = {}
    for s, shift in enumerate((0.35, 0.5, 0.62)):
        models[("baseline", "", s)] = (rng.random(n) < 0.5)[None]
        for r, bump in (("1:2", 0.0), ("2:1", 0.03)):
            models[("mtl_shuffled", r, s)] = (rng.random(n) < shift + bump)[None]
    cor = lake(models, [("gaussian_noise", 1)])
    table, _ = comparisons(cor, n_boot=400, seed=0)
    row = overall(table, "mtl_shuffled", "baseline")
    assert row["setting"] == "all" and row["n_seeds"] == 3 and row["df"] == 2
    ids = cor.runs["run_id"].to_list()
    d = np.array([np.mean([log_ratio_by_hand(cor, ids.index(f"mtl_shuffled-{r}-{s}"), ids.index(f"baseline--{s}"))
                           for r in ("1:2", "2:1")]) for s in range(3)])
    assert row["estimate"] == pytest.approx(100 * np.exp(d.mean()), rel=1e-6)
    half = np.log(row["high"] / row["low"]) / 2
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3), rel=0.03)
    # each ratio has its own row too
    assert {r["setting"] for r in table.filter((pl.col("kind") == "mtl_shuffled") & (pl.col("level") == "overall")
                                               & (pl.col("reference") == "baseline")).iter_rows(named=True)} == {"1:2", "2:1", "all"}


def test_a_corruption_with_the_baseline_at_zero_is_left_out_of_every_score_the_same_way():
    """One rule for an undefined ratio: the Baseline right on no fog image leaves fog out of the scores and
    out of the paired intervals alike (both give the same overall estimate, from gaussian_noise alone), and
    the report names it."""
    from analysis.scores import robustness_scores, undefined_corruptions

    rng = np.random.default_rng(4)
    n = 200
    conds = [("gaussian_noise", 1), ("fog", 1)]
    probs = {("baseline", "", 0): (0.5, 0.0), ("mtl_monkey", "1:1", 0): (0.6, 0.3)}
    models = {k: np.stack([rng.random(n) < p for p in ps]) for k, ps in probs.items()}
    cor = lake(models, conds)
    table, notes = comparisons(cor, n_boot=50, seed=0)
    mine = table.filter((pl.col("kind") == "mtl_monkey") & (pl.col("statistic") == "robustness"))
    acc = pl.DataFrame([{"run_id": f"{k}-{r}-{s}", "kind": k, "ratio": r, "seed": s, "corruption": c, "category": CORRUPTIONS[c],
                         "severity": sev, "accuracy": float(models[(k, r, s)][j].mean()), "n_images": n}
                        for (k, r, s) in models for j, (c, sev) in enumerate(conds)])
    sc = robustness_scores(acc).filter(pl.col("kind") == "mtl_monkey")
    want = 100 * models[("mtl_monkey", "1:1", 0)][0].mean() / models[("baseline", "", 0)][0].mean()
    assert sc.filter(pl.col("level") == "overall")["robustness"][0] == pytest.approx(want)
    assert mine.filter(pl.col("scope") == "overall")["estimate"][0] == pytest.approx(want, rel=1e-5)
    assert "fog" not in set(mine["scope"]) and "weather" not in set(mine["scope"])
    assert undefined_corruptions(acc) == ["fog"] and any("scores 0 on fog" in m for m in notes)


def test_seed_interval_of_one_seed_is_the_image_term_alone():
    x = np.vstack([[0.1], np.random.default_rng(0).normal(0.1, 0.02, (4000, 1))])
    r = seed_interval(x)
    assert r["n_seeds"] == 1 and r["df"] == np.inf
    assert r["high"] - r["estimate"] == pytest.approx(Z * 0.02, rel=0.05)


def test_seeds_needed_is_the_first_count_whose_detectable_effect_reaches_the_estimate():
    """Seeds with the same mean and spread as five measured ones: at the count `seeds_needed` names, seed_interval's
    own smallest detectable effect (at the same level and power) is at most the estimate, one seed fewer it is
    larger. Mutants caught: a count one too high or too low, the interval's half-width alone (50% power), a normal
    quantile for the seed term, the level ignored."""
    rng = np.random.default_rng(4)
    shared = rng.standard_normal((400, 1))
    shared = (shared - shared.mean()) / shared.std(ddof=1)   # the image noise every seed shares, s.d. exactly 1

    def seeds(k, mean, sd, image_sd=0.01):
        z = rng.standard_normal(k)
        v = mean + sd * (z - z.mean()) / z.std(ddof=1)
        return np.vstack([v, v + image_sd * shared])

    for mean, sd, level, power in ((0.08, 0.10, 0.95, 0.8), (-0.05, 0.04, 0.95, 0.8), (0.15, 0.20, 0.95, 0.8),
                                   (0.08, 0.10, 0.90, 0.9), (0.08, 0.10, 0.99, 0.8)):
        x = seeds(5, mean, sd)
        n = seeds_needed(x, level, power)
        assert n == int(n) and n > 2
        n = int(n)
        assert seed_interval(x)["image_sd"] == pytest.approx(0.01)
        at = lambda k: seed_interval(seeds(k, mean, sd), level, power)   # noqa: E731
        assert at(n)["mde"] <= abs(mean) + 1e-9 < at(n - 1)["mde"]
    assert seeds_needed(seeds(5, 0.3, 0.05)) <= 5                           # already detectable: five seeds or fewer
    assert seeds_needed(seeds(5, 0.01, 0.2, image_sd=0.0)) == np.inf        # about 3,100 seeds: past the cap of 1,000
    # the images' shared noise sets a floor no number of seeds lowers: (1.96 + 0.84) x 0.01 = 0.028 > 0.02
    assert seeds_needed(seeds(5, 0.02, 0.001)) == np.inf
    assert seeds_needed(seeds(5, 0.03, 0.001)) < 10                         # just above the floor
    assert np.isnan(seeds_needed(np.vstack([[0.1], 0.1 + 0.01 * shared])))  # one seed: no spread to plan from
    assert np.isnan(seeds_needed(seeds(5, 0.08, 0.1)[:1]))                  # no image replicates
