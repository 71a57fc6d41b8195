"""Faults injected into real sweeps: a training worker process killed mid-fit, a diverging trial.
(The killed driver is in test_sweeps.py, the removed node in test_multinode.py.)"""

import os
import re
import signal
import subprocess

import polars as pl
import pytest

from conftest import read_lake as lake
from conftest import Watched, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def args(storage, data_root, *extra):
    return ["sweeps/ratio_grid.py", "--preset", "smoke", "--storage", str(storage), "--data-root", str(data_root),
            "--seeds", "0", "--num-cpus", "2", *extra]


def train_worker_pids() -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if "ray::RayTrainWorker" in line]


def test_training_worker_killed_mid_fit_resumes_and_matches_an_uninterrupted_run(tmp_path, smoke_data):
    flags = ("--kinds", "baseline", "--max-epochs", "5", "--no-report")
    ref = run_cli(*args(tmp_path / "ref", smoke_data, *flags), timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-2000:]

    w = Watched(args(tmp_path / "killed", smoke_data, *flags))
    w.wait_for(lambda out: "train epoch 1 " in out)
    pids = train_worker_pids()
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    code, out = w.finish()
    assert code == 0, out[-3000:]

    runs, ref_runs = lake(tmp_path / "killed", "runs"), lake(tmp_path / "ref", "runs")
    assert runs.height == 1 and runs["status"][0] == "ok" and runs["run_id"][0] == ref_runs["run_id"][0]
    # resumed, not restarted: epoch 1 was reported once, and the fit went on to epoch 5
    assert len(re.findall(r"train epoch 1 ", out)) == 1 and "train epoch 5 " in out
    for col in ("clean_accuracy", "val_accuracy", "epochs"):
        assert runs[col][0] == ref_runs[col][0], col
    ep = lake(tmp_path / "killed", "epochs").sort("epoch")
    ref_ep = lake(tmp_path / "ref", "epochs").sort("epoch")
    assert ep["epoch"].to_list() == [1, 2, 3, 4, 5]
    assert ep["loss_classification"].to_list() == pytest.approx(ref_ep["loss_classification"].to_list(), rel=1e-6)
    assert ep["val_accuracy"].to_list() == ref_ep["val_accuracy"].to_list()
    acc, ref_acc = lake(tmp_path / "killed", "corruption_accuracy"), lake(tmp_path / "ref", "corruption_accuracy")
    assert acc.height == 70 and acc.select("corruption", "severity").is_duplicated().sum() == 0
    assert acc.sort("corruption", "severity")["accuracy"].to_list() == ref_acc.sort("corruption", "severity")["accuracy"].to_list()


def test_a_diverging_trial_is_recorded_and_the_sweep_goes_on(tmp_path, smoke_data):
    storage = tmp_path / "results"
    # an exploding learning rate for the classifiers: they diverge; the Monkey Predictor trains normally
    r = run_cli(*args(storage, smoke_data, "--kinds", "baseline,mtl_monkey", "--ratios", "1:2", "--set", "lr=1e9",
                      "--max-epochs", "3", "--bootstrap", "20"), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    runs = lake(storage, "runs")
    status = dict(zip(runs["kind"], runs["status"]))
    assert status == {"baseline": "diverged", "monkey_predictor": "ok", "mtl_monkey": "diverged"}, runs.select("kind", "status", "error")
    div = runs.filter(pl.col("status") == "diverged")
    assert div["diverged_epoch"].is_not_null().all() and div["error"].str.contains("(?i)nan|inf|diverg").all()
    # the sweep went on to the next wave after the Baseline diverged, and the summary names both
    assert r.stdout.count(": diverged") >= 2
    # the analysis reports them, and what is missing because of them
    html = (storage / "report" / "smoke" / "report.html").read_text()
    assert "baseline ratio - seed 0: diverged at epoch" in html and "mtl_monkey ratio 1:2 seed 0: diverged at epoch" in html
    assert "no finished models of kind baseline" in html
