"""One model's accuracy on the published Tiny-ImageNet-C JPEGs against the corruptions generated here.

Both are of the same first N Tiny ImageNet test images (val, in val_annotations.txt order): the
published conditions are decoded from ``ROOT/<corruption>/<severity>/<wnid>/<file>.JPEG``
(`core.data.published_tintc`), the generated ones come from `core.data.corruptions.ensure_tintc`
(seed 0, the sweep's); each set is cached under the data root and reused. Used by
``python -m core.data compare-tintc``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from core.data.corruptions import CONDITIONS, CORRUPTIONS, ensure_tintc, load_tintc
from core.data.published_tintc import ensure_published
from core.data.tiny_imagenet import IMAGE_SIZE, _decode_all, scan
from core.errors import ConfigError
from core.evaluate import classification_records

DEFAULT_IMAGES = 500


def load_classifier(model_dir: str | os.PathLike, n_classes: int, device: str = "cpu"):
    """A saved model that can classify Tiny ImageNet's 64x64 grayscale images into `n_classes`."""
    from core.training.inference import resolve_device
    from core.training.kinds import load_model

    model, record = load_model(model_dir, str(resolve_device(device)))
    what = f"a {record['kind']} model" if record.get("kind") else "a model"
    if not model.has_classifier:
        raise ConfigError(f"--model {model_dir}: {what} without a classifier head (a neural predictor); "
                          "compare-tintc needs a classifier (baseline, oracle, mtl_*, sim_*)")
    size = getattr(model, "build_args", {}).get("image_size", IMAGE_SIZE)
    if size != IMAGE_SIZE:
        raise ConfigError(f"--model {model_dir}: {what} built for {size}x{size} images; Tiny ImageNet and its published "
                          f"corruptions are {IMAGE_SIZE}x{IMAGE_SIZE}")
    if model.core.n_classes != n_classes:
        raise ConfigError(f"--model {model_dir}: {what} with {model.core.n_classes} classes; the Tiny ImageNet tree has "
                          f"{n_classes} (a model trained on other data?)")
    return model


def compare(model_dir: str | os.PathLike, tin_root: str | os.PathLike, tintc_root: str | os.PathLike, n_images: int | None = None,
            data_root: str | os.PathLike = "data", device: str = "cpu", workers: int | None = None, threads: int = 0,
            log=print) -> dict:
    """`n_images`: the first N test images (0: all; None: DEFAULT_IMAGES, or all if fewer).
    Accuracy per condition on both sets: {"clean", "n_images", "rows": [{corruption, severity,
    published, generated, difference}]}, difference = published - generated."""
    listing = scan(tin_root)
    n_val = len(listing["val"])
    n_images = min(DEFAULT_IMAGES, n_val) if n_images is None else n_images
    if n_images < 0 or n_images > n_val:
        raise ConfigError(f"--images {n_images}: expected 0 (all) to {n_val}, the number of Tiny ImageNet val images")
    if threads:
        import torch

        torch.set_num_threads(threads)
    model = load_classifier(model_dir, len(listing["wnids"]), device)
    clean, labels = _decode_all(listing["val"][: n_images or None], "")
    published = load_tintc(ensure_published(tin_root, tintc_root, len(clean), data_root, workers=workers, log=log))
    key = hashlib.sha256(np.ascontiguousarray(clean).tobytes()).hexdigest()[:16]
    generated = ensure_tintc(clean, Path(data_root) / f"tintc-val-{key}-n{len(clean)}", seed=0, log=log,
                             workers=workers, progress=log is not None)
    acc = {}
    for name, tintc in (("published", published), ("generated", generated)):
        clean_acc, rows, _ = classification_records(model, clean, labels, tintc)
        acc[name] = {(r["corruption"], r["severity"]): r["accuracy"] for r in rows}
    rows = [{"corruption": c, "severity": s, "published": acc["published"][c, s], "generated": acc["generated"][c, s],
             "difference": acc["published"][c, s] - acc["generated"][c, s]} for c, s in CONDITIONS]
    return {"clean": clean_acc, "n_images": len(clean), "rows": rows}


def format_table(result: dict, model_dir: str = "") -> str:
    """The per-condition table, the per-corruption means, the overall mean and which set is harder."""
    rows, n = result["rows"], result["n_images"]
    head = f"{'corruption':18s} {'severity':>8s} {'published':>9s} {'generated':>9s} {'difference':>10s}"
    out = [f"TIN-TC accuracy of {model_dir or 'the model'} on the first {n} test images (clean {result['clean']:.3f}); "
           "difference = published - generated", head]
    out += [f"{r['corruption']:18s} {r['severity']:8d} {r['published']:9.3f} {r['generated']:9.3f} {r['difference']:+10.3f}"
            for r in rows]
    out += ["", "mean over severities", head]
    harder = 0
    for c in CORRUPTIONS:
        p, g = (float(np.mean([r[k] for r in rows if r["corruption"] == c])) for k in ("published", "generated"))
        harder += p < g
        out.append(f"{c:18s} {'1-5':>8s} {p:9.3f} {g:9.3f} {p - g:+10.3f}")
    p, g = (float(np.mean([r[k] for r in rows])) for k in ("published", "generated"))
    out.append(f"{'overall':18s} {'1-5':>8s} {p:9.3f} {g:9.3f} {p - g:+10.3f}")
    if p < g:
        verdict = f"the published JPEGs are harder for this model (mean accuracy {p:.3f} against {g:.3f} on the generated corruptions"
    elif p > g:
        verdict = f"the generated corruptions are harder for this model (mean accuracy {g:.3f} against {p:.3f} on the published JPEGs"
    else:
        verdict = f"neither set is harder for this model (mean accuracy {p:.3f} on both"
    out.append(f"\nOverall, {verdict}; the published set is harder on {harder} of {len(CORRUPTIONS)} corruptions; "
               f"{len(rows)} conditions x {n} images).")
    out.append("The difference mixes three things: Hendrycks' corruption parameters (tuned for 64-pixel images) "
               "against ImageNet-C's, the JPEG (quality 85) every published image was saved as, and the published "
               "images being corrupted in colour before the grey conversion, the generated ones after it.")
    return "\n".join(out)
