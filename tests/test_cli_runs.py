"""The command-line tools in real smoke runs, each with its own local Ray: what SIGTERM does to the main
job, the main job's last line, and the hyperparameter search's closing table."""

import os
import re
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from conftest import read_lake as lake
from conftest import ROOT, run_cli, session_alive, sweep_args
from sweeps.stages import PAUSE_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.mark.parametrize("target", ["driver", "process group"])
def test_sigterm_keeps_what_finished_and_exits_143(tmp_path, smoke_data, target):
    """SIGTERM, as `kill PID` sends it to the driver, or as a batch scheduler sends it to every process of
    the job (here: the driver's process group, the local Ray's GCS and raylet included), once the Monkey
    Predictor is in the lake and MTL-Monkey is inside its fit (held there by the fault-injection point):
    one line, exit status 143 within seconds, the finished model kept, nothing recorded as failed, and
    no Ray process left behind.

    Mutant: SIGTERM unhandled. Ray's native handler printed its stack trace ("*** SIGTERM received ...")
    and the driver died without the line; sent to the process group, the driver waited 60 s for the dead
    GCS and exited 1."""
    storage, pause = tmp_path / "results", tmp_path / "pause"
    pause.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", PAUSE_ENV: f"1:{pause}"}
    log = tmp_path / "out.log"
    p = subprocess.Popen([sys.executable, *sweep_args(storage, smoke_data, "--kinds", "mtl_monkey", "--no-report")],
                         cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def held(kind):   # the marker of a model of `kind` held after its first epoch
            deadline = time.time() + 300
            while time.time() < deadline and p.poll() is None:
                found = list(pause.glob(f"{kind}-*.json"))
                if found:
                    return found[0]
                time.sleep(0.5)
            raise AssertionError(log.read_text()[-3000:])

        held("monkey_predictor").with_suffix(".go").touch()   # let the Monkey Predictor finish
        held("mtl_monkey")
        assert lake(storage, "runs")["status"].to_list() == ["ok"]
        if target == "driver":
            os.kill(p.pid, signal.SIGTERM)
        else:
            os.killpg(p.pid, signal.SIGTERM)
        t = time.time()
        p.wait(120)
        took = time.time() - t
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    out = log.read_text()
    assert p.returncode == 143, out[-3000:]
    assert took < 30, (took, out[-3000:])
    lines = out.splitlines()
    held_at = max(i for i, ln in enumerate(lines) if "mtl_monkey       ratio   1:2 seed 0  train epoch 1" in ln)
    after = [ln for ln in lines[held_at + 1:] if ln.strip()]   # what the signal made the driver say
    assert len(after) == 1 and re.fullmatch(r"terminated \(SIGTERM\) after \d+s: 1 of 2 models are in the lake; run the "
                                            r"same command again to train the rest .*", after[0]), out[-3000:]
    assert "SIGTERM received" not in out and "Traceback" not in out, out[-3000:]
    runs = lake(storage, "runs")
    assert runs["kind"].to_list() == ["monkey_predictor"] and runs["status"].to_list() == ["ok"]
    deadline = time.time() + 60
    while time.time() < deadline and session_alive(p.pid):
        time.sleep(0.5)
    assert not session_alive(p.pid), "Ray processes outlived the terminated sweep by a minute"


def test_the_main_job_ends_with_the_reports_path_in_an_empty_folder_given(tmp_path, smoke_data):
    """The last line the main job prints is the report's path; an existing empty folder is a valid --report.
    The explanation controls go through `--kinds` like every kind: a run record, a health row and a row in
    the report's groups, with the Monkey Predictor that MTL-Pixel reads added.

    Mutant: the last line was "report: PATH (N notes on what is missing)"."""
    report = tmp_path / "report"
    report.mkdir()
    r = run_cli(*sweep_args(tmp_path / "results", smoke_data, "--kinds", "baseline,baseline_lowpass,mtl_pixel",
                            "--report", str(report), "--bootstrap", "20"), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == f"report: {report / 'report.html'}", r.stdout[-2000:]
    assert (report / "report.html").is_file() and "notes on what is missing" in r.stdout
    runs = lake(tmp_path / "results", "runs")
    ok = runs.filter(pl.col("status") == "ok")
    assert set(ok["kind"]) == {"baseline", "baseline_lowpass", "monkey_predictor", "mtl_pixel"}, runs.select("kind", "status", "error")
    # every model has its health verdict in the report (the smoke models may sit at chance: then named there)
    health = pl.read_csv(report / "health.csv")
    assert sorted(health["run_id"]) == sorted(ok["run_id"]) and health["healthy"].dtype == pl.Boolean


def test_hparam_search_lists_every_trial_and_says_which_asha_stopped(tmp_path, smoke_data):
    """Six trials: the closing table lists all six, best first, each with its outcome; a trial that
    ASHA stopped is said so (in its progress line and in the table) and recorded as 'stopped'; Optuna's
    own log line stays out of the console.

    Mutants: the table listed the first five trials only; a stopped trial's progress line read
    "done: None"; "[I ...] A new study created in memory with name: optuna" came through."""
    storage = tmp_path / "results"
    r = run_cli("sweeps/hparam_search.py", "--preset", "smoke", "--storage", str(storage), "--data-root", str(smoke_data),
                "--trials", "6", "--num-cpus", "2", "--max-epochs", "3", "--grace-period", "1", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "A new study created" not in out and "done: None" not in out, out[-3000:]
    table = r.stdout.split("search finished in")[1].split("best, as grid flags:")[0].strip().splitlines()[1:]
    assert len(table) == 6 and all(ln.startswith("  val_accuracy ") for ln in table), table
    values = [float(ln.split()[1]) for ln in table]
    assert values == sorted(values, reverse=True)
    trials = lake(storage, "runs").filter((pl.col("sweep") == "smoke-hparam") & (pl.col("kind") == "mtl_monkey"))
    stopped = trials.filter(pl.col("status") == "stopped").height
    assert trials.height == 6 and set(trials["status"]) <= {"ok", "stopped"}, trials.select("status", "error")
    assert sum(ln.endswith(" ok") for ln in table) == 6 - stopped
    assert sum(bool(re.search(r"stopped by ASHA after epoch \d$", ln)) for ln in table) == stopped
    assert len(re.findall(r"seed 0  stopped by ASHA after epoch \d  val acc ", r.stdout)) == stopped
