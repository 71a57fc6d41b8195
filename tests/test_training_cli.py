import json
import math
import re

import polars as pl
import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_root(smoke_data):
    return smoke_data  # the session's smoke world and TIN-TC cache (built once, by whichever test runs first)


def lake(root, table):
    return pl.scan_parquet(str(root / table / "**" / "*.parquet"), hive_partitioning=True).collect()


def train(out, kind, data_root, *extra):
    r = run_cli("-m", "core.training", "--kind", kind, "--preset", "smoke", "--seed", "0", "--out", str(out),
                "--data-root", str(data_root), "--quiet", *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_six_kinds_on_smoke(tmp_path, data_root):
    # the Oracle chain in one command: oracle -> oracle_readout -> mtl_oracle
    r = train(tmp_path / "mo", "mtl_oracle", data_root, "--ratio", "2:1")
    assert "oracle: status ok" in r.stdout and "oracle_readout: status ok" in r.stdout and "mtl_oracle: status ok" in r.stdout
    ep = lake(tmp_path / "mo" / "upstream" / "oracle_readout" / "upstream" / "oracle", "epochs")
    assert sorted(set(ep["phase"])) == ["pretrain", "retrain"]

    # mtl_monkey trains its Monkey Predictor first (OUT/upstream/monkey_predictor); the others reuse it
    r = train(tmp_path / "mm", "mtl_monkey", data_root, "--ratio", "1:2")
    assert "monkey_predictor: status ok" in r.stdout
    mp_dir = tmp_path / "mm" / "upstream" / "monkey_predictor"
    mp = lake(mp_dir, "runs").row(0, named=True)
    assert 0 < mp["feve_neurons"] <= 24 and math.isfinite(mp["feve"])   # the smoke world's 24 neurons, undefined ones out
    train(tmp_path / "ms", "mtl_shuffled", data_root, "--upstream", str(mp_dir), "--ratio", "1:2")
    train(tmp_path / "b", "baseline", data_root)
    # the similarity family from the same command line, on the same Monkey Predictor
    r = train(tmp_path / "ss", "sim_shuffled", data_root, "--upstream", str(mp_dir), "--alpha", "3")
    ss = lake(tmp_path / "ss", "runs").row(0, named=True)
    mp_id = json.loads((mp_dir / "run.json").read_text())["run_id"]
    assert ss["status"] == "ok" and ss["alpha"] == 3.0 and ss["upstream"] == mp_id and math.isfinite(ss["sim_match"])
    adv = lake(tmp_path / "ss", "adversarial")
    assert set(adv["attack"]) <= {"pgd", "hop_skip_jump"} and adv.filter(pl.col("attack") == "pgd").height == 10

    mp = json.loads((mp_dir / "run.json").read_text())
    assert mp["kind"] == "monkey_predictor" and 0 < mp["fev"] < 1 and mp["status"] == "ok"
    for folder, kind in (("mm", "mtl_monkey"), ("ms", "mtl_shuffled"), ("b", "baseline"), ("mo", "mtl_oracle")):
        runs = lake(tmp_path / folder, "runs")
        assert runs["kind"].to_list() == [kind] and runs["stage"].to_list() == [kind] and runs["sweep"].to_list() == ["single"]
        row = runs.row(0, named=True)
        assert row["status"] == "ok" and re.fullmatch(r"[0-9a-f]{40}", row["git_sha"]) and row["config"]
        acc = lake(tmp_path / folder, "corruption_accuracy")
        assert acc.height == 70 and sorted(set(acc["category"])) == ["blur", "digital", "noise", "weather"]
        preds = lake(tmp_path / folder, "predictions")
        clean = preds.filter(pl.col("condition") == "clean")
        assert clean["correct"].mean() == pytest.approx(row["clean_accuracy"])
        assert preds.height == 71 * clean.height
        if kind.startswith("mtl_"):
            assert row["upstream"] and row["ratio"] in ("1:2", "2:1") and math.isfinite(row["feve"])
    assert lake(tmp_path / "mm", "runs")["upstream"][0] == mp["run_id"]


def test_cli_resume_and_bad_flags(tmp_path, data_root):
    train(tmp_path / "b", "baseline", data_root, "--no-corruptions")
    first = json.loads((tmp_path / "b" / "run.json").read_text())
    r = run_cli("-m", "core.training", "--kind", "baseline", "--preset", "smoke", "--out", str(tmp_path / "b"),
                "--data-root", str(data_root), "--no-corruptions")
    assert r.returncode == 0 and "resumed from" in r.stdout
    again = json.loads((tmp_path / "b" / "run.json").read_text())
    assert again["run_id"] == first["run_id"] and again["clean_accuracy"] == first["clean_accuracy"]
    for flags, msg in ((["--ratio", "1-2"], "ratio '1-2'"), (["--seed", "-1"], "--seed -1"),
                       (["--preset", "huge"], "invalid choice: 'huge'")):
        r = run_cli("-m", "core.training", "--kind", "mtl_monkey", "--out", str(tmp_path / "x"), "--data-root", str(data_root), *flags)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    r = run_cli("-m", "core.training", "--kind", "mtl_monkey", "--out", str(tmp_path / "x"), "--data-root", str(data_root),
                "--upstream", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "model.pt: missing" in r.stderr


def test_one_tintc_cache_per_image_count_shared_by_sweep_and_cli(tmp_path, data_root):
    """A preset that evaluates only the first test images: the CLI and the sweep build the same
    cache (the same images, the same folder), run_kind evaluates exactly those images, and a second
    build finds it instead of rebuilding."""
    from dataclasses import replace

    from core.data.corruptions import ensure_tintc
    from core.presets import get_preset
    from core.training.bundles import load_sources
    from core.training.kinds import run_kind, tintc_source

    preset = replace(get_preset("smoke"), eval_images=6, adv_images=0, adv_decision_images=0)
    sources = load_sources(preset, data_root, log=None)
    images, folder = tintc_source(preset, sources, tmp_path)
    assert len(images) == 6 and folder.name.endswith("-n6")
    assert tintc_source(preset, sources, tmp_path)[1] == folder               # the sweep and the CLI agree
    tintc = ensure_tintc(images, folder, seed=0, log=None, progress=False)
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    res = run_kind("baseline", preset, "", 0, tmp_path / "m", sources, data_root=data_root, tintc=tintc, log=None,
                   overrides={"max_epochs": 1})
    assert len(res.corruption_accuracy) == 70 and {r["n_images"] for r in res.corruption_accuracy} == {6}
    ensure_tintc(images, folder, seed=0, log=None, progress=False)
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp           # found, not rebuilt


def test_the_explanation_and_truth_kinds_train_like_every_kind(tmp_path, data_root):
    """baseline_lowpass, mtl_pixel, mtl_surrogate and mtl_true through the same command, with their run records, spectral
    sensitivity and health inputs: mtl_pixel reads the Monkey Predictor (its targets take the predictor's
    per-neuron mean and variance), mtl_true the smoke world's noise-free rates."""
    import numpy as np

    mp_dir = tmp_path / "mp"
    train(mp_dir, "monkey_predictor", data_root)
    for kind, extra in (("baseline_lowpass", ()), ("mtl_pixel", ("--upstream", str(mp_dir), "--ratio", "1:1")),
                        ("mtl_surrogate", ("--upstream", str(mp_dir), "--ratio", "1:1")), ("mtl_true", ("--ratio", "1:1"))):
        train(tmp_path / kind, kind, data_root, *extra)
        run = lake(tmp_path / kind, "runs").row(0, named=True)
        cfg = json.loads(run["config"])
        assert run["kind"] == kind and run["status"] == "ok" and run["run_id"].startswith(kind + "-")
        assert math.isfinite(run["clean_accuracy"]) and math.isfinite(run["readout_alive"])
        spec = lake(tmp_path / kind, "spectral")
        assert spec.height == 8 and sorted(set(spec["filter"])) == ["high", "low"]
        if kind == "baseline_lowpass":
            assert cfg["input_lowpass"] == 0.2 and cfg["mode"] == "classification"
        else:
            assert cfg["mode"] == "mtl" and math.isfinite(run["feve"])
    assert json.loads((tmp_path / "mtl_pixel" / "run.json").read_text())["upstream"] == json.loads(
        (mp_dir / "run.json").read_text())["run_id"]
    assert not np.isnan(lake(tmp_path / "mtl_true", "runs")["corr_true"][0])


def test_the_surrogate_keeps_the_populations_statistics_and_the_shuffle_breaks_its_covariance():
    """mtl_surrogate's targets are the response vectors permuted as whole rows: each neuron's mean and the
    covariance across neurons equal the data's exactly, and no row stays with its image; MTL-Shuffled's
    per-neuron shuffle keeps the means but not the covariance. A surrogate that shuffled each neuron on its
    own (MTL-Shuffled again), or one that left the rows in place, fails this."""
    import torch

    from core.training.bundles import shuffled, surrogate

    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 3, generator=g)
    t = {"train": torch.stack([z[:, 0], z[:, 0] + 0.3 * z[:, 1], -z[:, 0] + 0.3 * z[:, 2]], 1).exp()}   # correlated units
    s, sh = surrogate(t, 1)["train"], shuffled(t, 1)["train"]
    cov = torch.cov(t["train"].T)
    assert torch.allclose(s.mean(0), t["train"].mean(0), atol=1e-5) and torch.allclose(torch.cov(s.T), cov, atol=1e-4)
    assert (s == t["train"]).all(1).float().mean() < 0.05                        # rows moved to other images
    assert torch.allclose(sh.mean(0), t["train"].mean(0), atol=1e-5)
    assert (torch.cov(sh.T) - cov)[0, 1].abs() > 0.5 * cov[0, 1].abs()            # the shuffle loses the covariance
