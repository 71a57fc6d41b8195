"""TIN-TC: 14 ImageNet-C corruptions x 5 severities, applied the authors' way, seeded, built once.

Order of operations (as in the authors' pipeline): the grayscale uint8 image is stacked to RGB,
corrupted by the `imagecorruptions` package (HxWx3 uint8 in and out), then converted back to
grayscale with PIL's "L". Every (image, corruption, severity) gets its own seed: NumPy's global
generator is seeded before each call, and impulse noise (which draws from its own skimage
generator) receives the seed explicitly, so a rebuild is byte-identical.

The cache is a directory with one ``(N, H, W)`` uint8 file per condition and a manifest (package
version, seeds, source content hash, a sha256 per file); it is written under a temporary name and
renamed, and a cache whose manifest or files do not match is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from core.errors import DataError
from core.io import atomic_dir, sha256_file, stable_hash
from core.progress import Progress

# worker processes come from a fork server (a clean process started for the purpose), not from a fork of
# this one: a fork of a process that already runs Ray's or torch's threads (a driver, a test session) can
# deadlock in the child (seen: a TIN-TC build hung after an in-process Ray cluster had run in the same
# pytest process). Spawning would be as safe and 2x slower to start in the tests.
_POOL_CONTEXT = multiprocessing.get_context("forkserver")

# name -> category, in the paper's order (glass blur dropped: too slow)
CORRUPTIONS: dict[str, str] = {
    "gaussian_noise": "noise", "shot_noise": "noise", "impulse_noise": "noise",
    "defocus_blur": "blur", "motion_blur": "blur", "zoom_blur": "blur",
    "snow": "weather", "frost": "weather", "fog": "weather", "brightness": "weather",
    "contrast": "digital", "elastic_transform": "digital", "pixelate": "digital", "jpeg_compression": "digital",
}
CORRUPTIONS_LIST = list(CORRUPTIONS)
CATEGORIES = ("noise", "blur", "weather", "digital")
SEVERITIES = (1, 2, 3, 4, 5)
CONDITIONS = [(c, s) for c in CORRUPTIONS for s in SEVERITIES]
MANIFEST_VERSION = 1


def condition_seed(base_seed: int, image_index: int, corruption: str, severity: int) -> int:
    """A 32-bit seed unique to (base seed, image, corruption, severity)."""
    h = hashlib.blake2b(f"{base_seed}/{image_index}/{corruption}/{severity}".encode(), digest_size=4)
    return int.from_bytes(h.digest(), "little")


def corrupt_gray(image: np.ndarray, corruption: str, severity: int, seed: int | tuple[int, ...]) -> np.ndarray:
    """One grayscale uint8 (H, W) image -> corrupted grayscale uint8 (H, W).

    `seed`: an int below 2**32 (TIN-TC's conditions) or a tuple of such words (the Oracle's training
    draws). A tuple seeds numpy through its key-array route and skimage's generator with an integer
    of 2**32 or more, so no training draw ever takes a test condition's random stream."""
    from imagecorruptions import corrupt

    if corruption not in CORRUPTIONS:
        raise DataError(f"corruption {corruption!r}; expected one of {', '.join(CORRUPTIONS)}")
    rgb = np.stack([image] * 3, axis=-1)
    if isinstance(seed, tuple):
        np.random.seed(np.array(seed, dtype=np.uint32))
        big = 1
        for w in seed:
            big = (big << 32) | int(w)   # the leading 1 keeps it >= 2**32 (no scalar test seed is)
        kwargs = {"seed": big} if corruption == "impulse_noise" else {}
    else:
        np.random.seed(seed)
        kwargs = {"seed": seed} if corruption == "impulse_noise" else {}
    out = corrupt(rgb, severity=severity, corruption_name=corruption, **kwargs)
    return np.asarray(Image.fromarray(out).convert("L"))


def _corrupt_chunk(args) -> tuple[int, np.ndarray]:
    """Worker: all 70 conditions for images[start:start+n]; returns (start, (70, n, H, W))."""
    start, images, base_seed = args
    import cv2

    cv2.setNumThreads(1)  # one process per core; no nested threading
    out = np.empty((len(CONDITIONS), *images.shape), dtype=np.uint8)
    for j, (c, s) in enumerate(CONDITIONS):
        for i, img in enumerate(images):
            out[j, i] = corrupt_gray(img, c, s, condition_seed(base_seed, start + i, c, s))
    return start, out


def _file(c: str, s: int) -> str:
    return f"{c}_s{s}.npy"


def expected_manifest(images: np.ndarray, seed: int) -> dict:
    return {
        "kind": "tintc", "manifest_version": MANIFEST_VERSION,
        "package": "imagecorruptions-imaug", "package_version": version("imagecorruptions-imaug"),
        "seed": seed, "n_images": int(len(images)), "image_shape": list(images.shape[1:]),
        "source_hash": stable_hash(hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest(), 32),
        "conditions": [[c, s, CORRUPTIONS[c]] for c, s in CONDITIONS],
    }


def check_cache(path: str | os.PathLike, images: np.ndarray, seed: int, verify_hashes: bool = True) -> str | None:
    """None if the cache at `path` is complete and matches; otherwise why not."""
    import json

    path = Path(path)
    mf = path / "manifest.json"
    if not mf.is_file():
        return "no manifest"
    try:
        m = json.loads(mf.read_text())
    except json.JSONDecodeError:
        return "manifest is not valid JSON"
    want = expected_manifest(images, seed)
    for k, v in want.items():
        if m.get(k) != v:
            return f"manifest field {k!r} differs"
    return check_condition_files(path, m.get("files") or {}, verify_hashes)


def check_condition_files(path: Path, files: dict, verify_hashes: bool = True) -> str | None:
    """None if every condition's file of a TIN-TC cache folder is there with the size (and sha256) its
    manifest's `files` records; otherwise what is wrong. Shared by the generated and the published cache."""
    for c, s in CONDITIONS:
        f = path / _file(c, s)
        if not f.is_file():
            return f"missing {f.name}"
        if f.stat().st_size != files.get(f.name, {}).get("size"):
            return f"{f.name} has the wrong size"
        if verify_hashes and sha256_file(f) != files[f.name].get("sha256"):
            return f"{f.name} content does not match its hash"
    return None


def build_tintc(images: np.ndarray, out: str | os.PathLike, seed: int = 0, workers: int | None = None,
                chunk: int = 32, map_fn=None, progress: bool = True) -> Path:
    """Build the 70-condition cache for `images` (N, H, W) uint8 into `out` (atomically).

    `map_fn(fn, iterable)` runs the chunk worker (unordered results are fine); default: a process
    pool with `workers` processes (all cores). The sweeps pass a Ray-task map instead.
    """
    out = Path(out)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    manifest = expected_manifest(images, seed)
    jobs = [(a, images[a:a + chunk], seed) for a in range(0, len(images), chunk)]
    t0 = time.perf_counter()
    with atomic_dir(out, overwrite=True) as tmp:
        arrays = {cs: np.lib.format.open_memmap(tmp / _file(*cs), mode="w+", dtype=np.uint8, shape=images.shape)
                  for cs in CONDITIONS}
        pool = None
        if map_fn is None:
            workers = workers or os.cpu_count() or 1
            if workers == 1:
                map_fn = map
            else:
                pool = ProcessPoolExecutor(workers, mp_context=_POOL_CONTEXT)
                map_fn = pool.map
        bar = Progress("TIN-TC (70 conditions each)", len(images), "images") if progress else None
        try:
            done = 0
            for start, block in map_fn(_corrupt_chunk, jobs):
                for j, cs in enumerate(CONDITIONS):
                    arrays[cs][start:start + block.shape[1]] = block[j]
                done += block.shape[1]
                if bar:
                    bar.update(done)
        finally:
            if bar:
                bar.close()
            if pool is not None:
                pool.shutdown()
        files = {}
        for cs, arr in arrays.items():
            arr.flush()
            del arr
            f = tmp / _file(*cs)
            files[f.name] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
        arrays.clear()
        import json

        (tmp / "manifest.json").write_text(json.dumps({**manifest, "files": files,
                                                       "build_seconds": time.perf_counter() - t0}, indent=1) + "\n")
    return out


def load_tintc(path: str | os.PathLike) -> dict[tuple[str, int], np.ndarray]:
    """Memory-mapped (N, H, W) arrays per (corruption, severity)."""
    path = Path(path)
    return {cs: np.load(path / _file(*cs), mmap_mode="r", allow_pickle=False) for cs in CONDITIONS}


def tintc_dir(data_root: str | os.PathLike, cls_hash: str, n: int | str) -> Path:
    """The TIN-TC cache folder of the first `n` test images of the classification set `cls_hash` (its content
    hash): one per (data set, image count), shared by the sweep, the single-model CLI and the benchmarks;
    `n` "*" gives the pattern of them all."""
    return Path(data_root) / f"tintc-{cls_hash[:16]}-n{n}"


def run_test_sets(info: dict, data_root: str | os.PathLike, n_images: int | None = None):
    """A trained model's clean test images and their TIN-TC, from its record's data (`info`: the runs
    table's `data` field, parsed): ((N, H, W) uint8, load_tintc's dict), the first `n_images` or all that
    the largest cache of that set holds (a cache holds the first N test images)."""
    from core.data.canonical import ClassificationSet
    from core.errors import ConfigError

    pattern = tintc_dir(data_root, info["classification"], "*")
    caches = {int(f.name.rsplit("-n", 1)[1]): f for f in pattern.parent.glob(pattern.name)
              if f.name.rsplit("-n", 1)[1].isdigit()}
    if not caches:
        raise ConfigError(f"{data_root}: no TIN-TC cache for the test images {info['classification'][:16]} "
                          "(the sweep's --data-root?)")
    n = max(caches)
    clean = np.asarray(ClassificationSet.load(info["classification_path"]).images["test"])[:min(n, n_images or n)]
    return clean, load_tintc(caches[n])


def ensure_tintc(images: np.ndarray, out: str | os.PathLike, seed: int = 0, verify_hashes: bool = True,
                 log=print, **build_kwargs) -> dict[tuple[str, int], np.ndarray]:
    """Use the cache at `out` if it is complete and matches `images` and `seed`; else (re)build it."""
    why = check_cache(out, images, seed, verify_hashes)
    if why is not None:
        if log and Path(out).exists():
            log(f"TIN-TC cache at {out} is unusable ({why}); rebuilding")
        build_tintc(images, out, seed, **build_kwargs)
    return load_tintc(out)


ORACLE_TAG = 0x0AC1E   # first seed word of every Oracle training draw


def oracle_draw(seed: int, image_index: int, variant: int) -> tuple[str, int, tuple[int, ...]]:
    """The corruption, severity and seed words of one Oracle training variant: a corruption and a
    severity drawn at random (each of the 14 x 5 equally likely), independently per image and variant."""
    rng = np.random.default_rng([ORACLE_TAG, seed, image_index, variant])
    c = CORRUPTIONS_LIST[int(rng.integers(len(CORRUPTIONS_LIST)))]
    return c, int(rng.integers(1, 6)), (ORACLE_TAG, seed, image_index, variant)


def corruption_bank(images: np.ndarray, seed: int, n_variants: int, workers: int | None = None,
                    progress: Callable | None = None) -> np.ndarray:
    """The Oracle's pool of corrupted training images: `n_variants` versions of every image, each
    with its own random corruption and severity (`oracle_draw`); (n_variants, N, H, W) uint8.
    Training draws one variant at random each time an image is used (core.training.fit)."""
    jobs = [(i, v, images[i], seed) for v in range(n_variants) for i in range(len(images))]
    out = np.empty((n_variants, *images.shape), dtype=np.uint8)
    workers = workers or os.cpu_count() or 1
    done = 0
    if workers == 1 or len(jobs) < 64:
        results = map(_bank_job, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, mp_context=_POOL_CONTEXT)
        results = pool.map(_bank_job, jobs, chunksize=64)
    try:
        for i, v, img in results:
            out[v, i] = img
            done += 1
            if progress and done % 2000 == 0:
                progress(f"  {done}/{len(jobs)} corrupted")
    finally:
        if pool is not None:
            pool.shutdown()
    return out


def _bank_job(args):
    i, v, img, seed = args
    c, sev, words = oracle_draw(seed, i, v)
    return i, v, corrupt_gray(img, c, sev, words)


def main(argv=None) -> int:
    """python -m core.data.corruptions: build (or verify) the TIN-TC cache of a data set's test images."""
    from core.data.canonical import ClassificationSet
    from core.errors import Parser

    p = Parser(prog="python -m core.data.corruptions", description=main.__doc__)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help="synthetic world preset whose test images to corrupt (default demo)")
    src.add_argument("--data", type=Path, help="a classification data set in the project's format")
    p.add_argument("--out", required=True, type=Path, help="cache folder")
    p.add_argument("--seed", type=int, default=0, help="base seed of every (image, corruption, severity) (default 0)")
    p.add_argument("--workers", type=int, default=0, help="processes (default: all cores)")
    p.add_argument("--limit", type=int, default=0, help="only the first N test images (default: all)")
    args = p.parse_args(argv)
    if args.data is not None:
        images = ClassificationSet.load(args.data).images["test"]
    else:
        from core.data.synthetic import make_classification, world_config

        images = make_classification(world_config(args.preset or "demo")).images["test"]
    images = np.asarray(images[: args.limit] if args.limit else images)
    t = time.perf_counter()
    why = check_cache(args.out, images, args.seed)
    if why is None:
        print(f"{args.out}: TIN-TC cache complete and verified ({len(images)} images x {len(CONDITIONS)} conditions)")
        return 0
    build_tintc(images, args.out, args.seed, workers=args.workers or None)
    dt = time.perf_counter() - t
    print(f"{args.out}: built {len(images)} images x {len(CONDITIONS)} conditions in {dt:.1f}s "
          f"({len(images) / dt:.1f} source images/s)")
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    cli_main(main)
