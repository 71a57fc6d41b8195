"""Monkey V1 recordings: the authors' per-session pickle layout, converted once into a NeuralSet.

Input layout (as read by the authors' loaders): a folder of session pickles, each a dict with
``subject_id, session_id, training_responses, testing_responses, training_image_ids,
testing_image_ids``, and the stimuli as one ``<image_id>.npy`` each in an image folder.
Responses are either 2-D ``(trials, neurons)`` spike counts, or 3-D ``(neurons, time_bins, trials)``
from which the chosen time bins are summed (paper: 40-160 ms after onset). Test trials repeat
image ids; they are grouped into repeats per image.

Pickle executes code when loaded, so nothing is unpickled unless the caller passes
``trust_pickle=True`` (the CLI's ``--trust-pickle``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.canonical import NeuralSet
from core.errors import DataError
from core.progress import Progress

REQUIRED_KEYS = ("subject_id", "session_id", "training_responses", "testing_responses",
                 "training_image_ids", "testing_image_ids")


def _responses(sess: dict, key: str, where: str, n_trials: int, time_bins: slice | None) -> np.ndarray:
    r = np.asarray(sess[key])
    if not np.issubdtype(r.dtype, np.number):
        raise DataError(f"{where}: field '{key}' has dtype {r.dtype}; expected numeric spike counts")
    r = r.astype(np.float32)
    if r.ndim == 3:  # (neurons, time_bins, trials) -> (trials, neurons), summing the chosen bins
        r = r[:, time_bins or slice(None), :].sum(axis=1).T
    elif r.ndim != 2:
        raise DataError(f"{where}: field '{key}' has shape {r.shape}; expected (trials, neurons) or (neurons, time_bins, trials)")
    if r.shape[0] != n_trials:
        raise DataError(f"{where}: field '{key}' has {r.shape[0]} trials but the image ids list {n_trials}; expected equal counts")
    if not np.isfinite(r).all():
        raise DataError(f"{where}: field '{key}' has {int((~np.isfinite(r)).sum())} NaN or infinite values; expected finite counts")
    if (r < 0).any():
        raise DataError(f"{where}: field '{key}' has {int((r < 0).sum())} negative values; expected counts >= 0")
    return r


def _load_stimulus(path: Path, crop: int, size: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing stimulus image; expected one .npy per image id")
    try:
        img = np.load(path, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path}: not a plain numpy array ({e})") from None
    if img.ndim == 3 and img.shape[-1] in (1, 3):
        img = img.mean(axis=-1) if img.shape[-1] == 3 else img[..., 0]
    if img.ndim != 2:
        raise DataError(f"{path}: image shape {img.shape}; expected (H, W) grayscale")
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if crop:
        img = img[crop:-crop, crop:-crop]
    if img.shape != (size, size):
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    return img


def read_sessions(folder: str | os.PathLike, trust_pickle: bool = False) -> list[tuple[Path, dict]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such directory; expected a folder of session pickles")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".pkl", ".pickle"))
    if not files:
        raise DataError(f"{folder}: no *.pkl session files")
    if not trust_pickle:
        raise DataError(f"{folder}: refusing to unpickle {len(files)} file(s) without --trust-pickle (pickle can run arbitrary code)")
    sessions = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                sess = pickle.load(fh)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a data error
            raise DataError(f"{f}: cannot unpickle ({e.__class__.__name__}: {e})") from None
        if not isinstance(sess, dict):
            raise DataError(f"{f}: holds a {type(sess).__name__}; expected a dict of session fields")
        missing = [k for k in REQUIRED_KEYS if k not in sess]
        if missing:
            raise DataError(f"{f}: missing key '{missing[0]}'; expected keys {', '.join(REQUIRED_KEYS)}")
        sessions.append((f, sess))
    return sessions


def convert(
    folder: str | os.PathLike,
    images_dir: str | os.PathLike | None = None,
    trust_pickle: bool = False,
    time_bins: slice | None = None,
    image_id_offset: int = 0,
    crop: int = 0,
    size: int = 64,
    verbose: bool = True,
) -> NeuralSet:
    """Read the authors' session pickles and stimuli into one NeuralSet (not yet saved)."""
    sessions = read_sessions(folder, trust_pickle)
    images_dir = Path(images_dir) if images_dir else Path(folder) / "images"
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: no such directory; expected the stimuli as <image_id>.npy")

    parsed, all_ids = [], []
    for f, s in sessions:
        tr_ids = np.asarray(s["training_image_ids"]).reshape(-1).astype(np.int64) - image_id_offset
        te_ids = np.asarray(s["testing_image_ids"]).reshape(-1).astype(np.int64) - image_id_offset
        tr = _responses(s, "training_responses", str(f), len(tr_ids), time_bins)
        te = _responses(s, "testing_responses", str(f), len(te_ids), time_bins)
        if tr.shape[1] != te.shape[1]:
            raise DataError(f"{f}: training_responses has {tr.shape[1]} neurons but testing_responses {te.shape[1]}; expected equal")
        parsed.append((f, s, tr_ids, te_ids, tr, te))
        all_ids += [tr_ids, te_ids]
    pool_ids = np.unique(np.concatenate(all_ids))
    lookup = {int(i): n for n, i in enumerate(pool_ids)}
    pool = np.empty((len(pool_ids), size, size), dtype=np.uint8)
    bar = Progress("stimuli", len(pool_ids), "images") if verbose and len(pool_ids) >= 1000 else None
    for n, i in enumerate(pool_ids):
        pool[n] = _load_stimulus(images_dir / f"{int(i) + image_id_offset}.npy", crop, size)
        if bar and ((n + 1) % 1000 == 0 or n + 1 == len(pool_ids)):
            bar.update(n + 1)

    K = sum(p[4].shape[1] for p in parsed)
    test_pool = np.unique(np.concatenate([p[3] for p in parsed]))
    test_row = {int(i): m for m, i in enumerate(test_pool)}
    R = max(int(np.unique(p[3], return_counts=True)[1].max()) for p in parsed)
    T = sum(len(p[2]) for p in parsed)
    train_resp = np.zeros((T, K), np.float32)
    train_mask = np.zeros((T, K), bool)
    train_idx = np.empty(T, np.int64)
    test_resp = np.zeros((len(test_pool), R, K), np.float32)
    test_mask = np.zeros((len(test_pool), R, K), bool)
    neuron_session = np.empty(K, np.int64)
    t0 = k0 = 0
    for f, s, tr_ids, te_ids, tr, te in parsed:
        k1, t1 = k0 + tr.shape[1], t0 + len(tr_ids)
        neuron_session[k0:k1] = int(s["session_id"])
        train_idx[t0:t1] = [lookup[int(i)] for i in tr_ids]
        train_resp[t0:t1, k0:k1] = tr
        train_mask[t0:t1, k0:k1] = True
        seen: dict[int, int] = {}
        for trial, i in enumerate(te_ids):
            m, r = test_row[int(i)], seen.get(int(i), 0)
            seen[int(i)] = r + 1
            test_resp[m, r, k0:k1] = te[trial]
            test_mask[m, r, k0:k1] = True
        t0, k0 = t1, k1
    arrays = {
        "images": pool,
        "neuron_ids": np.arange(K, dtype=np.int64),
        "neuron_session": neuron_session,
        "train_image_index": train_idx,
        "train_responses": train_resp,
        "train_mask": train_mask,
        "test_image_index": np.array([lookup[int(i)] for i in test_pool], np.int64),
        "test_responses": test_resp,
        "test_mask": test_mask,
    }
    ns = NeuralSet(arrays)
    ns.validate(str(folder))
    ns.manifest = {"subjects": sorted({str(p[1]["subject_id"]) for p in parsed})}
    return ns
