"""A Ray Train worker process killed mid-fit. (The other faults: the killed driver in test_sweeps.py,
the removed node in test_multinode.py, the diverging trial in test_s3_dashboard.py.)"""

import json
import os
import re
import signal
from pathlib import Path

import polars as pl
import psutil
import pytest
import torch

from conftest import read_lake as lake
from conftest import Watched, run_cli
from sweeps.stages import PAUSE_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def args(storage, data_root, *extra):
    return ["sweeps/ratio_grid.py", "--preset", "smoke", "--storage", str(storage), "--data-root", str(data_root),
            "--seeds", "0", "--num-cpus", "2", *extra]


@pytest.mark.parametrize("train_workers", ["0", "1"])
def test_training_worker_killed_mid_fit_resumes_and_matches_an_uninterrupted_run(tmp_path, smoke_data, train_workers):
    # --train-workers 0: the fit runs in the Tune trial's process (local mode), which Tune restarts;
    # 1: in a Ray Train worker, which Ray Train restarts
    # the uninterrupted reference: the same model trained in one process without Ray (same config,
    # hence the same run id; one thread, as a sweep trial with --cpus-per-trial 1)
    ref = run_cli("-m", "core.training", "--kind", "baseline", "--preset", "smoke", "--seed", "0", "--max-epochs", "3",
                  "--threads", "1", "--data-root", str(smoke_data), "--out", str(tmp_path / "ref"), "--quiet", timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-2000:]

    # the worker holds still once epoch 1 is checkpointed (a fault-injection point, sweeps.stages
    # PAUSE_ENV), writes its pid, and is killed there: inside the fit, by construction, not by a race
    pause = tmp_path / "pause"
    pause.mkdir()
    w = Watched(args(tmp_path / "killed", smoke_data, "--kinds", "baseline", "--max-epochs", "3", "--no-report",
                     "--train-workers", train_workers),
                env={PAUSE_ENV: f"1:{pause}"})
    w.wait_for(lambda out: any(pause.glob("*.json")))
    marker = json.loads(next(pause.glob("*.json")).read_text())
    ckpt = torch.load(Path(marker["work"]) / "checkpoint" / marker["phase"] / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["epoch"] == 1          # the kill lands after epoch 1's checkpoint, before epoch 2
    # the process that trains is the Tune trial itself in local mode, a Ray Train worker otherwise
    title = " ".join(psutil.Process(marker["pid"]).cmdline())
    assert ("ImplicitFunc" in title) == (train_workers == "0") and ("TrainWorker" in title) == (train_workers == "1"), title
    os.kill(marker["pid"], signal.SIGKILL)
    code, out = w.finish()
    assert code == 0, out[-3000:]
    # the progress lines survive the restart: every epoch is printed once, the one before the kill included
    for e in (1, 2, 3):
        assert out.count(f"baseline         ratio     - seed 0  train epoch {e} ") == 1, (e, out[-3000:])

    runs = lake(tmp_path / "killed", "runs")
    ref_runs = pl.scan_parquet(str(tmp_path / "ref" / "runs" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert runs.height == 1 and runs["status"][0] == "ok" and runs["run_id"][0] == ref_runs["run_id"][0]
    # resumed from the epoch-1 checkpoint (not restarted from scratch), and the reference never resumed
    assert runs["resumed"][0] == "train:1" and ref_runs["resumed"][0] == ""
    for col in ("clean_accuracy", "val_accuracy", "epochs"):
        assert runs[col][0] == ref_runs[col][0], col
    ep = lake(tmp_path / "killed", "epochs").sort("epoch")
    ref_ep = pl.scan_parquet(str(tmp_path / "ref" / "epochs" / "**" / "*.parquet"), hive_partitioning=True).collect().sort("epoch")
    assert ep["epoch"].to_list() == [1, 2, 3]
    # the losses of every epoch, before and after the kill, equal the uninterrupted run's
    assert ep["loss_classification"].to_list() == pytest.approx(ref_ep["loss_classification"].to_list(), rel=1e-9)
    assert ep["val_accuracy"].to_list() == ref_ep["val_accuracy"].to_list()
    acc = lake(tmp_path / "killed", "corruption_accuracy")
    ref_acc = pl.scan_parquet(str(tmp_path / "ref" / "corruption_accuracy" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert acc.height == 70 and acc.select("corruption", "severity").is_duplicated().sum() == 0
    assert acc.sort("corruption", "severity")["accuracy"].to_list() == ref_acc.sort("corruption", "severity")["accuracy"].to_list()


def test_a_deterministic_error_is_recorded_with_its_cause_not_retried_and_the_sweep_exits_non_zero(tmp_path, smoke_data):
    # the Monkey Predictor's readout asked at a layer the network does not have: the same error on every try
    r = run_cli(*args(tmp_path / "s", smoke_data, "--kinds", "baseline,monkey_predictor", "--max-epochs", "1",
                      "--set", "monkey_predictor.readout_layer=conv9_9", "--no-report"), timeout=600)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    # not retried, from what Tune wrote to the storage (its console output is quiet, so it cannot tell):
    # one trial per model, no failure counted and no error file for any, the failing model's trial included
    attempts = tune_attempts(tmp_path / "s" / "ray")
    assert sorted(attempts) == [("baseline", "TERMINATED", 0), ("monkey_predictor", "TERMINATED", 0)], attempts
    assert not list((tmp_path / "s" / "ray").rglob("error.*"))
    runs = lake(tmp_path / "s", "runs")
    status = dict(zip(runs["kind"], runs["status"]))
    assert status == {"baseline": "ok", "monkey_predictor": "failed"}, runs.select("kind", "status", "error")
    error = runs.filter(pl.col("kind") == "monkey_predictor")["error"][0]
    # the cause, not "trial ended without a record": type, message and the failing line
    assert error.startswith("KeyError: 'conv9_9' (at ") and ".py:" in error, error
    assert re.search(r"monkey_predictor\s+ratio\s+- seed 0  done: failed: KeyError: 'conv9_9'", r.stdout), r.stdout[-3000:]
    # recorded by the worker and returned: neither Ray Train nor Tune saw an error to retry
    assert "trial " not in r.stdout and "Failure #" not in r.stdout + r.stderr, r.stdout[-3000:]
    # and the closing summary names the failed model
    assert "1 of 2 models failed (monkey_predictor)" in r.stderr, r.stderr[-3000:]


def tune_attempts(ray_storage: Path) -> list[tuple[str, str, int]]:
    """(model kind, final status, failures Tune counted) of each trial of the sweep's one Tune run, read from
    the experiment state Tune saved under STORAGE/ray."""
    [state] = ray_storage.glob("*/experiment_state-*.json")
    out = []
    for trial, meta in json.loads(state.read_text())["trial_data"]:
        trial = json.loads(trial) if isinstance(trial, str) else trial
        meta = json.loads(meta) if isinstance(meta, str) else meta
        out.append((trial["config"]["t"]["task"]["kind"], trial["status"], meta["num_failures"]))
    return out
