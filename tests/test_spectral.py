"""Spectral sensitivity (core.evaluate.spectral) and its positive check: a Baseline trained on low-passed
images must lose less accuracy than the Baseline under noise, and more under high-pass filtering."""

import numpy as np
import pytest

from core.evaluate.spectral import filtered


def test_the_filters_keep_the_frequencies_they_name():
    """An image made of a 3/64 and a 19/64 cycles-per-pixel grating: the low-pass at 0.12 keeps the first and
    removes the second, the high-pass at 0.12 the reverse; both keep the mean brightness."""
    c = np.arange(64)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    lo_wave, hi_wave = 30 * np.cos(2 * np.pi * 3 / 64 * xx), 30 * np.cos(2 * np.pi * 19 / 64 * yy)   # whole periods
    img = np.clip(np.rint(128 + lo_wave + hi_wave), 0, 255).astype(np.uint8)[None]
    low, high = filtered(img, "low", 0.12)[0].astype(float), filtered(img, "high", 0.12)[0].astype(float)
    assert np.abs(low - (128 + lo_wave)).max() <= 1.5 and np.abs(high - (128 + hi_wave)).max() <= 1.5
    assert abs(low.mean() - img.mean()) < 0.5 and abs(high.mean() - img.mean()) < 0.5


@pytest.mark.slow
def test_a_baseline_that_low_passes_its_input_is_more_robust_to_noise_and_less_to_high_pass(tmp_path):
    """The positive check of the spectral analysis, by construction: baseline_lowpass (a fixed low-pass at
    0.2 cycles per pixel in front of the model, at training and test) against the Baseline of the same seed
    on the demo world, 8 epochs, both given unfiltered test images: it loses less accuracy than the Baseline
    under Gaussian noise (severities 1-3) and more on high-pass filtered test images (cut-offs 0.03-0.12, as
    the run's spectral records hold them). Measured (seed 0, 400 test images): clean 0.935 and 0.928, under
    noise 0.697 and 0.501, high-pass 0.518 and 0.793. A spectral analysis that swapped its filters, or a
    low-pass kind whose filter is left out at test time (trained on low-passed images, tested unfiltered:
    0.385 against the Baseline's 0.501 under noise), fails this."""
    import torch

    from core.data.corruptions import condition_seed, corrupt_gray
    from core.evaluate import predict_classes
    from core.presets import get_preset
    from core.training.bundles import load_sources
    from core.training.kinds import load_model, run_kind

    torch.set_num_threads(2)
    preset = get_preset("demo")
    src = load_sources(preset, tmp_path / "data", log=None)
    x, y = np.asarray(src.cls.images["test"])[:400], np.asarray(src.cls.labels["test"])[:400]
    acc = {}
    for kind in ("baseline", "baseline_lowpass"):
        res = run_kind(kind, preset, "", 0, tmp_path / kind, src, log=None,
                       overrides={"max_epochs": 8, "threads": 2, "device": "cpu"}, data_root=tmp_path / "data")
        m, _ = load_model(tmp_path / kind)
        noisy = [np.stack([corrupt_gray(im, "gaussian_noise", s, condition_seed(0, i, "gaussian_noise", s))
                           for i, im in enumerate(x)]) for s in (1, 2, 3)]
        clean = (predict_classes(m, x) == y).mean()
        # the high-pass accuracy as the run's spectral records hold it (the lake's `spectral` rows)
        high = [r["accuracy"] for r in res.spectral if r["filter"] == "high" and r["cutoff"] in (0.03, 0.06, 0.12)]
        assert len(high) == 3, res.spectral
        acc[kind] = {"clean": clean, "noise_drop": clean - np.mean([(predict_classes(m, v) == y).mean() for v in noisy]),
                     "high_drop": res.run["clean_accuracy"] - np.mean(high)}
    b, lp = acc["baseline"], acc["baseline_lowpass"]
    assert b["clean"] > 0.5 and lp["clean"] > 0.5, acc          # both learned
    assert lp["noise_drop"] < b["noise_drop"] - 0.05, acc        # loses less to noise
    assert lp["high_drop"] > b["high_drop"] + 0.05, acc          # loses more to the high-pass filter


def test_the_spectral_figure_promises_error_bars_only_where_a_kind_has_several_models():
    """Mutant: the title said "bars: s.d. over models" for one model per kind, where there are none."""
    import polars as pl

    from analysis.figures import spectral_sensitivity

    one = pl.DataFrame({"kind": ["baseline"] * 2, "filter": ["low", "high"], "cutoff": [0.1, 0.1], "accuracy": [0.5, 0.6]})
    assert spectral_sensitivity(one)._suptitle.get_text() == "Spectral sensitivity (one model per kind: no bars)"
    two = pl.concat([one, one.with_columns(pl.col("accuracy") + 0.1)])
    assert spectral_sensitivity(two)._suptitle.get_text() == "Spectral sensitivity (bars: s.d. over a kind's models)"
