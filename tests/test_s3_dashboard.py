"""One smoke sweep serves three checks: its storage is an S3-protocol server on loopback (moto's
server mode); it is watched through the Ray dashboard's state API while it runs; and its MTL model
is forced to diverge (`--set mtl_monkey.lr=1e9`: only that kind's learning rate explodes), so the sweep
must record it as diverged, go on, and report it."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from conftest import Watched
from sweeps.stages import PAUSE_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]
BUCKET = "brainrobust-test"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    import pyarrow.fs as pafs

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline and proc.poll() is None, "moto server did not start"
            time.sleep(0.2)
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", access_key="testing",
                           secret_key="testing", region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(BUCKET)
    yield {"port": port, "fs": fs}
    proc.terminate()
    proc.wait(10)


def dashboard_get(url: str, path: str) -> dict:
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def s3_sweep(s3, tmp_path_factory, smoke_data):
    """The sweep on S3 storage; while it runs, the dashboard's state API is read every second."""
    tmp = tmp_path_factory.mktemp("s3")
    pause = tmp / "pause"
    pause.mkdir()
    uri = f"s3://{BUCKET}/run1?endpoint_override=127.0.0.1:{s3['port']}&scheme=http"
    w = Watched(["sweeps/ratio_grid.py", "--preset", "smoke", "--storage", uri, "--data-root", str(smoke_data),
                 "--kinds", "baseline,mtl_monkey", "--ratios", "1:2", "--seeds", "0", "--num-cpus", "2",
                 "--set", "mtl_monkey.lr=1e9", "--report", str(tmp / "report"), "--bootstrap", "50",
                 "--include-unhealthy"], env={**CREDS, PAUSE_ENV: f"1:{pause}"})
    url, seen, unauthorized, killed, listeners = None, [], None, {}, set()
    deadline = time.time() + 900
    while w.proc.poll() is None and time.time() < deadline:
        m = re.search(r"dashboard: (http://127\.0\.0\.1:\d+)", w.out)
        url = url or (m and m.group(1))
        if url:
            if unauthorized is None:
                try:
                    urllib.request.urlopen(url + "/api/v0/actors", timeout=5)
                    unauthorized = False
                except urllib.error.HTTPError as e:
                    unauthorized = e.code == 401
                except OSError:
                    pass
            try:
                actors = dashboard_get(url, "/api/v0/actors?limit=1000&detail=true")["data"]["result"]["result"]
                seen += [a for a in actors if a.get("state") == "ALIVE"]
            except (OSError, KeyError, ValueError):
                pass
        # a fault on S3 storage: each fit pauses after epoch 1 (sweeps.stages PAUSE_ENV); its node-local work
        # folder is deleted and its process (the Tune trial) killed, so the restarted trial has only the
        # checkpoint in the bucket to resume from
        # (killed once the driver printed that epoch: the report, and its checkpoint, have reached Tune;
        # the process is held still, so waiting for the line races nothing)
        for m in pause.glob("*.json"):
            kind = m.stem.rsplit("-", 1)[0]
            if m.stem not in killed and re.search(rf"{kind}\s+ratio\s+\S+ seed 0  \w+ epoch 1 ", w.out):
                killed[m.stem] = json.loads(m.read_text())
                shutil.rmtree(killed[m.stem]["work"])
                os.kill(killed[m.stem]["pid"], signal.SIGKILL)
        listeners |= ray_listeners(w.proc.pid)
        time.sleep(1)
    code, out = w.finish(timeout=60)
    return {"returncode": code, "out": out, "uri": uri, "tmp": tmp, "seen": seen, "unauthorized": unauthorized,
            "killed": killed, "listeners": listeners, "url": url}


def ray_listeners(pid: int) -> set[tuple[str, str, int]]:
    """(process, address, port) of every listening TCP socket of the sweep and the processes it started."""
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for p in procs:
        try:
            found |= {(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_smoke_sweep_on_s3_storage_reads_back_with_polars(s3, s3_sweep):
    assert s3_sweep["returncode"] == 0, s3_sweep["out"][-3000:]
    opts = {"aws_endpoint_url": f"http://127.0.0.1:{s3['port']}", "aws_allow_http": "true", "aws_region": "us-east-1",
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    runs = pl.scan_parquet(f"s3://{BUCKET}/run1/lake/runs/**/*.parquet", storage_options=opts, hive_partitioning=True).collect()
    status = dict(zip(runs["kind"], runs["status"]))
    assert status == {"baseline": "ok", "monkey_predictor": "ok", "mtl_monkey": "diverged"}, runs.select("kind", "status", "error")
    preds = pl.scan_parquet(f"s3://{BUCKET}/run1/lake/predictions/**/*.parquet", storage_options=opts,
                            hive_partitioning=True).collect()
    assert preds.height == 71 * 64 and preds.select("run_id", "condition", "severity", "image").is_duplicated().sum() == 0
    # models went up to the bucket (the MTL model downloaded its Monkey Predictor from there)
    fs = s3["fs"]
    for rid in runs.filter(pl.col("status") == "ok")["run_id"]:
        assert fs.get_file_info(f"{BUCKET}/run1/models/{rid}/model.pt").size > 0
    # the analysis read the lake from S3 and wrote the report locally
    assert (s3_sweep["tmp"] / "report" / "report.html").exists()
    assert "report: " + str(s3_sweep["tmp"] / "report" / "report.html") in s3_sweep["out"]


def test_dashboard_state_api_shows_the_sweeps_trials_and_needs_the_token(s3_sweep):
    assert s3_sweep["unauthorized"] is True  # without the token: 401
    # with the token from ~/.ray/auth_token (what `ray get-auth-token` prints), the state API answered
    classes = {a.get("class_name") for a in s3_sweep["seen"]}
    # the Tune trials (function trainables), inside which the fits run (Train V2's local mode, the default):
    # no Ray Train controller or worker group of their own
    assert "ImplicitFunc" in classes, classes
    assert not any("TrainWorker" in (c or "") or "TrainController" in (c or "") for c in classes), classes


def test_a_diverging_model_is_recorded_the_sweep_goes_on_and_the_report_says_so(s3, s3_sweep):
    assert s3_sweep["returncode"] == 0, s3_sweep["out"][-3000:]
    opts = {"aws_endpoint_url": f"http://127.0.0.1:{s3['port']}", "aws_allow_http": "true", "aws_region": "us-east-1",
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    runs = pl.scan_parquet(f"s3://{BUCKET}/run1/lake/runs/**/*.parquet", storage_options=opts, hive_partitioning=True).collect()
    div = runs.filter(pl.col("status") == "diverged").row(0, named=True)
    assert div["kind"] == "mtl_monkey" and div["diverged_epoch"] >= 1 and "non-finite" in div["error"]
    out = s3_sweep["out"]
    assert "mtl_monkey       ratio   1:2 seed 0  done: diverged" in out
    html = (s3_sweep["tmp"] / "report" / "report.html").read_text()
    assert f"mtl_monkey ratio 1:2 seed 0: diverged at epoch {div['diverged_epoch']}" in html and "Failed runs" in html
    # what could still be computed was: the Baseline's scores
    assert (s3_sweep["tmp"] / "report" / "robustness.parquet").exists()


def test_a_fault_on_s3_storage_resumes_from_the_checkpoint_in_the_bucket(s3, s3_sweep):
    assert s3_sweep["returncode"] == 0, s3_sweep["out"][-3000:]
    killed = s3_sweep["killed"]
    opts = {"aws_endpoint_url": f"http://127.0.0.1:{s3['port']}", "aws_allow_http": "true", "aws_region": "us-east-1",
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    runs = pl.scan_parquet(f"s3://{BUCKET}/run1/lake/runs/**/*.parquet", storage_options=opts, hive_partitioning=True).collect()
    ok = runs.filter(pl.col("status") == "ok")
    assert set(ok["run_id"]) <= set(killed), (ok["run_id"].to_list(), list(killed))
    for r in ok.iter_rows(named=True):
        # killed after epoch 1 with its local copy gone, the fit resumed after epoch 1 (not from scratch):
        # the checkpoint came from the bucket, through ray.tune.get_checkpoint() (local mode: Tune keeps it)
        assert r["resumed"] == f"{killed[r['run_id']]['phase']}:1", r
        # and every epoch's progress line was printed once, the one before the kill included
        for e in range(1, r["epochs"] + 1):
            head = f"{r['kind']:16s} ratio {r['ratio'] or '-':>5s} seed 0  {killed[r['run_id']]['phase']} epoch {e} "
            assert s3_sweep["out"].count(head) == 1, (r["kind"], e)


def test_a_local_ray_listens_on_loopback_only(s3_sweep):
    found = s3_sweep["listeners"]
    names = {n for n, _, _ in found}
    assert {"gcs_server", "raylet"} <= names, found   # the Ray servers were seen listening
    # and the dashboard's own socket, on loopback, at the port the sweep printed
    assert s3_sweep["url"], s3_sweep["out"][-3000:]
    port = int(s3_sweep["url"].rsplit(":", 1)[1])
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    assert any(ip in loopback and p == port for _, ip, p in found), (port, found)
    wide = sorted(x for x in found if x[1] not in loopback)
    assert not wide, wide
