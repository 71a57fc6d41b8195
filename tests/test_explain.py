"""The report's judgements on hand-built comparison tables: the plain-words answers (analysis.findings),
the simpler explanations (analysis.explain) and the calibration verdict (analysis.calibration)."""

import polars as pl

from analysis import explain, findings
from analysis.calibration import judge


def comps(rows):
    """Rows of analysis.precision.comparisons: (kind, reference, estimate, low, high, n_seeds, mde)."""
    return pl.DataFrame([{"kind": k, "setting": "2:1" if k.startswith("mtl") else "", "reference": r,
                          "statistic": "robustness", "level": "overall", "scope": "overall", "estimate": e, "low": lo,
                          "high": hi, "n_seeds": n, "n_images": 1000, "mde": mde} for k, r, e, lo, hi, n, mde in rows])


def test_findings_say_more_less_or_undecided_with_the_detectable_effect_and_one_seed_in_words():
    f = findings.findings(comps([("mtl_monkey", "baseline", 112, 105, 119, 8, 6.0),
                                 ("mtl_monkey", "mtl_shuffled", 103, 98, 108, 8, 7.1),
                                 ("mtl_oracle", "baseline", 90, 85, 95, 8, 5.0)]))
    by = {(x.kind, x.reference): x for x in f}
    assert by[("mtl_monkey", "baseline")].verdict == "more"
    assert "more robust than Baseline" in by[("mtl_monkey", "baseline")].sentence
    und = by[("mtl_monkey", "mtl_shuffled")]
    assert und.verdict == "undecided" and "could have detected an effect of 7.1% or more" in und.sentence
    assert by[("mtl_oracle", "baseline")].verdict == "less"
    one = findings.findings(comps([("mtl_monkey", "baseline", 130, 120, 140, 1, 9.0)]))[0]
    assert one.verdict == "one_seed" and "One training seed" in one.sentence and "cannot show" in one.sentence
    # the controls' kinds are not the research question: no answer for MTL-Shuffled or the Oracle
    assert not findings.findings(comps([("mtl_shuffled", "baseline", 100, 95, 105, 8, 6), ("oracle", "baseline", 120, 110, 130, 8, 6)]))


def test_the_simpler_explanations_beat_do_not_separate_or_stay_undecided():
    gain = {"estimate": 115.0}
    row = {"estimate": 111, "low": 104, "high": 118, "n_seeds": 5, "n_images": 1000, "mde": 8.0}
    assert explain.verdict(row, gain) == "beats"
    assert explain.verdict({**row, "estimate": 89, "low": 83, "high": 95}, gain) == "loses"
    # covers 100, and could have seen a difference as large as the gain over the Baseline (15%): not separated
    assert explain.verdict({**row, "estimate": 101, "low": 96, "high": 106, "mde": 9.0}, gain) == "no_separation"
    # covers 100, but only a difference above 20% was detectable: undecided
    assert explain.verdict({**row, "estimate": 101, "low": 90, "high": 113, "mde": 20.0}, gain) == "undecided"
    s = explain.sentence("mtl_monkey", "baseline_lowpass", {**row, "estimate": 101, "low": 96, "high": 106, "mde": 9.0}, gain)
    assert s.startswith("MTL-Monkey: co-training does not separate from a low-pass prior") and "15.0%" in s
    table = comps([("mtl_monkey", "baseline", 115, 108, 122, 5, 7), ("mtl_monkey", "mtl_shuffled", 110, 104, 116, 5, 7),
                   ("mtl_monkey", "baseline_lowpass", 111, 104, 118, 5, 8), ("mtl_monkey", "mtl_pixel", 101, 90, 113, 5, 20),
                   ("baseline_lowpass", "baseline", 104, 99, 109, 5, 7), ("mtl_pixel", "baseline", 114, 107, 121, 5, 7)])
    e = explain.explanation(table)
    assert [x["kind"] for x in e] == ["mtl_monkey"] and e[0]["table"].height == 4
    assert e[0]["sentences"][0].startswith("MTL-Monkey: co-training beats a low-pass prior")
    assert e[0]["sentences"][1].startswith("MTL-Monkey against pixel-derived targets: undecided at this power")


def cal(rows):
    return pl.DataFrame([{"planted": p, "kind": k, "estimate": e, "low": lo, "high": hi} for p, k, e, lo, hi in rows])


def test_the_calibration_verdict_needs_no_false_discovery_a_found_rising_benefit_and_a_flat_shuffled_control():
    good = cal([(0.0, "mtl_true", 101, 95, 107), (0.0, "mtl_monkey", 99, 94, 105), (0.0, "mtl_shuffled", 100, 95, 106),
                (0.5, "mtl_true", 112, 106, 118), (0.5, "mtl_monkey", 108, 102, 114), (0.5, "mtl_shuffled", 101, 96, 107),
                (1.0, "mtl_true", 125, 118, 132), (1.0, "mtl_monkey", 116, 110, 122), (1.0, "mtl_shuffled", 99, 94, 104)])
    checks = {n: s for n, s, _ in judge(good)}
    assert set(checks.values()) == {"pass"} and len(checks) == 6
    false_discovery = good.with_columns(pl.when((pl.col("planted") == 0) & (pl.col("kind") == "mtl_monkey"))
                                        .then(pl.lit(103.0)).otherwise(pl.col("low")).alias("low"))
    assert {n: s for n, s, _ in judge(false_discovery)}["no false discovery in the null world"] == "fail"
    flat = good.with_columns(pl.when((pl.col("planted") == 1.0) & (pl.col("kind") == "mtl_monkey"))
                             .then(pl.lit(107.0)).otherwise(pl.col("estimate")).alias("estimate"))
    assert {n: s for n, s, _ in judge(flat)}["MTL-Monkey rises with the planted strength"] == "fail"
    missed = good.with_columns(pl.when((pl.col("planted") == 0.5) & (pl.col("kind") == "mtl_true"))
                               .then(pl.lit(99.0)).otherwise(pl.col("low")).alias("low"))
    assert {n: s for n, s, _ in judge(missed)}["MTL-True finds the planted benefit"] == "fail"
    leak = good.with_columns(pl.when((pl.col("planted") == 0.5) & (pl.col("kind") == "mtl_shuffled"))
                             .then(pl.lit(101.0)).otherwise(pl.col("low")).alias("low"))
    assert {n: s for n, s, _ in judge(leak)}["MTL-Shuffled covers 100 in every world"] == "fail"
