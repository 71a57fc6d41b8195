"""Multi-task co-training (Safarani et al. 2021): classification plus predicting neural responses to every
training image from conv3_1, at a ratio of neural to classification batches."""

from __future__ import annotations

from core.training.recipes.common import mtl_config
from core.training.registry import register


def _cost(cfg, n: dict, f: dict) -> float:
    from core.training.cycler import parse_ratio

    neu, c = parse_ratio(cfg.ratio)
    cls_epoch = n["train"] * f["cls_train"] + n["val"] * f["cls_fwd"]
    return cfg.max_epochs * (cls_epoch + n["train"] * neu / c * f["neural_train"])


MTL = dict(config=mtl_config, grid="ratio", readout=True, cost=_cost)
# simpler explanations of a co-training gain, each a kind of its own (run on request, --preset explain):
# a Baseline that low-passes its input (a low spatial-frequency prior), co-training on pixel-derived targets, and
# co-training on targets with the data's statistics but no relation to the image
EXPLANATIONS = ("baseline_lowpass", "mtl_pixel", "mtl_surrogate")
# the paper's three co-trained kinds run by default (--family mtl); the explanation controls on request
PAPER = dict(MTL, families=("mtl",))


def _train(job, data):
    from core.training.bundles import standardised_on

    model = standardised_on(job.new_model(n_neurons=job.sources.neural.n_neurons), job.sources.cls.images["train"])
    return model, job.fit(model, data, job.cfg, "train")


def _fit(job, targets):
    from core.training.bundles import mtl_data

    return _train(job, mtl_data(job.sources, targets))


@register(name="mtl_monkey", label="MTL-Monkey", color="#d62728", upstream="monkey_predictor", twin="mtl_shuffled",
          asked=True, feve_positive=True, explained_by=EXPLANATIONS,
          summary="classification + the Monkey Predictor's responses to every training image", **PAPER)
def mtl_monkey(job):
    from core.training.bundles import predictor_targets

    return _fit(job, predictor_targets(job.sources, job.upstream))


@register(name="mtl_oracle", label="MTL-Oracle", color="#ff7f0e", upstream="oracle_readout", twin="mtl_shuffled",
          asked=True, feve_positive=True,
          summary="classification + the Oracle readout's responses to every training image", **PAPER)
def mtl_oracle(job):
    from core.training.bundles import predictor_targets

    return _fit(job, predictor_targets(job.sources, job.upstream))


@register(name="mtl_shuffled", label="MTL-Shuffled", color="#1f77b4", upstream="monkey_predictor", control="negative",
          summary="as MTL-Monkey, each neuron's responses shuffled across images (no image information)", **PAPER)
def mtl_shuffled(job):
    from core.training.bundles import predictor_targets, shuffled

    return _fit(job, shuffled(predictor_targets(job.sources, job.upstream), 10_000 + job.seed))


# not a run-level control: Federer et al. found that such targets can help, so a gain is a finding, not a fault;
# its twin is MTL-Shuffled, so the report shows whether keeping the covariance changes anything
@register(name="mtl_surrogate", label="MTL-Surrogate", color="#5254a3", upstream="monkey_predictor", twin="mtl_shuffled",
          stands_for="targets with the data's statistics",
          summary="as MTL-Shuffled, but the response vectors shuffled across images as whole rows (one permutation "
                  "for all neurons): the data's per-neuron means and the covariance across neurons kept, no image "
                  "information (Federer et al.'s statistics-matched targets; MTL-Shuffled breaks the covariance)",
          **MTL)
def mtl_surrogate(job):
    from core.training.bundles import predictor_targets, surrogate

    return _fit(job, surrogate(predictor_targets(job.sources, job.upstream), 20_000 + job.seed))


# ----------------------------------------------------------------------------- the truth, and pixels


def pixel_targets(sources, like: dict, seed: int, sigma: float = 2.0) -> dict:
    """Targets computed from the pixels alone (Attias et al.'s control): each image low-passed (Gaussian,
    `sigma` pixels), projected onto as many fixed random directions as there are neurons, z-scored over the
    training images and given, unit by unit, the mean and variance of `like` (the predictor's responses)
    through a log-normal map (positive, as rates are)."""
    import numpy as np
    import torch
    from scipy.ndimage import gaussian_filter

    g = np.random.default_rng(seed)
    K = like["train"].shape[1]
    h, w = sources.cls.image_shape
    proj = g.standard_normal((h * w, K)).astype(np.float32) / np.sqrt(h * w)
    z = {}
    for s in ("train", "val"):
        x = gaussian_filter(np.asarray(sources.cls.images[s], np.float32) / 255.0, sigma=(0, sigma, sigma))
        z[s] = x.reshape(len(x), -1) @ proj
    mu, sd = z["train"].mean(0), z["train"].std(0) + 1e-8
    m = like["train"].mean(0).numpy().clip(1e-3)
    v = like["train"].var(0).numpy()
    spread = np.sqrt(np.log1p(v / m**2))
    return {s: torch.from_numpy((m * np.exp(spread * (z[s] - mu) / sd - spread**2 / 2)).astype(np.float32))
            for s in ("train", "val")}


def _recording_identity() -> dict:
    """What sets MTL-True's models apart beyond its config: the recording's stimuli, and how they are normalised."""
    from core.training.bundles import RECORDING_NEURAL_BN

    return {"neural_images": "recording", "neural_bn": RECORDING_NEURAL_BN}


@register(name="mtl_true", label="MTL-True", color="#17becf", twin="mtl_shuffled", asked=True, feve_positive=True,
          explained_by=EXPLANATIONS,
          synthetic_only=True, identity=lambda preset: _recording_identity(),
          summary="classification + the simulated population's noise-free rates to the recording's own stimuli "
                  "(synthetic world only): the recording without its trial noise and without a predictor, the upper "
                  "reference for MTL-Monkey where the truth is known", **MTL)
def mtl_true(job):
    from core.training.bundles import recording_data

    return _train(job, recording_data(job.sources))


@register(name="mtl_pixel", label="MTL-Pixel", color="#8c8c00", upstream="monkey_predictor", twin="mtl_shuffled",
          stands_for="pixel-derived targets",
          summary="as MTL-Monkey, the targets computed from the pixels alone (a fixed random projection of the "
                  "low-passed image, each unit given the mean and variance of the predictor's responses; Attias et al.)",
          **MTL)
def mtl_pixel(job):
    from core.training.bundles import predictor_targets

    return _fit(job, pixel_targets(job.sources, predictor_targets(job.sources, job.upstream), 30_000 + job.seed))
