import pickle

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from core.data import ClassificationSet, NeuralSet, recordings, tiny_imagenet
from core.data.synthetic import MAX_CLASSES, class_genes, make_classification, make_neural, render, world_config, write_world
from core.errors import ConfigError, DataError


# ----------------------------------------------------------------------------- synthetic world


def test_synthetic_world_is_deterministic_and_balanced():
    cfg = world_config("smoke")
    a, b = make_classification(cfg), make_classification(cfg)
    c = make_classification(world_config("smoke", seed=1))
    for s in ("train", "val", "test"):
        assert a.images[s].dtype == np.uint8 and a.images[s].shape[1:] == (64, 64)
        np.testing.assert_array_equal(a.images[s], b.images[s])
        np.testing.assert_array_equal(a.labels[s], b.labels[s])
        assert np.bincount(a.labels[s], minlength=cfg.n_classes).tolist() == [len(a.labels[s]) // cfg.n_classes] * cfg.n_classes
    assert not np.array_equal(a.images["train"], c.images["train"])
    assert len(a.labels["train"]) == cfg.n_classes * cfg.train_per_class


def test_classes_are_distinct_shapes_and_genes_cover_200():
    assert MAX_CLASSES >= 200
    assert len({class_genes(k) for k in range(200)}) == 200
    # object masks of two classes differ systematically: mean mask area of a ring < disk
    rng = np.random.default_rng(0)
    _, m_disk = render(rng, np.zeros(200, int), return_masks=True)
    _, m_ring = render(rng, np.full(200, 5), return_masks=True)
    assert m_ring.mean() < 0.8 * m_disk.mean()


def test_simulated_v1_has_known_ground_truth():
    cfg = world_config("smoke")
    ns, pop = make_neural(cfg)
    ns.validate()
    K = cfg.n_neurons
    assert ns.test_responses.shape == (cfg.neural_test_images, cfg.neural_repeats, K)
    assert ns.true_rates.shape == (cfg.neural_train_images + cfg.neural_test_images, K)
    # Poisson counts: non-negative integers whose mean matches the noise-free rate
    assert (ns.train_responses >= 0).all() and np.all(ns.train_responses == np.round(ns.train_responses))
    rates = ns.true_rates[ns.test_image_index]  # (M, K)
    emp = ns.test_responses.mean(axis=1)
    assert np.corrcoef(rates.ravel(), emp.ravel())[0, 1] > 0.9
    assert pop.is_complex.any() and (~pop.is_complex).any()
    # both cell types respond, with RFs near the centre
    assert np.abs(pop.center).max() <= 8.0 + 1e-5
    assert 1.0 < ns.true_rates.mean() < 8.0


def test_world_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        world_config("huge")
    with pytest.raises(ConfigError, match="unknown key 'n_clases'"):
        world_config("smoke", n_clases=3)
    with pytest.raises(ConfigError, match="neural_repeats=1"):
        world_config("smoke", neural_repeats=1)


def test_write_world_round_trips_through_canonical_form(tmp_path):
    cfg = world_config("smoke")
    m = write_world(cfg, tmp_path / "w")
    cls = ClassificationSet.load(tmp_path / "w" / "classification")
    ns = NeuralSet.load(tmp_path / "w" / "neural")
    assert isinstance(cls.images["train"], np.memmap)
    assert cls.n_classes == cfg.n_classes and ns.n_neurons == cfg.n_neurons
    assert m["classification"]["source"]["config"]["seed"] == 0
    assert len(m["neural"]["content_hash"]) == 32 and "v1_gain" in m["neural"]["files"]
    np.testing.assert_array_equal(cls.images["train"], make_classification(cfg).images["train"])
    # nothing is left behind but the two data sets
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["classification", "neural"]


def test_synth_cli(tmp_path):
    r = run_cli("-m", "core.data", "synth", "--preset", "smoke", "--out", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr
    assert "images/s" in r.stdout
    r = run_cli("-m", "core.data", "synth", "--preset", "smoke", "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = run_cli("-m", "core.data", "synth", "--preset", "nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown preset 'nope'" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- Tiny ImageNet


def test_tiny_imagenet_reads_every_jpeg_mode(tin_tree, tmp_path):
    modes = {Image.open(p).mode for p in (tin_tree / "train").rglob("*.JPEG")}
    assert modes == {"RGB", "L", "CMYK"}
    ds = tiny_imagenet.build(tin_tree, seed=0, verbose=False)
    assert ds.n_classes == 3 and ds.classes[0] == "thing 0"
    assert len(ds.labels["train"]) == 27 and len(ds.labels["val"]) == 3 and len(ds.labels["test"]) == 6
    assert np.bincount(ds.labels["val"]).tolist() == [1, 1, 1]
    # RGB images decode exactly as PIL's L conversion
    p = tin_tree / "val" / "images" / "val_0.JPEG"
    assert Image.open(p).mode == "RGB"
    np.testing.assert_array_equal(ds.images["test"][0], np.asarray(Image.open(p).convert("L")))
    # CMYK decodes via RGB
    p = tin_tree / "val" / "images" / "val_2.JPEG"
    assert Image.open(p).mode == "CMYK"
    np.testing.assert_array_equal(ds.images["test"][2], np.asarray(Image.open(p).convert("RGB").convert("L")))
    assert ds.labels["test"].tolist() == [0, 1, 2, 0, 1, 2]


def test_tiny_imagenet_cache_is_built_once(tin_tree, tmp_path):
    a = tiny_imagenet.load_or_build(tin_tree, tmp_path / "cache", verbose=False)
    stamp = (a.path / "manifest.json").stat().st_mtime_ns
    b = tiny_imagenet.load_or_build(tin_tree, tmp_path / "cache", verbose=False)
    assert a.path == b.path and (b.path / "manifest.json").stat().st_mtime_ns == stamp
    assert isinstance(b.images["train"], np.memmap)
    assert b.manifest["source"]["type"] == "tiny_imagenet"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [a.path.name]


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_root", "no such directory; expected a tiny-imagenet-200 folder"),
        ("no_wnids", "wnids.txt: missing"),
        ("empty_class", "no images; expected *.JPEG files of class n00001001"),
        ("bad_jpeg", "unreadable image"),
        ("bad_annotation", "wnid 'n99999999' is not in wnids.txt"),
        ("wrong_size", "expected 64x64"),
    ],
)
def test_tiny_imagenet_bad_input(tin_tree, tmp_path, breakage, message):
    root = tin_tree
    if breakage == "no_root":
        root = tmp_path / "missing"
    elif breakage == "no_wnids":
        (root / "wnids.txt").unlink()
    elif breakage == "empty_class":
        for p in (root / "train" / "n00001001" / "images").iterdir():
            p.unlink()
    elif breakage == "bad_jpeg":
        (root / "train" / "n00001000" / "images" / "n00001000_3.JPEG").write_bytes(b"not a jpeg at all")
    elif breakage == "bad_annotation":
        with open(root / "val" / "val_annotations.txt", "a") as f:
            f.write("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    elif breakage == "wrong_size":
        Image.new("RGB", (32, 32)).save(root / "val" / "images" / "val_1.JPEG")
    with pytest.raises(DataError, match=message.replace("*", r"\*").replace("(", r"\(")):
        tiny_imagenet.load_or_build(root, tmp_path / "cache", verbose=False)
    # nothing half-cached
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_check_cli_missing_tin_root_is_one_line():
    r = run_cli("-m", "core.data", "check", "--tin-root", "/no/such/dir")
    assert r.returncode != 0
    assert r.stderr.strip() == "error: /no/such/dir: no such directory; expected a tiny-imagenet-200 folder"
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_check_cli_tin_summary(tin_tree):
    r = run_cli("-m", "core.data", "check", "--tin-root", str(tin_tree))
    assert r.returncode == 0, r.stderr
    assert "3 classes" in r.stdout and "train 27, val 3, test 6" in r.stdout


# ----------------------------------------------------------------------------- recordings


def test_pickle_needs_explicit_trust(pickle_sessions):
    with pytest.raises(DataError, match="refusing to unpickle 2 file\\(s\\) without --trust-pickle"):
        recordings.convert(pickle_sessions)


def test_convert_pickle_sessions(pickle_sessions, tmp_path):
    ns = recordings.convert(pickle_sessions, trust_pickle=True, crop=8, verbose=False)
    assert ns.n_neurons == 8 and ns.sessions.tolist() == [101, 102]
    assert ns.images.shape == (26, 64, 64)
    assert ns.train_responses.shape == (30, 8)
    assert ns.train_mask[:20, :5].all() and not ns.train_mask[:20, 5:].any() and ns.train_mask[20:, 5:].all()
    # 3-D responses summed over time bins, transposed to (trials, neurons)
    with open(pickle_sessions / "session_101.pkl", "rb") as f:
        s1 = pickle.load(f)
    np.testing.assert_allclose(ns.train_responses[:20, :5], s1["training_responses"].sum(1).T)
    # test images: 21..26 -> 6 rows; 21, 22 have 3 repeats in session 1 and 4 in session 2
    assert ns.test_responses.shape == (6, 4, 8)
    assert ns.test_mask[0, :, :5].sum(0).tolist() == [3] * 5 and ns.test_mask[0, :, 5:].sum(0).tolist() == [4] * 3
    np.testing.assert_allclose(ns.test_responses[0, :3, :5], s1["testing_responses"].sum(1).T[:3])
    # stimulus: cropped 8 px each side, then resized 64x64
    raw = np.load(pickle_sessions / "images" / "1.npy")[8:-8, 8:-8]
    np.testing.assert_array_equal(ns.images[0], raw)
    ns.save(tmp_path / "out", {"type": "test"})
    back = NeuralSet.load(tmp_path / "out")
    np.testing.assert_array_equal(back.test_mask, ns.test_mask)


def _rewrite(folder, name, **changes):
    p = folder / name
    with open(p, "rb") as f:
        s = pickle.load(f)
    for k, v in changes.items():
        if v is None:
            del s[k]
        else:
            s[k] = v(s[k]) if callable(v) else v
    with open(p, "wb") as f:
        pickle.dump(s, f)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"training_image_ids": lambda x: x[:-2]}, "training_responses' has 10 trials but the image ids list 8"),
        ({"training_responses": lambda r: np.where(r > 2, np.nan, r)}, "NaN or infinite values"),
        ({"testing_responses": lambda r: r - 10}, "negative values"),
        ({"session_id": None}, "missing key 'session_id'"),
    ],
)
def test_recordings_bad_input(pickle_sessions, tmp_path, changes, message):
    _rewrite(pickle_sessions, "session_102.pkl", **changes)
    with pytest.raises(DataError, match=message) as e:
        recordings.convert(pickle_sessions, trust_pickle=True, verbose=False)
    assert "session_102.pkl" in str(e.value) and "\n" not in str(e.value)


def test_missing_stimulus_and_cli_convert(pickle_sessions, tmp_path):
    r = run_cli("-m", "core.data", "convert", "--neural-pickles", str(pickle_sessions), "--out", str(tmp_path / "n"))
    assert r.returncode == 2 and "--trust-pickle" in r.stderr and not (tmp_path / "n").exists()
    r = run_cli("-m", "core.data", "convert", "--neural-pickles", str(pickle_sessions), "--out", str(tmp_path / "n"),
                "--trust-pickle", "--time-bins", "1:3")
    assert r.returncode == 0, r.stderr
    r = run_cli("-m", "core.data", "check", "--neural-data", str(tmp_path / "n"))
    assert r.returncode == 0 and "8 neurons in 2 sessions" in r.stdout and "2-4 repeats" in r.stdout
    # --time-bins 1:3 summed bins 1 and 2 of the 3-D session's (neurons, bins, trials) responses
    ns = NeuralSet.load(tmp_path / "n")
    with open(pickle_sessions / "session_101.pkl", "rb") as f:
        s1 = pickle.load(f)
    np.testing.assert_allclose(ns.train_responses[:20, :5], s1["training_responses"][:, 1:3].sum(1).T)
    (pickle_sessions / "images" / "3.npy").unlink()
    r = run_cli("-m", "core.data", "convert", "--neural-pickles", str(pickle_sessions), "--out", str(tmp_path / "m"),
                "--trust-pickle")
    assert r.returncode == 2 and "3.npy: missing stimulus image" in r.stderr and not (tmp_path / "m").exists()


def test_canonical_neural_checks(tmp_path):
    ns, _ = make_neural(world_config("smoke"))
    ns.save(tmp_path / "ok", {"type": "test"})
    bad = dict(ns.arrays)
    bad["train_responses"] = bad["train_responses"][:-1]
    with pytest.raises(DataError, match="train_responses: shape .* expected"):
        NeuralSet(bad).save(tmp_path / "bad", {"type": "test"})
    assert not (tmp_path / "bad").exists()
    (tmp_path / "ok" / "test_mask.npy").unlink()
    r = run_cli("-m", "core.data", "check", "--neural-data", str(tmp_path / "ok"))
    assert r.returncode == 2 and "test_mask.npy: missing" in r.stderr
