"""The published Tiny-ImageNet-C as a TIN-TC source (core.data.published_tintc), `python -m core.data
compare-tintc`, the combined `python -m core.data check` and the sweep's --tintc-root flag, on real files:
a Tiny-ImageNet tree of JPEGs (conftest.make_tin_tree) and a published-layout tree made from it by
corrupting every val image with imagecorruptions and saving it as a JPEG (tests/published_tree.py)."""

import argparse
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import make_pickle_sessions, make_tin_tree, run_cli
from published_tree import make_published_tree
from core.data import recordings, tiny_imagenet
from core.data.corruptions import CONDITIONS, _file, load_tintc
from core.data.published_tintc import ensure_published, identity
from core.errors import ConfigError, DataError

W0, W1 = "n00001000", "n00001001"   # the first two classes of make_tin_tree


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """(TIN root, published root): 3 classes, 6 val images, 70 conditions x 6 JPEGs. Read-only: tests that
    break the published tree break a copy."""
    base = tmp_path_factory.mktemp("published")
    tin = make_tin_tree(base / "tiny-imagenet-200")
    return tin, make_published_tree(tin, base / "Tiny-ImageNet-C")


def broken_copy(trees, tmp_path):
    tin, pub = trees
    return tin, shutil.copytree(pub, tmp_path / "Tiny-ImageNet-C")


def make_model(folder, n_classes=3, classify=True, image_size=64):
    """A tiny untrained classifier saved as run_kind saves its models (kinds.save_model)."""
    from core.models import build_model
    from core.training.kinds import save_model

    build = dict(name="vgg11_bn_fc", n_classes=n_classes, n_neurons=0 if classify else 4, width=0.0625, classify=classify,
                 readout_layer="conv3_1", image_size=image_size, dropout=0.0)
    save_model(build_model(**build), build, folder / "model.pt")
    return folder


def test_cache_holds_the_decoded_jpegs_and_is_reused_or_rebuilt(trees, tmp_path):
    tin, pub = trees
    cache = ensure_published(tin, pub, 0, tmp_path / "data", log=None)
    arrays = {k: np.array(v) for k, v in load_tintc(cache).items()}   # the reader of the generated cache reads it
    val = tiny_imagenet.scan(tin)["val"]
    assert len(arrays) == 70 and not list(cache.glob("glass_blur*"))
    for (c, s), x in arrays.items():
        assert x.shape == (6, 64, 64) and x.dtype == np.uint8
        want = np.stack([tiny_imagenet.decode_gray(pub / c / str(s) / f"n{1000 + k:08d}" / p.name) for p, k in val])
        np.testing.assert_array_equal(x, want)
    m = json.loads((cache / "manifest.json").read_text())
    assert m["source"]["type"] == "published" and len(m["source"]["fingerprint"]) == 16
    assert m["n_images"] == 6 and set(m["files"]) == {_file(c, s) for c, s in CONDITIONS}
    # reused as it is
    stamp = (cache / "manifest.json").stat().st_mtime_ns
    assert ensure_published(tin, pub, 0, tmp_path / "data", log=None) == cache
    assert (cache / "manifest.json").stat().st_mtime_ns == stamp
    # a damaged file: rebuilt, never used
    f = cache / _file("fog", 2)
    f.write_bytes(f.read_bytes()[:-10] + b"\0" * 10)
    said = []
    assert ensure_published(tin, pub, 0, tmp_path / "data", log=said.append) == cache
    assert "fog_s2.npy content does not match its hash" in said[0]
    np.testing.assert_array_equal(load_tintc(cache)["fog", 2], arrays["fog", 2])
    # the first N test images only: another cache
    four = ensure_published(tin, pub, 4, tmp_path / "data", log=None)
    assert four != cache and load_tintc(four)["snow", 5].shape == (4, 64, 64)
    np.testing.assert_array_equal(load_tintc(four)["snow", 5], arrays["snow", 5][:4])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted([cache.name, four.name])   # nothing else


def test_classifier_run_ids_change_with_the_published_source_only(trees, tmp_path):
    from core.presets import get_preset
    from core.training.kinds import base_config, identity_extra, run_id_for

    tin, pub = trees
    extra = identity(ensure_published(tin, pub, 0, tmp_path / "data", log=None))
    assert re.fullmatch(r"published-[0-9a-f]{16}", extra["tintc"])
    preset, info = get_preset("paper"), {"classification": "c" * 32, "neural": "n" * 32}
    for kind, changes in (("baseline", True), ("oracle", True), ("mtl_monkey", True), ("monkey_predictor", False)):
        cfg = base_config(kind, preset, "1:1", 1000)
        ratio = "1:1" if kind.startswith("mtl_") else ""
        a = run_id_for(kind, "paper", ratio, 1000, cfg, info, "", identity_extra(kind, preset))
        b = run_id_for(kind, "paper", ratio, 1000, cfg, {**info, **extra}, "", identity_extra(kind, preset))
        assert (a != b) == changes, kind


def test_missing_condition_is_one_line_and_leaves_nothing(trees, tmp_path):
    tin, pub = broken_copy(trees, tmp_path)
    shutil.rmtree(pub / "frost" / "3")
    with pytest.raises(DataError) as e:
        ensure_published(tin, pub, 0, tmp_path / "data", log=None)
    assert str(e.value) == f"{pub}/frost/3: missing; expected the published condition frost severity 3"
    model = make_model(tmp_path / "model")
    r = run_cli("-m", "core.data", "compare-tintc", "--model", str(model), "--tin-root", str(tin), "--tintc-root", str(pub),
                "--data-root", str(tmp_path / "data"), "--threads", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"error: {pub}/frost/3: missing; expected the published condition frost severity 3"
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())   # no cache, no half-built one


def test_wrong_class_folder_and_missing_image(trees, tmp_path):
    tin, pub = broken_copy(trees, tmp_path)
    d = pub / "frost" / "2"
    (d / W0 / "val_3.JPEG").rename(d / W1 / "val_3.JPEG")   # val_3 is class 0 in val_annotations.txt
    with pytest.raises(DataError) as e:
        ensure_published(tin, pub, 0, tmp_path / "data", log=None)
    msg = str(e.value)
    assert msg.startswith(f"{d}/{W1}/val_3.JPEG: condition frost severity 2: val_3.JPEG is in class folder {W1}, "
                          f"but val_annotations.txt gives class {W0}") and "wrong-class" in msg and "\n" not in msg
    # the first 3 test images are all in place: fine
    assert load_tintc(ensure_published(tin, pub, 3, tmp_path / "data", log=None))["frost", 2].shape == (3, 64, 64)
    (d / W1 / "val_3.JPEG").rename(d / W0 / "val_3.JPEG")
    (pub / "zoom_blur" / "4" / W1 / "val_1.JPEG").unlink()
    with pytest.raises(DataError, match=r"zoom_blur/4/n00001001/val_1.JPEG: missing; expected the published zoom_blur "
                                        r"severity 4 copy of the Tiny ImageNet val image val_1.JPEG \(class n00001001\)"):
        ensure_published(tin, pub, 0, tmp_path / "data", log=None)
    # an image of the wrong size: found when decoding, and the half-built cache is removed
    Image.new("RGB", (32, 32)).save(pub / "zoom_blur" / "4" / W1 / "val_1.JPEG")
    with pytest.raises(DataError, match=r"zoom_blur/4/n00001001/val_1.JPEG: image is 32x32; expected 64x64"):
        ensure_published(tin, pub, 0, tmp_path / "data", log=None)
    assert [p.name for p in (tmp_path / "data").iterdir()] == [next((tmp_path / "data").glob("tintc-published-*-n3")).name]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(TIN root, published root, model folder): a TIN tree whose class k is crops of photograph k (9 val
    images), its published-layout tree, and a small classifier trained on its train split, well above
    chance on the val images (so that its accuracies differ between conditions and between the sets)."""
    import torch

    from core.models import build_model
    from core.training.data import as_u8
    from core.training.kinds import save_model

    base = tmp_path_factory.mktemp("compare")
    tin = make_tin_tree(base / "tiny-imagenet-200", per_class=12, n_val=9, photos=True)
    pub = make_published_tree(tin, base / "Tiny-ImageNet-C")
    data = tiny_imagenet.build(tin, verbose=False)
    x = as_u8(np.concatenate([data.images["train"], data.images["val"]]))
    y = torch.as_tensor(np.concatenate([data.labels["train"], data.labels["val"]]))
    build = dict(name="vgg11_bn_fc", n_classes=3, n_neurons=0, width=0.0625, classify=True, readout_layer="conv3_1",
                 image_size=64, dropout=0.0)
    torch.manual_seed(0)
    model = build_model(**build)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(model.prep(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_model(model, build, base / "model" / "model.pt")
    return tin, pub, base / "model"


def test_compare_tintc_prints_the_table(trained, tmp_path):
    """Both columns, for all 70 conditions, against the model's accuracy computed here: on the published
    JPEGs decoded from their files, and on corruptions generated as the sweep generates them (seed 0)."""
    tin, pub, model = trained
    from core.data.corruptions import ensure_tintc
    from core.evaluate import predict_classes
    from core.evaluate.tintc_compare import load_classifier

    r = run_cli("-m", "core.data", "compare-tintc", "--model", str(model), "--tin-root", str(tin), "--tintc-root", str(pub),
                "--images", "0", "--data-root", str(tmp_path / "data"), "--workers", "1", "--threads", "1")
    assert r.returncode == 0, r.stderr
    rows = {(m[0], int(m[1])): tuple(map(float, m[2:])) for m in
            re.findall(r"^(\w+) +([1-5]) +([\d.]+) +([\d.]+) +([+-][\d.]+)$", r.stdout, re.M)}
    assert len(rows) == 70
    data = tiny_imagenet.build(tin, verbose=False)
    clean, labels = data.images["test"], np.asarray(data.labels["test"])
    clf = load_classifier(model, 3)
    clean_acc = (predict_classes(clf, clean) == labels).mean()
    assert clean_acc >= 7 / 9 and f"on the first 9 test images (clean {clean_acc:.3f})" in r.stdout   # chance: 1/3
    # the published JPEGs, decoded here from their files as Tiny ImageNet is decoded (64x64 grey)
    wnids = tiny_imagenet.scan(tin)["wnids"]
    files = [p for p, _ in tiny_imagenet.scan(tin)["val"]]
    published = {(c, s): np.stack([tiny_imagenet.decode_gray(pub / c / str(s) / wnids[k] / f.name)
                                   for f, k in zip(files, labels)]) for c, s in CONDITIONS}
    # the generated corruptions of the same images, built apart from the command's cache, with the sweep's seed
    generated = ensure_tintc(clean, tmp_path / "generated", seed=0, log=None, workers=1, progress=False)
    # and the command's caches hold exactly these images
    caches = {p.name.split("-")[1]: load_tintc(p) for p in (tmp_path / "data").iterdir()}
    assert set(caches) == {"published", "val"}
    for c, s in CONDITIONS:
        assert np.array_equal(caches["published"][c, s], published[c, s]) and np.array_equal(caches["val"][c, s], generated[c, s])
    differ = 0
    for c, s in CONDITIONS:
        p, g, diff = rows[c, s]
        want_p = (predict_classes(clf, published[c, s]) == labels).mean()
        want_g = (predict_classes(clf, generated[c, s]) == labels).mean()
        assert (p, g) == (pytest.approx(want_p, abs=5e-4), pytest.approx(want_g, abs=5e-4)), (c, s, p, g, want_p, want_g)
        assert diff == pytest.approx(p - g, abs=1.5e-3)
        differ += want_p != want_g
    assert differ >= 10, differ   # the two sets tell apart: a column filled from the other set would fail above
    for c in ("gaussian_noise", "frost", "overall"):
        assert re.search(rf"^{c} +1-5 +[\d.]+ +[\d.]+ +[+-][\d.]+$", r.stdout, re.M), c
    assert re.search(r"^Overall, (the published JPEGs|the generated corruptions|neither set) (are|is) harder", r.stdout, re.M)
    # models it cannot use: one line each
    r = run_cli("-m", "core.data", "compare-tintc", "--model", str(make_model(tmp_path / "pred", classify=False)),
                "--tin-root", str(tin), "--tintc-root", str(pub), "--data-root", str(tmp_path / "data"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "without a classifier head" in r.stderr
    with pytest.raises(ConfigError, match="with 5 classes; the Tiny ImageNet tree has 3"):
        load_classifier(make_model(tmp_path / "five", n_classes=5), 3)
    with pytest.raises(ConfigError, match="built for 32x32 images; Tiny ImageNet and its published corruptions are 64x64"):
        load_classifier(make_model(tmp_path / "small", image_size=32), 3)


def test_check_all_inputs_at_once(trees, tmp_path):
    tin, pub = broken_copy(trees, tmp_path)
    ns = recordings.convert(make_pickle_sessions(tmp_path / "pk"), trust_pickle=True, verbose=False)
    ns.save(tmp_path / "neural", {"type": "test"})
    args = ("-m", "core.data", "check", "--tin-root", str(tin), "--neural-data", str(tmp_path / "neural"), "--tintc-root", str(pub))
    r = run_cli(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert f"{tin}: Tiny ImageNet OK: 3 classes" in out and "JPEG modes: " in out and "CMYK" in out
    assert "neurons per session: 101: 5, 102: 3" in out and "2-4 repeats" in out
    assert (f"{pub}: published Tiny-ImageNet-C OK: 14 corruptions x 5 severities of 6 test images; 420 of 420 JPEGs "
            "decoded (modes: RGB 420)") in out
    assert out.count("1.7 MB (70 conditions x 6 x 64 x 64 bytes)") == 2 and "problem" not in out
    # two problems planted in two inputs: both listed, one line each, exit 2
    shutil.rmtree(pub / "fog" / "5")
    (tmp_path / "neural" / "test_mask.npy").unlink()
    r = run_cli(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    problems = [line for line in r.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 2, r.stdout
    assert problems[0].startswith(f"problem: --neural-data {tmp_path / 'neural' / 'test_mask.npy'}: missing; expected array")
    assert problems[1] == f"problem: --tintc-root {pub}/fog/5: missing; expected the published condition fog severity 5"
    assert f"{tin}: Tiny ImageNet OK" in r.stdout and "2 problems found" in r.stdout
    r = run_cli("-m", "core.data", "check", "--tintc-root", str(pub))
    assert r.returncode == 2 and r.stderr.strip() == ("error: --tintc-root needs --tin-root: its JPEGs are matched to the "
                                                      "Tiny ImageNet val images by file name and class")


def test_sweep_flag_tintc_root(trees, tmp_path):
    from sweeps.cli import add_common_flags, resolve_common

    tin, pub = trees
    p = argparse.ArgumentParser()
    add_common_flags(p)
    common = ["--storage", str(tmp_path / "res"), "--data-root", str(tmp_path / "data")]
    with pytest.raises(ConfigError, match="^--tintc-root needs --tin-root"):
        resolve_common(p.parse_args(["--tintc-root", str(pub), *common]))
    with pytest.raises(ConfigError, match=f"^--tintc-root {tmp_path}/nowhere: no such file or directory$"):
        resolve_common(p.parse_args(["--tin-root", str(tin), "--tintc-root", str(tmp_path / "nowhere"), *common]))
    assert "--tintc-root" in p.format_help() and "published Tiny-ImageNet-C" in p.format_help()
