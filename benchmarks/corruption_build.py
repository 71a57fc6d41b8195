"""TIN-TC: parallel efficiency of the cache build, and evaluating on the cache against corrupting on the fly.

1. build: `build_tintc` (all 70 conditions of --images demo-world test images: corrupted, written,
   hashed, manifest) with 1 process and with --workers processes, into fresh folders; parallel
   efficiency = speed-up / workers (goal >= 0.9); the two caches must be byte-identical.
2. evaluate one model (VGG-19-BN at --width, untrained: the work does not depend on the weights) on
   the clean images and the 70 conditions with `core.evaluate.classification_records`, the same call
   on both sides:
     cached      the conditions memory-mapped from the cache built in part 1 (`load_tintc`)
     on the fly  the same corruptions computed in memory by the cache's own worker
                 (`_corrupt_chunk`, same seeds, same chunks) over --workers processes, then the
                 evaluation: no files, no hashing; the arrays must equal the cached ones byte for byte
   Corruption and inference run one after the other on the on-the-fly side, so its time is
   corruption + inference and the ratio is ~1 + corruption/inference; a pipelined evaluation (corrupting
   the next chunk while the model runs) could hide at most the shorter of the two: the breakdown says
   both.

Same start-up and warm-up on every side: one process, the images and the model built once; before any
timing, every side runs once on --warmup-images images (imports, process-pool start, first kernels).
Then the sides alternate (1 process, N processes, 1, N, ...; cached, on the fly, ...), each --repeats
times (at least 3); medians and ratios are printed.

    python benchmarks/corruption_build.py                              # about 1 minute on 2 cores
    python benchmarks/corruption_build.py --images 200 --workers 16 --device cuda --width 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import corruptions as C  # noqa: E402
from core.data.synthetic import make_classification, world_config  # noqa: E402
from core.evaluate import classification_records  # noqa: E402
from core.models import build_model  # noqa: E402
from core.training.inference import resolve_device  # noqa: E402


def jobs_of(images: np.ndarray, chunk: int, seed: int = 0) -> list:
    """The chunk jobs exactly as build_tintc cuts them."""
    return [(a, images[a:a + chunk], seed) for a in range(0, len(images), chunk)]


def corrupt_on_the_fly(images: np.ndarray, workers: int, chunk: int) -> dict:
    """All 70 conditions in memory: build_tintc's worker and chunks, no files or hashes."""
    out = np.empty((len(C.CONDITIONS), *images.shape), dtype=np.uint8)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for start, block in (pool.map if pool else map)(C._corrupt_chunk, jobs_of(images, chunk)):
            out[:, start:start + block.shape[1]] = block
    finally:
        if pool is not None:
            pool.shutdown()
    return {cs: out[j] for j, cs in enumerate(C.CONDITIONS)}


def timed(fn, *a, **k):
    t = time.perf_counter()
    r = fn(*a, **k)
    return time.perf_counter() - t, r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=48, help="demo-world test images to corrupt (default 48)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="processes of the parallel side (default: all cores)")
    p.add_argument("--width", type=float, default=1 / 16, help="VGG-19-BN channel multiplier of the model (default 1/16)")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the model on the CPU (default 1; 0: torch's "
                   "default; on a shared 2-core machine 2 threads make inference erratic)")
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats per side, at least 3 (default 3)")
    p.add_argument("--warmup-images", type=int, default=4, help="images of the untimed warm-up run of every side (default 4)")
    p.add_argument("--skip-build", action="store_true", help="part 2 only (the cache is still built once, untimed)")
    args = p.parse_args()
    if args.repeats < 3:
        p.error("--repeats: at least 3")
    if args.workers < 2:
        p.error("--workers: at least 2 (the parallel side)")
    cls = make_classification(world_config("demo"))
    if args.images > len(cls.labels["test"]):
        p.error(f"--images: the demo world has {len(cls.labels['test'])} test images")
    images = np.ascontiguousarray(cls.images["test"][: args.images])
    labels = np.asarray(cls.labels["test"][: args.images])
    warm = np.ascontiguousarray(cls.images["test"][: args.warmup_images])
    dev = resolve_device(args.device)
    if args.threads and dev.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("vgg19_bn_fc", cls.n_classes, 0, width=args.width).eval().to(dev)
    chunk = max(1, args.images // (4 * args.workers))  # several chunks per process: load balance
    threads = f" (torch threads: {torch.get_num_threads()})" if dev.type == "cpu" else ""
    print(f"{args.images} demo-world test images x 70 conditions, {args.workers} processes, chunks of {chunk}; "
          f"model vgg19_bn_fc width {args.width:g} on {dev}{threads}; {args.repeats} alternating repeats after a "
          f"warm-up of {args.warmup_images} images per side")

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        # warm-up, untimed: every side once on a few images
        for w in (1, args.workers):
            C.build_tintc(warm, d / f"warm{w}", workers=w, chunk=1, progress=False)
            corrupt_on_the_fly(warm, w, 1)
        classification_records(model, warm, labels[: len(warm)], C.load_tintc(d / "warm1"))

        # 1. the build, 1 process against N, alternating
        cache = d / "cache"
        if args.skip_build:
            C.build_tintc(images, cache, workers=args.workers, chunk=chunk, progress=False)
        else:
            t = {1: [], args.workers: []}
            for r in range(args.repeats):
                for w in (1, args.workers):
                    dt, _ = timed(C.build_tintc, images, d / f"b{r}-{w}", workers=w, chunk=chunk, progress=False)
                    t[w].append(dt)
                print(f"  build repeat {r + 1}: 1 process {t[1][-1]:.2f}s, {args.workers} processes "
                      f"{t[args.workers][-1]:.2f}s")
            same = all((d / f"b{r}-1" / C._file(*cs)).read_bytes() == (d / f"b{r}-{args.workers}" / C._file(*cs)).read_bytes()
                       for r in range(args.repeats) for cs in C.CONDITIONS)
            t1, tn = statistics.median(t[1]), statistics.median(t[args.workers])
            print(f"build, medians: 1 process {t1:.2f}s ({args.images / t1:.2f} images/s), {args.workers} processes "
                  f"{tn:.2f}s ({args.images / tn:.2f} images/s); speed-up {t1 / tn:.2f}, parallel efficiency "
                  f"{t1 / tn / args.workers:.3f} (identical bytes: {same})")
            (d / f"b0-{args.workers}").rename(cache)

        # 2. evaluation, cached against on the fly, alternating
        t_cached, t_fly, t_corrupt, identical = [], [], [], True
        for r in range(args.repeats):
            dt, cached = timed(lambda: classification_records(model, images, labels, C.load_tintc(cache))[1])
            t_cached.append(dt)
            t0 = time.perf_counter()
            arrays = corrupt_on_the_fly(images, args.workers, chunk)
            t_corrupt.append(time.perf_counter() - t0)
            fly = classification_records(model, images, labels, arrays)[1]
            t_fly.append(time.perf_counter() - t0)
            on_disk = C.load_tintc(cache)
            identical &= all(np.array_equal(arrays[cs], on_disk[cs]) for cs in C.CONDITIONS)
            identical &= [x["accuracy"] for x in cached] == [x["accuracy"] for x in fly]
            print(f"  evaluate repeat {r + 1}: cached {t_cached[-1]:.2f}s, on the fly {t_fly[-1]:.2f}s "
                  f"(corruption {t_corrupt[-1]:.2f}s)")
        tc, tf, tk = statistics.median(t_cached), statistics.median(t_fly), statistics.median(t_corrupt)
        n_eval = 71 * args.images
        print(f"evaluate one model on clean + 70 conditions x {args.images} images, medians: cached {tc:.2f}s, "
              f"on the fly {tf:.2f}s; cached is {tf / tc:.2f}x faster (identical corruptions and accuracies: {identical})")
        print(f"breakdown (medians): corruption {tk:.2f}s with {args.workers} processes, model inference {tc:.2f}s "
              f"({n_eval / tc:.0f} images/s on {dev}); ratio ~ 1 + corruption/inference = {1 + tk / tc:.2f}; "
              f"with corruption and inference perfectly overlapped, cached would still be {max(tk, tc) / tc:.2f}x faster")


if __name__ == "__main__":
    main()
