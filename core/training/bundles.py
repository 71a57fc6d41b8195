"""What each kind trains on, built from the canonical data sets: classification tensors, the neural
trials (a fixed 90/10 split), a predictor's responses to every classification image (the co-trained
kinds' targets), a similarity pool, the Oracle's corruption bank."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.data import ClassificationSet, NeuralSet
from core.errors import ConfigError, DataError
from core.io import atomic_file
from core.models import MultiTaskModel
from core.presets import Preset
from core.training.data import NeuralBatchSource, TrainData, as_u8, pixel_stats
from core.training.inference import predict_rates


@dataclass
class Sources:
    cls: ClassificationSet
    neural: NeuralSet
    info: dict = field(default_factory=dict)   # names and content hashes of the data sets


def world_dir(data_root: str | os.PathLike, world: str, planted: float | None = None) -> Path:
    """Where a synthetic world is written: one folder per world preset and planted value."""
    return Path(data_root) / (f"world-{world}" + (f"-planted{planted:g}" if planted is not None else ""))


def world_truth(planted: float | None, synthetic: bool) -> str:
    """What a run's world says about the answer, for every report's header and controls: a planted
    strength, the default world (unknown), or real data."""
    if not synthetic:
        return "real data: no planted truth"
    if planted is None:
        return "synthetic world, default: the benefit of co-training is unknown (not planted)"
    if planted == 0:
        return ("synthetic world planted at 0, the null: the simulated neurons encode only the fragile class cue, so "
                "their content cannot make a model more robust (a gain of co-training as such is judged against "
                "MTL-Shuffled)")
    return (f"synthetic world planted at {planted:g}: {planted:.0%} of the simulated neurons encode the objects' "
            "shape, which survives the corruptions (a known benefit, not a finding about brains)")


def load_sources(preset: Preset, data_root: str | os.PathLike = "data", tin_root=None, neural_data=None,
                 log: Callable | None = print, planted: float | None = None) -> Sources:
    """Canonical data for a preset: the synthetic world (written once under data_root; `planted` picks a
    world with a planted answer, core.data.planted) or real data."""
    data_root = Path(data_root)
    synthetic = preset.world is not None and tin_root is None and neural_data is None
    if synthetic:
        from core.data.synthetic import world_config, write_world

        world, cfg = world_dir(data_root, preset.world, planted), world_config(preset.world, planted=planted)
        if not (world / "neural" / "manifest.json").is_file():
            if log:
                log(f"writing the synthetic world ({preset.world}" + (f", planted {planted:g}" if planted is not None else "")
                    + f") to {world}")
            try:
                write_world(cfg, world)
            except FileExistsError:
                pass  # another process wrote it first
        _check_world(world, cfg.source())
        cls, neural = ClassificationSet.load(world / "classification"), NeuralSet.load(world / "neural")
    else:
        if tin_root is None or neural_data is None:
            raise ConfigError(f"preset {preset.name} reads real data: give both --tin-root and --neural-data")
        if planted is not None:
            raise ConfigError("--planted picks a synthetic world; real data has no planted truth")
        from core.data import tiny_imagenet

        cls = tiny_imagenet.load_or_build(tin_root, data_root / "cache", verbose=log is not None)
        neural = NeuralSet.load(neural_data)
    if cls.image_shape != tuple(neural.images.shape[1:]):
        raise DataError(f"image sizes differ: classification {cls.image_shape}, neural {neural.images.shape[1:]}")
    # the world's truth travels with every run record (runs.data), not with its run id
    info = {"classification": cls.manifest.get("content_hash", ""), "neural": neural.manifest.get("content_hash", ""),
            "classification_path": str(cls.path), "neural_path": str(neural.path),
            "world": world_truth(planted, synthetic)}
    return Sources(cls, neural, info)


def _check_world(world: Path, expected: dict) -> None:
    """A world folder written by another version of the world (another setting of a WorldConfig field) is
    not used in its place: one clear error naming the field; the folder is left as it is."""
    import json

    for part in ("classification", "neural"):
        f = world / part / "manifest.json"
        try:
            got = json.loads(f.read_text()).get("source", {}).get("config", {})
        except (OSError, ValueError) as e:
            raise DataError(f"{f}: unreadable manifest ({e})") from None
        diff = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        if diff:
            k = diff[0]
            raise DataError(f"{f}: written for another world ({k}={got.get(k, 'unset')!r}, this version builds "
                            f"{k}={expected.get(k, 'unset')!r}); give another --data-root, or remove {world} to "
                            "have it written again")


NEURAL_SPLIT_SEED = 0      # the 90/10 split of neural training trials is the same for every model
VAL_FRACTION = 0.1


def cls_tensors(cls: ClassificationSet) -> dict:
    return {s: (as_u8(cls.images[s]), torch.from_numpy(np.array(cls.labels[s]))) for s in ("train", "val")}


def neural_sources(neural: NeuralSet, truth: bool = False) -> tuple[NeuralBatchSource, NeuralBatchSource]:
    """The recording's training trials, split 90/10 into training and validation trials; with `truth` each
    trial's response replaced by the simulated population's noise-free rates to its image (synthetic world)."""
    idx = np.array(neural.train_image_index)
    if truth:
        if neural.true_rates is None:
            raise ConfigError(f"{neural.path}: no true_rates; the noise-free rates exist for the synthetic world only")
        responses = np.asarray(neural.true_rates, dtype=np.float32)[idx]
    else:
        responses = np.array(neural.train_responses, dtype=np.float32)
    src = NeuralBatchSource(as_u8(neural.images), torch.from_numpy(idx), torch.from_numpy(responses),
                            torch.from_numpy(np.array(neural.train_mask)))
    rng = np.random.default_rng(NEURAL_SPLIT_SEED)
    perm = rng.permutation(len(src))
    n_val = max(1, int(round(VAL_FRACTION * len(src))))
    return src.subset(np.sort(perm[n_val:])), src.subset(np.sort(perm[:n_val]))


def predicted_targets(predictor: MultiTaskModel, images: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return predict_rates(predictor, as_u8(images)).cpu().float()


def predictor_targets(sources: Sources, predictor: MultiTaskModel) -> dict[str, torch.Tensor]:
    """The predictor's responses to every training and validation image of the classification set."""
    return {s: predicted_targets(predictor, sources.cls.images[s]) for s in ("train", "val")}


def surrogate(targets: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The statistics-matched surrogate's targets (Federer et al. 2020): the images' response vectors
    permuted across images as whole rows, one permutation for all neurons, so that every neuron's mean and
    variance and the covariance across neurons are the data's exactly, with no relation to the image shown."""
    g = torch.Generator().manual_seed(seed)
    return {s: t[torch.randperm(len(t), generator=g)] for s, t in targets.items()}


def shuffled(targets: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """MTL-Shuffled's targets: each neuron's responses permuted across images, independently."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s, t in targets.items():
        out[s] = torch.stack([t[torch.randperm(len(t), generator=g), k] for k in range(t.shape[1])], 1)
    return out


def mtl_data(sources: Sources, targets: dict[str, torch.Tensor]) -> TrainData:
    """Classification data plus neural targets for every training (and validation) image."""
    x = cls_tensors(sources.cls)
    srcs = {s: NeuralBatchSource(x[s][0], torch.arange(len(targets[s])), targets[s],
                                 torch.ones(targets[s].shape, dtype=torch.bool)) for s in ("train", "val")}
    return TrainData(sources.cls.n_classes, x, srcs["train"], srcs["val"])


RECORDING_NEURAL_BN = "running"   # how MTL-True's recording batches are normalised (TrainData.neural_bn)


def recording_data(sources: Sources) -> TrainData:
    """Classification data plus the recording's own stimuli with the population's noise-free rates to them
    (synthetic world): co-training on the truth of the recording, no predictor in between. The stimuli are not
    drawn like the classification images (in a planted world most are degraded), so their batches are
    normalised with the classification's running statistics (TrainData.neural_bn), as at evaluation."""
    tr, va = neural_sources(sources.neural, truth=True)
    return TrainData(sources.cls.n_classes, cls_tensors(sources.cls), tr, va, neural_bn=RECORDING_NEURAL_BN)


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
