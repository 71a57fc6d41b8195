"""A world with a planted answer (core.data.planted): its construction proved with linear classifiers, and
the default world left as it was."""

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
