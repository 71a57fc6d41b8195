"""Analysis: each statistic checked against an independent computation on a small table built here."""

import json
import re

import numpy as np
import polars as pl
import pytest
from scipy import stats

from analysis import bootstrap as bs
from analysis.regression import TooFewModels, interaction, two_factor
from analysis.scores import MissingBaseline, robustness_scores
from conftest import run_cli
from core.data.corruptions import CORRUPTIONS
from core.results import write_table

CORRS = ["gaussian_noise", "defocus_blur", "fog", "pixelate"]  # one per category


def acc_rows(kind, ratio, seed, values):
    """values[corruption][severity-1] -> accuracy rows of the lake's corruption_accuracy table."""
    return [{"run_id": f"{kind}-{ratio}-{seed}", "kind": kind, "ratio": ratio, "seed": seed, "corruption": c,
             "category": CORRUPTIONS[c], "severity": s + 1, "accuracy": a, "n_images": 100}
            for c, accs in values.items() for s, a in enumerate(accs)]


def test_robustness_score_matches_hand_computation():
    base0 = {"gaussian_noise": [0.4, 0.2], "defocus_blur": [0.5, 0.3], "fog": [0.6, 0.4], "pixelate": [0.5, 0.5]}
    base1 = {"gaussian_noise": [0.2, 0.2], "defocus_blur": [0.3, 0.3], "fog": [0.4, 0.4], "pixelate": [0.5, 0.3]}
    mtl = {"gaussian_noise": [0.6, 0.3], "defocus_blur": [0.4, 0.2], "fog": [0.5, 0.5], "pixelate": [0.4, 0.4]}
    acc = pl.DataFrame(acc_rows("baseline", "", 0, base0) + acc_rows("baseline", "", 1, base1) + acc_rows("mtl_monkey", "1:1", 0, mtl))
    s = robustness_scores(acc)
    # by hand: A_c(Baseline) = mean over 2 seeds x 2 severities; A_c(MTL) = mean over 2 severities
    a_base = {c: (sum(base0[c]) + sum(base1[c])) / 4 for c in CORRS}
    a_mtl = {c: sum(mtl[c]) / 2 for c in CORRS}
    rel = {c: a_mtl[c] / a_base[c] for c in CORRS}
    got = {(r["level"], r["scope"]): r["robustness"] for r in s.filter(pl.col("kind") == "mtl_monkey").iter_rows(named=True)}
    assert got[("overall", "overall")] == pytest.approx(100 * sum(rel.values()) / 4)
    assert got[("category", "noise")] == pytest.approx(100 * 0.45 / 0.25)
    assert got[("corruption", "fog")] == pytest.approx(100 * rel["fog"])
    base = s.filter((pl.col("kind") == "baseline") & (pl.col("level") == "overall"))["robustness"][0]
    assert base == pytest.approx(100.0)

    with pytest.raises(MissingBaseline, match="no Baseline"):
        robustness_scores(acc.filter(pl.col("kind") != "baseline"))


def make_models(n, slope_acc, slope_feve, kind, rng):
    ca = rng.uniform(0.3, 0.6, n)
    fe = rng.uniform(0.1, 0.5, n)
    rob = 80 + slope_acc * ca + slope_feve * fe + rng.normal(0, 2.0, n)
    return pl.DataFrame({"kind": [kind] * n, "status": ["ok"] * n, "clean_accuracy": ca, "feve": fe, "robustness": rob})


def ols_by_hand(X, y):
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = len(y) - X.shape[1]
    sigma2 = resid @ resid / dof
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(X.T @ X)))
    t = beta / se
    p = 2 * stats.t.sf(np.abs(t), dof)
    r2 = 1 - resid @ resid / ((y - y.mean()) @ (y - y.mean()))
    return beta, se, p, r2


def test_two_factor_regression_matches_least_squares_by_hand():
    rng = np.random.default_rng(3)
    d = make_models(15, 40.0, 55.0, "mtl_monkey", rng)
    t = two_factor(d, label="MTL-Monkey")
    X = np.column_stack([np.ones(15), d["clean_accuracy"].to_numpy(), d["feve"].to_numpy()])
    y = d["robustness"].to_numpy()
    beta, se, p, r2 = ols_by_hand(X, y)
    got = {r["term"]: r for r in t.iter_rows(named=True)}
    for i, term in enumerate(["Intercept", "clean_accuracy", "feve"]):
        assert got[term]["coef"] == pytest.approx(beta[i], rel=1e-8)
        assert got[term]["std_err"] == pytest.approx(se[i], rel=1e-8)
        assert got[term]["p_value"] == pytest.approx(p[i], rel=1e-6)
    assert got["feve"]["r2"] == pytest.approx(r2)
    # standardised coefficient = raw coefficient x sd(x) / sd(y)
    assert got["feve"]["std_coef"] == pytest.approx(beta[2] * d["feve"].std() / d["robustness"].std(), rel=1e-8)
    assert got["feve"]["p_value"] < 0.05  # a real effect of 55 with noise 2 is found

    with pytest.raises(TooFewModels, match="needs at least 4"):
        two_factor(d.head(3), label="MTL-Monkey")


def test_interaction_model_equals_separate_fits_and_tests_the_difference():
    rng = np.random.default_rng(5)
    monkey = make_models(14, 40.0, 60.0, "mtl_monkey", rng)
    shuffled = make_models(14, 40.0, 0.0, "mtl_shuffled", rng)
    t = interaction({"MTL-Monkey": monkey, "MTL-Shuffled": shuffled}, reference="MTL-Shuffled")
    got = {r["term"]: r for r in t.iter_rows(named=True)}
    b_m = two_factor(monkey, label="m").filter(pl.col("term") == "feve")["coef"][0]
    b_s = two_factor(shuffled, label="s").filter(pl.col("term") == "feve")["coef"][0]
    # fully interacted: the reference pool's slope, and the difference to the other pool
    assert got["feve"]["coef"] == pytest.approx(b_s, rel=1e-6, abs=1e-6)
    term = "feve:pool[T.MTL-Monkey]"
    assert got[term]["coef"] == pytest.approx(b_m - b_s, rel=1e-6)
    # its p-value from the pooled design by hand
    both = pl.concat([monkey, shuffled])
    is_m = np.r_[np.ones(14), np.zeros(14)]
    ca, fe = both["clean_accuracy"].to_numpy(), both["feve"].to_numpy()
    X = np.column_stack([np.ones(28), is_m, ca, ca * is_m, fe, fe * is_m])
    beta, se, p, _ = ols_by_hand(X, both["robustness"].to_numpy())
    assert got[term]["p_value"] == pytest.approx(p[5], rel=1e-6)
    assert got[term]["p_value"] < 0.01


def predictions(kind, ratio, seed, rates, n_images, rng):
    """Per-image predictions with given correctness rates: rates[(condition, severity)]."""
    rows = []
    for (cond, sev), rate in rates.items():
        correct = rng.random(n_images) < rate
        rows += [{"run_id": f"{kind}-{ratio}-{seed}", "kind": kind, "ratio": ratio, "seed": seed, "condition": cond,
                  "severity": sev, "image": i, "label": 0, "predicted": 0 if c else 1, "correct": bool(c)}
                 for i, c in enumerate(correct)]
    return rows


def lake_like(n_images=150, seed=0):
    rng = np.random.default_rng(seed)
    conds = [("gaussian_noise", 1), ("gaussian_noise", 2), ("fog", 1), ("fog", 2)]
    spec = {("baseline", "", 0): 0.5, ("baseline", "", 1): 0.45, ("baseline", "", 2): 0.55,
            ("mtl_monkey", "1:1", 0): 0.6, ("mtl_monkey", "1:1", 1): 0.65}
    rows = []
    for (kind, ratio, s), base in spec.items():
        rates = {("clean", 0): base + 0.2, **{c: base - 0.1 * c[1] for c in conds}}
        rows += predictions(kind, ratio, s, rates, n_images, rng)
    preds = pl.DataFrame(rows)
    runs = preds.select("run_id", "kind", "ratio", "seed").unique().with_columns(pl.lit("ok").alias("status"))
    return preds, runs


def test_bca_clean_accuracy_interval_matches_the_normal_approximation():
    preds, runs = lake_like(n_images=400, seed=4)
    ci = bs.clean_accuracy_bca(bs.correctness(preds, runs), n_boot=2000, seed=0)
    for r in ci.iter_rows(named=True):
        p, n = r["clean_accuracy"], r["n_images"]
        half = 1.96 * np.sqrt(p * (1 - p) / n)
        assert (r["high"] - r["low"]) == pytest.approx(2 * half, rel=0.06)   # a 90% or 97% interval fails this
        assert (r["low"] + r["high"]) / 2 == pytest.approx(p, abs=0.006)


def test_the_clean_accuracy_interval_is_bca_where_bca_differs_from_percentile_and_basic():
    """37 of 40 images right: the bootstrap distribution of the mean is skewed, and BCa (bias-corrected,
    accelerated by the jackknife) moves the interval down a step. A by-hand BCa gives [0.800, 0.975]; the
    percentile interval would be [0.825, 1.000] and the basic one [0.850, 1.025]: each of those fails."""
    from scipy import stats

    x = np.r_[np.ones(37), np.zeros(3)]
    cor = bs.Correctness(pl.DataFrame([{"run_id": "b", "kind": "baseline", "ratio": "", "seed": 0}]), [],
                         np.arange(40), x[None].astype(np.float32), np.zeros((1, 0, 40), np.float32), [])
    got = bs.clean_accuracy_bca(cor, n_boot=20000, seed=0).row(0, named=True)
    rng = np.random.default_rng(1)
    reps = x[rng.integers(0, 40, (20000, 40))].mean(1)
    z0 = stats.norm.ppf((reps < x.mean()).mean() + 0.5 * (reps == x.mean()).mean())   # ties count half
    jack = np.array([np.delete(x, i).mean() for i in range(40)])
    d = jack.mean() - jack
    acc = (d**3).sum() / (6 * ((d**2).sum()) ** 1.5)
    za = stats.norm.ppf([0.025, 0.975])
    want = np.quantile(reps, stats.norm.cdf(z0 + (z0 + za) / (1 - acc * (z0 + za))))
    assert want == pytest.approx([0.8, 0.975], abs=1e-9)
    assert (got["low"], got["high"]) == pytest.approx(tuple(want), abs=1e-9)


def test_incomplete_predictions_are_dropped_with_a_message():
    preds, runs = lake_like(n_images=20)
    gone = preds.filter(~((pl.col("run_id") == "mtl_monkey-1:1-1") & (pl.col("image") == 3)))
    cor = bs.correctness(gone, runs)
    assert cor.clean.shape[1] == 19 and any("not evaluated by every model" in m for m in cor.dropped)


def write_lake(root, with_baseline=True, n_seeds=1, preset="smoke"):
    """A small lake in the real layout from hand-built rows (runs, accuracies, predictions)."""
    rng = np.random.default_rng(0)
    kinds = [("mtl_monkey", "1:1"), ("mtl_monkey", "2:1"), ("mtl_shuffled", "1:1")] + ([("baseline", "")] if with_baseline else [])
    for k, (kind, ratio) in enumerate(kinds):
        for seed in range(n_seeds):
            rid = f"{kind}-{ratio}-{seed}"
            key = {"run_id": rid, "kind": kind, "ratio": ratio, "seed": seed}
            write_table(root, "runs", [{**key, "status": "ok", "preset": preset, "clean_accuracy": float(rng.uniform(.4, .6)),
                                        "feve": float(rng.uniform(.1, .3)),
                                        "config": json.dumps({"model": "vgg11_bn_fc"}), "data": "{}", "versions": "{}",
                                        "created_at": "2026-11-23T00:00:00+00:00", "ratio_value": 1.0}], "t", kind, rid)
            rates = {("clean", 0): 0.6, **{(c, s): 0.5 - 0.05 * s + 0.02 * k for c in CORRS for s in (1, 2)}}
            pr = predictions(kind, ratio, seed, rates, 30, rng)
            write_table(root, "predictions", pr, "t", kind, rid)
            acc = (pl.DataFrame(pr).filter(pl.col("condition") != "clean").group_by("condition", "severity")
                   .agg(pl.col("correct").mean().alias("accuracy")))
            write_table(root, "corruption_accuracy", [{**key, "corruption": r["condition"], "category": CORRUPTIONS[r["condition"]],
                                                      "severity": r["severity"], "accuracy": r["accuracy"], "n_images": 30}
                                                     for r in acc.iter_rows(named=True)], "t", kind, rid)
    # a diverged run: recorded, reported, left out of the statistics
    write_table(root, "runs", [{"run_id": "mtl_monkey-5:1-0", "kind": "mtl_monkey", "ratio": "5:1", "seed": 0,
                                "status": "diverged", "diverged_epoch": 2, "error": "loss is NaN", "preset": preset,
                                "created_at": "2026-11-23T00:00:00+00:00"}], "t", "mtl_monkey", "mtl_monkey-5:1-0")


def test_partial_lake_reports_what_is_missing_and_what_can_be_computed(tmp_path):
    write_lake(tmp_path / "store" / "lake", with_baseline=False)
    r = run_cli("-m", "analysis", "--results", str(tmp_path / "store"), "--out", str(tmp_path / "rep"), "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    assert "no Baseline" in r.stdout and "diverged at epoch 2" in r.stdout and "one seed per model group" in r.stdout
    # the smoke preset trains the family's kinds: its missing Oracle is named
    assert re.search(r"no finished models of kind baseline, oracle, mtl_oracle\b", r.stdout), r.stdout[-2000:]
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "no Baseline" in html and "diverged" in html and (tmp_path / "rep" / "summary.csv").exists()

    write_lake(tmp_path / "full", with_baseline=True, n_seeds=2)
    r = run_cli("-m", "analysis", "--results", str(tmp_path / "full"), "--out", str(tmp_path / "rep2"), "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "rep2"
    assert {"robustness.parquet", "comparisons.csv", "models.parquet", "accuracy.csv", "failed_runs.csv"} <= {p.name for p in out.iterdir()}
    assert (out / "figures" / "robustness_bars.svg").exists() and (out / "figures" / "accuracy_vs_severity.png").exists()
    # the robustness table's p column is explained, and why it is blank for one seed
    assert "p is the two-sided p-value of no difference, left blank (–) for one seed" in (out / "report.html").read_text()
    # 4 MTL-Monkey models in one pool with 3 parameters: fitted; MTL-Shuffled (2 models): why not, said
    assert "MTL-Shuffled: 2 model(s)" in r.stdout and "MTL-Monkey: n = 4" in r.stdout
    models = pl.read_parquet(out / "models.parquet")
    assert models.height == 8 and "mtl_monkey-5:1-0" not in models["run_id"].to_list()
    # the smoke preset is meant to train the Oracle: its missing positive control is unclear, not "not run"
    lines = {c["name"].split(":")[0]: c["status"] for c in json.loads((out / "summary.json").read_text())["control_lines"]}
    assert lines["positive control"] == "unclear", lines


def test_a_preset_with_kinds_of_its_own_expects_those_and_not_the_familys(tmp_path):
    """The explain preset trains no Oracle: the report does not call it missing, but does name the
    preset's own kinds that are (here its explanation controls). Mutant: the family's kinds expected
    whatever the preset."""
    write_lake(tmp_path / "store" / "lake", n_seeds=2, preset="explain")
    r = run_cli("-m", "analysis", "--results", str(tmp_path / "store"), "--out", str(tmp_path / "rep"), "--bootstrap", "20")
    assert r.returncode == 0, r.stderr
    line = [ln for ln in r.stdout.splitlines() if "no finished models of kind" in ln]
    assert len(line) == 1 and "oracle" not in line[0], line
    assert "baseline_lowpass, mtl_pixel, mtl_surrogate" in line[0], line
    # and its positive control is not run (the preset trains no Oracle), which leaves the verdict to the others
    lines = {c["name"].split(":")[0]: c["status"] for c in json.loads((tmp_path / "rep" / "summary.json").read_text())["control_lines"]}
    assert lines["positive control"] == "not run", lines


@pytest.mark.parametrize("args, message", [
    (["--results", "/no/such/lake"], "--results /no/such/lake: no such directory"),
    (["--bootstrap", "0"], "--bootstrap 0: expected at least 1"),
    (["--sweep", "nope"], "--sweep 'nope': not in the lake"),
])
def test_bad_analysis_input_fails_in_one_line(tmp_path, args, message):
    write_lake(tmp_path / "lake")
    base = {"--results": str(tmp_path / "lake")}
    flags = ["--out", str(tmp_path / "o")]
    if "--results" not in args:
        flags += ["--results", base["--results"]]
    r = run_cli("-m", "analysis", *flags, *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()


def test_empty_lake_is_refused(tmp_path):
    (tmp_path / "lake" / "runs").mkdir(parents=True)
    r = run_cli("-m", "analysis", "--results", str(tmp_path / "lake"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "holds no runs" in r.stderr and not (tmp_path / "o").exists()


def test_out_folders_are_replaced_only_when_they_hold_our_report(tmp_path):
    """No command deletes what it did not write: a folder with the user's files, or a file, at --out
    is refused in one line and left as it was; an earlier report is replaced; --force replaces."""
    write_lake(tmp_path / "store" / "lake", with_baseline=True, n_seeds=2)
    args = ["-m", "analysis", "--results", str(tmp_path / "store"), "--bootstrap", "10"]
    mine = tmp_path / "paper"
    (mine / "sub").mkdir(parents=True)
    (mine / "draft.tex").write_text("my draft")
    (mine / "sub" / "data.csv").write_text("1,2")
    r = run_cli(*args, "--out", str(mine))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"--out {mine}: a folder that this command did not write; refusing to replace it" in r.stderr
    assert (mine / "draft.tex").read_text() == "my draft" and (mine / "sub" / "data.csv").read_text() == "1,2"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    r = run_cli(*args, "--out", str(a_file))
    assert r.returncode == 2 and "a file; refusing" in r.stderr and a_file.read_text() == "keep"
    # our own report: written, then replaced by a rebuild
    out = tmp_path / "rep"
    assert run_cli(*args, "--out", str(out)).returncode == 0 and (out / ".brainrobust").read_text().strip() == "report"
    first = (out / "summary.json").stat().st_mtime_ns
    assert run_cli(*args, "--out", str(out)).returncode == 0 and (out / "summary.json").stat().st_mtime_ns != first
    # --force: the user asked for it
    r = run_cli(*args, "--out", str(mine), "--force")
    assert r.returncode == 0 and not (mine / "draft.tex").exists() and (mine / "report.html").is_file()


def test_the_similarity_familys_report_section_fits_planted_coefficients(tmp_path):
    """A lake of the similarity family (Baseline, Sim-Monkey over α × seed, Sim-Shuffled, Sim-Pixel) whose
    per-image predictions give each Sim-Monkey model exactly a planted robustness
    40 + 80·clean_accuracy + 55·sim_match (+ noise). The report fits that regression with sim_match as
    the brain-likeness factor, labels the grid by α, and draws robustness against sim_match."""
    rng = np.random.default_rng(5)
    n, classes = 400, 10
    labels = np.arange(n) % classes
    root = tmp_path / "store" / "lake"
    planted = {"Intercept": 40.0, "clean_accuracy": 80.0, "sim_match": 55.0}

    def model(kind, alpha, seed, clean_acc, sim_match, robustness):
        rid = f"{kind}-{alpha}-{seed}"
        # A_c = robustness/100 × the Baseline's 0.5 on every condition; the first k images right
        k = int(round(robustness / 100 * 0.5 * n))
        rows = []
        for cond, sev in [("clean", 0)] + [(c, s) for c in CORRS for s in (1, 2)]:
            right = np.arange(n) < (int(round(clean_acc * n)) if cond == "clean" else k)
            rows += [{"run_id": rid, "kind": kind, "ratio": "", "seed": seed, "condition": cond, "severity": sev, "image": i,
                      "label": int(labels[i]), "predicted": int(labels[i] if c else (labels[i] + 1) % classes), "correct": bool(c)}
                     for i, c in enumerate(right)]
        write_table(root, "predictions", rows, "sim", kind, rid)
        write_table(root, "corruption_accuracy", [{"run_id": rid, "kind": kind, "ratio": "", "seed": seed, "corruption": c,
                                                  "category": CORRUPTIONS[c], "severity": s, "accuracy": k / n, "n_images": n}
                                                 for c in CORRS for s in (1, 2)], "sim", kind, rid)
        write_table(root, "runs", [{"run_id": rid, "kind": kind, "ratio": "", "seed": seed, "alpha": alpha, "status": "ok",
                                    "preset": "smoke", "clean_accuracy": clean_acc, "feve": float("nan"), "sim_match": sim_match,
                                    "config": "{}", "data": "{}", "versions": "{}", "created_at": "2026-11-23T00:00:00+00:00"}],
                    "sim", kind, rid)
        return k / n / 0.5 * 100

    model("baseline", float("nan"), 0, 0.6, float("nan"), 100.0)
    xs = []
    for alpha in (0.1, 1.0, 3.0, 10.0):
        for seed in range(4):
            acc, sim = rng.uniform(0.35, 0.65), rng.uniform(0.0, 0.4)
            target = planted["Intercept"] + planted["clean_accuracy"] * acc + planted["sim_match"] * sim + rng.normal(0, 1)
            xs.append((acc, sim, model("sim_monkey", alpha, seed, acc, sim, target)))
    for kind in ("sim_shuffled", "sim_pixel"):
        for seed in range(2):
            model(kind, 1.0, seed, 0.5, 0.05, 90.0 + seed)
    r = run_cli("-m", "analysis", "--results", str(tmp_path / "store"), "--out", str(tmp_path / "rep"), "--bootstrap", "20")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    reg = pl.read_parquet(tmp_path / "rep" / "regression.parquet").filter(pl.col("model") == "Sim-Monkey")
    assert set(reg["term"]) == set(planted) and reg["n"].unique().to_list() == [16]
    # the fit is the least-squares fit of the robustness the lake holds (planted values, rounded to the images)
    X = np.column_stack([np.ones(16), [x[0] for x in xs], [x[1] for x in xs]])
    beta, *_ = np.linalg.lstsq(X, np.array([x[2] for x in xs]), rcond=None)
    got = {t: c for t, c in zip(reg["term"], reg["coef"])}
    for (term, truth), b in zip(planted.items(), beta):
        assert got[term] == pytest.approx(b, rel=1e-6)
        lo, hi = reg.filter(pl.col("term") == term).select("ci_low", "ci_high").row(0)
        assert lo <= truth <= hi, (term, lo, truth, hi)
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "similarity-loss weights: α=0.1, α=1, α=3, α=10" in html and "Sim-Monkey: n = 16" in html
    assert (tmp_path / "rep" / "figures" / "robustness_vs_sim_match.png").exists()


def test_a_sweep_scored_on_two_corruption_sets_is_refused_and_one_set_is_named():
    """Classifiers of one sweep scored on the generated TIN-TC and on the published Tiny-ImageNet-C
    cannot share a Baseline or an image index: the analysis refuses the mix in one line."""
    from analysis.load import tintc_source
    from core.errors import DataError

    def runs(*datas):
        return pl.DataFrame({"kind": ["baseline", "mtl_monkey", "monkey_predictor"][:len(datas)], "status": ["ok"] * len(datas),
                             "data": list(datas)})

    gen, pub = json.dumps({"classification": "c"}), json.dumps({"classification": "c", "tintc": "published-ab12"})
    assert tintc_source(runs(gen, gen), "s", "lake") == "generated"
    assert tintc_source(runs(pub, pub, gen), "s", "lake") == "published-ab12"   # the predictor is no classifier
    with pytest.raises(DataError, match="sweep 's' mixes classifiers scored on different corruption sets "
                                        r"\(generated, published-ab12\)"):
        tintc_source(runs(gen, pub), "s", "lake")
