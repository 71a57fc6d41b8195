"""The one on-disk form of every data set, whatever its source.

A data set is a directory of `.npy` arrays (read memory-mapped, never with pickle) and a
`manifest.json` with the source, sizes and a content hash. Two kinds exist:

Classification set (`kind = "classification"`)::

    {train,val,test}_images.npy   uint8  (N, H, W)   grayscale
    {train,val,test}_labels.npy   int64  (N,)        class index into manifest["classes"]

Neural set (`kind = "neural"`); trials point into one image pool so that sessions may share
images, and a mask says which neurons a trial recorded (each session records its own neurons)::

    images.npy              uint8   (P, H, W)    the stimulus pool
    neuron_ids.npy          int64   (K,)
    neuron_session.npy      int64   (K,)         session of each neuron
    train_image_index.npy   int64   (T,)         pool index of each training trial (1 trial/image)
    train_responses.npy     float32 (T, K)       spike counts
    train_mask.npy          bool    (T, K)       neuron recorded on this trial
    test_image_index.npy    int64   (M,)         pool index of each test image
    test_responses.npy      float32 (M, R, K)    spike counts, R = max repeats
    test_mask.npy           bool    (M, R, K)    repeat r of neuron k exists
    true_rates.npy          float32 (P, K)       optional: noise-free rates (synthetic world only)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import DataError
from core.io import atomic_dir, sha256_file, stable_hash

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")

CLASSIFICATION_FILES = {f"{s}_{a}" for s in SPLITS for a in ("images", "labels")}
NEURAL_REQUIRED = (
    "images",
    "neuron_ids",
    "neuron_session",
    "train_image_index",
    "train_responses",
    "train_mask",
    "test_image_index",
    "test_responses",
    "test_mask",
)
NEURAL_OPTIONAL = ("true_rates", "cls_true_rates_train", "cls_true_rates_val", "cls_true_rates_test")


def _load(path: Path, name: str, mmap: bool = True) -> np.ndarray:
    f = path / f"{name}.npy"
    if not f.is_file():
        raise DataError(f"{f}: missing; expected array '{name}' of a {path.name} data set")
    try:
        return np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{f}: not a plain numpy array ({e}); expected a pickle-free .npy") from None


def _read_manifest(path: Path, kind: str) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such data set directory")
    mf = path / "manifest.json"
    if not mf.is_file():
        raise DataError(f"{mf}: missing; not a prepared data set (run `python -m core.data ...` first)")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{mf}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if manifest.get("kind") != kind:
        raise DataError(f"{mf}: field 'kind' is {manifest.get('kind')!r}; expected {kind!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{mf}: field 'format_version' is {manifest.get('format_version')!r}; expected {FORMAT_VERSION}"
        )
    return manifest


def _finish_manifest(tmp: Path, manifest: dict, names: list[str]) -> dict:
    files = {n: sha256_file(tmp / f"{n}.npy") for n in sorted(names)}
    manifest = dict(manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["files"] = files
    manifest["content_hash"] = stable_hash(files, 32)
    manifest.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# --------------------------------------------------------------------------- classification


@dataclass
class ClassificationSet:
    """Grayscale uint8 images and int labels for train/val/test, usually memory-mapped."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    classes: list[str]
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images["train"].shape[1:])

    def summary(self) -> str:
        sizes = ", ".join(f"{s} {len(self.labels[s])}" for s in SPLITS)
        h, w = self.image_shape
        return f"{self.n_classes} classes, {h}x{w} grayscale; images: {sizes}"

    def validate(self, where: str = "") -> None:
        where = where or str(self.path or "classification set")
        for s in SPLITS:
            x, y = self.images[s], self.labels[s]
            if x.dtype != np.uint8 or x.ndim != 3:
                raise DataError(f"{where}: {s}_images has dtype {x.dtype} shape {x.shape}; expected uint8 (N, H, W)")
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                raise DataError(f"{where}: {s}_labels has dtype {y.dtype} shape {y.shape}; expected int (N,)")
            if len(x) != len(y):
                raise DataError(f"{where}: {s}_images has {len(x)} images but {s}_labels has {len(y)} labels")
            if x.shape[1:] != self.images["train"].shape[1:]:
                raise DataError(f"{where}: {s}_images are {x.shape[1:]}; expected {self.images['train'].shape[1:]} like train")
            if len(y) and (y.min() < 0 or y.max() >= self.n_classes):
                raise DataError(f"{where}: {s}_labels outside [0, {self.n_classes}); found {int(y.min())}..{int(y.max())}")
        if len(self.labels["train"]) == 0:
            raise DataError(f"{where}: train split is empty; expected at least one image")

    def save(self, path: str | os.PathLike, source: dict, overwrite: bool = False) -> dict:
        self.validate(str(path))
        with atomic_dir(path, overwrite=overwrite) as tmp:
            for s in SPLITS:
                np.save(tmp / f"{s}_images.npy", np.ascontiguousarray(self.images[s], dtype=np.uint8))
                np.save(tmp / f"{s}_labels.npy", np.asarray(self.labels[s], dtype=np.int64))
            h, w = self.image_shape
            self.manifest = _finish_manifest(
                tmp,
                {
                    "kind": "classification",
                    "source": source,
                    "classes": list(self.classes),
                    "sizes": {s: int(len(self.labels[s])) for s in SPLITS},
                    "image_shape": [h, w],
                },
                sorted(CLASSIFICATION_FILES),
            )
        self.path = Path(path)
        return self.manifest

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> "ClassificationSet":
        path = Path(path)
        manifest = _read_manifest(path, "classification")
        images = {s: _load(path, f"{s}_images", mmap) for s in SPLITS}
        labels = {s: _load(path, f"{s}_labels", mmap) for s in SPLITS}
        classes = manifest.get("classes")
        if not isinstance(classes, list) or not classes:
            raise DataError(f"{path / 'manifest.json'}: field 'classes' missing or empty; expected a list of class names")
        ds = cls(images, labels, classes, manifest, path)
        ds.validate(str(path))
        return ds


# --------------------------------------------------------------------------- neural


@dataclass
class NeuralSet:
    """Neural recordings (or a simulation) in the project's pickle-free layout; see module doc."""

    arrays: dict[str, np.ndarray]
    manifest: dict = field(default_factory=dict)
    path: Path | None = None

    def __getattr__(self, name):
        arrays = self.__dict__.get("arrays", {})
        if name in arrays:
            return arrays[name]
        if name in NEURAL_OPTIONAL:
            return None
        raise AttributeError(name)

    @property
    def n_neurons(self) -> int:
        return int(self.arrays["neuron_ids"].shape[0])

    @property
    def sessions(self) -> np.ndarray:
        return np.unique(np.asarray(self.arrays["neuron_session"]))

    def repeats(self) -> np.ndarray:
        """Number of repeats per test image (max over its neurons)."""
        return np.asarray(self.arrays["test_mask"]).any(axis=2).sum(axis=1)

    def summary(self) -> str:
        a = self.arrays
        reps = self.repeats()
        h, w = a["images"].shape[1:]
        return (
            f"{self.n_neurons} neurons in {len(self.sessions)} sessions; "
            f"{len(a['train_image_index'])} training trials, {len(a['test_image_index'])} test images "
            f"x {int(reps.min()) if len(reps) else 0}-{int(reps.max()) if len(reps) else 0} repeats; "
            f"{len(a['images'])} {h}x{w} stimuli"
        )

    def validate(self, where: str = "") -> None:
        where = where or str(self.path or "neural set")
        a = self.arrays
        missing = [n for n in NEURAL_REQUIRED if n not in a]
        if missing:
            raise DataError(f"{where}: missing field '{missing[0]}'")

        def bad(name, what):
            raise DataError(f"{where}: {name}: {what}")

        P = a["images"].shape[0]
        K = a["neuron_ids"].shape[0]
        if a["images"].dtype != np.uint8 or a["images"].ndim != 3:
            bad("images", f"dtype {a['images'].dtype} shape {a['images'].shape}; expected uint8 (P, H, W)")
        if a["neuron_session"].shape != (K,):
            bad("neuron_session", f"shape {a['neuron_session'].shape}; expected ({K},) like neuron_ids")
        T = a["train_image_index"].shape[0]
        M = a["test_image_index"].shape[0]
        for name, shape in (
            ("train_responses", (T, K)),
            ("train_mask", (T, K)),
        ):
            if a[name].shape != shape:
                bad(name, f"shape {a[name].shape}; expected {shape} (trials x neurons) to match train_image_index and neuron_ids")
        if a["test_responses"].ndim != 3 or a["test_responses"].shape[0] != M or a["test_responses"].shape[2] != K:
            bad("test_responses", f"shape {a['test_responses'].shape}; expected ({M}, repeats, {K})")
        if a["test_mask"].shape != a["test_responses"].shape:
            bad("test_mask", f"shape {a['test_mask'].shape}; expected {a['test_responses'].shape} like test_responses")
        for name in ("train_mask", "test_mask"):
            if a[name].dtype != np.bool_:
                bad(name, f"dtype {a[name].dtype}; expected bool")
        for name in ("train_image_index", "test_image_index"):
            idx = np.asarray(a[name])
            if len(idx) and (idx.min() < 0 or idx.max() >= P):
                bad(name, f"values {int(idx.min())}..{int(idx.max())} outside the {P} pool images")
        for name in ("train_responses", "test_responses"):
            r = np.asarray(a[name])
            n_bad = int((~np.isfinite(r)).sum())
            if n_bad:
                bad(name, f"{n_bad} NaN or infinite values; expected finite spike counts")
            if r.size and r.min() < 0:
                bad(name, f"{int((r < 0).sum())} negative values (min {float(r.min()):g}); expected counts >= 0")
        if T == 0:
            bad("train_responses", "no training trials")
        if M and (np.asarray(a["test_mask"]).sum(axis=1) < 2).all():
            bad("test_mask", "no neuron has 2 or more repeats of any test image; expected repeated test trials")
        if "true_rates" in a and a["true_rates"].shape != (P, K):
            bad("true_rates", f"shape {a['true_rates'].shape}; expected ({P}, {K})")

    def save(
        self,
        path: str | os.PathLike,
        source: dict,
        overwrite: bool = False,
        extra: dict | None = None,
        extra_arrays: dict[str, np.ndarray] | None = None,
    ) -> dict:
        """Write atomically; `extra_arrays` (e.g. simulation parameters) are stored and hashed alongside."""
        self.validate(str(path))
        extra_arrays = extra_arrays or {}
        names = [n for n in NEURAL_REQUIRED + NEURAL_OPTIONAL if n in self.arrays] + sorted(extra_arrays)
        with atomic_dir(path, overwrite=overwrite) as tmp:
            for n in names:
                np.save(tmp / f"{n}.npy", np.ascontiguousarray(extra_arrays.get(n, self.arrays.get(n))))
            h, w = self.arrays["images"].shape[1:]
            self.manifest = _finish_manifest(
                tmp,
                {
                    "kind": "neural",
                    "source": source,
                    "n_neurons": self.n_neurons,
                    "sessions": [int(s) for s in self.sessions],
                    "sizes": {
                        "pool_images": int(self.arrays["images"].shape[0]),
                        "train_trials": int(len(self.arrays["train_image_index"])),
                        "test_images": int(len(self.arrays["test_image_index"])),
                        "max_repeats": int(self.arrays["test_responses"].shape[1]),
                    },
                    "image_shape": [h, w],
                    **(extra or {}),
                },
                names,
            )
        self.path = Path(path)
        return self.manifest

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> "NeuralSet":
        path = Path(path)
        manifest = _read_manifest(path, "neural")
        arrays = {n: _load(path, n, mmap) for n in NEURAL_REQUIRED}
        for n in NEURAL_OPTIONAL:
            if (path / f"{n}.npy").is_file():
                arrays[n] = _load(path, n, mmap)
        ds = cls(arrays, manifest, path)
        ds.validate(str(path))
        return ds
