"""`python -m core.data check`: validate a run's inputs, one or several at once, and summarise each.

One input (the original use): its first problem stops the check with one `error:` line. Several
(`--tin-root`, `--neural-data`, `--data`, `--tintc-root`, in any combination): every input is
checked, its summary printed, and every problem found is listed on its own `problem: ...` line at
the end (exit status 2 if there is any). Every JPEG is decoded, as a run would.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.corruptions import CONDITIONS, CORRUPTIONS, SEVERITIES
from core.data.tiny_imagenet import IMAGE_SIZE
from core.errors import ConfigError, UserError


def _modes(counts: Counter) -> str:
    return ", ".join(f"{m} {n}" for m, n in counts.most_common()) or "none"


def cache_mb(n_images: int) -> str:
    """The size of a TIN-TC cache of `n_images` test images (70 conditions x N x 64 x 64 uint8)."""
    return (f"{len(CONDITIONS) * n_images * IMAGE_SIZE * IMAGE_SIZE / 1e6:.1f} MB "
            f"({len(CONDITIONS)} conditions x {n_images} x {IMAGE_SIZE} x {IMAGE_SIZE} bytes)")


def tin_summary(root: Path) -> tuple[str, tuple[int, int]]:
    from core.data import tiny_imagenet

    ds = tiny_imagenet.build(root, verbose=True)   # decodes every image: a bad one stops here
    listing = tiny_imagenet.scan(root)
    modes: Counter = Counter()
    for p, _ in listing["train"] + listing["val"]:
        with Image.open(p) as im:
            modes[im.mode] += 1
    n_test = len(ds.labels["test"])
    return (f"{root}: Tiny ImageNet OK: {ds.summary()}; JPEG modes: {_modes(modes)}; "
            f"TIN-TC cache of its {n_test} test images: {cache_mb(n_test)}"), ds.image_shape


def neural_summary(path: Path) -> tuple[str, tuple[int, int]]:
    from core.data.canonical import NeuralSet

    ns = NeuralSet.load(path)
    ids, counts = np.unique(np.asarray(ns.neuron_session), return_counts=True)
    per = ", ".join(f"{i}: {c}" for i, c in zip(ids.tolist(), counts.tolist()))
    return f"{path}: OK: {ns.summary()}; neurons per session: {per}", tuple(ns.images.shape[1:])


def data_summary(path: Path) -> tuple[str, tuple[int, int]]:
    from core.data.canonical import ClassificationSet

    ds = ClassificationSet.load(path)
    return f"{path}: OK: {ds.summary()}", ds.image_shape


def published_summary(root: Path, tin_root: Path, workers: int | None = None) -> tuple[str, list[str]]:
    """Look up and decode every published condition of every TIN val image; (summary, problems)."""
    from core.data.published_tintc import decode_conditions, scan_published, val_items

    items = val_items(tin_root)
    paths, _, problems = scan_published(root, items)
    modes: Counter = Counter()
    decoded = 0
    for _, x, m, err in decode_conditions(paths, count_modes=True, workers=workers):
        modes.update(m)
        decoded += sum(m.values())
        if err:
            problems.append(err)
    state = "OK" if not problems else f"with {len(problems)} problem{'s' * (len(problems) > 1)} (below; those conditions are skipped)"
    return (f"{root}: published Tiny-ImageNet-C {state}: {len(CORRUPTIONS)} corruptions x {len(SEVERITIES)} severities "
            f"of {len(items)} test images; {decoded} of {len(CONDITIONS) * len(items)} JPEGs decoded (modes: {_modes(modes)}); "
            f"its TIN-TC cache: {cache_mb(len(items))}"), problems


def check(tin_root=None, neural_data=None, data=None, tintc_root=None, workers: int | None = None, out=print) -> list[str]:
    """Check the given inputs, print a summary of each; returns the problems (raises with only one input)."""
    if tintc_root and not tin_root:
        raise ConfigError("--tintc-root needs --tin-root: its JPEGs are matched to the Tiny ImageNet val images by file "
                          "name and class")
    given = [x for x in (tin_root, neural_data, data, tintc_root) if x]
    if not given:
        raise ConfigError("check: give at least one of --tin-root, --neural-data, --data (and --tintc-root with --tin-root)")
    problems: list[str] = []
    shapes: dict[str, tuple[int, int]] = {}

    def attempt(flag, fn, *args):
        try:
            return fn(*args)
        except UserError as e:
            if len(given) == 1:
                raise   # one input: its error, as ever
            problems.append(f"{flag} {str(e)}".replace("\n", " "))
            return None

    for flag, path, fn in (("--tin-root", tin_root, tin_summary), ("--neural-data", neural_data, neural_summary),
                           ("--data", data, data_summary)):
        if path:
            res = attempt(flag, fn, Path(path))
            if res is not None:
                out(res[0])
                shapes[flag] = res[1]
    if tintc_root:
        if "--tin-root" in shapes:
            res = attempt("--tintc-root", published_summary, Path(tintc_root), Path(tin_root), workers)
            if res is not None:
                out(res[0])
                problems += [f"--tintc-root {p}" for p in res[1]]
        else:
            problems.append(f"--tintc-root {tintc_root}: not checked: its files are matched to the Tiny ImageNet val "
                            f"images, and --tin-root {tin_root} has a problem")
    if "--neural-data" in shapes:
        for flag in ("--tin-root", "--data"):
            if flag in shapes and shapes[flag] != shapes["--neural-data"]:
                (h, w), (hn, wn) = shapes[flag], shapes["--neural-data"]
                problems.append(f"image sizes differ: {flag} {h}x{w}, --neural-data {hn}x{wn}; a run needs them equal")
    return problems


def main(args) -> int:
    problems = check(args.tin_root, args.neural_data, args.data, args.tintc_root)
    for p in problems:
        print(f"problem: {p}")
    if problems:
        print(f"{len(problems)} problem{'s' * (len(problems) > 1)} found")
        return 2
    return 0
