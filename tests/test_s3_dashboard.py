"""One smoke sweep serves three checks: its storage is an S3-protocol server on loopback (moto's
server mode); it is watched through the Ray dashboard's state API while it runs; and its MTL model
is forced to diverge (`--set mtl_monkey.lr=1e9`: only that kind's learning rate explodes), so the sweep
must record it as diverged, go on, and report it."""

import json
import re
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
    uri = f"s3://{BUCKET}/run1?endpoint_override=127.0.0.1:{s3['port']}&scheme=http"
    w = Watched(["sweeps/ratio_grid.py", "--preset", "smoke", "--storage", uri, "--data-root", str(smoke_data),
                 "--kinds", "baseline,mtl_monkey", "--ratios", "1:2", "--seeds", "0", "--num-cpus", "2",
                 "--set", "mtl_monkey.lr=1e9", "--report", str(tmp / "report"), "--bootstrap", "50",
                 "--include-unhealthy"], env=CREDS)
    url, seen, unauthorized = None, [], None
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
        time.sleep(1)
    code, out = w.finish(timeout=60)
    return {"returncode": code, "out": out, "uri": uri, "tmp": tmp, "seen": seen, "unauthorized": unauthorized}


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
    assert "ray get-auth-token" in s3_sweep["out"]
    assert s3_sweep["unauthorized"] is True  # without the token: 401
    classes = {a.get("class_name") for a in s3_sweep["seen"]}
    # the Tune trials (function trainables) and the Ray Train workers they launched
    assert "ImplicitFunc" in classes, classes
    assert any("TrainWorker" in (c or "") or "RayTrainWorker" in (c or "") for c in classes), classes


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
