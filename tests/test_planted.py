"""A world with a planted answer (core.data.planted): its construction proved with linear classifiers, and
the default world left as it was."""

import json

import numpy as np
import pytest

from core.data.synthetic import world_config, write_world


def test_the_default_world_is_unchanged_byte_for_byte(tmp_path):
    """The content hashes of the smoke world's files, as written by the code before planted worlds existed
    (the same ones make the default world's run ids): a change to the default world's images or recordings
    changes them."""
    m = write_world(world_config("smoke"), tmp_path / "w")
    assert m["classification"]["content_hash"] == "64a311f5267687419cc786902e54d846"
    assert m["neural"]["content_hash"] == "f1b6ec50afda229736f4cec33cb4aa87"
    assert "planted" not in m["neural"]["source"]["config"]


@pytest.mark.slow
def test_the_planted_construction_holds_before_any_cnn():
    """Linear classifiers on the demo world, planted at 0, 0.5 and 1: at the strongest dial the noise-free
    rates keep at least 80% of their clean accuracy over the 14 corruptions while the pixels (their
    amplitude spectrum, where the random-phase cue shows) keep less than half of theirs; at the null the
    rates are no more robust than the pixels; the rates' robustness rises with the dial."""
    from core.data.planted import construction_check

    r = construction_check(world_config("demo", planted=1.0), values=(0.0, 0.5, 1.0))
    assert r[1.0]["clean"] > 0.6 and r["pixels"]["clean"] > 0.7           # both informative on clean images
    assert r[1.0]["retention"] >= 0.8
    assert r["pixels"]["retention"] < 0.5
    assert r[0.0]["retention"] <= r["pixels"]["retention"]
    assert r[0.0]["retention"] < r[0.5]["retention"] < r[1.0]["retention"]


def test_a_planted_world_is_upright_objects_plus_a_faint_class_grating(tmp_path):
    """Each image is the default world's object and clutter (upright) plus its class's grating of one grey
    level (a stream of its own): rendered again without the cue, the difference is that grating within the
    rounding; the population's noise-free rates to every classification image are stored."""
    from core.data import NeuralSet
    from core.data.planted import CUE_AMPLITUDE, cue_layer
    from core.data.synthetic import MAX_ROTATION, _stream, object_masks, render

    cfg = world_config("smoke", planted=0.5)
    write_world(cfg, tmp_path / "p")
    x = np.load(tmp_path / "p" / "classification" / "train_images.npy").astype(float)
    rng = _stream(cfg.seed, "classification/train")
    y = rng.permutation(np.repeat(np.arange(cfg.n_classes), cfg.train_per_class))
    plain = render(rng, y, cfg.image_size, clutter=cfg.clutter, max_rotation=MAX_ROTATION).astype(float)
    np.testing.assert_array_equal(object_masks(cfg, "train", cue=False)[0], plain)   # re-rendered without the cue
    np.testing.assert_array_equal(object_masks(cfg, "train")[0], x)                   # and with it: the stored images
    cue = cue_layer(_stream(cfg.seed, "classification/train/cue"), y, cfg.image_size, cfg.n_classes, cfg.cue_agreement)
    inside = (plain > 2) & (plain < 253)                                    # away from clipping
    assert np.abs((x - plain - cue)[inside]).max() <= 1.0
    # the residual is the cue itself (an image without it, whose residual is rounding, correlates near 0)
    assert np.corrcoef((x - plain)[inside], cue[inside])[0, 1] > 0.5
    assert np.abs(cue).max() == pytest.approx(CUE_AMPLITUDE, rel=1e-3)
    n = NeuralSet.load(tmp_path / "p" / "neural")
    assert n.arrays["cls_true_rates_train"].shape == (len(x), cfg.n_neurons)
    assert (np.asarray(n.arrays["cls_true_rates_train"]) > 0).all()


def test_the_cue_shows_the_images_class_at_the_worlds_agreement():
    """cue_classes: the image's own class with probability `agreement`, another class otherwise (never its own by
    chance), and at full agreement exactly the labels, drawing nothing from the stream."""
    from core.data.planted import cue_classes

    y = np.random.default_rng(0).integers(0, 10, 20_000)
    rng = np.random.default_rng(1)
    c = cue_classes(rng, y, 10, 0.8)
    assert abs((c == y).mean() - 0.8) < 0.01
    assert np.bincount((c - y)[c != y] % 10, minlength=10)[1:].min() > 0.09 * (c != y).sum()   # the others alike
    state = rng.bit_generator.state
    assert (cue_classes(rng, y, 10, 1.0) == y).all() and rng.bit_generator.state == state


def test_a_planted_worlds_recording_is_shown_degraded_and_its_shape_units_see_through_it(tmp_path):
    """The recording's stimuli: at the world's default share (0.8) and at 0.3, the stimuli that degrade's own
    stream picks differ from the same world's clean recording, by contrast, blur and noise alike, and the
    rest are identical; the shape units' noise-free rates are the same either way (they answer the object),
    and a clean recording (0) is the world as it was."""
    from dataclasses import replace

    from core.data import NeuralSet
    from core.data.synthetic import _stream

    cfg = world_config("smoke", planted=1.0)
    assert cfg.recording_degraded == 0.8
    write_world(replace(cfg, recording_degraded=0.0), tmp_path / "c")
    c = NeuralSet.load(tmp_path / "c" / "neural")
    b = np.asarray(c.images, float)
    for share in (0.3, 0.8):
        write_world(replace(cfg, recording_degraded=share), tmp_path / f"d{share}")
        d = NeuralSet.load(tmp_path / f"d{share}" / "neural")
        a = np.asarray(d.images, float)
        chosen = _stream(cfg.seed, "neural/degrade").random(len(a)) < share        # degrade's first draw
        assert (a[~chosen] == b[~chosen]).all()
        diff = np.abs(a[chosen] - b[chosen]).reshape(chosen.sum(), -1)
        assert (diff.max(1) > 0).mean() > 0.9                                      # 1 in 27 draws no change
        np.testing.assert_array_equal(np.asarray(d.true_rates), np.asarray(c.true_rates))
    # each of the three degradations shows in some of the chosen stimuli (at 0.8): contrast alone scales the
    # spread of grey levels and the differences between neighbouring pixels alike; blur lowers the latter
    # more, noise raises them
    sd = a.reshape(len(a), -1).std(1) / b.reshape(len(b), -1).std(1)
    rough = np.abs(np.diff(a, axis=2)).mean((1, 2)) / np.abs(np.diff(b, axis=2)).mean((1, 2))
    r = (rough / sd)[chosen]
    assert ((sd[chosen] < 0.6) & (r > 0.8) & (r < 1.25)).any()
    assert (r < 0.5).any() and (r > 2).any()
    assert "recording_degraded" not in json.loads((tmp_path / "c" / "neural" / "manifest.json").read_text())["source"]["config"]


def test_a_world_folder_written_for_another_world_is_refused_and_kept(tmp_path):
    """load_sources on a data root whose world folder was written with another setting (here a clean recording
    where this version degrades it): one error naming the manifest and the field, the folder untouched."""
    from dataclasses import replace

    from core.errors import DataError
    from core.presets import get_preset
    from core.training.bundles import load_sources, world_dir

    world = world_dir(tmp_path, "smoke", 1.0)
    write_world(replace(world_config("smoke", planted=1.0), recording_degraded=0.0), world)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in world.rglob("*"))
    with pytest.raises(DataError, match=r"manifest\.json: written for another world \(recording_degraded="):
        load_sources(get_preset("smoke"), tmp_path, log=None, planted=1.0)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in world.rglob("*")) == before
    load_sources(get_preset("smoke"), tmp_path / "fresh", log=None, planted=1.0)          # a fresh root is written


def test_mtl_true_co_trains_on_the_recordings_stimuli_with_their_noise_free_rates(tmp_path):
    """The mtl_true recipe hands its fit the recording's training trials (the same 90/10 split as the Monkey
    Predictor's), each target the population's noise-free rates to that trial's image, not its spikes, and
    not the classification images."""
    from core.presets import get_preset
    from core.training import registry
    from core.training.bundles import load_sources, neural_sources
    from core.training.kinds import Job, base_config

    preset = get_preset("smoke")
    s = load_sources(preset, tmp_path, log=None, planted=1.0)
    cfg = base_config("mtl_true", preset, "1:1", 0)
    seen = {}

    def fit(model, data, c, phase):
        seen["data"] = data
        return None

    build = dict(name=cfg.model, n_classes=s.cls.n_classes, n_neurons=0, width=cfg.width)
    registry.get("mtl_true").train(Job("mtl_true", preset, cfg, "1:1", 0, s, None, "", tmp_path, None, build, fit))
    data = seen["data"]
    spikes_tr, _ = neural_sources(s.neural)
    truth = np.asarray(s.neural.true_rates)
    for src in (data.neural_train, data.neural_val):
        assert src.images.shape[0] == len(s.neural.images)                     # the recording's own stimuli
        np.testing.assert_allclose(src.targets.numpy(), truth[src.index.numpy()])
    assert (data.neural_train.index == spikes_tr.index).all()
    assert not np.allclose(data.neural_train.targets.numpy(), spikes_tr.targets.numpy())
    assert data.neural_bn == "running"   # degraded stimuli: normalised on the classification's statistics
    # and its run id says so: a model trained the other way is never taken for this one
    assert registry.get("mtl_true").identity(preset) == {"neural_images": "recording", "neural_bn": data.neural_bn}
