"""The sweeps through real Ray: each test's subprocess starts (and ends) its own local Ray instance."""

import html
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from conftest import read_lake as lake
from conftest import ROOT, run_cli, session_alive, sweep_args
from sweeps.stages import PAUSE_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]
ALL_KINDS = {"baseline", "monkey_predictor", "oracle", "oracle_readout", "mtl_monkey", "mtl_shuffled", "mtl_oracle"}


def grid_runs(storage):
    """The grid's own records (the hparam search test adds its trials to the same storage as another sweep)."""
    return lake(storage, "runs").filter(pl.col("sweep") == "smoke")


@pytest.fixture(scope="module")
def resumed_sweep(tmp_path_factory, smoke_data):
    """The smoke sweep's driver killed (with its local Ray) while a model is inside its fit, after two
    models are in the lake; then `--resume`."""
    tmp_path = tmp_path_factory.mktemp("resume")
    storage, data_root = tmp_path / "results", smoke_data
    # every fit holds still once its epoch 1 is checkpointed (sweeps.stages PAUSE_ENV) until released here;
    # the first that pauses once two models are in the lake is held, and the driver killed while it waits
    pause = tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", PAUSE_ENV: f"1:{pause}"}
    log = open(tmp_path / "first.log", "w")
    p = subprocess.Popen([sys.executable, *sweep_args(storage, data_root)], cwd=ROOT, env=env, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline, held = time.time() + 400, None
    while time.time() < deadline and p.poll() is None and held is None:
        for m in sorted(pause.glob("*.json")):
            if m.with_suffix(".go").exists():
                continue
            if lake(storage, "runs").height >= 2:
                held = json.loads(m.read_text()) | {"run_id": m.stem}
                break
            m.with_suffix(".go").touch()
        time.sleep(0.5)
    assert held is not None and p.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(p.pid, signal.SIGKILL)  # the driver and the local Ray it started
    p.wait()
    # Ray runs each actor (a Tune trial, where a fit runs) in a process group of its own, so the kill above
    # does not reach it: it notices that its raylet is gone and exits within a few seconds, and may write
    # its model's records meanwhile (seen: 2 models in the lake at the kill, 3 a second later). The lake
    # that the resume finds is the one once the whole session has gone.
    deadline = time.time() + 120   # seen: the last (an idle worker) gone after about 35 s
    while time.time() < deadline and session_alive(p.pid):
        time.sleep(0.5)
    assert not session_alive(p.pid), "the killed sweep's Ray processes outlived it by two minutes"
    before = lake(storage, "runs")
    stamps = {f: f.stat().st_mtime_ns for f in (storage / "lake" / "runs").rglob("*.parquet")}
    # the smoke preset's 2-epoch models sit at chance: the report keeps them (flagged) so that every
    # table and figure of the pipeline is exercised, and its controls say FAIL
    r = run_cli(*sweep_args(storage, data_root, "--resume", "--include-unhealthy"), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"storage": storage, "data_root": data_root, "before": before, "stamps": stamps, "stdout": r.stdout,
            "held": held}


def test_killed_driver_then_resume_completes_only_the_missing_work(resumed_sweep):
    storage, before, stdout, held = (resumed_sweep[k] for k in ("storage", "before", "stdout", "held"))
    assert 2 <= before.height < 7 and held["run_id"] not in before["run_id"].to_list()
    assert f"{before.height} already in the lake, {7 - before.height} to train" in stdout, stdout[:2000]
    runs = grid_runs(storage)
    assert set(runs["kind"]) == ALL_KINDS and runs.height == 7 and runs["run_id"].n_unique() == 7
    assert (runs["status"] == "ok").all(), runs.select("kind", "status", "error")
    # the model killed inside its fit, after epoch 1's checkpoint, went on from that checkpoint
    assert runs.filter(pl.col("run_id") == held["run_id"])["resumed"].to_list() == [f"{held['phase']}:1"], held
    # nothing finished before the kill was trained again
    for f, t in resumed_sweep["stamps"].items():
        assert f.stat().st_mtime_ns == t, f
    # every table is complete and duplicate-free
    acc, preds, ep = (lake(storage, t).filter(pl.col("sweep") == "smoke") for t in ("corruption_accuracy", "predictions", "epochs"))
    classifiers = runs.filter(pl.col("kind").is_in(["baseline", "oracle", "mtl_monkey", "mtl_shuffled", "mtl_oracle"]))
    assert acc.height == 70 * classifiers.height
    assert acc.select("run_id", "corruption", "severity").is_duplicated().sum() == 0
    assert preds.select("run_id", "condition", "severity", "image").is_duplicated().sum() == 0
    assert set(ep["run_id"]) == set(runs["run_id"])
    assert "dashboard: http://127.0.0.1:" in stdout
    # the closing summary: the Baseline's row, its robustness 100 by definition, "-" for its FEVe (no readout)
    assert re.search(r"│ baseline\s+┆ 1\s+┆ 1\s+┆ 0\.\d{3}\s+┆ -\s+┆ [\d.]+\s+┆ 100\.0\s+│", stdout), stdout[-3000:]
    table = stdout.split("per kind:")[-1].split("(-: does not apply")[0]
    assert "NaN" not in table and "null" not in table, table
    assert re.search(r"finished in .+: \d+ models run, \d+ already in the lake", stdout), stdout[-3000:]


def test_the_main_job_ends_with_a_report_that_renders_in_chromium(resumed_sweep, tmp_path):
    from browser import inspect_page, require_chromium

    storage, stdout = resumed_sweep["storage"], resumed_sweep["stdout"]
    report = storage / "report" / "smoke" / "report.html"
    assert f"report: {report}" in stdout
    # smoke: one model per pool, so the regression is refused with the reason, and the report says so
    assert "MTL-Monkey: 1 model(s)" in report.read_text()
    # the controls: the smoke models are at chance, so the verdict is red, says why, and says they were kept
    assert "controls: FAIL" in stdout and "[FAIL   ] every classifier above chance: baseline[-, seed 0]: at chance" in stdout
    html_text = report.read_text()
    assert "class='controls-fail'" in html_text and "kept in scores and figures (--include-unhealthy)" in html_text
    health = pl.read_parquet(report.parent / "health.parquet")
    assert not health.filter(pl.col("kind") == "baseline")["healthy"][0]
    for name in ("robustness", "comparisons", "models", "accuracy", "summary"):
        assert (report.parent / f"{name}.parquet").exists() and (report.parent / f"{name}.csv").exists()
    comps = pl.read_parquet(report.parent / "comparisons.parquet")
    assert set(comps["kind"]) == {"baseline", "oracle", "mtl_monkey", "mtl_shuffled", "mtl_oracle"}
    # MTL-Monkey against the Baseline and against MTL-Shuffled at the same ratio and seed
    assert set(comps.filter(pl.col("kind") == "mtl_monkey")["reference"]) == {"", "baseline", "mtl_shuffled"}
    assert json.loads((report.parent / "summary.json").read_text())["n_boot"] == 250
    chromium = require_chromium()
    info = inspect_page(chromium, report, tmp_path / "report.png")
    figures = sorted(p.stem for p in (report.parent / "figures").glob("*.png"))
    assert figures == ["accuracy_vs_severity", "adversarial", "metrics_vs_ratio", "robustness_bars", "robustness_vs_feve",
                       "spectral"]
    assert len(info["images"]) == len(figures), info
    for im in info["images"]:
        assert im["complete"] and im["w"] > 0 and im["h"] > 0, im
    assert info["title"] == "Robustness report: smoke"
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_reconstruction_from_the_sweeps_models_adds_a_report_section(resumed_sweep, tmp_path):
    """analysis.reconstruct on the smoke sweep's five classifiers: arrays, the ϱ̄ table, both figures,
    and a section spliced into the sweep's report (kept when the report is rebuilt)."""
    import shutil

    storage, data_root = resumed_sweep["storage"], resumed_sweep["data_root"]
    out = tmp_path / "recon"
    report_dir = tmp_path / "report"   # a copy: the main job's own report stays as the report test expects it
    shutil.copytree(storage / "report" / "smoke", report_dir)
    args = ["-m", "analysis.reconstruct", "--results", str(storage), "--data-root", str(data_root),
            "--sweep", "smoke", "--steps", "12", "--check-steps", "200", "--images", "3", "--norms", "5,30", "--starts", "2",
            "--report", str(report_dir)]
    r = run_cli(*args, "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    kinds = {"baseline", "oracle", "mtl_monkey", "mtl_shuffled", "mtl_oracle"}
    t = pl.read_parquet(out / "rho.parquet")
    assert set(t["kind"]) == kinds and set(t["source"]) == {"truth", "builtin"}
    # kinds × images × norms × variants (the result, its spectral control, the optimiser's own result) × sources
    assert t.height == 5 * 3 * 2 * 3 * 2
    rec = t.filter(pl.col("variant") == "reconstruction")
    assert (rec["achieved_norm"] <= rec["norm"] * (1 + 1e-4)).all()
    # one optimiser for every kind by default (Adam lr 0.01), so that ϱ̄ compares models, not optimisers
    assert rec["optimizer"].unique().to_list() == ["adam"] and rec["lr"].unique().to_list() == [0.01]
    with np.load(out / "reconstructions.npz") as z:
        assert z["recon_mtl_monkey"].shape == (3, 2, 64, 64) and z["mask_truth"].shape == (3, 64, 64)
    # undistorted targets by default (the paper's Fig. 7); each model's convergence recorded, and only the
    # models whose reconstructions settled are compared (the median table, the ϱ̄ figure). Both norms are below
    # every target's norm (44-84 here), so no result has to reach a zero loss to count as settled (at 60, a target
    # inside the ball, the 0.1% allowance decided it: seen 0.0006-0.0019); with the 200-step check all 30 settle
    assert (t["target"] == "clean").all()
    assert (rec["trivial_relative_loss"] > 0).all()
    # converged, recomputed from what the table records: the check's last 20 steps fell by < 1% of ||f(x0)||²,
    # and the result is no worse than x0 shrunk into the ball by more than 0.1%
    again = (pl.col("check_tail_drop") < 0.01) & (pl.col("relative_loss") <= pl.col("trivial_relative_loss") + 1e-3)
    assert (rec["converged"] == rec.select(again.alias("c"))["c"]).all()
    share = rec.group_by("kind").agg(again.mean().alias("share"), pl.col("model_converged").first())
    assert all(ok == (s >= 0.9) for s, ok in zip(share["share"], share["model_converged"])), share
    assert rec["converged"].all() and rec["model_converged"].all(), rec.filter(~pl.col("converged"))
    assert set(pl.read_parquet(out / "median_rho.parquet")["kind"]) == kinds and "NOT CONVERGED" not in r.stdout
    figures = {"reconstructions.png", "reconstructions.svg", "rho_scatter.png", "rho_scatter.svg"}
    assert {p.name for p in (out / "figures").iterdir()} == figures
    # two starts: the result is the lower one, and how much ϱ̄ moved between them is recorded and reported
    assert rec["check_move"].is_finite().all()
    assert (rec["starts"] == 2).all() and set(rec["best_start"]) == {0, 1}
    # a spread wherever both starts converged, and only there (the chosen start converged everywhere; the
    # other one need not: how far a model trained on these cores lets it get is not fixed)
    spread = rec["rho_bar_start_spread"]
    assert (rec["starts_converged"] >= 1).all() and (rec["starts_converged"] <= 2).all()
    assert (spread.is_finite() == (rec["starts_converged"] == 2)).all() and (spread.fill_nan(0) > 0).any()
    med = pl.read_parquet(out / "median_rho.parquet").filter(pl.col("variant") == "reconstruction")
    mine = (rec.filter(pl.col("model_converged")).group_by("source", "kind", "norm")
            .agg(pl.col("rho_bar_start_spread").fill_nan(None).median().alias("mine")))
    both = med.join(mine, on=["source", "kind", "norm"])
    assert both.height == med.height and ((both["median_start_spread"] - both["mine"]).abs().fill_null(0) < 1e-12).all()
    assert json.loads((out / "summary.json").read_text())["starts"] == 2
    report = report_dir / "report.html"
    assert f"section added to {report}" in r.stdout
    assert report.read_text().count("Representation analysis: constrained reconstruction") == 1
    assert "for each of the 2 starts from different noise" in report.read_text()
    assert "<code>optimizer_result</code>: the optimiser's own result before the check" in report.read_text()
    assert "<h3>ϱ̄ per image (paper Fig. 7)</h3>" in report.read_text()
    assert "RuntimeWarning" not in r.stdout + r.stderr
    assert all(f"median ϱ̄ (truth saliency) of {k}: r=5: " in r.stdout for k in kinds), r.stdout[-3000:]
    # the report rebuilt from the lake keeps the section, once
    from analysis.report import build

    build(str(storage), report.parent, sweep="smoke", n_boot=20, log=lambda *a: None)
    assert report.read_text().count("Representation analysis: constrained reconstruction") == 1
    # rebuilt without --include-unhealthy: every smoke model is at chance and left out, so no attack figure
    # is drawn from nothing (an empty PGD panel); the report says why instead
    assert "adversarial: no model left in the scores has attack results" in report.read_text()
    assert not (report.parent / "figures" / "adversarial.png").exists()
    # bad input: one line, exit 2, nothing written
    bad = tmp_path / "bad"
    r = run_cli(*args, "--out", str(bad), "--norms", "5,-1", timeout=300)
    assert r.returncode == 2 and "--norms 5,-1: expected" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    from analysis.reconstruct import main as reconstruct_main
    from core.errors import UserError

    for extra, message in ((["--models", "mtl_nope"], "--models mtl_nope: neither a model kind"),
                           (["--layer", "conv9_9"], "--layer conv9_9: unknown layer")):
        with pytest.raises(UserError, match=message):
            reconstruct_main([*args[2:], "--out", str(bad), "--no-report", *extra])
    assert not bad.exists()


def test_a_plain_rerun_trains_nothing(resumed_sweep):
    storage, data_root = resumed_sweep["storage"], resumed_sweep["data_root"]
    t = time.time()
    r = run_cli(*sweep_args(storage, data_root, "--no-report"), timeout=300)
    assert r.returncode == 0 and "7 already in the lake, nothing to train (Ray not started)" in r.stdout, r.stdout[-2000:]
    # every input cached and every model in the lake: no Ray instance came up (no dashboard line)
    assert "dashboard:" not in r.stdout and "Ray 2." not in r.stdout
    assert time.time() - t < 60 and "report:" not in r.stdout
    assert grid_runs(storage).height == 7


def test_plan_reads_the_lake_and_starts_nothing(resumed_sweep, tmp_path):
    """--plan on the finished smoke sweep: every model found in the lake, nothing to train, no Ray
    started (no ray/ session folder written), and the lake untouched; with another ratio, only the
    new grid cells are to train."""
    storage, data_root = resumed_sweep["storage"], resumed_sweep["data_root"]
    stamps = {f: f.stat().st_mtime_ns for f in storage.rglob("*.parquet")}
    r = run_cli(*sweep_args(storage, data_root, "--plan"), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "7 models: 7 already in the lake, 0 to train" in r.stdout and "CPU core" in r.stdout, r.stdout
    assert "Ray 2." not in r.stdout + r.stderr and "dashboard" not in r.stdout and {f: f.stat().st_mtime_ns for f in storage.rglob("*.parquet")} == stamps
    r = run_cli(*sweep_args(storage, data_root, "--plan", "--ratios", "1:2,1:1"), timeout=120)
    # 1:1 adds mtl_monkey, mtl_shuffled and mtl_oracle (one seed): 3 new models
    assert "10 models: 7 already in the lake, 3 to train" in r.stdout, r.stdout


def test_planted_worlds_run_one_sweep_each_and_every_report_states_its_planted_strength(tmp_path):
    """--planted 0,1 on the smoke preset (the Baseline and MTL-True, one seed): one sweep per world, each
    report's header and the console's world line name that world's planted strength (the null says that
    co-training cannot help there), and the calibration report over both lands beside them. A report that
    dropped the world line, or one that read the wrong world's records, fails this."""
    storage = tmp_path / "results"
    r = run_cli("sweeps/ratio_grid.py", "--preset", "smoke", "--storage", str(storage), "--data-root",
                str(tmp_path / "data"), "--ratios", "2:1", "--seeds", "0", "--num-cpus", "2", "--kinds",
                "baseline,mtl_true", "--planted", "0,1", "--bootstrap", "50", timeout=900)
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]   # 1: the smoke models sit at chance
    worlds = {"smoke-planted0": "synthetic world planted at 0, the null: the simulated neurons encode only the fragile class cue",
              "smoke-planted1": "synthetic world planted at 1: 100% of the simulated neurons encode the objects' shape"}
    for sweep, line in worlds.items():
        page = (storage / "report" / sweep / "report.html").read_text()
        assert f"<b>World:</b> {html.escape(line)}" in page, (sweep, page[:3000])
        assert line in r.stdout, r.stdout[-4000:]
        other = [v for k, v in worlds.items() if k != sweep][0]
        assert html.escape(other) not in page
    calibration = storage / "report" / "smoke" / "report.html"
    assert f"calibration report: {calibration}" in r.stdout, r.stdout[-3000:]
    assert "Calibration: the pipeline against a planted answer" in calibration.read_text()


def test_plan_of_the_paper_preset_needs_no_data_and_is_quick(tmp_path):
    """The paper grid (12 ratios x 5 seeds) is planned from the published sizes, with its model count
    and a compute and disk estimate, in seconds: the whole command, interpreter and imports included."""
    t = time.perf_counter()
    r = run_cli("sweeps/ratio_grid.py", "--preset", "paper", "--plan", "--storage", str(tmp_path / "r"),
                "--data-root", str(tmp_path / "d"), timeout=60)
    took = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    assert "200 models: 0 already in the lake, 200 to train" in r.stdout, r.stdout
    assert re.search(r"of one GPU at [\d.]+ TFLOP/s", r.stdout) and "TIN-TC cache 2,867 MB" in r.stdout, r.stdout
    # seen: 3.6-6.6 s on an idle 2-core machine, 10-13 s beside another heavy job; nothing was prepared
    assert took < 30 and not (tmp_path / "d").exists(), took


@pytest.mark.parametrize("flags, message", [
    (["--ratios", "1-2"], "--ratios: ratio '1-2': expected 'n:c'"),
    (["--seeds", "-1"], "--seeds: -1 is negative"),
    (["--seeds", "0,0"], "--seeds '0,0': 0 is given twice"),
    (["--ratios", "1:2,1:2"], "--ratios '1:2,1:2': 1:2 is given twice"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--address", "127.0.0.1:1"], "--address 127.0.0.1:1: unreachable"),
    (["--storage", "/proc/no/such"], "--storage /proc/no/such: not writable"),
    (["--set", "lrr=1"], "--set: unknown key 'lrr'"),
    (["--set", "mtl_foo.lr=1"], "--set mtl_foo.lr: unknown kind 'mtl_foo'"),
    (["--kinds", "mtl_foo"], "--kinds: unknown kind 'mtl_foo'"),
    (["--gpus-per-trial", "2"], "several GPUs per model (DDP) is not supported yet"),
    (["--sweep", "../../etc"], "--sweep '../../etc': expected letters, digits"),
    (["--data-root", "/etc/hostname"], "--data-root /etc/hostname: not a directory"),
    (["--tin-root", "/no/such/tin"], "--tin-root /no/such/tin: no such file or directory"),
    (["--report", "/etc"], "--report /etc: a folder that this command did not write; refusing"),
    (["--report", "/proc/nope"], "--report /proc/nope: cannot write in /proc"),
    (["--report", "/etc/hostname/sub"], "--report /etc/hostname/sub: /etc/hostname is a file, not a folder"),
    (["--set", "oracle.width=0.5"], "--set oracle.width: the Oracle Readout loads the Oracle's weights"),
    (["--set", "oracle_readout.readout_layer=conv2_1"], "--set oracle_readout.readout_layer: the Oracle Readout loads"),
    (["--alphas", "1,10"], "--alphas 1,10: weights of the similarity loss, but no similarity-family model is to run"),
    (["--train-workers", "2"], "--train-workers: invalid choice: 2"),
    (["--planted", "2"], "--planted: 2 is outside 0..1"),
    (["--planted", "half"], "--planted: 'half' is not a number"),
    (["--preset", "paper", "--planted", "0.5", "--tin-root", "/tmp", "--neural-data", "/tmp"],
     "--planted picks synthetic worlds with a planted answer; real data has no planted truth"),
    (["--preset", "paper", "--kinds", "mtl_true", "--tin-root", "/tmp", "--neural-data", "/tmp"],
     "--kinds: mtl_true co-trains on the simulated population's true rates"),
    (["--preset", "calibration", "--report", "/tmp/x"], "--report names one folder, but this runs one sweep per planted world"),
])
def test_bad_flags_fail_fast_in_one_line(tmp_path, flags, message):
    t = time.time()
    r = run_cli("sweeps/ratio_grid.py", "--storage", str(tmp_path / "r"), "--data-root", str(tmp_path / "d"), *flags)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # nothing written: not the data folder, and not the storage either (its write probe comes after every check)
    assert time.time() - t < 30 and not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


def test_hparam_search_few_trials(resumed_sweep):
    """In the grid's storage: the search reuses the grid's Monkey Predictor (same run id) instead of
    training it again, and records its trials as their own sweep."""
    storage, smoke_data = resumed_sweep["storage"], resumed_sweep["data_root"]
    r = run_cli("sweeps/hparam_search.py", "--preset", "smoke", "--storage", str(storage), "--data-root",
                str(smoke_data), "--trials", "2", "--num-cpus", "2", "--max-epochs", "2", "--grace-period", "1",
                timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "using the Monkey Predictor monkey_predictor-" in r.stdout and "training the Monkey Predictor" not in r.stdout
    assert "best, as grid flags:" in r.stdout and "python sweeps/ratio_grid.py --preset smoke --ratios" in r.stdout
    runs = lake(storage, "runs")
    trials = runs.filter((pl.col("sweep") == "smoke-hparam") & (pl.col("kind") == "mtl_monkey"))
    assert trials.height == 2 and set(trials["status"]) <= {"ok", "stopped"}
    # the printed flags are accepted by the grid's parser
    line = [ln for ln in r.stdout.splitlines() if "--set" in ln][-1]
    from sweeps.cli import parse_set

    best = parse_set(line.split("--set ")[1].strip())
    trial_lrs = [json.loads(c)["lr"] for c in trials["config"]]
    assert any(best["lr"] == pytest.approx(lr, rel=1e-3) for lr in trial_lrs), (best, trial_lrs)   # one of the trials' own


def test_architecture_overrides_reach_every_kind_the_rest_only_the_classifiers():
    """`--set width=...,lr=...`: the width reaches all nine kinds (the Oracle Readout must match the Oracle it
    loads), the learning rate only the classification-bearing fits; a kind's own key wins."""
    from core.training.graph import CLASSIFIERS, KINDS
    from sweeps.cli import parse_set
    from sweeps.stages import SweepSpec, task_overrides

    spec = SweepSpec(sweep="s", preset="paper", storage="/tmp/x", data_root="/tmp/d", ratios=["1:1"], seeds=[0],
                     kinds=list(KINDS), cls_overrides=parse_set("width=0.0625,lr=0.01,monkey_predictor.width=0.125"))
    for kind in KINDS:
        o = task_overrides(spec, kind)
        assert o["width"] == (0.125 if kind == "monkey_predictor" else 0.0625), kind
        assert ("lr" in o) == (kind in CLASSIFIERS), kind


def test_the_main_job_before_the_install_names_what_is_missing(tmp_path):
    """A new user who runs the main job before installing gets one line naming the missing packages
    and the install command, not a ModuleNotFoundError traceback."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    r = subprocess.run([str(tmp_path / "bare" / "bin" / "python"), "sweeps/ratio_grid.py"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: missing dependencies (ray, torch,") and "pip install -e ." in r.stderr


def test_ctrl_c_keeps_what_finished_and_says_how_to_go_on(tmp_path, smoke_data):
    """Ctrl-C (SIGINT to the driver's process group, as a terminal sends it) during the first wave:
    exit status 130, one line on how to go on, nothing recorded as failed, no advice to call
    Tune's `Tuner.restore` (the same command resumes)."""
    storage = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "out.log"
    p = subprocess.Popen([sys.executable, *sweep_args(storage, smoke_data, "--kinds", "baseline", "--no-report")],
                         cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and "train epoch 1" not in log.read_text():
        time.sleep(0.5)
    assert p.poll() is None, log.read_text()[-3000:]
    os.killpg(p.pid, signal.SIGINT)
    try:
        p.wait(120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    out = log.read_text()
    assert p.returncode == 130, out[-3000:]
    assert re.search(r"interrupted after \d+s: 0 of 1 models are in the lake; run the same command again", out), out[-3000:]
    assert "Tuner.restore" not in out and "Traceback" not in out, out[-3000:]
    # Ray's token notice stays out of the console: the dashboard line says it once, with how to get the token
    assert "Set RAY_AUTH_MODE=disabled" not in out and "token authentication: `ray get-auth-token`" in out
    runs = lake(storage, "runs")
    assert runs.height == 0 or (runs["status"] != "failed").all(), runs.select("kind", "status", "error")

