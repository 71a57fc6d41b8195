"""What every command-line tool says before it starts work: its flag checks and its --help.

Each test names, in its docstring, the mutant it guards against: the code as it was before the
behaviour it checks existed. With the fixes in place none of these starts Ray or trains anything."""

import re

import pytest

from conftest import run_cli
from core.presets import PRESETS


def commands(tmp_path):
    """Every CLI that takes --device, with flags that would otherwise reach real work."""
    s, d, o = str(tmp_path / "results"), str(tmp_path / "data"), str(tmp_path / "out")
    return {
        "ratio_grid": ["sweeps/ratio_grid.py", "--preset", "smoke", "--kinds", "monkey_predictor", "--no-report",
                       "--storage", s, "--data-root", d, "--num-cpus", "2"],
        "hparam_search": ["sweeps/hparam_search.py", "--preset", "smoke", "--trials", "1", "--storage", s,
                          "--data-root", d, "--num-cpus", "2"],
        "core.training": ["-m", "core.training", "--kind", "monkey_predictor", "--out", o, "--data-root", d],
        "analysis.reconstruct": ["-m", "analysis.reconstruct", "--results", s, "--out", o],
        "compare-tintc": ["-m", "core.data", "compare-tintc", "--model", str(tmp_path / "model"),
                          "--tin-root", str(tmp_path / "tin"), "--tintc-root", str(tmp_path / "tintc"), "--data-root", d],
    }


CLIS = ("ratio_grid", "hparam_search", "core.training", "analysis.reconstruct", "compare-tintc")
REFUSALS = {"tpu": "error: --device 'tpu': expected auto, cpu, cuda or cuda:N",
            "cud": "error: --device 'cud': expected auto, cpu, cuda or cuda:N",
            "cuda": "error: --device cuda: no CUDA GPU (",
            "cuda:0": "error: --device cuda:0: no CUDA GPU ("}


@pytest.mark.parametrize("cli, device", [(c, d) for c in CLIS for d in ("tpu", "cuda")]
                         + [("ratio_grid", "cud"), ("ratio_grid", "cuda:0")])
def test_a_device_that_cannot_work_is_refused_before_anything_starts(tmp_path, cli, device):
    """One line naming the flag, exit status 2, nothing written, no Ray started. CUDA_VISIBLE_DEVICES=""
    hides any GPU from torch, so `cuda` is refused wherever the test runs.

    Mutant: --device unchecked (the flag passed through to torch inside each fit). The sweeps then built
    the smoke world, started Ray and failed every model (exit 1); the other commands failed later with
    another message, or a traceback."""
    r = run_cli(*commands(tmp_path)[cli], "--device", device, env={"CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stderr.startswith(REFUSALS[device]) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "use --device cpu or auto" in r.stderr or "expected auto" in r.stderr
    assert r.stdout == "" and list(tmp_path.iterdir()) == []   # nothing said, nothing written: no work began


def test_cuda_on_a_cluster_needs_gpus_per_trial_and_then_cuda_0(tmp_path):
    """With --address the GPUs are the cluster's, not this process's: only the spelling is checked, but a
    model is placed on a GPU only with --gpus-per-trial, and then sees that one GPU as cuda:0.

    Mutant: no such check (every model of such a sweep failed, or ran on a node without a GPU)."""
    base = ["sweeps/ratio_grid.py", "--preset", "smoke", "--storage", str(tmp_path / "r"), "--data-root", str(tmp_path / "d")]
    r = run_cli(*base, "--device", "cuda", "--address", "auto", env={"CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: --device cuda with --address: give --gpus-per-trial"), r.stderr
    r = run_cli(*base, "--device", "cuda:1", "--gpus-per-trial", "1", "--address", "auto", timeout=120)
    assert r.returncode == 2 and "which the model sees as cuda:0; use --device cuda" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_plan_writes_nothing(tmp_path):
    """`--plan` says that nothing was started: it leaves the storage and data folders absent.

    Mutant: the storage's write probe ran for --plan too (it created the storage folder)."""
    r = run_cli("sweeps/ratio_grid.py", "--preset", "smoke", "--plan", "--storage", str(tmp_path / "results"),
                "--data-root", str(tmp_path / "data"), timeout=120)
    assert r.returncode == 0 and "nothing was started" in r.stdout, r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == []
    # several planted worlds: each sweep's header names its world, and the command sums their wall times
    r = run_cli("sweeps/ratio_grid.py", "--preset", "smoke", "--planted", "0,1", "--kinds", "baseline", "--plan",
                "--storage", str(tmp_path / "results"), "--data-root", str(tmp_path / "data"), timeout=120)
    assert r.returncode == 0 and "data: synthetic world 'smoke', planted at 1)" in r.stdout, r.stdout + r.stderr
    secs = lambda v, unit: float(v) * {"s": 1, "min": 60, "hours": 3600}[unit]   # noqa: E731 - plan._duration's units
    walls = [secs(*w) for w in re.findall(r"wall time on .*?: about ([0-9.]+) (s|min|hours)", r.stdout)]
    total = re.search(r"all 2 sweeps, one after another: about ([0-9.]+) (s|min|hours) of wall time", r.stdout)
    assert len(walls) == 2 and total and abs(secs(*total.groups()) - sum(walls)) <= 6, r.stdout
    assert list(tmp_path.iterdir()) == []


def help_of(*args) -> str:
    r = run_cli(*args, "--help", env={"COLUMNS": "100"}, timeout=120)
    assert r.returncode == 0, r.stderr
    return " ".join(r.stdout.split())   # argparse wraps lines: compare words


def test_every_help_names_what_the_default_preset_trains_and_where_the_output_lands():
    """Mutant: the --help texts as they were (`default demo` / `default smoke` without what the preset trains)."""
    demo, smoke = PRESETS["demo"], PRESETS["smoke"]
    grid = help_of("sweeps/ratio_grid.py")
    assert (f"demo synthetic world '{demo.world}'; ratios {','.join(demo.ratios)}; seeds {','.join(map(str, demo.seeds))}; "
            f"up to {demo.max_epochs} epochs per classifier fit, {demo.neural_epochs} for the Monkey Predictor") in grid
    assert "presets (--preset; default demo): a sweep trains the preset's kinds where it names them, else, per seed" in grid
    assert ("calibration synthetic world 'demo' with a planted answer at 0, 0.5, 1 (one sweep each); ratios 2:1; seeds "
            "0,1,2,3,4; kinds baseline, monkey_predictor, mtl_monkey, mtl_shuffled, mtl_true") in grid
    assert "--plan lists every model" in grid
    assert "the records land in STORAGE/lake" in grid and "report.html to STORAGE/report/<sweep>" in grid
    assert "The last line printed is the report's path" in grid and "143 terminated (SIGTERM" in grid
    search = help_of("sweeps/hparam_search.py")
    assert f"demo synthetic world '{demo.world}'; seed {demo.seeds[0]}; up to {demo.max_epochs} epochs" in search
    assert "--trials MTL-Monkey models" in search and "the records in STORAGE/lake (no report)" in search
    single = help_of("-m", "core.training")
    assert f"default smoke: synthetic world '{smoke.world}', up to {smoke.max_epochs} epochs for a classifier" in single
    assert "output folder: model.pt, checkpoint/, run.json and the records" in single
    from core.data.synthetic import world_config

    w = world_config("demo")
    assert (f"(default demo: {w.n_classes} classes x {w.train_per_class}/{w.val_per_class}/{w.test_per_class} "
            "train/val/test images") in help_of("-m", "core.data", "synth")
    assert "folder for tables, figures and report.html" in help_of("-m", "analysis")
    assert "default per preset: smoke 4, demo 8" in help_of("-m", "analysis.reconstruct")


def test_a_trial_that_asha_stopped_is_said_so(capsys):
    """Tune marks the report on which ASHA stops a trial as done; unlike a finished trial's last report it
    has no status, but the epoch's metrics (said with the stop: no epoch line is printed for that report).

    Mutant: the progress line printed that report as "done: None"."""
    from types import SimpleNamespace

    from sweeps.console import progress_callback

    cb = progress_callback(False, stopped_by="ASHA")
    row = {"kind": "mtl_monkey", "ratio": "1:5", "seed": 0, "phase": "train", "done": False}
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="t1"), {**row, "epoch": 1, "val_accuracy": 0.25})
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="t1"), {**row, "epoch": 2, "val_accuracy": 0.266, "done": True})
    cb.on_trial_result(0, [], SimpleNamespace(trial_id="t2"), {**row, "epoch": 2, "done": True, "status": "ok",
                                                               "clean_accuracy": 0.3, "feve": 0.1})
    assert capsys.readouterr().out.splitlines() == [
        "  mtl_monkey       ratio   1:5 seed 0  train epoch 1  val acc 0.250",
        "  mtl_monkey       ratio   1:5 seed 0  stopped by ASHA after epoch 2  val acc 0.266",
        "  mtl_monkey       ratio   1:5 seed 0  done: ok, clean acc 0.300, FEVe 0.100"]


def test_an_interrupted_driver_waits_for_ray_processes_that_are_still_ending():
    """A process group's SIGTERM reaches the driver and the local Ray's GCS and raylet at once; they take a
    moment to end. Read at once, they looked alive, the driver took the normal way out and Ray's shutdown
    waited 60 s for the dead GCS, then exited 1 (seen on CI). Mutant caught: the processes read once, no wait."""
    import time

    from sweeps.cli import ray_died_with_us

    class Node:
        def __init__(self, dies_after):
            self.end = time.monotonic() + dies_after

        def remaining_processes_alive(self):
            return time.monotonic() < self.end

    assert ray_died_with_us(Node(0.3), settle=2.0)            # ends while watched: the fast way out
    t = time.monotonic()
    assert not ray_died_with_us(Node(60.0), settle=0.5)       # still running (the driver alone was signalled)
    assert 0.5 <= time.monotonic() - t < 2.0                  # gave up after the settle time, not sooner
