"""The published Tiny-ImageNet-C (Hendrycks & Dietterich 2019) as a TIN-TC source.

Layout read: ``ROOT/<corruption>/<severity>/<wnid>/<file>.JPEG``, ``<file>`` the name of the Tiny
ImageNet val image it was made from (``val_123.JPEG``), for the project's 14 corruptions (the
published glass_blur is not read) and severities 1..5. For the first N test images (TIN val, in
the order of ``val/val_annotations.txt``, which is the project's test set) every condition's JPEGs
are decoded to 64x64 grayscale exactly as TIN itself is (`tiny_imagenet.decode_gray`) and written
as a cache in the format `corruptions.load_tintc` reads: one ``(N, 64, 64)`` uint8 ``.npy`` per
condition and a ``manifest.json`` (a sha256 per file, the source type ``published`` and the
tree's fingerprint). The cache is built atomically and reused only when its manifest and files
verify; anything else is rebuilt.

It is another benchmark than the paper's TIN-TC (docs/real-data.md compares the two): its corruption parameters are
tuned for 64-pixel images, every image was saved as JPEG quality 85 (so every condition carries JPEG
artefacts, and jpeg_compression is compressed twice), and it corrupted the colour image, where TIN-TC
corrupts the grey image stacked to three channels. Scores on it are therefore not comparable with
TIN-TC scores: a sweep with --tintc-root is its own sweep (<preset>-published), the analysis refuses a
sweep that mixes the two, and the report says which set was used.

Every file is looked up before anything is decoded, so a missing condition, a missing image or a
wrong-class split (an image under another class folder than val_annotations.txt gives it: the
published frost split is known to have some) is reported at once, one line naming the path.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.corruptions import _POOL_CONTEXT, CONDITIONS, CORRUPTIONS, MANIFEST_VERSION, _file, check_condition_files
from core.data.tiny_imagenet import IMAGE_SIZE, decode_gray, scan
from core.errors import DataError
from core.io import atomic_dir, sha256_file, stable_hash

SOURCE = "published"           # manifest source type: the published Tiny-ImageNet-C JPEGs
LAYOUT = "<corruption>/<severity>/<wnid>/<file>.JPEG"


def val_items(tin_root: str | os.PathLike, n: int = 0) -> list[tuple[str, str]]:
    """(file name, wnid) of the first `n` TIN val images (all with 0), in the project's test order."""
    listing = scan(tin_root)
    return [(p.name, listing["wnids"][k]) for p, k in listing["val"][: n or None]]


def scan_published(root: str | os.PathLike, items: list[tuple[str, str]]) -> tuple[list[list[Path] | None], str, list[str]]:
    """Find every condition's copy of `items` under `root` without decoding anything.

    Returns the paths per condition (None for a condition with problems), the tree's fingerprint
    (relative paths, sizes and mtimes of those files) and the problems, one line each."""
    root = Path(root)
    if not root.is_dir():
        return [None] * len(CONDITIONS), "", [f"{root}: no such directory; expected the published Tiny-ImageNet-C "
                                              f"folder ({LAYOUT})"]
    paths, stats, problems = [], [], []
    for c, s in CONDITIONS:
        d = root / c / str(s)
        if not d.is_dir():
            problems.append(f"{d}: missing; expected the published condition {c} severity {s}")
            paths.append(None)
            continue
        found, missing, wrong, where = [], [], [], None
        for name, wnid in items:
            p = d / wnid / name
            try:
                st = p.stat()
            except OSError:
                if where is None:   # where each file is: listed once, only for a condition with a miss
                    where = {f.name: sub.name for sub in d.iterdir() if sub.is_dir() for f in sub.iterdir()}
                (wrong if name in where else missing).append((name, wnid))
                continue
            found.append(p)
            stats.append((f"{c}/{s}/{wnid}/{name}", st.st_size, int(st.st_mtime)))
        for bad, say in ((wrong, _wrong_class), (missing, _missing_image)):
            if bad:
                more = f" ({len(bad) - 1} more of the {len(items)} images of this condition likewise)" if len(bad) > 1 else ""
                problems.append(say(d, c, s, *bad[0], where) + more)
        paths.append(None if wrong or missing else found)
    return paths, stable_hash(stats, 16), problems


def _wrong_class(d: Path, c: str, s: int, name: str, wnid: str, where: dict) -> str:
    return (f"{d / where[name] / name}: condition {c} severity {s}: {name} is in class folder {where[name]}, but "
            f"val_annotations.txt gives class {wnid}; expected {d / wnid / name} (a wrong-class split)")


def _missing_image(d: Path, c: str, s: int, name: str, wnid: str, where: dict) -> str:
    return (f"{d / wnid / name}: missing; expected the published {c} severity {s} copy of the Tiny ImageNet "
            f"val image {name} (class {wnid})")


def first_problem(problems: list[str]) -> DataError:
    """The error a loader raises: the first problem, and how many more there are."""
    more = f" (and {len(problems) - 1} more problems: `python -m core.data check` lists them)" if len(problems) > 1 else ""
    return DataError(problems[0] + more)


def _decode_job(job) -> list[tuple[int, np.ndarray | None, dict, str | None]]:
    """Worker: decode the files of some conditions; per condition (index, array or None, modes, error)."""
    out = []
    for j, files, count_modes in job:
        x = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        modes: Counter = Counter()
        try:
            for i, p in enumerate(files):
                if count_modes:
                    with Image.open(p) as im:
                        modes[im.mode] += 1
                x[i] = decode_gray(Path(p))
        except (DataError, OSError) as e:
            out.append((j, None, dict(modes), str(e) if isinstance(e, DataError) else f"{p}: unreadable ({e})"))
            continue
        out.append((j, x, dict(modes), None))
    return out


def decode_conditions(paths: list[list[Path] | None], count_modes: bool = False, map_fn=None, workers: int | None = None):
    """Decode every condition that has paths; yields (condition index, array or None, modes, error).

    Conditions are grouped into jobs of about 4,096 images; `map_fn(fn, jobs)` runs them (the sweep passes
    a Ray-task map); by default a process pool, or this process for small trees."""
    todo = [(j, [str(p) for p in ps], count_modes) for j, ps in enumerate(paths) if ps is not None]
    per_job = max(1, 4096 // max(1, max((len(t[1]) for t in todo), default=1)))
    jobs = [todo[a:a + per_job] for a in range(0, len(todo), per_job)]
    pool = None
    if map_fn is None:
        workers = workers or os.cpu_count() or 1
        if workers == 1 or len(jobs) == 1:
            map_fn = map
        else:
            pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=_POOL_CONTEXT)
            map_fn = pool.map
    try:
        for result in map_fn(_decode_job, jobs):
            yield from result
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def expected_manifest(fingerprint: str, n_images: int) -> dict:
    return {"kind": "tintc", "manifest_version": MANIFEST_VERSION,
            "source": {"type": SOURCE, "name": "Tiny-ImageNet-C", "layout": LAYOUT, "fingerprint": fingerprint},
            "n_images": n_images, "image_shape": [IMAGE_SIZE, IMAGE_SIZE],
            "conditions": [[c, s, CORRUPTIONS[c]] for c, s in CONDITIONS]}


def check_cache(path: str | os.PathLike, fingerprint: str, n_images: int, verify_hashes: bool = True) -> str | None:
    """None if the cache at `path` is complete and was built from this tree; otherwise why not."""
    path = Path(path)
    try:
        m = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        return "no manifest"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "manifest is not valid JSON"
    for k, v in expected_manifest(fingerprint, n_images).items():
        if m.get(k) != v:
            return f"manifest field {k!r} differs"
    return check_condition_files(path, m.get("files") or {}, verify_hashes)


def cache_folder(data_root: str | os.PathLike, fingerprint: str, n_images: int) -> Path:
    return Path(data_root) / f"tintc-published-{fingerprint}-n{n_images}"


def build_cache(root: str | os.PathLike, paths: list[list[Path]], fingerprint: str, out: str | os.PathLike,
                map_fn=None, workers: int | None = None) -> Path:
    """Decode every condition into `out` (atomically: a failure leaves nothing behind)."""
    out, t0 = Path(out), time.perf_counter()
    with atomic_dir(out, overwrite=True) as tmp:
        files = {}
        for j, x, _, err in decode_conditions(paths, map_fn=map_fn, workers=workers):
            if err:
                raise DataError(err)
            f = tmp / _file(*CONDITIONS[j])
            np.save(f, x)
            files[f.name] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
        manifest = {**expected_manifest(fingerprint, len(paths[0])), "root": str(Path(root).resolve()), "files": files,
                    "content_hash": stable_hash({k: v["sha256"] for k, v in files.items()}, 32),
                    "build_seconds": time.perf_counter() - t0}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def ensure_published(tin_root: str | os.PathLike, root: str | os.PathLike, n_images: int, data_root: str | os.PathLike,
                     map_fn=None, workers: int | None = None, verify_hashes: bool = True, log=print) -> Path:
    """The cache of the published conditions of the first `n_images` test images (0: all), under
    `data_root`; reused when it verifies, else (re)built. Raises DataError on the first problem."""
    items = val_items(tin_root, n_images)
    paths, fingerprint, problems = scan_published(root, items)
    if problems:
        raise first_problem(problems)
    out = cache_folder(data_root, fingerprint, len(items))
    why = check_cache(out, fingerprint, len(items), verify_hashes)
    if why is not None:
        if log:
            log(f"published TIN-TC: decoding {len(items)} test images x {len(CONDITIONS)} conditions from {root} into {out}"
                + (f" (the cache there is unusable: {why})" if out.exists() else ""))
        build_cache(root, paths, fingerprint, out, map_fn, workers)
    return out


def identity(cache: str | os.PathLike) -> dict:
    """What a published cache adds to a classifier's run identity: its content hash (the decoded
    arrays, so the same files give the same run ids on any machine). Empty for a generated cache."""
    m = json.loads((Path(cache) / "manifest.json").read_text())
    if (m.get("source") or {}).get("type") != SOURCE:
        return {}
    return {"tintc": f"{SOURCE}-{m['content_hash'][:16]}"}
