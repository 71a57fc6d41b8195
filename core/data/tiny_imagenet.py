"""Tiny ImageNet from its standard folder, decoded once to grayscale uint8 and cached canonically.

Layout read: ``ROOT/wnids.txt``, ``ROOT/words.txt`` (optional), ``ROOT/train/<wnid>/images/*.JPEG``,
``ROOT/val/images/*.JPEG`` with ``ROOT/val/val_annotations.txt`` (``file<TAB>wnid<TAB>...``).
The paper's test set is the TIN validation set; 10% of TIN train (per class, seeded) is held out
for validation. Every JPEG mode (RGB, L, CMYK, P, ...) decodes to 8-bit grayscale the way
PIL's ``convert("L")`` does for RGB, which is what the authors' pipeline used.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.data.canonical import ClassificationSet
from core.errors import DataError
from core.io import stable_hash
from core.progress import Progress

IMAGE_SIZE = 64
VAL_FRACTION = 0.1


def decode_gray(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One image file as uint8 (size, size) grayscale; any PIL mode accepted."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "L":
                im = im.convert("RGB").convert("L")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable image ({e.__class__.__name__}: {e}); expected a JPEG") from None
    if arr.shape != (size, size):
        raise DataError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}; expected {size}x{size}")
    return arr


def scan(root: str | os.PathLike) -> dict:
    """List the files of a TIN tree and check its structure; no decoding."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; expected a tiny-imagenet-200 folder")
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise DataError(f"{wnids_file}: missing; expected one WordNet id per line")
    wnids = [w.strip() for w in wnids_file.read_text().splitlines() if w.strip()]
    if not wnids:
        raise DataError(f"{wnids_file}: empty; expected one WordNet id per line")
    if len(set(wnids)) != len(wnids):
        raise DataError(f"{wnids_file}: duplicate WordNet ids")
    words = {}
    if (root / "words.txt").is_file():
        for line in (root / "words.txt").read_text(errors="replace").splitlines():
            if "\t" in line:
                k, v = line.split("\t", 1)
                words[k] = v.split(",")[0].strip()
    train = []
    for k, w in enumerate(wnids):
        d = root / "train" / w / "images"
        if not d.is_dir():
            raise DataError(f"{d}: missing; expected the training images of class {w}")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        if not files:
            raise DataError(f"{d}: no images; expected *.JPEG files of class {w}")
        train += [(p, k) for p in files]
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DataError(f"{ann}: missing; expected lines 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1'")
    index = {w: k for k, w in enumerate(wnids)}
    val = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise DataError(f"{ann}: line {n} has no tab-separated wnid; expected 'file<TAB>wnid...'")
        if parts[1] not in index:
            raise DataError(f"{ann}: line {n}: wnid {parts[1]!r} is not in wnids.txt")
        p = root / "val" / "images" / parts[0]
        if not p.is_file():
            raise DataError(f"{p}: missing; listed in {ann.name} line {n}")
        val.append((p, index[parts[1]]))
    if not val:
        raise DataError(f"{ann}: no entries; expected the validation images")
    return {"root": root, "wnids": wnids, "names": [words.get(w, w) for w in wnids], "train": train, "val": val}


def _fingerprint(listing: dict) -> str:
    files = [(str(p.relative_to(listing["root"])), p.stat().st_size, int(p.stat().st_mtime)) for p, _ in listing["train"] + listing["val"]]
    return stable_hash(files, 16)


def _decode_all(items, progress: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.empty((len(items), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    y = np.empty(len(items), dtype=np.int64)
    bar = Progress(progress, len(items), "images") if progress else None
    step = max(1, len(items) // 200)
    for i, (p, k) in enumerate(items):
        x[i], y[i] = decode_gray(p), k
        if bar and ((i + 1) % step == 0 or i + 1 == len(items)):
            bar.update(i + 1)
    return x, y


def build(root: str | os.PathLike, seed: int = 0, verbose: bool = True) -> ClassificationSet:
    """Decode a TIN tree into a ClassificationSet (train 90% / val 10% per class; test = TIN val)."""
    listing = scan(root)
    xt, yt = _decode_all(listing["train"], "decoding TIN train" if verbose else "")
    xv, yv = _decode_all(listing["val"], "decoding TIN val" if verbose else "")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(yt), dtype=bool)
    for k in range(len(listing["wnids"])):
        idx = np.flatnonzero(yt == k)
        n_val = int(round(VAL_FRACTION * len(idx)))
        is_val[rng.choice(idx, n_val, replace=False)] = True
    images = {"train": xt[~is_val], "val": xt[is_val], "test": xv}
    labels = {"train": yt[~is_val], "val": yt[is_val], "test": yv}
    return ClassificationSet(images, labels, listing["names"])


def load_or_build(root: str | os.PathLike, cache_dir: str | os.PathLike, seed: int = 0, verbose: bool = True) -> ClassificationSet:
    """The cached canonical form of a TIN tree; decoded on first use, keyed by the tree's fingerprint."""
    listing = scan(root)
    key = _fingerprint(listing)
    path = Path(cache_dir) / f"tin-{key}-s{seed}"
    if (path / "manifest.json").is_file():
        return ClassificationSet.load(path)
    ds = build(root, seed, verbose)
    ds.save(path, {"type": "tiny_imagenet", "root": str(Path(root).resolve()), "fingerprint": key,
                   "val_fraction": VAL_FRACTION, "split_seed": seed, "wnids": listing["wnids"]}, overwrite=True)
    return ClassificationSet.load(path)
