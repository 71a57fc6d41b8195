"""Neural predictors: a core and a Gaussian readout fitted to the recorded (or simulated) V1 responses."""

from __future__ import annotations

from core.training.recipes.common import neural_config
from core.training.registry import register


@register(name="monkey_predictor", label="Monkey Predictor", color="#7f7f7f", families=("mtl", "similarity"),
          summary="core up to conv3_1 + Gaussian readout, Poisson loss on the V1 recordings (Adam); its responses to "
                  "every classification image are the co-trained kinds' targets",
          config=neural_config, classifier=False, readout=True, feve_positive=True,
          cost=lambda cfg, n, f: cfg.max_epochs * n["trials"] * f["neural_train"])
def monkey_predictor(job):
    from core.training.bundles import neural_sources, standardised_on
    from core.training.data import TrainData

    neural = job.sources.neural
    model = standardised_on(job.new_model(n_neurons=neural.n_neurons, classify=False),
                            neural.images[neural.train_image_index])
    tr, va = neural_sources(neural)
    return model, job.fit(model, TrainData(0, None, tr, va), job.cfg, "train")
