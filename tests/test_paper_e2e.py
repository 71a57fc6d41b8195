"""The paper preset end to end through Ray on real-format data made here: a Tiny-ImageNet tree whose
images are crops of real photographs (scikit-image's; RGB, L and CMYK JPEGs, tab-separated val
annotations), and recordings in the authors' pickle layout (a 3-D and a 2-D session with different
neurons, repeated test images) converted with `python -m core.data convert`. A tiny budget through
flags; every kind of the graph must end `ok` and the report must be written. Classifiers are scored on
a published-layout Tiny-ImageNet-C tree made from the same val images (`--tintc-root`).

A second Ray instance runs on the machine throughout (another user's job, a second sweep): Ray
Train's placement-group cleaner once asked that instance whether our controllers were alive, leaked
placement groups and stalled wave 2 forever; the sweep pins Ray's state API to its own instance."""

import json
import subprocess
import sys

import polars as pl
import pytest

from conftest import make_pickle_sessions, make_tin_tree, run_cli
from conftest import read_lake as lake
from published_tree import make_published_tree

pytestmark = [pytest.mark.slow, pytest.mark.ray]
SEVEN = {"baseline", "monkey_predictor", "oracle", "oracle_readout", "mtl_monkey", "mtl_shuffled", "mtl_oracle"}


@pytest.fixture
def bystander_ray():
    """Another local Ray instance (started by `ray.init`, as a notebook or a test would), alive for the test."""
    code = "import ray, sys; ray.init(num_cpus=1, include_dashboard=True); print('up', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "up", "the bystander Ray instance did not start"
    yield proc
    proc.stdin.close()   # ray.shutdown() at exit stops its processes
    proc.wait(60)


def test_the_paper_preset_trains_every_kind_on_real_format_data(tmp_path, bystander_ray):
    tin = make_tin_tree(tmp_path / "tiny-imagenet-200", n_classes=4, per_class=12, n_val=8, photos=True)
    r = run_cli("-m", "core.data", "convert", "--neural-pickles", str(make_pickle_sessions(tmp_path / "pk", photos=True)),
                "--out", str(tmp_path / "neural"), "--trust-pickle")
    assert r.returncode == 0, r.stderr
    pub = make_published_tree(tin, tmp_path / "Tiny-ImageNet-C")
    for flag, path in (("--tin-root", tin), ("--neural-data", tmp_path / "neural")):
        assert run_cli("-m", "core.data", "check", flag, str(path)).returncode == 0
    r = run_cli("-m", "core.data", "check", "--tin-root", str(tin), "--neural-data", str(tmp_path / "neural"),
                "--tintc-root", str(pub))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cli("sweeps/ratio_grid.py", "--preset", "paper", "--tin-root", str(tin), "--neural-data", str(tmp_path / "neural"),
                "--tintc-root", str(pub),
                "--seeds", "1000", "--ratios", "1:1", "--max-epochs", "1", "--set", "width=0.0625,batch_size=16",
                "--storage", str(tmp_path / "res"), "--data-root", str(tmp_path / "data"), "--num-cpus", "2",
                "--cpus-per-trial", "0.6", "--bootstrap", "20", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert bystander_ray.poll() is None, "the other Ray instance was not running throughout"
    runs = lake(tmp_path / "res", "runs")
    assert set(runs["kind"]) == SEVEN and runs.height == 7
    assert (runs["status"] == "ok").all(), runs.select("kind", "status", "error")
    assert (runs["preset"] == "paper").all()
    # --max-epochs 1 for every fit: the Oracle has two (pre-training on corruptions, then re-training above conv3_1)
    assert dict(zip(runs["kind"], runs["epochs"])) == {k: 2 if k == "oracle" else 1 for k in SEVEN}
    # the width override reached every kind (the Oracle Readout loaded the Oracle's weights)
    assert all('"width": 0.0625' in c for c in runs["config"]), runs.select("kind", "config")
    acc = lake(tmp_path / "res", "corruption_accuracy")
    assert acc.height == 5 * 70 and acc.filter(pl.col("n_images") != 8).height == 0   # 5 classifiers × TIN-TC
    # TIN-TC was the published JPEGs' cache (no corruptions generated), and the runs say so
    assert [p.name for p in (tmp_path / "data").glob("tintc-*")] == [next((tmp_path / "data").glob("tintc-published-*-n8")).name]
    assert all(json.loads(d)["tintc"].startswith("published-") for d in runs["data"])
    # its own sweep (never pooled with a generated-TIN-TC sweep of the same preset), and the report says
    # the scores are on another benchmark
    assert (runs["sweep"] == "paper-published").all()
    html = (tmp_path / "res" / "report" / "paper-published" / "report.html").read_text()
    assert "scored on the published Tiny-ImageNet-C" in html
