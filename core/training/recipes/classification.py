"""Classifiers trained on labels alone: the Baseline."""

from __future__ import annotations

from core.training.recipes.common import classification_config
from core.training.registry import register


@register(name="baseline", label="Baseline", color="#4d4d4d", families=("mtl", "similarity"),
          summary="classification on clean images: every robustness score is relative to it",
          config=classification_config)
def baseline(job):
    from core.training.bundles import cls_tensors, standardised_on
    from core.training.data import TrainData

    cls = job.sources.cls
    model = standardised_on(job.new_model(), cls.images["train"])
    return model, job.fit(model, TrainData(cls.n_classes, cls_tensors(cls)), job.cfg, "train")
