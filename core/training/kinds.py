"""One model of any kind, trained by its recipe (core.training.registry) and evaluated the same way.

`run_kind` resolves the kind's config from its preset, trains it into a folder (`model.pt`,
`checkpoint/`) through the recipe's training function, evaluates it (clean accuracy and TIN-TC for a
classifier, FEVe for a readout, the attacks) and returns its records for the results lake; a kind that
reads an upstream model takes it from a folder written earlier. `python -m core.training --help` lists
the kinds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.config import config_hash
from core.errors import ConfigError, DataError
from core.evaluate import alive_fraction, classification_records, neural_test_metrics
from core.io import atomic_file
from core.models import MultiTaskModel, build_model
from core.presets import Preset
from core.results.lake import now, provenance
from core.training import registry
from core.training.bundles import Sources
from core.training.config import TrainConfig
from core.training.cycler import ratio_value
from core.training.data import as_u8
from core.training.fit import fit
from core.training.inference import resolve_device


def base_config(kind: str, preset: Preset, ratio: str, seed: int, **overrides) -> TrainConfig:
    """The resolved training config of a kind under a preset (the paper's settings where they apply)."""
    recipe = registry.get(kind)
    common = dict(model=preset.model, width=preset.width, batch_size=preset.batch_size, max_epochs=preset.max_epochs,
                  patience=preset.patience, max_reductions=preset.max_reductions, seed=seed, augment=preset.augment,
                  dropout=preset.dropout, schedule=preset.schedule, warmup=preset.warmup,
                  select=preset.select, neural_grad=preset.neural_grad, bn_images=preset.bn_images)
    cfg = recipe.config(preset, common, ratio)
    cfg = replace(cfg, **overrides) if overrides else cfg
    return recipe.after_overrides(cfg) if recipe.after_overrides else cfg


# ----------------------------------------------------------------------------- saved models


def save_model(model: MultiTaskModel, build: dict, path: Path) -> None:
    with atomic_file(path) as tmp:
        torch.save({"build": build, "state": {k: v.cpu() for k, v in model.state_dict().items()}}, tmp)


def load_model(folder: str | os.PathLike, device: str = "cpu") -> tuple[MultiTaskModel, dict]:
    """A trained model and its run record from a folder written by `run_kind`."""
    folder = Path(folder)
    f = folder / "model.pt"
    if not f.is_file():
        raise DataError(f"{f}: missing; expected a model folder written by `python -m core.training`")
    blob = torch.load(f, map_location=device, weights_only=False)
    model = build_model(**blob["build"])
    model.load_state_dict(blob["state"])
    model.build_args = dict(blob["build"])   # how it was built (image size, classes), for callers that check
    record = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    return model.to(device).eval(), record


# ----------------------------------------------------------------------------- one model


def similarity_match_on(model: MultiTaskModel, neural, cfg: TrainConfig) -> float:
    """Brain-likeness of the model's image-pair geometry on the neural test images (against the
    repeat-averaged responses), the factor the similarity family's regression uses in place of FEVe."""
    from core.measures import repeat_mean
    from core.training.similarity import similarity_match

    dev = next(model.parameters()).device
    mean = repeat_mean(neural.test_responses, neural.test_mask)         # (M, K)
    images = as_u8(np.asarray(neural.images)[np.asarray(neural.test_image_index)])
    return similarity_match(model.to(dev), images, torch.from_numpy(mean.astype(np.float32)), cfg.sim_layer_list)


@dataclass
class RunOutput:
    run: dict
    epochs: list[dict]
    corruption_accuracy: list[dict]
    predictions: list[dict]
    folder: Path
    adversarial: list[dict] = field(default_factory=list)
    spectral: list[dict] = field(default_factory=list)


# where and how fast a model ran does not change which model it is
NOT_IDENTITY = ("device", "threads", "data_placement", "checkpoint_every", "compile")


def tintc_source(preset: Preset, sources: Sources, data_root: str | os.PathLike) -> tuple[np.ndarray, Path]:
    """The test images TIN-TC is built from (the preset's first `eval_images`; `run_kind` evaluates the
    same) and their cache folder (core.data.corruptions.tintc_dir), so no command rebuilds another's
    (seed 0 throughout)."""
    from core.data.corruptions import tintc_dir

    images = np.asarray(sources.cls.images["test"])[: preset.eval_images or None]
    return images, tintc_dir(data_root, sources.info["classification"], len(images))


def run_id_for(kind: str, preset: str, ratio: str, seed: int, cfg: TrainConfig, data_info: dict,
               upstream_id: str = "", extra: dict | None = None) -> str:
    """Run id: kind plus a hash of the resolved config, data content and upstream run id."""
    c = {k: v for k, v in asdict(cfg).items() if k not in NOT_IDENTITY}
    if cfg.mode != "similarity":  # the sim_* settings do not touch other models: their ids stay as before
        c = {k: v for k, v in c.items() if not k.startswith("sim_")}
    data = data_info.get("classification", "") + data_info.get("neural", "")
    ident = {"kind": kind, "preset": preset, "ratio": ratio, "seed": seed, "cfg": c, "data": data, "upstream": upstream_id,
             **(extra or {})}
    if registry.get(kind).classifier and data_info.get("tintc"):
        # scored on another TIN-TC (the published JPEGs, `--tintc-root`): another record. Absent for the
        # generated corruptions, so their run ids stay what they were
        ident["tintc"] = data_info["tintc"]
    return f"{kind}-{config_hash(ident, 12)}"


def identity_extra(kind: str, preset: Preset) -> dict | None:
    """What identifies a model beyond its TrainConfig (the recipe's `identity`: the Oracle's corruption bank size)."""
    recipe = registry.get(kind)
    return recipe.identity(preset) if recipe.identity else None


@dataclass
class Job:
    """What a recipe's training function gets: the resolved config, the data, its upstream model, and
    `fit(model, data, cfg, phase)`, which trains with checkpoints under the run's folder."""

    kind: str
    preset: Preset
    cfg: TrainConfig
    ratio: str
    seed: int
    sources: Sources
    upstream: MultiTaskModel | None
    upstream_id: str
    data_root: Path
    log: Callable | None
    build: dict
    fit: Callable

    def new_model(self, **changes) -> MultiTaskModel:
        """A model built as the run's `build` with `changes` (kept: the saved model is rebuilt from it)."""
        self.build = {**self.build, **changes}
        return build_model(**self.build)


def run_kind(kind: str, preset: Preset, ratio: str, seed: int, out: str | os.PathLike, sources: Sources,
             upstream: str | os.PathLike | None = None, data_root: str | os.PathLike = "data",
             tintc: dict | None = None, report: Callable | None = None, log: Callable | None = print,
             overrides: dict | None = None, fail_at_epoch: int | None = None) -> RunOutput:
    """Train one model of `kind` into `out` and evaluate it; resumes from `out/checkpoint` if present."""
    t_start = time.perf_counter()
    recipe = registry.get(kind)
    out, data_root = Path(out), Path(data_root)
    out.mkdir(parents=True, exist_ok=True)
    ratio = ratio if recipe.grid == "ratio" else ""
    cfg = base_config(kind, preset, ratio or "1:1", seed, **(overrides or {}))
    cls, neural = sources.cls, sources.neural
    upstream_model, upstream_id = None, ""
    if recipe.upstream:
        if upstream is None:
            raise ConfigError(f"kind {kind} needs an upstream {recipe.upstream} model folder")
        upstream_model, up_record = load_model(upstream)
        upstream_id = up_record.get("run_id", "")
        if up_record.get("kind") not in (None, recipe.upstream):
            raise ConfigError(f"--upstream {upstream}: holds a {up_record.get('kind')} model; {kind} needs {recipe.upstream}")
    run_id = run_id_for(kind, preset.name, ratio, seed, cfg, sources.info, upstream_id, identity_extra(kind, preset))
    epochs: list[dict] = []
    resumed: list[str] = []   # "phase:epoch" of every phase that resumed from a checkpoint (after a fault)

    def fit_phase(model, data, c, phase):
        def rep(row, ckpt):
            if report is not None:
                report({**row, "phase": phase, "kind": kind, "ratio": ratio, "seed": seed, "run_id": run_id}, ckpt)
        res = fit(model, data, c, report=rep, checkpoint_dir=out / "checkpoint" / phase, log=log,
                  fail_at_epoch=fail_at_epoch)
        epochs.extend({**r, "phase": phase} for r in res.epochs)
        if res.resumed_after_epoch is not None:
            resumed.append(f"{phase}:{res.resumed_after_epoch}")
        return res

    build = dict(name=cfg.model, n_classes=cls.n_classes, n_neurons=0, width=cfg.width, classify=True,
                 readout_layer=cfg.readout_layer, image_size=cls.image_shape[0], dropout=cfg.dropout,
                 gamma=cfg.readout_gamma, init_mu_range=cfg.init_mu_range, init_sigma_range=cfg.init_sigma_range,
                 input_lowpass=cfg.input_lowpass)
    # seed s of every kind starts from the same initial weights (the core and head are built before a readout)
    torch.manual_seed(seed)
    job = Job(kind, preset, cfg, ratio, seed, sources, upstream_model, upstream_id, data_root, log, build, fit_phase)
    model, res = recipe.train(job)
    build = job.build

    # evaluation, attacks and the similarity match run where the model trained (the GPU in a GPU trial:
    # 70 conditions of a full-width VGG on 2 CPU cores would take hours); save_model copies to the CPU
    model.to(resolve_device(cfg.device)).eval()
    save_model(model, build, out / "model.pt")
    metrics = {"clean_accuracy": float("nan")}
    acc_rows, pred_rows, adv_rows, spec_rows = [], [], [], []
    if res.status == "ok":
        n = preset.eval_images or len(cls.labels["test"])  # the TIN-TC cache holds the first n test images
        if model.has_classifier and recipe.classifier:
            metrics["clean_accuracy"], acc_rows, pred_rows = classification_records(
                model, np.asarray(cls.images["test"][:n]), np.asarray(cls.labels["test"][:n]), tintc)
        if model.readout is not None:
            metrics.update(neural_test_metrics(model, neural))
        probe = cls.images["test"][:n] if model.has_classifier else neural.images[neural.test_image_index]
        metrics["readout_alive"] = alive_fraction(model, np.asarray(probe))
        if model.has_classifier and recipe.classifier:
            from core.evaluate.spectral import spectral_records

            metrics["sim_match"] = similarity_match_on(model, neural, cfg)
            spec_rows = spectral_records(model, np.asarray(cls.images["test"][:n]), np.asarray(cls.labels["test"][:n]))
            if preset.adv_images > 0:
                from core.evaluate.adversarial import adversarial_records

                adv_rows = adversarial_records(model, np.asarray(cls.images["test"]), np.asarray(cls.labels["test"]),
                                               preset.adv_images, preset.adv_decision_images, preset.adv_steps,
                                               preset.adv_decision_steps, seed=seed)
    run = {
        "run_id": run_id, "kind": kind, "ratio": ratio, "ratio_value": ratio_value(ratio) if ratio else float("nan"),
        "seed": seed, "preset": preset.name,
        "family": recipe.family,
        "status": res.status, "error": res.error, "diverged_epoch": res.diverged_epoch,
        # the validation accuracy of the weights evaluated below (cfg.select), and of the last epoch's
        "val_accuracy": res.selected_metric if recipe.classifier else float("nan"),
        "val_accuracy_final": res.final_metric if recipe.classifier else float("nan"),
        **{k: metrics.get(k, float("nan")) for k in ("clean_accuracy", "fev", "feve", "corr_trial", "corr_avg", "corr_true",
                                                      "sim_match", "readout_alive")},
        "feve_neurons": metrics.get("feve_neurons"),
        "alpha": cfg.sim_alpha if recipe.grid == "alpha" else float("nan"),
        "epochs": len(epochs), "train_seconds": sum(r["train_seconds"] for r in epochs),
        "wall_seconds": time.perf_counter() - t_start,   # the whole model: data, fit, evaluation, attacks
        "images_per_s": res.images_per_s, "device": res.device, "upstream": upstream_id, "resumed": ",".join(resumed),
        "config": json.dumps(asdict(cfg), sort_keys=True), "data": json.dumps(sources.info, sort_keys=True),
        "created_at": now(), **provenance(),
    }
    (out / "run.json").write_text(json.dumps(run, indent=1, default=float) + "\n")
    key = {"run_id": run_id, "kind": kind, "ratio": ratio, "seed": seed}
    return RunOutput(run, [{**key, **r} for r in epochs], [{**key, **r} for r in acc_rows],
                     [{**key, **r} for r in pred_rows], out, [{**key, **r} for r in adv_rows],
                     [{**key, **r} for r in spec_rows])
