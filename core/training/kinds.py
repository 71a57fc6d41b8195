"""The paper's model kinds (Table 1), each trained by `fit` from canonical data sets.

    baseline          classification on clean images
    monkey_predictor  core up to conv3_1 + Gaussian readout, Poisson loss on V1 recordings (Adam)
    oracle            noise-augmented (1:1 clean:corrupted) + conv3_1 consistency, then layers
                      <= conv3_1 frozen and the rest re-initialised and re-trained on clean images
    oracle_readout    a Gaussian readout on the frozen Oracle's conv3_1, trained on V1 recordings
    mtl_monkey        classification + the Monkey Predictor's responses to every training image
    mtl_oracle        classification + the Oracle readout's responses to every training image
    mtl_shuffled      as mtl_monkey, responses shuffled across images for every neuron

`run_kind` trains one model into a folder (`model.pt`, `checkpoint/`) and returns its records for
the results lake; kinds that need an upstream model take it from a folder written earlier.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.config import config_hash
from core.data import ClassificationSet, NeuralSet
from core.errors import ConfigError, DataError
from core.evaluate import alive_fraction, classification_records, neural_test_metrics
from core.io import atomic_file
from core.models import MultiTaskModel, build_model
from core.models.vgg import VGG
from core.presets import Preset
from core.results.lake import now, provenance
from core.training.config import TrainConfig
from core.training.cycler import ratio_value
from core.training.data import NeuralBatchSource, TrainData, as_u8, pixel_stats
from core.training.fit import fit
from core.training.inference import predict_rates, resolve_device

from core.training.graph import CLASSIFIERS, KINDS, SIM_KINDS, UPSTREAM  # noqa: E402,F401  (re-exported)
NEURAL_SPLIT_SEED = 0      # the 90/10 split of neural training trials is the same for every model
VAL_FRACTION = 0.1


@dataclass
class Sources:
    cls: ClassificationSet
    neural: NeuralSet
    info: dict = field(default_factory=dict)   # names and content hashes of the data sets


def load_sources(preset: Preset, data_root: str | os.PathLike = "data", tin_root=None, neural_data=None,
                 log: Callable | None = print) -> Sources:
    """Canonical data for a preset: the synthetic world (written once under data_root) or real data."""
    data_root = Path(data_root)
    if preset.world is not None and tin_root is None and neural_data is None:
        from core.data.synthetic import world_config, write_world

        world = data_root / f"world-{preset.world}"
        if not (world / "neural" / "manifest.json").is_file():
            if log:
                log(f"writing the synthetic world ({preset.world}) to {world}")
            try:
                write_world(world_config(preset.world), world)
            except FileExistsError:
                pass  # another process wrote it first
        cls, neural = ClassificationSet.load(world / "classification"), NeuralSet.load(world / "neural")
    else:
        if tin_root is None or neural_data is None:
            raise ConfigError(f"preset {preset.name} reads real data: give both --tin-root and --neural-data")
        from core.data import tiny_imagenet

        cls = tiny_imagenet.load_or_build(tin_root, data_root / "cache", verbose=log is not None)
        neural = NeuralSet.load(neural_data)
    if cls.image_shape != tuple(neural.images.shape[1:]):
        raise DataError(f"image sizes differ: classification {cls.image_shape}, neural {neural.images.shape[1:]}")
    info = {"classification": cls.manifest.get("content_hash", ""), "neural": neural.manifest.get("content_hash", ""),
            "classification_path": str(cls.path), "neural_path": str(neural.path)}
    return Sources(cls, neural, info)


def base_config(kind: str, preset: Preset, ratio: str, seed: int, **overrides) -> TrainConfig:
    """The resolved training config of a kind under a preset (the paper's settings where they apply)."""
    common = dict(model=preset.model, width=preset.width, batch_size=preset.batch_size, max_epochs=preset.max_epochs,
                  patience=preset.patience, max_reductions=preset.max_reductions, seed=seed, augment=preset.augment,
                  dropout=preset.dropout, schedule=preset.schedule, warmup=preset.warmup,
                  select=preset.select, neural_grad=preset.neural_grad, bn_images=preset.bn_images)
    if kind == "monkey_predictor":
        cfg = TrainConfig(mode="neural", lr=preset.neural_lr, optimizer="adam", **{**common, "max_epochs": preset.neural_epochs})
    elif kind == "oracle_readout":
        cfg = TrainConfig(mode="neural", lr=preset.neural_lr, optimizer="adam", freeze_through="conv3_1",
                          **{**common, "max_epochs": preset.readout_epochs, "max_reductions": 10**6})
    elif kind == "oracle":
        cfg = TrainConfig(mode="oracle_pretrain", lr=preset.lr, **common)
    elif kind.startswith("mtl_"):
        cfg = TrainConfig(mode="mtl", ratio=ratio, lr=preset.lr, readout_lr=preset.readout_lr,
                          learn_cls_weight=preset.learn_cls_weight, **common)
    elif kind == "baseline":
        cfg = TrainConfig(mode="classification", lr=preset.lr, **common)
    elif kind in SIM_KINDS:
        cfg = TrainConfig(mode="similarity", lr=preset.lr, **common)
    else:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    cfg = replace(cfg, **overrides) if overrides else cfg
    if kind == "oracle_readout":   # the Oracle stays frozen up to the layer the readout reads, wherever that is
        cfg = replace(cfg, freeze_through=cfg.readout_layer)
    return cfg


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


# ----------------------------------------------------------------------------- data bundles


def _cls_tensors(cls: ClassificationSet) -> dict:
    return {s: (as_u8(cls.images[s]), torch.from_numpy(np.array(cls.labels[s]))) for s in ("train", "val")}


def _neural_sources(neural: NeuralSet) -> tuple[NeuralBatchSource, NeuralBatchSource]:
    src = NeuralBatchSource(as_u8(neural.images), torch.from_numpy(np.array(neural.train_image_index)),
                            torch.from_numpy(np.array(neural.train_responses, dtype=np.float32)),
                            torch.from_numpy(np.array(neural.train_mask)))
    rng = np.random.default_rng(NEURAL_SPLIT_SEED)
    perm = rng.permutation(len(src))
    n_val = max(1, int(round(VAL_FRACTION * len(src))))
    return src.subset(np.sort(perm[n_val:])), src.subset(np.sort(perm[:n_val]))


def predicted_targets(predictor: MultiTaskModel, images: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return predict_rates(predictor, as_u8(images)).cpu().float()


def mtl_data(sources: Sources, predictor: MultiTaskModel, shuffle_seed: int | None) -> TrainData:
    """Classification data plus the predictor's responses to every training (and validation) image."""
    cls = sources.cls
    x = _cls_tensors(cls)
    targets = {s: predicted_targets(predictor, cls.images[s]) for s in ("train", "val")}
    if shuffle_seed is not None:  # MTL-Shuffled: permute images independently for every neuron
        g = torch.Generator().manual_seed(shuffle_seed)
        for s, t in targets.items():
            cols = [t[torch.randperm(len(t), generator=g), k] for k in range(t.shape[1])]
            targets[s] = torch.stack(cols, 1)
    srcs = {s: NeuralBatchSource(x[s][0], torch.arange(len(targets[s])), targets[s],
                                 torch.ones(targets[s].shape, dtype=torch.bool)) for s in ("train", "val")}
    return TrainData(cls.n_classes, x, srcs["train"], srcs["val"])


def sim_pool(sources: Sources, kind: str, predictor: MultiTaskModel | None, seed: int, source: str = "predicted"):
    """The regularisation pool of a sim_* kind: the neural training images, with the Monkey
    Predictor's responses to them (sim_monkey; `source="true"`: the simulated population's
    noise-free rates), the same shuffled across images (sim_shuffled), or their pixels (sim_pixel)."""
    from core.training.similarity import SimilarityPool

    neural = sources.neural
    idx = np.unique(np.asarray(neural.train_image_index))
    images = as_u8(np.asarray(neural.images)[idx])
    if kind == "sim_pixel":
        return SimilarityPool.pixels(images)
    if source == "true":
        if neural.true_rates is None:
            raise ConfigError("sim_source=true needs the simulated population's true rates (synthetic world only)")
        vectors = torch.from_numpy(np.asarray(neural.true_rates, dtype=np.float32)[idx])
    elif source == "predicted":
        vectors = predicted_targets(predictor, np.asarray(neural.images)[idx])
    else:
        raise ConfigError(f"sim_source={source!r}; expected predicted or true")
    pool = SimilarityPool.from_targets(images, vectors)
    return pool.shuffled(20_000 + seed) if kind == "sim_shuffled" else pool


def standardised_on(model: MultiTaskModel, images) -> MultiTaskModel:
    """Give `model` the pixel statistics of `images` (its input standardisation travels with it)."""
    model.set_pixel_stats(*pixel_stats(images))
    return model


def tintc_source(preset: Preset, sources: Sources, data_root: str | os.PathLike) -> tuple[np.ndarray, Path]:
    """The test images TIN-TC is built from (the preset's first `eval_images`; `run_kind` evaluates the
    same) and their cache folder: one per (data set, image count), shared by the sweep, the
    single-model CLI and the benchmarks, so none rebuilds another's (seed 0 throughout)."""
    images = np.asarray(sources.cls.images["test"])[: preset.eval_images or None]
    return images, Path(data_root) / f"tintc-{sources.info['classification'][:16]}-n{len(images)}"


def oracle_bank(sources: Sources, data_root: Path, seed: int, n_variants: int, log: Callable | None) -> np.ndarray:
    """The Oracle's corrupted training variants for one seed (cached next to the data; built once)."""
    from core.data.corruptions import corruption_bank

    key = f"{sources.info['classification'][:16]}-s{seed}-v{n_variants}"
    f = data_root / f"oracle-bank-{key}.npy"
    if f.is_file():
        return np.load(f, mmap_mode="r")
    images = np.asarray(sources.cls.images["train"])
    if log:
        log(f"corrupting {len(images)} training images {n_variants} times for the Oracle (seed {seed})")
    bank = corruption_bank(images, seed, n_variants, progress=log)
    with atomic_file(f) as tmp, open(tmp, "wb") as fh:  # a handle: np.save would append .npy to the name
        np.save(fh, bank)
    return bank


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


# where and how fast a model ran does not change which model it is
NOT_IDENTITY = ("device", "threads")


def run_id_for(kind: str, preset: str, ratio: str, seed: int, cfg: TrainConfig, data_info: dict,
               upstream_id: str = "", extra: dict | None = None) -> str:
    """Run id: kind plus a hash of the resolved config, data content and upstream run id."""
    c = {k: v for k, v in asdict(cfg).items() if k not in NOT_IDENTITY}
    if cfg.mode != "similarity":  # the sim_* settings do not touch other models: their ids stay as before
        c = {k: v for k, v in c.items() if not k.startswith("sim_")}
    data = data_info.get("classification", "") + data_info.get("neural", "")
    ident = {"kind": kind, "preset": preset, "ratio": ratio, "seed": seed, "cfg": c, "data": data, "upstream": upstream_id,
             **(extra or {})}
    if kind in CLASSIFIERS and data_info.get("tintc"):
        # scored on another TIN-TC (the published JPEGs, `--tintc-root`): another record. Absent for the
        # generated corruptions, so their run ids stay what they were
        ident["tintc"] = data_info["tintc"]
    return f"{kind}-{config_hash(ident, 12)}"


def identity_extra(kind: str, preset: Preset) -> dict | None:
    """What identifies a model beyond its TrainConfig: the Oracle's corruption bank size."""
    return {"oracle_variants": preset.oracle_variants} if kind == "oracle" else None


def run_kind(kind: str, preset: Preset, ratio: str, seed: int, out: str | os.PathLike, sources: Sources,
             upstream: str | os.PathLike | None = None, data_root: str | os.PathLike = "data",
             tintc: dict | None = None, report: Callable | None = None, log: Callable | None = print,
             overrides: dict | None = None, fail_at_epoch: int | None = None) -> RunOutput:
    """Train one model of `kind` into `out` and evaluate it; resumes from `out/checkpoint` if present."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    out, data_root = Path(out), Path(data_root)
    out.mkdir(parents=True, exist_ok=True)
    ratio = ratio if kind.startswith("mtl_") else ""
    cfg = base_config(kind, preset, ratio or "1:1", seed, **(overrides or {}))
    cls, neural = sources.cls, sources.neural
    K = neural.n_neurons
    upstream_model, upstream_id = None, ""
    if kind in UPSTREAM:
        if upstream is None:
            raise ConfigError(f"kind {kind} needs an upstream {UPSTREAM[kind]} model folder")
        upstream_model, up_record = load_model(upstream)
        upstream_id = up_record.get("run_id", "")
        if up_record.get("kind") not in (None, UPSTREAM[kind]):
            raise ConfigError(f"--upstream {upstream}: holds a {up_record.get('kind')} model; {kind} needs {UPSTREAM[kind]}")
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
                 gamma=cfg.readout_gamma, init_mu_range=cfg.init_mu_range, init_sigma_range=cfg.init_sigma_range)
    torch.manual_seed(seed)
    if kind == "baseline":
        model = standardised_on(build_model(**build), cls.images["train"])
        res = fit_phase(model, TrainData(cls.n_classes, _cls_tensors(cls)), cfg, "train")
    elif kind == "monkey_predictor":
        build.update(n_neurons=K, classify=False)
        model = standardised_on(build_model(**build), neural.images[neural.train_image_index])
        tr, va = _neural_sources(neural)
        res = fit_phase(model, TrainData(0, None, tr, va), cfg, "train")
    elif kind == "oracle":
        model = standardised_on(build_model(**build), cls.images["train"])
        bank = oracle_bank(sources, data_root, seed, preset.oracle_variants, log)
        data = TrainData(cls.n_classes, _cls_tensors(cls), corrupted=torch.from_numpy(np.array(bank))[:, :, None])
        res = fit_phase(model, data, cfg, "pretrain")
        if res.status == "ok":
            # freeze <= conv3_1; re-initialise everything above it and re-train on clean images
            names = model.core.layer_names
            cut = names.index(cfg.readout_layer)
            above = [m for n, m in model.core.features.named_children() if names.index(n) > cut] + [model.core.head]
            torch.manual_seed(seed + 1)
            for m in above:
                VGG.reset_parameters(m)
            data = TrainData(cls.n_classes, _cls_tensors(cls))
            res = fit_phase(model, data, replace(cfg, mode="classification", freeze_through=cfg.readout_layer), "retrain")
    elif kind == "oracle_readout":
        build.update(n_neurons=K)
        model = build_model(**build)
        try:
            missing = model.load_state_dict(upstream_model.state_dict(), strict=False)
        except RuntimeError:
            raise ConfigError(f"oracle_readout ({cfg.model}, width {cfg.width:g}, readout at {cfg.readout_layer}): cannot "
                              f"load the Oracle {upstream_id}, built otherwise; give both the same model, width and "
                              "readout_layer") from None
        assert all(k.startswith("readout.") for k in missing.missing_keys), missing
        tr, va = _neural_sources(neural)
        res = fit_phase(model, TrainData(0, None, tr, va), cfg, "train")
    elif kind in SIM_KINDS:
        model = standardised_on(build_model(**build), cls.images["train"])
        data = TrainData(cls.n_classes, _cls_tensors(cls),
                         sim_pool=sim_pool(sources, kind, upstream_model, seed, cfg.sim_source))
        res = fit_phase(model, data, cfg, "train")
    else:  # mtl_*
        build.update(n_neurons=K)
        model = standardised_on(build_model(**build), cls.images["train"])
        data = mtl_data(sources, upstream_model, shuffle_seed=(10_000 + seed) if kind == "mtl_shuffled" else None)
        res = fit_phase(model, data, cfg, "train")

    # evaluation, attacks and the similarity match run where the model trained (the GPU in a GPU trial:
    # 70 conditions of a full-width VGG on 2 CPU cores would take hours); save_model copies to the CPU
    model.to(resolve_device(cfg.device)).eval()
    save_model(model, build, out / "model.pt")
    metrics = {"clean_accuracy": float("nan")}
    acc_rows, pred_rows, adv_rows = [], [], []
    if res.status == "ok":
        n = preset.eval_images or len(cls.labels["test"])  # the TIN-TC cache holds the first n test images
        if model.has_classifier and kind in CLASSIFIERS:
            metrics["clean_accuracy"], acc_rows, pred_rows = classification_records(
                model, np.asarray(cls.images["test"][:n]), np.asarray(cls.labels["test"][:n]), tintc)
        if model.readout is not None:
            metrics.update(neural_test_metrics(model, neural))
        probe = cls.images["test"][:n] if model.has_classifier else neural.images[neural.test_image_index]
        metrics["readout_alive"] = alive_fraction(model, np.asarray(probe))
        if model.has_classifier and kind in CLASSIFIERS:
            metrics["sim_match"] = similarity_match_on(model, neural, cfg)
            if preset.adv_images > 0:
                from core.evaluate.adversarial import adversarial_records

                adv_rows = adversarial_records(model, np.asarray(cls.images["test"]), np.asarray(cls.labels["test"]),
                                               preset.adv_images, preset.adv_decision_images, preset.adv_steps,
                                               preset.adv_decision_steps, seed=seed)
    run = {
        "run_id": run_id, "kind": kind, "ratio": ratio, "ratio_value": ratio_value(ratio) if ratio else float("nan"),
        "seed": seed, "preset": preset.name,
        "family": "mtl" if kind.startswith("mtl_") else ("similarity" if kind in SIM_KINDS else kind),
        "status": res.status, "error": res.error, "diverged_epoch": res.diverged_epoch,
        # the validation accuracy of the weights evaluated below (cfg.select), and of the last epoch's
        "val_accuracy": res.selected_metric if kind in CLASSIFIERS else float("nan"),
        "val_accuracy_final": res.final_metric if kind in CLASSIFIERS else float("nan"),
        **{k: metrics.get(k, float("nan")) for k in ("clean_accuracy", "fev", "feve", "corr_trial", "corr_avg", "corr_true",
                                                      "sim_match", "readout_alive")},
        "feve_neurons": metrics.get("feve_neurons"),
        "alpha": cfg.sim_alpha if kind in SIM_KINDS else float("nan"),
        "epochs": len(epochs), "train_seconds": sum(r["train_seconds"] for r in epochs),
        "images_per_s": res.images_per_s, "device": res.device, "upstream": upstream_id, "resumed": ",".join(resumed),
        "config": json.dumps(asdict(cfg), sort_keys=True), "data": json.dumps(sources.info, sort_keys=True),
        "created_at": now(), **provenance(),
    }
    (out / "run.json").write_text(json.dumps(run, indent=1, default=float) + "\n")
    key = {"run_id": run_id, "kind": kind, "ratio": ratio, "seed": seed}
    return RunOutput(run, [{**key, **r} for r in epochs], [{**key, **r} for r in acc_rows],
                     [{**key, **r} for r in pred_rows], out, [{**key, **r} for r in adv_rows])
