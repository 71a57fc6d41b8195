"""Representational-similarity regularisation (Li et al. 2019): CE + α·L_sim, swept over α × seed."""

from __future__ import annotations

from core.training.recipes.common import similarity_config
from core.training.registry import register


def _cost(cfg, n: dict, f: dict) -> float:   # a batch of pairs through the network beside each classification batch
    return cfg.max_epochs * (n["train"] * f["cls_train"] + n["val"] * f["cls_fwd"]) * (1 + 2 * cfg.sim_pairs / cfg.batch_size)


SIM = dict(config=similarity_config, grid="alpha", families=("similarity",), cost=_cost)


def _fit(job):
    from core.training.bundles import cls_tensors, sim_pool, standardised_on
    from core.training.data import TrainData

    cls = job.sources.cls
    model = standardised_on(job.new_model(), cls.images["train"])
    pool = sim_pool(job.sources, job.kind, job.upstream, job.seed, job.cfg.sim_source)
    return model, job.fit(model, TrainData(cls.n_classes, cls_tensors(cls), sim_pool=pool), job.cfg, "train")


@register(name="sim_pixel", label="Sim-Pixel", color="#e377c2", asked=True, twin="sim_shuffled",
          summary="similarity targets from the images' pixels (Li et al.'s and Attias et al.'s control)", **SIM)
def sim_pixel(job):
    return _fit(job)


@register(name="sim_monkey", label="Sim-Monkey", color="#9467bd", upstream="monkey_predictor", asked=True,
          twin="sim_shuffled",
          summary="similarity targets from the Monkey Predictor's responses (sim_source=true: the simulated "
                  "population's noise-free rates)", **SIM)
def sim_monkey(job):
    return _fit(job)


@register(name="sim_shuffled", label="Sim-Shuffled", color="#8c564b", upstream="monkey_predictor",
          summary="as Sim-Monkey, the responses shuffled across images", **SIM)
def sim_shuffled(job):
    return _fit(job)
