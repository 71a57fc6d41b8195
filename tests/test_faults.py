"""A Ray Train worker process killed mid-fit. (The other faults: the killed driver in test_sweeps.py,
the removed node in test_multinode.py, the diverging trial in test_s3_dashboard.py.)"""

import json
import os
import signal

import polars as pl
import pytest
import torch

from conftest import read_lake as lake
from conftest import Watched, run_cli
from sweeps.stages import PAUSE_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def args(storage, data_root, *extra):
    return ["sweeps/ratio_grid.py", "--preset", "smoke", "--storage", str(storage), "--data-root", str(data_root),
            "--seeds", "0", "--num-cpus", "2", *extra]


def test_training_worker_killed_mid_fit_resumes_and_matches_an_uninterrupted_run(tmp_path, smoke_data):
    # the uninterrupted reference: the same model trained in one process without Ray (same config,
    # hence the same run id; one thread, as a sweep trial with --cpus-per-trial 1)
    ref = run_cli("-m", "core.training", "--kind", "baseline", "--preset", "smoke", "--seed", "0", "--max-epochs", "3",
                  "--threads", "1", "--data-root", str(smoke_data), "--out", str(tmp_path / "ref"), "--quiet", timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-2000:]

    # the worker holds still once epoch 1 is checkpointed (a fault-injection point, sweeps.stages
    # PAUSE_ENV), writes its pid, and is killed there: inside the fit, by construction, not by a race
    pause = tmp_path / "pause"
    pause.mkdir()
    w = Watched(args(tmp_path / "killed", smoke_data, "--kinds", "baseline", "--max-epochs", "3", "--no-report"),
                env={PAUSE_ENV: f"1:{pause}"})
    w.wait_for(lambda out: any(pause.glob("*.json")))
    marker = json.loads(next(pause.glob("*.json")).read_text())
    assert marker["epoch"] == 1 and marker["phase"] == "train"
    ckpt = torch.load(next((tmp_path / "killed" / "work").rglob("checkpoint.pt")), weights_only=False)
    assert ckpt["state"]["epoch"] == 1          # the kill lands after epoch 1's checkpoint, before epoch 2
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
