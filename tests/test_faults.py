"""A Ray Train worker process killed mid-fit. (The other faults: the killed driver in test_sweeps.py,
the removed node in test_multinode.py, the diverging trial in test_s3_dashboard.py.)"""

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
    # the uninterrupted reference: the same model trained in one process without Ray (same config,
    # hence the same run id; one thread, as a sweep trial with --cpus-per-trial 1)
    ref = run_cli("-m", "core.training", "--kind", "baseline", "--preset", "smoke", "--seed", "0", "--max-epochs", "3",
                  "--threads", "1", "--data-root", str(smoke_data), "--out", str(tmp_path / "ref"), "--quiet", timeout=600)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-2000:]

    w = Watched(args(tmp_path / "killed", smoke_data, "--kinds", "baseline", "--max-epochs", "3", "--no-report"))
    w.wait_for(lambda out: "train epoch 1 " in out)
    pids = train_worker_pids()
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    code, out = w.finish()
    assert code == 0, out[-3000:]

    runs = lake(tmp_path / "killed", "runs")
    ref_runs = pl.scan_parquet(str(tmp_path / "ref" / "runs" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert runs.height == 1 and runs["status"][0] == "ok" and runs["run_id"][0] == ref_runs["run_id"][0]
    # resumed, not restarted: epoch 1 was reported once, and the fit went on to epoch 3
    assert len(re.findall(r"train epoch 1 ", out)) == 1 and "train epoch 3 " in out
    for col in ("clean_accuracy", "val_accuracy", "epochs"):
        assert runs[col][0] == ref_runs[col][0], col
    ep = lake(tmp_path / "killed", "epochs").sort("epoch")
    ref_ep = pl.scan_parquet(str(tmp_path / "ref" / "epochs" / "**" / "*.parquet"), hive_partitioning=True).collect().sort("epoch")
    assert ep["epoch"].to_list() == [1, 2, 3]
    # the losses of every epoch, before and after the kill,, equal the uninterrupted run's
    assert ep["loss_classification"].to_list() == pytest.approx(ref_ep["loss_classification"].to_list(), rel=1e-9)
    assert ep["val_accuracy"].to_list() == ref_ep["val_accuracy"].to_list()
    acc = lake(tmp_path / "killed", "corruption_accuracy")
    ref_acc = pl.scan_parquet(str(tmp_path / "ref" / "corruption_accuracy" / "**" / "*.parquet"), hive_partitioning=True).collect()
    assert acc.height == 70 and acc.select("corruption", "severity").is_duplicated().sum() == 0
    assert acc.sort("corruption", "severity")["accuracy"].to_list() == ref_acc.sort("corruption", "severity")["accuracy"].to_list()
