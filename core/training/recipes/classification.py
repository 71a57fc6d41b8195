"""Classifiers trained on labels alone: the Baseline, and the Baseline on low-passed images (the control
for a low spatial-frequency bias, Li et al. 2023)."""

from __future__ import annotations

from dataclasses import replace

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


@register(name="baseline_lowpass", label="Baseline low-pass", color="#a0a0a0", stands_for="a low-pass prior",
          summary="the Baseline with a fixed Gaussian low-pass in front of it (the preset's `lowpass`, cycles per pixel, "
                  "the simulated V1's band), at training and on every test image, which it is given unfiltered like "
                  "every classifier (Li et al. 2023's blurring as preprocessing): does a low-frequency prior alone "
                  "explain co-training?",
          config=lambda preset, common, ratio: replace(classification_config(preset, common, ratio),
                                                       input_lowpass=preset.lowpass))
def baseline_lowpass(job):
    return baseline(job)   # the filter is in the model's build (`input_lowpass`), from the config
