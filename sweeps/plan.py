"""`python sweeps/ratio_grid.py --plan`: the models a sweep will train, what its lake already holds, and
an estimate of its compute and disk, without starting Ray or training anything.

Compute is an upper bound: every fit runs its preset's maximum epochs (early stopping usually ends
sooner). Model FLOPs are counted by torch's FlopCounterMode on the real architecture, built on the
meta device (no weights allocated); they are turned into hours with throughput figures measured
here (the constants below say where each comes from). Also what each preset trains, for --help.
"""

from __future__ import annotations

import functools
import textwrap
import time
from pathlib import Path

from core.presets import PRESETS, get_preset

# H200, full width, batch 128, bf16 (`python benchmarks/train_throughput.py --width 1 --images 8192 --device cuda`):
# `fit`'s training steps at 16.4k images/s x 6.35 GFLOP = 104 TFLOP/s for MTL 1:1 (most of the paper grid),
# 12.5k x 9.98 = 125 TFLOP/s for classification; narrow models use a GPU far less well (their GPU-hours are a
# lower bound), and per-epoch validation and checkpointing come on top.
GPU_TFLOPS = 104.0
# whole epochs on the same H200 (validation, best-weights copy and a checkpoint every epoch, 8,190 images per
# epoch) reached MFU 5.4-5.8% against the steps' 10.5-12.6%: about half the steps' rate. The recipe has since
# dropped the copy and can checkpoint every N epochs; not yet re-measured on a GPU (benchmarks/gpu_check.sh)
GPU_EPOCH_TFLOPS = 52.0
LAKE_BYTES_PER_MODEL = 60_000   # the smoke sweep's lake: ~360 KB for 6 models (runs, epochs, accuracy, predictions)
PREDICTION_BYTES = 3.8          # per predictions row (71 conditions x test images per classifier): 2.7 MB per 710,000 rows
CHECKPOINT_COPIES = 3           # model.pt, the epoch checkpoint (weights + optimiser state)


@functools.lru_cache(maxsize=None)
def _listing(tin_root: str) -> dict:
    """The Tiny ImageNet tree's file listing, read once per plan (the sizes and the cache key both need it)."""
    from core.data.tiny_imagenet import scan

    return scan(tin_root)


def _sizes(spec, preset) -> dict:
    """Images per split and neural trials, from the data where it is at hand, else the preset's design."""
    if preset.world is not None and spec.tin_root is None:
        from core.data.synthetic import world_config

        w = world_config(preset.world, planted=spec.planted)
        return {"train": w.n_classes * w.train_per_class, "val": w.n_classes * w.val_per_class,
                "test": w.n_classes * w.test_per_class, "classes": w.n_classes, "neurons": w.n_neurons,
                "trials": w.neural_train_images, "size": w.image_size,
                "source": f"synthetic world '{preset.world}'" + (f", planted at {spec.planted:g}" if spec.planted is not None else "")}
    n = {"train": 90_000, "val": 10_000, "test": 10_000, "classes": 200, "neurons": 458, "trials": 24_000, "size": 64,
         "source": "Tiny ImageNet and the paper's recordings (sizes as published: give --tin-root/--neural-data to count)"}
    if spec.tin_root:
        from core.data.tiny_imagenet import VAL_FRACTION

        listing = _listing(spec.tin_root)
        n_train = len(listing["train"])
        n.update(train=round(n_train * (1 - VAL_FRACTION)), val=round(n_train * VAL_FRACTION), test=len(listing["val"]),
                 classes=len(listing["wnids"]), source=f"--tin-root {spec.tin_root}")
    if spec.neural_data:
        import numpy as np

        d = Path(spec.neural_data)
        n.update(neurons=len(np.load(d / "neuron_ids.npy", mmap_mode="r")),
                 trials=len(np.load(d / "train_image_index.npy", mmap_mode="r")))
        n["source"] += f", --neural-data {spec.neural_data}"
    return n


def _prepared_info(spec, preset) -> dict | None:
    """The data's content hashes (what run ids are made of) if the data are already prepared under
    --data-root; None if a sweep would first write or decode them (then nothing can be in the lake)."""
    from core.data.canonical import _read_manifest

    root = Path(spec.data_root)
    try:
        if preset.world is not None and spec.tin_root is None:
            from core.training.bundles import world_dir

            world = world_dir(root, preset.world, spec.planted)
            cls_path, neu_path = world / "classification", world / "neural"
        else:
            from core.data.tiny_imagenet import _fingerprint

            cls_path, neu_path = root / "cache" / f"tin-{_fingerprint(_listing(spec.tin_root))}-s0", Path(spec.neural_data)
        cls, neu = _read_manifest(cls_path, "classification"), _read_manifest(neu_path, "neural")
    except Exception:   # not prepared (or unreadable): the sweep itself will say what is wrong
        return None
    return {"classification": cls.get("content_hash", ""), "neural": neu.get("content_hash", ""),
            "classification_path": str(cls_path), "neural_path": str(neu_path)}


def _flops(cfg, n: dict) -> dict:
    """FLOPs per image of this config's architecture: classification forward and forward+backward, and
    the neural path (core up to the readout layer + readout) forward+backward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from core.models import build_model

    out = {}
    with torch.device("meta"):
        model = build_model(cfg.model, n["classes"], n["neurons"], cfg.width, readout_layer=cfg.readout_layer,
                            image_size=n["size"], dropout=0.0)
        x = torch.zeros(2, 1, n["size"], n["size"])
        for name, fn, backward in (("cls_fwd", model, False), ("cls_train", model, True),
                                   ("neural_train", model.predict_neural, True)):
            counter = FlopCounterMode(display=False)
            with counter:
                y = fn(x)
                if backward:
                    y.sum().backward()
            out[name] = counter.get_total_flops() / 2
        out["params"] = sum(p.numel() for p in model.parameters())
    return out


def _model_flops(task, cfg, preset, n, f) -> tuple[float, float]:
    """FLOPs of one model: its fit at max epochs (the recipe's `cost`, else classification epochs), and its
    evaluation (a classifier's TIN-TC, spectral sensitivity and attacks)."""
    from core.evaluate.spectral import CUTOFFS
    from core.training import registry

    recipe = registry.get(task.kind)
    fit = recipe.cost(cfg, n, f) if recipe.cost else cfg.max_epochs * (n["train"] * f["cls_train"] + n["val"] * f["cls_fwd"])
    if not recipe.classifier:
        return fit, 0.0
    n_eval = min(n["test"], preset.eval_images or n["test"])
    evaluate = (71 + 2 * len(CUTOFFS)) * n_eval * f["cls_fwd"]
    attacks = (2 * 5 * preset.adv_images * preset.adv_steps * f["cls_train"]
               + preset.adv_decision_images * preset.adv_decision_steps * 100 * f["cls_fwd"])
    return fit, evaluate + attacks


def _task_costs(spec, tasks, preset, n) -> dict[str, tuple[float, float, int]]:
    """run id -> (fit FLOPs, evaluation FLOPs, parameters) of each task; the architecture counted once per config."""
    from core.training.kinds import base_config
    from sweeps.stages import task_overrides

    by_arch, out = {}, {}
    for t in tasks:
        cfg = base_config(t.kind, preset, t.ratio or "1:1", t.seed, **task_overrides(spec, t.kind, t.alpha))
        arch = (cfg.model, cfg.width, cfg.readout_layer)
        if arch not in by_arch:
            by_arch[arch] = _flops(cfg, n)
        out[t.run_id] = (*_model_flops(t, cfg, preset, n, by_arch[arch]), by_arch[arch]["params"])
    return out


def task_seconds(spec, tasks) -> dict[str, float]:
    """run id -> planned seconds of each task on its trial's CPU threads (sweeps.timing)."""
    from sweeps.stages import trial_threads
    from sweeps.timing import model_seconds

    preset = get_preset(spec.preset)
    threads = trial_threads(spec)
    return {rid: model_seconds(fit, ev, threads)
            for rid, (fit, ev, _) in _task_costs(spec, tasks, preset, _sizes(spec, preset)).items()}


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} hours" if seconds < 48 * 3600 else f"{seconds / 86400:,.1f} days"


def _print_time(spec, preset, todo, costs, n_eval, n, info, cores) -> float | None:
    """Prints the expected CPU time and, on a local Ray of `cores` CPUs, the wall time (sweeps.timing); returns the
    wall time (None without a core count)."""
    from core.data.corruptions import tintc_dir
    from sweeps import timing
    from sweeps.stages import trial_threads

    threads = trial_threads(spec)
    secs = {t.run_id: timing.model_seconds(costs[t.run_id][0], costs[t.run_id][1], threads) for t in todo}
    print(f"CPU: about {_duration(sum(secs.values()) * threads)} of one core for the models (fits at their full epochs, "
          "evaluation, attacks; the rates in sweeps/timing.py, measured on the demo)")
    if not cores:
        return None
    root = Path(spec.data_root)
    h = (info or {}).get("classification", "")[:16]
    cached = bool(h) and (tintc_dir(root, h, n_eval) / "manifest.json").is_file()
    banks = [s for s in spec.seeds if "oracle" in spec.kinds
             and not (bool(h) and (root / f"oracle-bank-{h}-s{s}-v{preset.oracle_variants}.npy").is_file())]
    prep = timing.preparation_seconds(None if cached or spec.tintc_root else n_eval,
                                      len(banks) * preset.oracle_variants * n["train"], cores)
    slots = max(1, int(cores // (spec.cpus_per_trial + 0.05)))
    models = timing.simulate([t.run_id for t in todo], secs, {t.run_id: t.upstream_id for t in todo}, slots)
    wall = prep + (timing.RAY_START_SECONDS + models if todo else 0.0) + timing.REPORT_SECONDS
    print(f"wall time on {cores} CPU cores (a local Ray), {slots} model(s) at a time: about {_duration(wall)} (inputs "
          f"{_duration(prep)}, models {_duration(models)} in dependency order, "
          + ("Ray's start and " if todo else "") + f"the report {_duration(wall - prep - models)})")
    return wall


def print_plan(spec, cores: int | None = None) -> float | None:
    """Prints the sweep's plan; returns its wall-time estimate in seconds (None without a core count), which a
    command of several sweeps sums."""
    import importlib

    importlib.import_module("core.training.kinds")   # torch and the models load before the timer: "planned in" is the planning
    from sweeps.stages import finished_run_ids, plan

    t0 = time.perf_counter()
    preset = get_preset(spec.preset)
    n = _sizes(spec, preset)
    # with the published TIN-TC a classifier's run id also carries the decoded JPEGs' hash, known only once
    # they are decoded: the lake is not matched then
    info = None if spec.tintc_root else _prepared_info(spec, preset)
    waves = plan(spec, info or {"classification": "?", "neural": "?"})
    done = finished_run_ids(spec) if info else {}
    print(f"plan for sweep '{spec.sweep}' (preset {spec.preset}; data: {n['source']})")
    print(f"  {n['train']:,} training / {n['val']:,} validation / {n['test']:,} test images, {n['classes']} classes; "
          f"{n['trials']:,} neural trials, {n['neurons']} neurons")
    costs = _task_costs(spec, [t for w in waves for t in w], preset, n)
    todo = [t for w in waves for t in w if done.get(t.run_id) not in ("ok", "diverged")]
    for i, wave in enumerate(waves, 1):
        if not wave:
            continue
        kinds = {}
        for t in wave:
            k = kinds.setdefault(t.kind, [0, 0])
            k[0] += 1
            k[1] += done.get(t.run_id) not in ("ok", "diverged")
        print(f"  stage {i}: " + ", ".join(f"{kind} x{a}" + (f" ({a - b} in the lake)" if a - b else "")
                                          for kind, (a, b) in kinds.items()))
    total = sum(len(w) for w in waves)
    print(f"  {total} models: {total - len(todo)} already in the lake, {len(todo)} to train"
          + ("" if info else " (--tintc-root: the lake is not matched; every model counts as to train)" if spec.tintc_root
             else f" (the data are not prepared under {spec.data_root} yet: no model of them can be in the lake)"))
    n_eval = min(n["test"], preset.eval_images or n["test"])
    total_flops = sum(costs[t.run_id][0] + costs[t.run_id][1] for t in todo)
    total_params = sum(costs[t.run_id][2] for t in todo)
    wall = _print_time(spec, preset, todo, costs, n_eval, n, info, cores)
    print(f"GPU, if one is used: {total_flops / 1e15:,.3g} PFLOP = {_duration(total_flops / (GPU_TFLOPS * 1e12))} of one "
          f"GPU at {GPU_TFLOPS:g} TFLOP/s (an H200's training steps at full width) to "
          f"{_duration(total_flops / (GPU_EPOCH_TFLOPS * 1e12))} at {GPU_EPOCH_TFLOPS:g} TFLOP/s (its whole epochs); a "
          "narrow model (the short presets' width 1/8) keeps a GPU far less busy, so read these as lower bounds")
    tintc_mb = 70 * n_eval * n["size"] ** 2 / 1e6
    bank_mb = (preset.oracle_variants * n["train"] * n["size"] ** 2 / 1e6 * len(spec.seeds)) if "oracle" in spec.kinds else 0.0
    models_mb = total_params * 4 * CHECKPOINT_COPIES / 1e6
    from core.training.graph import CLASSIFIERS

    n_cls = sum(1 for t in todo if t.kind in CLASSIFIERS)
    lake_mb = (len(todo) * LAKE_BYTES_PER_MODEL + n_cls * 71 * n_eval * PREDICTION_BYTES) / 1e6
    print(f"disk: TIN-TC cache {tintc_mb:,.0f} MB ({n_eval:,} test images x 70 conditions), Oracle corruption banks "
          f"{bank_mb:,.0f} MB, models and checkpoints {models_mb:,.0f} MB, lake ~{lake_mb:,.1f} MB")
    print(f"(planned in {time.perf_counter() - t0:.1f}s; nothing was started: drop --plan to run it)")
    return wall


def print_plans(specs: list, cores: int | None = None) -> int:
    """Each sweep's plan (one per planted world), and with several the sum of their wall times."""
    walls = [print_plan(s, cores) for s in specs]
    if len(walls) > 1 and None not in walls:
        print(f"all {len(specs)} sweeps, one after another: about {_duration(sum(walls))} of wall time")
    return 0


def presets_help(trains: str, grid: bool = True) -> str:
    """The --help block on what each preset trains. `trains`: what this command makes of a preset;
    `grid`: it runs the preset's ratio x seed grid (else its first seed only)."""
    from fractions import Fraction

    out = [textwrap.fill(f"presets (--preset; default demo): {trains}", 100)]
    for name, p in PRESETS.items():
        data = f"synthetic world '{p.world}'" if p.world else "Tiny ImageNet and recordings (--tin-root, --neural-data)"
        if p.planted:
            data += f" with a planted answer at {', '.join(f'{v:g}' for v in p.planted)} (one sweep each)"
        runs = f"ratios {','.join(p.ratios)}; seeds {','.join(map(str, p.seeds))}" if grid else f"seed {p.seeds[0]}"
        if p.kinds:
            runs += f"; kinds {', '.join(p.kinds)}"
        text = (f"{data}; {runs}; up to {p.max_epochs} epochs per classifier fit, {p.neural_epochs} for the Monkey "
                f"Predictor, {p.readout_epochs} for the Oracle readout; {p.model} at width {Fraction(p.width).limit_denominator(64)}")
        out.append(textwrap.fill(text, 100, initial_indent=f"  {name:12s}", subsequent_indent=" " * 14))
    return "\n".join(out)
