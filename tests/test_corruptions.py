import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import ROOT
from core.data import corruptions as C
from core.data.synthetic import make_classification, world_config
from core.evaluate import classification_records
from core.models import build_model
from core.results import read_table, write_table


@pytest.fixture(scope="module")
def images():
    return np.asarray(make_classification(world_config("smoke")).images["test"][:6])


@pytest.fixture(scope="module")
def built(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("tintc") / "cache"
    C.build_tintc(images, out, seed=3, workers=2, chunk=4, progress=False)
    return out


def test_seventy_conditions_with_categories(built, images):
    t = C.load_tintc(built)
    assert len(t) == 70 == len(C.CONDITIONS)
    assert {C.CORRUPTIONS[c] for c, _ in t} == set(C.CATEGORIES)
    assert sum(cat == "noise" for cat in C.CORRUPTIONS.values()) == 3 and "glass_blur" not in C.CORRUPTIONS
    for (c, s), x in t.items():
        assert x.shape == images.shape and x.dtype == np.uint8, (c, s)
    # every condition changes the images, and severity 5 more than severity 1 for the noises
    for c in ("gaussian_noise", "shot_noise", "impulse_noise", "contrast"):
        d1 = np.abs(t[(c, 1)].astype(int) - images).mean()
        d5 = np.abs(t[(c, 5)].astype(int) - images).mean()
        assert 0 < d1 < d5, c
    m = json.loads((built / "manifest.json").read_text())
    assert m["package"] == "imagecorruptions-imaug" and m["seed"] == 3 and len(m["files"]) == 70


def test_authors_order_rgb_then_gray(images):
    from imagecorruptions import corrupt
    from PIL import Image

    np.random.seed(11)
    rgb = corrupt(np.stack([images[0]] * 3, -1), severity=2, corruption_name="fog")
    want = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(C.corrupt_gray(images[0], "fog", 2, 11), want)


def test_rebuild_is_byte_identical_and_chunking_does_not_matter(built, images, tmp_path):
    again = tmp_path / "again"
    C.build_tintc(images, again, seed=3, workers=1, chunk=5, progress=False)  # other chunking, one process
    for c, s in C.CONDITIONS:
        assert (built / C._file(c, s)).read_bytes() == (again / C._file(c, s)).read_bytes(), (c, s)


def test_changing_one_seed_changes_only_its_condition(built, images, tmp_path, monkeypatch):
    original = C.condition_seed
    target = (4, "impulse_noise", 3)

    def patched(base, i, c, s):
        return original(base, i, c, s) + (1 if (i, c, s) == target else 0)

    monkeypatch.setattr(C, "condition_seed", patched)
    other = tmp_path / "other"
    C.build_tintc(images, other, seed=3, workers=1, progress=False)  # in-process: the patch applies
    a, b = C.load_tintc(built), C.load_tintc(other)
    for cs in C.CONDITIONS:
        if cs == target[1:]:
            assert not np.array_equal(a[cs][4], b[cs][4])
            np.testing.assert_array_equal(np.delete(a[cs], 4, 0), np.delete(b[cs], 4, 0))
        else:
            np.testing.assert_array_equal(a[cs], b[cs])


@pytest.mark.parametrize("damage", ["missing_file", "wrong_manifest", "flipped_bytes", "truncated"])
def test_damaged_cache_is_detected_and_rebuilt(built, images, tmp_path, damage):
    import shutil

    cache = tmp_path / "c"
    shutil.copytree(built, cache)
    f = cache / C._file("frost", 2)
    if damage == "missing_file":
        f.unlink()
        why = "missing frost_s2.npy"
    elif damage == "wrong_manifest":
        m = json.loads((cache / "manifest.json").read_text())
        m["seed"] = 4
        (cache / "manifest.json").write_text(json.dumps(m))
        why = "manifest field 'seed' differs"
    elif damage == "flipped_bytes":
        raw = bytearray(f.read_bytes())
        raw[-1] ^= 0xFF
        f.write_bytes(bytes(raw))
        why = "frost_s2.npy content does not match its hash"
    else:
        f.write_bytes(f.read_bytes()[:-100])
        why = "frost_s2.npy has the wrong size"
    assert C.check_cache(cache, images, 3) == why
    logs = []
    t = C.ensure_tintc(images, cache, seed=3, log=logs.append, workers=1, progress=False)
    assert logs and why in logs[0]
    assert C.check_cache(cache, images, 3) is None
    np.testing.assert_array_equal(t[("frost", 2)], C.load_tintc(built)[("frost", 2)])


def test_killed_build_leaves_nothing_usable(images, tmp_path):
    np.save(tmp_path / "imgs.npy", np.repeat(images, 8, axis=0))
    code = ("import numpy as np; from core.data.corruptions import build_tintc; "
            f"build_tintc(np.load(r'{tmp_path / 'imgs.npy'}'), r'{tmp_path / 'cache'}', workers=1, chunk=2)")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    # wait until it has made progress, then kill it hard
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not any(q.name.startswith(".cache.tmp") for q in tmp_path.iterdir()):
        time.sleep(0.2)
    time.sleep(2)
    assert p.poll() is None, f"the build ended before the kill (exit {p.returncode}): {p.stderr.read()[-2000:]}"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert any(q.name.startswith(".cache.tmp") for q in tmp_path.iterdir())   # killed mid-build: its temp folder is left
    assert not (tmp_path / "cache").exists()
    assert C.check_cache(tmp_path / "cache", np.repeat(images, 8, axis=0), 0) == "no manifest"


def test_per_image_predictions_agree_with_accuracies(built, images):
    torch.manual_seed(0)
    model = build_model("vgg11_bn_fc", 4, 0, width=1 / 16).eval()
    labels = np.array([0, 1, 2, 3, 0, 1])
    clean, acc, preds = classification_records(model, images, labels, C.load_tintc(built))
    assert len(acc) == 70 and len(preds) == 71 * len(labels)
    for row in acc:
        mine = [p["correct"] for p in preds if p["condition"] == row["corruption"] and p["severity"] == row["severity"]]
        assert np.mean(mine) == pytest.approx(row["accuracy"]) and row["n_images"] == 6
    assert np.mean([p["correct"] for p in preds if p["condition"] == "clean"]) == pytest.approx(clean)
    assert all(p["correct"] == (p["label"] == p["predicted"]) for p in preds)


def test_results_writer_is_atomic_and_partitioned(tmp_path):
    rows = [{"run_id": "r1", "kind": "baseline", "ratio": "", "seed": 0, "corruption": "fog", "category": "weather",
             "severity": s, "accuracy": 0.1 * s, "n_images": 10} for s in (1, 2)]
    path = write_table(tmp_path, "corruption_accuracy", rows, "sw", "baseline", "r1")
    assert path.endswith("corruption_accuracy/sweep=sw/stage=baseline/r1.parquet")
    assert [p.name for p in (tmp_path / "corruption_accuracy" / "sweep=sw" / "stage=baseline").iterdir()] == ["r1.parquet"]
    t = read_table(tmp_path, "corruption_accuracy")
    assert t.num_rows == 2 and set(t.column("stage").to_pylist()) == {"baseline"}
    assert pq.read_schema(path).field("severity").type == "int64"
    # rows that do not fit the schema are refused before any file is opened
    with pytest.raises(Exception):
        write_table(tmp_path, "corruption_accuracy", [{"run_id": "r2", "severity": "not an int"}], "sw", "baseline", "r2")
    assert sorted(p.name for p in (tmp_path / "corruption_accuracy" / "sweep=sw" / "stage=baseline").iterdir()) == ["r1.parquet"]
    assert read_table(tmp_path, "runs").num_rows == 0


class RenameFails:
    """A module's `os` whose rename fails (a full disk, a lost mount) after the temporary file is written;
    `written` collects what the temporary file held at that moment."""

    def __init__(self, read):
        self.read, self.written = read, []

    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        self.written.append(self.read(src))
        raise OSError(28, "No space left on device (planted)")


def test_a_write_that_fails_at_the_rename_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch):
    import core.io
    import core.results.lake

    def rows(acc):
        return [{"run_id": "r1", "kind": "baseline", "ratio": "", "seed": 0, "corruption": "fog", "category": "weather",
                 "severity": s, "accuracy": acc, "n_images": 10} for s in (1, 2, 3)]

    path = write_table(tmp_path, "corruption_accuracy", rows(0.5), "sw", "baseline", "r1")
    folder, old = (tmp_path / "corruption_accuracy" / "sweep=sw" / "stage=baseline"), open(path, "rb").read()
    failing = RenameFails(lambda p: pq.read_table(p).num_rows)
    monkeypatch.setattr(core.results.lake, "os", failing)
    with pytest.raises(OSError, match="planted"):
        write_table(tmp_path, "corruption_accuracy", rows(0.9), "sw", "baseline", "r1")
    assert failing.written == [3]                                   # it failed after the new rows were written in full
    assert [p.name for p in folder.iterdir()] == ["r1.parquet"]     # no temporary file left (dot files included)
    assert open(path, "rb").read() == old
    assert read_table(tmp_path, "corruption_accuracy").column("accuracy").to_pylist() == [0.5] * 3

    # the same for the atomic file writer (manifests, run.json, markers)
    target = tmp_path / "out" / "run.json"
    core.io.atomic_write_json(target, {"v": 1})
    failing = RenameFails(lambda p: json.loads(open(p).read()))
    monkeypatch.setattr(core.io, "os", failing)
    with pytest.raises(OSError, match="planted"):
        core.io.atomic_write_json(target, {"v": 2})
    assert failing.written == [{"v": 2}]
    assert [p.name for p in target.parent.iterdir()] == ["run.json"] and json.loads(target.read_text()) == {"v": 1}


def test_oracle_bank_draws_every_condition_reproducibly_and_never_a_test_seed(images, monkeypatch):
    # the draws: every corruption and severity turns up, independently per image and variant
    draws = [C.oracle_draw(7, i, v) for i in range(300) for v in range(4)]
    assert {d[0] for d in draws} == set(C.CORRUPTIONS) and {d[1] for d in draws} == {1, 2, 3, 4, 5}
    assert len({(d[0], d[1]) for d in draws[:8]}) > 1
    # seeded: the same bank twice, another seed another bank
    bank = C.corruption_bank(images, seed=7, n_variants=3, workers=1)
    assert bank.shape == (3, *images.shape) and bank.dtype == np.uint8
    assert np.array_equal(bank, C.corruption_bank(images, seed=7, n_variants=3, workers=1))
    assert not np.array_equal(bank, C.corruption_bank(images, seed=8, n_variants=3, workers=1))
    # every variant is the draw's corruption of its image
    c, s, words = C.oracle_draw(7, 2, 1)
    assert np.array_equal(bank[1, 2], C.corrupt_gray(images[2], c, s, words))
    # the training draws seed numpy through the key-array route and skimage with an integer >= 2**32;
    # TIN-TC's conditions use scalar seeds < 2**32: the two never share a random stream
    seen = []
    real_seed = np.random.seed
    monkeypatch.setattr(np.random, "seed", lambda s=None: (seen.append(s), real_seed(s))[1])
    C.corrupt_gray(images[0], "impulse_noise", 3, words)
    C.corrupt_gray(images[0], "impulse_noise", 3, C.condition_seed(0, 0, "impulse_noise", 3))
    assert isinstance(seen[0], np.ndarray) and seen[0].tolist() == list(words)
    assert isinstance(seen[1], int) and seen[1] < 2**32


def test_a_models_test_sets_are_its_own_images_and_their_cache(built, tmp_path):
    """run_test_sets finds the TIN-TC cache of the model's classification set (by its content hash; the
    largest when there are several) and gives the first n of its test images, no more than the cache holds;
    another set's cache, or none, is an error naming the data root."""
    import shutil

    from core.data.synthetic import write_world
    from core.errors import ConfigError

    m = write_world(world_config("smoke"), tmp_path / "w")["classification"]
    info = {"classification": m["content_hash"], "classification_path": str(tmp_path / "w" / "classification")}
    root = tmp_path / "data"
    shutil.copytree(built, root / "tintc-0000000000000000-n6")             # another set's cache
    with pytest.raises(ConfigError, match=str(root)):
        C.run_test_sets(info, root, 4)
    shutil.copytree(built, root / f"tintc-{m['content_hash'][:16]}-n6")
    (root / f"tintc-{m['content_hash'][:16]}-n2").mkdir()                   # a smaller one, not complete
    assert len(C.run_test_sets(info, root, 10)[0]) == 6                     # the cache's 6, not the 10 asked
    clean, tintc = C.run_test_sets(info, root, 4)
    expected = np.asarray(make_classification(world_config("smoke")).images["test"][:4])
    np.testing.assert_array_equal(clean, expected)
    assert len(tintc) == len(C.CONDITIONS)
    np.testing.assert_array_equal(tintc[("gaussian_noise", 3)], np.load(built / C._file("gaussian_noise", 3)))
