"""What a reconstruction reads from a sweep: which finished models (one per kind by default), their
weights (from local storage or a URI), and the test images they are asked to reconstruct (undistorted,
or with Gaussian noise at severity 2, byte-identical to the TIN-TC cache)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from core.errors import DataError, UserError

RECON_KINDS = ("baseline", "mtl_monkey", "mtl_shuffled", "oracle", "mtl_oracle", "sim_monkey", "sim_shuffled", "sim_pixel")
TARGET_CORRUPTION, TARGET_SEVERITY = "gaussian_noise", 2
TINTC_SEED = 0  # the base seed of the TIN-TC cache (core.data.corruptions.condition_seed)


def storage_of(lake_root: str) -> str:
    return lake_root[: -len("/lake")] if lake_root.rstrip("/").endswith("/lake") else lake_root.rsplit("/", 1)[0]


def select_models(runs, models: list[str] | None, ratio: str | None, seed: int | None, alpha: float | None = None):
    """One finished classifier per requested kind (or the given run ids), as a list of row dicts."""
    import polars as pl

    from core.training.cycler import ratio_value

    ok = runs.filter(pl.col("status") == "ok")
    if models:
        by_id = {r["run_id"]: r for r in ok.iter_rows(named=True)}
        chosen, kinds = [], []
        for m in models:
            if m in by_id:
                chosen.append(by_id[m])
            elif m in RECON_KINDS:
                kinds.append(m)
            else:
                raise UserError(f"--models {m}: neither a model kind ({', '.join(RECON_KINDS)}) nor a finished run id "
                                "in this sweep")
    else:
        chosen, kinds = [], [k for k in RECON_KINDS if k in set(ok["kind"].to_list())]
    for k in kinds:
        rows = ok.filter(pl.col("kind") == k)
        if seed is not None:
            rows = rows.filter(pl.col("seed") == seed)
        if k.startswith("mtl_"):
            ratios = sorted(set(rows["ratio"].to_list()), key=lambda r: (abs(math.log(ratio_value(r))), ratio_value(r)))
            want = ratio or (ratios[0] if ratios else None)   # default: the ratio closest to 1:1
            rows = rows.filter(pl.col("ratio") == want)
        elif k.startswith("sim_"):
            alphas = sorted(a for a in set(rows["alpha"].to_list()) if a is not None and a == a)
            want_a = alpha if alpha is not None else (alphas[-1] if alphas else None)   # default: the largest α
            rows = rows.filter(pl.col("alpha") == want_a)
        if rows.is_empty():
            raise UserError(f"--models {k}: no finished {k} model" + (f" at ratio {ratio}" if ratio and k.startswith("mtl_") else "")
                            + (f" with seed {seed}" if seed is not None else "") + " in this sweep")
        chosen.append(rows.sort("seed").row(0, named=True))
    if not chosen:
        raise DataError("the sweep holds no finished classifier to reconstruct from")
    return chosen


def fetch_model(storage: str, run_id: str, tmp: Path) -> Path:
    """The model folder of a run: local path as is, a URI copied into tmp."""
    import pyarrow.fs as pafs

    from core.io import join_uri
    from core.results.lake import _fs

    src = join_uri(storage, "models", run_id)
    fs, path = _fs(src)
    if isinstance(fs, pafs.LocalFileSystem):
        if not Path(path, "model.pt").is_file():
            raise DataError(f"{path}/model.pt: missing; the lake records run {run_id} but its model is not in the storage")
        return Path(path)
    dest = tmp / run_id
    dest.mkdir(parents=True, exist_ok=True)
    try:
        pafs.copy_files(path, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    except (OSError, FileNotFoundError) as e:
        raise DataError(f"{src}: cannot copy the model ({e})") from None
    return dest


def load_images(run: dict, data_root, tin_root, neural_data, n: int, log):
    """(clean uint8 (n, H, W), the preset name, the world config or None) for a run's data."""
    from core.data.canonical import ClassificationSet
    from core.presets import get_preset

    preset = get_preset(run["preset"])
    data = json.loads(run.get("data") or "{}")
    path = data.get("classification_path")
    if path and Path(path, "manifest.json").is_file():
        cls = ClassificationSet.load(path)
    else:
        from core.training.bundles import load_sources

        cls = load_sources(preset, data_root, tin_root, neural_data, log=log).cls
    test = np.asarray(cls.images["test"])
    if n > len(test):
        raise UserError(f"--images {n}: the test split holds {len(test)} images")
    world = None
    if preset.world is not None and tin_root is None:
        from core.data.synthetic import world_config

        world = world_config(preset.world)
    return test[:n], preset.name, world


def noisy_targets(clean: np.ndarray) -> np.ndarray:
    from core.data.corruptions import condition_seed, corrupt_gray

    return np.stack([corrupt_gray(img, TARGET_CORRUPTION, TARGET_SEVERITY,
                                  condition_seed(TINTC_SEED, i, TARGET_CORRUPTION, TARGET_SEVERITY))
                     for i, img in enumerate(clean)])


# ----------------------------------------------------------------------------- the command
