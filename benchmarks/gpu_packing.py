"""Packing small models on one GPU: models per GPU-hour with k fits at a time against one at a time.

What `--gpus-per-trial 1/k` does to a GPU: k trials' fits share it. Here k processes (spawned, one
CUDA context each, as k Tune trials have) each train one Baseline with `fit` on the same data at the
study preset's width (1/8) and batch (128); all start together after their data and model are built,
and the wall time runs from the start until the last one has finished. Models per GPU-hour =
k × 3600 / wall. The figure counts training only (no TIN-TC evaluation, no process start-up, which a
sweep's reused trial processes pay once).

Before each packing the GPU's free memory is checked against k times the peak one fit took (measured
by the k = 1 run, plus its CUDA context): a packing that would not fit is skipped with a line saying so.

    python benchmarks/gpu_packing.py                      # on a GPU: k = 1, 2, 4, 8, study width
    python benchmarks/gpu_packing.py --device cpu --width 0.0625 --images 400 --epochs 2 --packs 1,2   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

import numpy as np  # noqa: E402


def _worker(data_file: str, args: dict, seed: int, ready, go, out):
    import torch

    from core.models import build_model
    from core.training.config import TrainConfig
    from core.training.data import TrainData, pixel_stats
    from core.training.fit import fit
    from core.training.inference import resolve_device

    dev = resolve_device(args["device"])
    if dev.type == "cpu":
        torch.set_num_threads(1)
    z = np.load(data_file)
    x = {s: torch.from_numpy(z[f"x_{s}"]) for s in ("train", "val")}
    y = {s: torch.from_numpy(z[f"y_{s}"]) for s in ("train", "val")}
    n_classes = int(z["n_classes"])
    data = TrainData(n_classes, {s: (x[s], y[s]) for s in ("train", "val")})
    torch.manual_seed(seed)
    model = build_model(args["model"], n_classes, 0, args["width"], image_size=x["train"].shape[-1])
    model.set_pixel_stats(*pixel_stats(x["train"].numpy()))
    cfg = TrainConfig(mode="classification", width=args["width"], batch_size=args["batch"], max_epochs=args["epochs"],
                      augment=False, lr=0.01, device=str(dev), patience=10**6, seed=seed, threads=1)
    if dev.type == "cuda":   # the CUDA context and cuDNN's start-up before the common start
        torch.zeros(1, device=dev).sum().item()
        torch.cuda.reset_peak_memory_stats(dev)
    ready.put(seed)
    go.wait()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = fit(model, data, cfg, checkpoint_dir=tmp, log=None)
    t1 = time.time()
    peak = torch.cuda.max_memory_reserved(dev) if dev.type == "cuda" else 0
    out.put({"seed": seed, "start": t0, "end": t1, "peak_bytes": int(peak),
             "val_accuracy": float(res.epochs[-1]["val_accuracy"]),
             "images_per_s": float(np.mean([e["images_per_s"] for e in res.epochs[1:] or res.epochs]))})


def run_pack(k: int, data_file: str, args: dict) -> dict:
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(data_file, args, s, ready, go, out)) for s in range(k)]
    for p in procs:
        p.start()
    for _ in range(k):   # every fit has its data, model and CUDA context: the common start
        ready.get(timeout=600)
    t0 = time.time()
    go.set()
    rows = [out.get() for _ in range(k)]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"error: a packed fit exited with status {p.exitcode}")
    wall = max(r["end"] for r in rows) - min(t0, min(r["start"] for r in rows))
    return {"k": k, "wall": wall, "models_per_gpu_hour": k * 3600 / wall,
            "peak_gb": max(r["peak_bytes"] for r in rows) / 1e9,
            "accuracy": [round(r["val_accuracy"], 3) for r in rows],
            "images_per_s_each": float(np.median([r["images_per_s"] for r in rows]))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run of the script)")
    p.add_argument("--width", type=float, default=1 / 8, help="VGG channel multiplier (default 1/8, the study preset's)")
    p.add_argument("--model", default="vgg19_bn_fc", help="architecture (default vgg19_bn_fc, the study preset's)")
    p.add_argument("--images", type=int, default=10000, help="training images, 20 classes (default 10000, the study world's)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per fit (default 4)")
    p.add_argument("--packs", default="1,2,4,8", help="fits per GPU to compare (default 1,2,4,8)")
    args = p.parse_args()
    packs = sorted({int(v) for v in args.packs.split(",")})
    if not packs or packs[0] < 1:
        p.error(f"--packs {args.packs}: expected positive integers")

    import torch

    from core.data.synthetic import make_classification, world_config

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU here (use --device cpu for a smoke run)")
    cls = make_classification(world_config("demo", n_classes=20, train_per_class=max(1, args.images // 20),
                                           val_per_class=10, test_per_class=1))
    conf = dict(device=args.device, width=args.width, model=args.model, batch=args.batch, epochs=args.epochs)
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    total = torch.cuda.mem_get_info()[1] if args.device.startswith("cuda") else 0
    print(f"{name}: {args.model} width {args.width:g}, batch {args.batch}, {len(cls.labels['train'])} training images, "
          f"{args.epochs} epochs per fit; packs {packs}")
    with tempfile.TemporaryDirectory() as tmp:
        data_file = str(Path(tmp) / "data.npz")
        np.savez(data_file, n_classes=cls.n_classes,
                 **{f"x_{s}": np.asarray(cls.images[s], dtype=np.uint8)[:, None] for s in ("train", "val")},
                 **{f"y_{s}": np.asarray(cls.labels[s], dtype=np.int64) for s in ("train", "val")})
        results, one_peak = [], None
        for k in packs:
            if one_peak is not None and args.device.startswith("cuda"):
                free = torch.cuda.mem_get_info()[0]
                need = k * (one_peak + 0.6e9)   # each fit's peak plus a CUDA context (about 0.5 GB)
                if need > 0.9 * free:
                    print(f"  k = {k}: skipped, {k} fits need about {need / 1e9:.1f} GB of the {free / 1e9:.1f} GB free")
                    continue
            r = run_pack(k, data_file, conf)
            one_peak = r["peak_gb"] * 1e9 if one_peak is None else one_peak
            results.append(r)
            print(f"  k = {k}: {r['wall']:.1f} s for {k} fits, {r['models_per_gpu_hour']:.1f} models per GPU-hour, "
                  f"{r['images_per_s_each']:.0f} images/s per fit, peak memory per fit {r['peak_gb']:.2f} GB, "
                  f"validation accuracy {r['accuracy']}", flush=True)
    base = results[0]["models_per_gpu_hour"]
    print(f"models per GPU-hour against one fit at a time ({total / 1e9:.0f} GB GPU):")
    for r in results:
        print(f"  {r['k']} per GPU: {r['models_per_gpu_hour']:.1f} ({r['models_per_gpu_hour'] / base:.2f}x)")


if __name__ == "__main__":
    main()
