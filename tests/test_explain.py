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
    gain = {"estimate": 115.0, "low": 110.0}
    row = {"estimate": 111, "low": 104, "high": 118, "n_seeds": 5, "n_images": 1000, "mde": 8.0}
    assert explain.verdict(row, gain) == "beats"
    assert explain.verdict({**row, "estimate": 89, "low": 83, "high": 95}, gain) == "loses"
    # covers 100, excludes even the smallest gain the run allows (106 < 110) and could have seen it: not separated
    close = {**row, "estimate": 101, "low": 96, "high": 106, "mde": 9.0}
    assert explain.verdict(close, gain) == "no_separation"
    # the same comparison when the gain itself is not shown (its interval reaches below 100): undecided
    assert explain.verdict(close, {"estimate": 120.0, "low": 98.0}) == "undecided"
    # its upper end (112) is below the gain's estimate (115) but not below the gain's lower end (110): undecided
    assert explain.verdict({**close, "high": 112}, gain) == "undecided"
    # covers 100 and could have seen 10%, but its interval still reaches the gain (117 > 110): undecided
    assert explain.verdict({**row, "estimate": 108, "low": 99, "high": 117, "mde": 9.0}, gain) == "undecided"
    # covers 100, but only a difference above 20% was detectable: undecided
    assert explain.verdict({**row, "estimate": 101, "low": 90, "high": 109, "mde": 20.0}, gain) == "undecided"
    s = explain.sentence("mtl_monkey", "baseline_lowpass", close, gain)
    assert s.startswith("MTL-Monkey: co-training does not separate from a low-pass prior") and "at least 10.0%" in s
    s = explain.sentence("mtl_monkey", "mtl_surrogate", {**row, "estimate": 89, "low": 83, "high": 95}, gain)
    assert s.startswith("MTL-Monkey: co-training is less robust than targets with the data's statistics"), s
    table = comps([("mtl_monkey", "baseline", 115, 108, 122, 5, 7), ("mtl_monkey", "mtl_shuffled", 110, 104, 116, 5, 7),
                   ("mtl_monkey", "baseline_lowpass", 111, 104, 118, 5, 8), ("mtl_monkey", "mtl_pixel", 101, 90, 113, 5, 20),
                   ("baseline_lowpass", "baseline", 104, 99, 109, 5, 7), ("mtl_pixel", "baseline", 114, 107, 121, 5, 7)])
    e = explain.explanation(table)
    assert [x["kind"] for x in e] == ["mtl_monkey"] and e[0]["table"].height == 4
    assert e[0]["sentences"][0].startswith("MTL-Monkey is more robust than the Baseline (115.0 [108.0, 122.0]")
    assert e[0]["sentences"][1].startswith("MTL-Monkey: co-training beats a low-pass prior")
    assert e[0]["sentences"][2].startswith("MTL-Monkey against pixel-derived targets: undecided at this power")
    # the lead says when there is no gain to explain: not shown, or a loss
    row = {"estimate": 103.1, "low": 95.0, "high": 112.0, "n_seeds": 5, "mde": 11.7}
    assert explain.lead("mtl_monkey", row).startswith("MTL-Monkey's gain over the Baseline is not shown (103.1 [95.0, 112.0]")
    assert "there is no gain to explain" in explain.lead("mtl_monkey", {**row, "estimate": 90, "low": 85, "high": 95})
    assert "is not shown" in explain.lead("mtl_monkey", {**row, "n_seeds": 1, "low": 101})


def cal(rows):
    return pl.DataFrame([{"planted": p, "kind": k, "estimate": e, "low": lo, "high": hi} for p, k, e, lo, hi in rows])


def rise_rows(kind, *contrasts):
    """`rises` rows: (from, to, estimate, low, high) each."""
    return [{"kind": kind, "from": a, "to": b, "estimate": e, "low": lo, "high": hi, "mde": 10.0, "n_seeds": 5}
            for a, b, e, lo, hi in contrasts]


RISE = (rise_rows("mtl_true", (0.0, 1.0, 124, 115, 133), (0.0, 0.5, 111, 104, 118), (0.5, 1.0, 112, 105, 119))
        + rise_rows("mtl_monkey", (0.0, 1.0, 117, 108, 126), (0.0, 0.5, 109, 102, 116), (0.5, 1.0, 107, 101, 113)))


def J(table):
    return judge(table, RISE)


def test_the_calibration_verdict_needs_no_false_discovery_a_found_rising_benefit_and_a_flat_shuffled_control():
    good = cal([(0.0, "mtl_true", 101, 95, 107), (0.0, "mtl_monkey", 99, 94, 105), (0.0, "mtl_shuffled", 100, 95, 106),
                (0.5, "mtl_true", 112, 106, 118), (0.5, "mtl_monkey", 108, 102, 114), (0.5, "mtl_shuffled", 101, 96, 107),
                (1.0, "mtl_true", 125, 118, 132), (1.0, "mtl_monkey", 116, 110, 122), (1.0, "mtl_shuffled", 99, 94, 104)])
    checks = {n: s for n, s, _ in J(good)}
    assert set(checks.values()) == {"pass"} and len(checks) == 6
    # without seed-paired contrasts a rise is not shown, whatever the estimates' order
    assert {n: s for n, s, _ in judge(good)}["MTL-True rises with the planted strength"] == "unclear"
    false_discovery = good.with_columns(pl.when((pl.col("planted") == 0) & (pl.col("kind") == "mtl_monkey"))
                                        .then(pl.lit(103.0)).otherwise(pl.col("low")).alias("low"))
    assert {n: s for n, s, _ in J(false_discovery)}["no false discovery in the null world"] == "fail"
    # a harm at the null is no discovery of a benefit: the check passes and says so
    def edit(table, p, kind, **cols):
        at = (pl.col("planted") == p) & (pl.col("kind") == kind)
        return table.with_columns(**{c: pl.when(at).then(pl.lit(float(v))).otherwise(pl.col(c)) for c, v in cols.items()})

    harm = edit(good, 0.0, "mtl_true", estimate=93, low=89, high=97)
    (null,) = [(s, d) for n, s, d in J(harm) if n == "no false discovery in the null world"]
    assert null[0] == "pass" and "MTL-True below 100: a harm, not a benefit" in null[1]
    # an interval that is not finite, or a kind missing from a world, proves nothing either way
    blind = {n: s for n, s, _ in J(edit(good, 0.0, "mtl_monkey", low=float("nan"), high=float("nan")))}
    assert blind["no false discovery in the null world"] == "unclear"
    assert {n: s for n, s, _ in J(edit(good, 1.0, "mtl_true", low=float("nan")))}["MTL-True finds the planted benefit"] == "unclear"
    no_null = {n: s for n, s, _ in J(good.filter(~((pl.col("planted") == 0) & (pl.col("kind") == "mtl_true"))))}
    assert no_null["no false discovery in the null world"] == "unclear"
    assert no_null["MTL-True rises with the planted strength"] == "unclear"
    assert {n: s for n, s, _ in J(good.filter(pl.col("planted") != 0.5))}["MTL-True rises with the planted strength"] == "pass"
    # a planted benefit whose interval includes 100 is not shown at the run's power (unclear, the power stated);
    # one whose interval lies below 100 is refuted (fail)
    missed = good.with_columns(pl.when((pl.col("planted") == 0.5) & (pl.col("kind") == "mtl_true"))
                               .then(pl.lit(99.0)).otherwise(pl.col("low")).alias("low"), mde=pl.lit(14.0))
    (found,) = [(s, d) for n, s, d in J(missed) if n == "MTL-True finds the planted benefit"]
    assert found[0] == "unclear" and "0.5: 112.0 [99.0, 118.0], smallest detectable effect 14%" in found[1]
    assert "would need" not in found[1]   # no planning figure in the table: none invented
    planned = missed.with_columns(detect_low=pl.col("low"), detect_high=pl.col("high"), detect_mde=pl.lit(14.0),
                                  detect_seeds_needed=pl.lit(12.0))
    (found,) = [d for n, s, d in J(planned) if n == "MTL-True finds the planted benefit"]
    assert "smallest detectable effect 14% (a gain of its estimated size, at this run's spread from seed to seed, would need about 12 seeds" in found
    refuted = edit(good, 0.5, "mtl_true", estimate=94, low=90, high=98)
    assert {n: s for n, s, _ in J(refuted)}["MTL-True finds the planted benefit"] == "fail"
    # the finding reads the interval at the nominal level where the table has one (detect_*), the coverage
    # checks the Bonferroni one
    nominal = missed.with_columns(detect_low=pl.col("low") + 3, detect_high=pl.col("high"), detect_mde=pl.lit(9.0))
    assert {n: s for n, s, _ in J(nominal)}["MTL-True finds the planted benefit"] == "pass"
    leak = good.with_columns(pl.when((pl.col("planted") == 0.5) & (pl.col("kind") == "mtl_shuffled"))
                             .then(pl.lit(101.0)).otherwise(pl.col("low")).alias("low"))
    assert {n: s for n, s, _ in J(leak)}["MTL-Shuffled covers 100 in every world"] == "fail"


def test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed():
    """`rises` compares the strongest world with the null within each seed (the Baseline, the same models in every
    world, drops out): seeds whose scores against the Baseline swing by ±30% yet rise by 10-14% each from the null
    give about +12% with an interval above 100, where either world's own interval would span 100; then each world
    with the next weaker one. The rise check passes when all of them lie above 100, fails when any lies below, and is
    unclear otherwise (not shown at the run's power), or without the contrast with the null."""
    import numpy as np

    from analysis.calibration import rises

    rng = np.random.default_rng(0)
    swing = np.log([0.7, 1.3, 0.9, 1.2, 0.8])                      # each seed's luck against its Baseline
    lift = np.log([1.10, 1.14, 1.12, 1.11, 1.13])                  # the planted rise, seed by seed
    reps = lambda v: np.vstack([v, v + rng.normal(0, 0.005, (50, 5))])   # noqa: E731 - image replicates
    seeds = [0, 1, 2, 3, 4]
    world = lambda d: {"images": (1, 2, 3), "mtl_true": (seeds, reps(d))}   # noqa: E731
    r, up, on = rises({0.0: world(swing), 0.5: world(swing + lift / 2), 1.0: world(swing + lift)}, 0.95)
    assert (r["kind"], r["from"], r["to"], r["n_seeds"]) == ("mtl_true", 0.0, 1.0, 5)
    assert abs(r["estimate"] - 100 * np.exp(lift.mean())) < 0.5 and 100 < r["low"] < r["estimate"] < r["high"] < 120
    assert [(c["from"], c["to"]) for c in (up, on)] == [(0.0, 0.5), (0.5, 1.0)]
    assert abs(up["estimate"] - 100 * np.exp(lift.mean() / 2)) < 0.5 and up["low"] > 100 and up["mde"] > 0
    assert 2 <= up["seeds_needed"] <= 10   # a step this clear plans a small run (here 3 seeds)
    # a seed missing from one world is left out of the pair; with fewer than 2 seeds there is no contrast
    short = {0.0: {"images": (1,), "mtl_true": ([0, 1], reps(swing)[:, :2])}, 1.0: {"images": (1,), "mtl_true": ([1], reps(swing)[:, 1:2])}}
    assert rises(short, 0.95) == []
    # worlds scored on other test images share no image noise to pair: no contrast (the rise is then unclear)
    assert rises({0.0: world(swing), 1.0: {**world(swing + lift), "images": (4, 5, 6)}}, 0.95) == []

    table = cal([(0.0, "mtl_true", 90, 70, 115), (0.5, "mtl_true", 100, 80, 125), (1.0, "mtl_true", 112, 90, 140)])
    check = lambda t, rise: next((s, d) for n, s, d in judge(t, rise) if n == "MTL-True rises with the planted strength")   # noqa: E731
    state = lambda rise: check(table, rise)[0]   # noqa: E731
    assert state([r, up, on]) == "pass"
    assert state(None) == "unclear" and state([r]) == "unclear"   # the estimates' order alone, or no steps: not shown
    assert state([{**r, "low": 97.0}, up, on]) == "unclear"
    assert state([{**r, "estimate": 95.0, "low": 90.0, "high": 98.0}, up, on]) == "fail"
    # the contrast with the null is picked by its worlds, not by its place: without it the rise is not shown
    s, d = check(table, [up, on])
    assert s == "unclear" and "1 against 0: no contrast" in d
    # a step within the noise leaves the rise unclear, stated with its interval and power; one below 100 fails;
    # one with no finite interval is not shown either
    dip = {**on, "estimate": 97.0, "low": 85.0, "high": 111.0, "mde": 30.0}
    s, d = check(table, [r, up, dip])
    assert s == "unclear" and "1 against 0.5: 97.0 [85.0, 111.0], smallest detectable effect 30%" in d
    assert d.endswith("not shown at this power: 1 against 0.5")
    # where a gain is not shown and the contrast knows how many seeds one of its estimated size needs, the check
    # says so; a gain already shown, or a fall, plans nothing
    small = {**on, "estimate": 104.0, "low": 95.0, "high": 114.0, "mde": 30.0}
    s, d = check(table, [{**r, "seeds_needed": 4.0}, up, {**small, "seeds_needed": 37.0}])
    assert s == "unclear" and ("104.0 [95.0, 114.0], smallest detectable effect 30% (a gain of its estimated size, at this "
                               "run's spread from seed to seed, would need about 37 seeds for 80% power") in d
    assert "about 4 seeds" not in d
    s, d = check(table, [r, up, {**dip, "seeds_needed": 37.0}])
    assert "seeds for" not in d and "would show" not in d
    s, d = check(table, [r, up, {**small, "seeds_needed": np.inf}])
    assert "(no run of up to 1,000 seeds would show a gain of its estimated size at this run's spread)" in d
    s, d = check(table, [r, up, {**small, "seeds_needed": np.nan}])
    assert d.count("smallest detectable effect 30%") == 1 and "would" not in d
    s, d = check(table, [r, up, {**dip, "high": 98.0}])
    assert s == "fail" and d.endswith("it falls: 1 against 0.5")
    assert state([r, up, {**on, "low": float("nan")}]) == "unclear"


def test_the_explanation_section_renders_with_intervals_detectable_effects_and_its_sentences(tmp_path):
    """A lake of five seeds of the Baseline, MTL-Monkey, MTL-Shuffled, Baseline low-pass and MTL-Pixel whose
    per-image predictions give MTL-Monkey +15% over the Baseline, the low-pass Baseline +14% and MTL-Pixel
    +2%: the report, opened in headless Chromium, shows "What explains it" with each comparison's interval and
    smallest detectable effect, and a sentence per simpler explanation (the low-pass prior explains the gain;
    the pixel targets do not)."""
    import json

    import numpy as np

    from browser import inspect_page, require_chromium
    from conftest import run_cli
    from core.data.corruptions import CORRUPTIONS
    from core.results import write_table

    rng = np.random.default_rng(0)
    root, n = tmp_path / "store" / "lake", 600
    labels = np.arange(n) % 10
    conds = [("clean", 0)] + [(c, s) for c in ("gaussian_noise", "defocus_blur", "fog", "pixelate") for s in (1, 2)]
    gains = {"baseline": 1.0, "mtl_monkey": 1.15, "mtl_shuffled": 1.0, "baseline_lowpass": 1.14, "mtl_pixel": 1.02}
    for kind, gain in gains.items():
        ratio = "2:1" if kind.startswith("mtl") else ""
        for seed in range(5):
            rid = f"{kind}-{seed}"
            p_seed = 0.4 * gain * np.exp(rng.normal(0, 0.03))
            rows, acc = [], []
            for cond, sev in conds:
                right = rng.random(n) < (0.8 if cond == "clean" else p_seed)
                rows += [{"run_id": rid, "kind": kind, "ratio": ratio, "seed": seed, "condition": cond, "severity": sev,
                          "image": i, "label": int(labels[i]), "predicted": int(labels[i] if c else (labels[i] + 1) % 10),
                          "correct": bool(c)} for i, c in enumerate(right)]
                if cond != "clean":
                    acc.append({"run_id": rid, "kind": kind, "ratio": ratio, "seed": seed, "corruption": cond,
                                "category": CORRUPTIONS[cond], "severity": sev, "accuracy": float(right.mean()), "n_images": n})
            write_table(root, "predictions", rows, "x", kind, rid)
            write_table(root, "corruption_accuracy", acc, "x", kind, rid)
            write_table(root, "runs", [{"run_id": rid, "kind": kind, "ratio": ratio, "seed": seed, "status": "ok",
                                        "preset": "explain", "clean_accuracy": 0.8, "feve": 0.3 if kind == "mtl_monkey" else float("nan"),
                                        "readout_alive": 1.0, "config": "{}", "versions": "{}", "ratio_value": 2.0,
                                        "data": json.dumps({"world": "synthetic world, default: unknown"}),
                                        "created_at": "2026-12-06T00:00:00+00:00"}], "x", kind, rid)
    r = run_cli("-m", "analysis", "--results", str(tmp_path / "store"), "--out", str(tmp_path / "rep"), "--bootstrap", "50")
    assert r.returncode == 0, r.stderr[-2000:]
    info = inspect_page(require_chromium(), tmp_path / "rep" / "report.html", tmp_path / "shot.png")
    text = info["texts"]["explain"]
    assert "What explains it" in text and "smallest detectable effect" in text
    assert "Baseline low-pass" in text and "MTL-Pixel" in text and "[" in text
    assert "MTL-Monkey: co-training beats pixel-derived targets" in text, text
    assert ("co-training does not separate from a low-pass prior" in text
            or "against a low-pass prior: undecided at this power" in text), text
    assert "World:" in info["texts"]["world"] and "more robust than Baseline" in info["texts"]["findings"]
