"""The Oracle (the paper's positive control, a classifier trained on the corruptions it is tested on) and
the readout fitted to V1 on its frozen conv3_1, whose responses MTL-Oracle co-trains on."""

from __future__ import annotations

from dataclasses import replace

from core.training.recipes.common import classification_config
from core.training.registry import register


def _config(preset, common: dict, ratio: str):
    return replace(classification_config(preset, common, ratio), mode="oracle_pretrain")


@register(name="oracle", label="Oracle", color="#2ca02c", families=("mtl",), control="positive",
          summary="noise-augmented training (1:1 clean:corrupted) with a cosine consistency on conv3_1, then the layers "
                  "<= conv3_1 frozen and the rest re-initialised and re-trained on clean images",
          config=_config, identity=lambda preset: {"oracle_variants": preset.oracle_variants},
          # pre-training sees each image clean and corrupted, then a second, clean phase
          cost=lambda cfg, n, f: cfg.max_epochs * 3 * (n["train"] * f["cls_train"] + n["val"] * f["cls_fwd"]))
def oracle(job):
    import numpy as np
    import torch

    from core.models.vgg import VGG
    from core.training.bundles import cls_tensors, oracle_bank, standardised_on
    from core.training.data import TrainData

    cls, cfg = job.sources.cls, job.cfg
    model = standardised_on(job.new_model(), cls.images["train"])
    bank = oracle_bank(job.sources, job.data_root, job.seed, job.preset.oracle_variants, job.log)
    data = TrainData(cls.n_classes, cls_tensors(cls), corrupted=torch.from_numpy(np.array(bank))[:, :, None])
    res = job.fit(model, data, cfg, "pretrain")
    if res.status != "ok":
        return model, res
    # freeze <= conv3_1; re-initialise everything above it and re-train on clean images
    names = model.core.layer_names
    cut = names.index(cfg.readout_layer)
    above = [m for n, m in model.core.features.named_children() if names.index(n) > cut] + [model.core.head]
    torch.manual_seed(job.seed + 1)
    for m in above:
        VGG.reset_parameters(m)
    retrain = replace(cfg, mode="classification", freeze_through=cfg.readout_layer)
    return model, job.fit(model, TrainData(cls.n_classes, cls_tensors(cls)), retrain, "retrain")


def _readout_config(preset, common: dict, ratio: str):
    from core.training.config import TrainConfig

    return TrainConfig(mode="neural", lr=preset.neural_lr, optimizer="adam", freeze_through="conv3_1",
                       **{**common, "max_epochs": preset.readout_epochs, "max_reductions": 10**6})


@register(name="oracle_readout", label="Oracle readout", color="#bcbd22", families=("mtl",), upstream="oracle",
          summary="a Gaussian readout trained on the V1 recordings on top of the frozen Oracle's conv3_1",
          config=_readout_config, classifier=False, readout=True, feve_positive=True,
          # the Oracle stays frozen up to the layer the readout reads, wherever an override puts it
          after_overrides=lambda cfg: replace(cfg, freeze_through=cfg.readout_layer),
          cost=lambda cfg, n, f: cfg.max_epochs * n["trials"] * f["neural_train"] / 2)   # frozen core: forward only
def oracle_readout(job):
    from core.errors import ConfigError
    from core.training.bundles import neural_sources
    from core.training.data import TrainData

    cfg = job.cfg
    model = job.new_model(n_neurons=job.sources.neural.n_neurons)
    try:
        missing = model.load_state_dict(job.upstream.state_dict(), strict=False)
    except RuntimeError:
        raise ConfigError(f"oracle_readout ({cfg.model}, width {cfg.width:g}, readout at {cfg.readout_layer}): cannot "
                          f"load the Oracle {job.upstream_id}, built otherwise; give both the same model, width and "
                          "readout_layer") from None
    assert all(k.startswith("readout.") for k in missing.missing_keys), missing
    tr, va = neural_sources(job.sources.neural)
    return model, job.fit(model, TrainData(0, None, tr, va), cfg, "train")
