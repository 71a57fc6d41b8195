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
# a Baseline on low-passed images (a low spatial-frequency prior) and co-training on pixel-derived targets
EXPLANATIONS = ("baseline_lowpass", "mtl_pixel")
# the paper's three co-trained kinds run by default (--family mtl); the explanation controls on request
PAPER = dict(MTL, families=("mtl",))


def _fit(job, targets):
    from core.training.bundles import mtl_data, standardised_on

    model = standardised_on(job.new_model(n_neurons=job.sources.neural.n_neurons), job.sources.cls.images["train"])
    return model, job.fit(model, mtl_data(job.sources, targets), job.cfg, "train")


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


@register(name="mtl_true", label="MTL-True", color="#17becf", twin="mtl_shuffled", asked=True, feve_positive=True,
          explained_by=EXPLANATIONS,
          synthetic_only=True,
          summary="classification + the simulated population's noise-free rates to every training image (synthetic "
                  "world only): the upper reference for MTL-Monkey where the truth is known", **MTL)
def mtl_true(job):
    from core.training.bundles import true_targets

    return _fit(job, true_targets(job.sources))


@register(name="mtl_pixel", label="MTL-Pixel", color="#8c8c00", upstream="monkey_predictor", twin="mtl_shuffled",
          asked=True,
          summary="as MTL-Monkey, the targets computed from the pixels alone (a fixed random projection of the "
                  "low-passed image, each unit given the mean and variance of the predictor's responses; Attias et al.)",
          **MTL)
def mtl_pixel(job):
    from core.training.bundles import pixel_targets, predictor_targets

    return _fit(job, pixel_targets(job.sources, predictor_targets(job.sources, job.upstream), 30_000 + job.seed))
