"""The representation analysis on a lake's models (paper §4.4–4.5, Figs. 5 and 7): constrained
reconstructions (analysis.constrained) of test images from each model's conv3_1, their spectral
controls, and the saliency ratio ϱ̄ (analysis.saliency), written as tables, figures and a report section.

The target x0 is, by default, the undistorted test image, as in the paper's saliency analysis (Fig. 7:
"70 undistorted images ... as targets"); `--target noisy` reconstructs the image with Gaussian noise,
severity 2 (byte-identical to the TIN-TC cache), as in the paper's Fig. 5, and every table, figure and
report line then says so (ϱ̄ on noisy targets mixes denoising into the saliency measure). After the
optimiser, a line-search check runs on from its result (analysis.constrained): the result is the better
point, a reconstruction the check still lowered by 1% of ||f(x0)||² or more had stalled (recorded), and one
still falling by that much over the check's last tenth has not converged. A model with more than a tenth of
its reconstructions not converged is flagged and left out of the ϱ̄ comparison: a comparison of optimisers
is not one of models.

    python -m analysis.reconstruct --results PATH_OR_URI --out DIR [--models ...] [--norms 5,15,60] [--images N]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from analysis.constrained import default_optimizer, high_frequency_share, reconstruct, spectral_control
from analysis.reconstruct_inputs import RECON_KINDS, fetch_model, load_images, noisy_targets, select_models, storage_of
from analysis.reconstruct_report import default_report, section_html
from core.errors import DEVICES, DataError, Parser, UserError, check_device, cli_main

STEPS = {"smoke": 60, "demo": 400, "controls": 400, "study": 2000, "paper": 8000}
IMAGES = {"smoke": 4, "demo": 8, "controls": 8, "study": 16, "paper": 70}
# starting noises per reconstruction: on the demo's models the ϱ̄ of two starts differed by a median 0.004-0.096
# per image (per kind and budget) and a kind's median ϱ̄ by up to 0.083 (docs/method.md, the representation analysis)
STARTS = {"smoke": 1, "demo": 2, "controls": 2, "study": 3, "paper": 3}


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m analysis.reconstruct", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", required=True, metavar="PATH_OR_URI", help="a sweep's --storage (holding lake/ and models/)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="local folder for arrays, tables and figures (an earlier reconstruction there is replaced "
                   "when the new one is complete; a folder holding anything else is refused unless --force)")
    p.add_argument("--force", action="store_true", help="replace --out even if it holds files this command did not write")
    p.add_argument("--sweep", help="which sweep in the lake (default: the most recently written)")
    p.add_argument("--models", help=f"comma list of model kinds ({', '.join(RECON_KINDS)}) or run ids "
                   "(default: one finished model of each kind)")
    p.add_argument("--ratio", help="ratio of the MTL models (default: the one closest to 1:1)")
    p.add_argument("--alpha", type=float, help="similarity-loss weight of the sim_* models (default: the largest)")
    p.add_argument("--model-seed", type=int, help="seed of the models (default: the lowest)")
    p.add_argument("--norms", default="5,15,60", help="norm budgets r in standardised input units (default 5,15,60; "
                   "a 64x64 image of unit variance has norm 64)")
    p.add_argument("--images", type=int, help="test images (default per preset: smoke 4, demo 8, study 16, paper 70)")
    p.add_argument("--steps", type=int, help="optimisation steps (default per preset: smoke 60, demo 400, study 2000, paper 8000)")
    p.add_argument("--starts", type=int, help="starting noises per reconstruction (default per preset: smoke 1, demo 2, "
                   "study and paper 3): the result is the start that ended lowest, and the spread of ϱ̄ over the starts "
                   "(max - min, per image) is in the table: model differences smaller than it are not differences of models")
    p.add_argument("--layer", default="conv3_1", help="layer whose activations are matched (default conv3_1)")
    p.add_argument("--target", choices=["clean", "noisy"], default="clean",
                   help="clean: the undistorted test image, as the paper's saliency analysis (Fig. 7; the default); "
                        "noisy: with Gaussian noise, severity 2, as the paper's reconstructions of Fig. 5 (ϱ̄ on "
                        "noisy targets mixes denoising into the saliency measure; labelled wherever it appears)")
    p.add_argument("--optimizer", action="append", default=[], metavar="KIND=OPT:LR",
                   help="per kind, e.g. mtl_monkey=sgd:5 or baseline=adam:0.01 (repeatable; default adam:0.01 for "
                        "every kind; the paper's SGD lr 5 for the MTL models did not converge on the demo's)")
    p.add_argument("--loss-reduction", choices=["sum", "mean"], default="sum",
                   help="the optimised objective: sum, the squared norm ||f(x) - f(x0)||² (default; METHOD's "
                        "reading of the paper); mean, its mean over the layer's elements (SGD's steps C·H·W times "
                        "smaller, Adam indifferent: the paper's SGD lr 5 if the authors averaged). Recorded losses "
                        "and the convergence check use the squared norm either way")
    p.add_argument("--check-steps", type=int, help="at most this many line-search steps run on from each optimiser's "
                   "result, ending once every reconstruction has settled (default as many as --steps, at least 20; "
                   "0: none, the paper's procedure exactly): the result is the better point, a settled optimiser "
                   "that the check still lowers by 1%% of ||f(x0)||² or more had stalled, and the result must settle "
                   "(fall by < 1%% over the check's last 20 steps)")
    p.add_argument("--blur-sigma", type=float, default=1.0, help="Gaussian blur of the gradient, pixels (0: none; default 1)")
    p.add_argument("--saliency-maps", type=Path, metavar="PATH",
                   help="saliency maps computed elsewhere (e.g. DeepGaze II): .npy (N,H,W), .npz with 'maps', or a "
                        "folder of <index>.npy/.png; used in addition to the built-in spectral-residual source")
    p.add_argument("--report", type=Path, metavar="DIR", help="report folder to add a section to (default: the "
                   "sweep's STORAGE/report/<sweep> when it is a local folder holding report.html)")
    p.add_argument("--no-report", action="store_true", help="do not touch any report")
    p.add_argument("--device", default="auto", help=f"{DEVICES} (default auto: a GPU where torch finds one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise the optimisation starts from")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="where the sweep's data live, if the "
                   "recorded path is gone (default ./data)")
    p.add_argument("--tin-root", type=Path, help="Tiny ImageNet folder (real-data sweeps)")
    p.add_argument("--neural-data", type=Path, help="neural data set (real-data sweeps)")
    return p


def parse_norms(text: str) -> list[float]:
    try:
        norms = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--norms {text}: expected comma-separated positive numbers, e.g. 5,15,60") from None
    if not norms or min(norms) <= 0 or not all(math.isfinite(v) for v in norms):
        raise UserError(f"--norms {text}: expected comma-separated positive numbers, e.g. 5,15,60")
    return norms


def parse_optimizers(items: list[str]) -> dict[str, tuple[str, float]]:
    out = {}
    for it in items:
        try:
            kind, spec = it.split("=", 1)
            name, lr = spec.split(":", 1)
            lr_v = float(lr)
        except ValueError:
            raise UserError(f"--optimizer {it}: expected KIND=OPT:LR, e.g. mtl_monkey=sgd:5") from None
        if kind not in RECON_KINDS or name not in ("sgd", "adam") or not lr_v > 0:
            raise UserError(f"--optimizer {it}: expected KIND in {', '.join(RECON_KINDS)}, OPT sgd or adam, LR > 0")
        out[kind] = (name, lr_v)
    return out


def run(args, log=print) -> dict:
    import polars as pl
    import torch

    from analysis import saliency as sal
    from analysis.load import load
    from core.io import atomic_dir, check_replaceable
    from core.training.inference import resolve_device
    from core.training.kinds import load_model

    check_device(args.device)
    norms = parse_norms(args.norms)
    opts = parse_optimizers(args.optimizer)
    if args.images is not None and args.images < 1:
        raise UserError(f"--images {args.images}: expected at least 1")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps}: expected at least 1")
    if getattr(args, "starts", None) is not None and args.starts < 1:
        raise UserError(f"--starts {args.starts}: expected at least 1")
    if getattr(args, "check_steps", None) is not None and args.check_steps < 0:
        raise UserError(f"--check-steps {args.check_steps}: expected 0 or more")
    if args.blur_sigma < 0:
        raise UserError(f"--blur-sigma {args.blur_sigma}: expected 0 or more")
    if args.saliency_maps is not None and not args.saliency_maps.exists():
        raise UserError(f"--saliency-maps {args.saliency_maps}: no such file or folder")
    check_replaceable(args.out, "reconstruction", "--out", getattr(args, "force", False))
    lake = load(str(args.results), args.sweep)
    models = select_models(lake.runs, [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None,
                           args.ratio, args.model_seed, args.alpha)
    preset = models[0]["preset"]
    n_img = args.images or IMAGES.get(preset, 8)
    steps = args.steps or STEPS.get(preset, 400)
    n_starts = getattr(args, "starts", None) or STARTS.get(preset, 1)
    check_n = max(20, steps) if getattr(args, "check_steps", None) is None else args.check_steps   # at most
    dev = resolve_device(args.device)
    storage = storage_of(lake.root)
    t0 = time.time()
    log(f"reconstruct: sweep '{lake.sweep}', {len(models)} models ({', '.join(m['kind'] for m in models)}), "
        f"{'undistorted' if args.target == 'clean' else 'NOISY (Gaussian noise, severity 2)'} targets, "
        f"{n_img} images × norms {norms} × {n_starts} start{'s' if n_starts > 1 else ''}, {steps} steps, layer {args.layer}, on {dev}")

    clean, _, world = load_images(models[0], args.data_root, args.tin_root, args.neural_data, n_img, log)
    target_u8 = noisy_targets(clean) if args.target == "noisy" else clean
    maps = {"builtin": sal.spectral_residual(clean.astype(np.float64))}
    saliency = {"builtin": sal.cumulative_mask(maps["builtin"])}
    if world is not None:
        from core.data.synthetic import object_masks

        imgs, masks = object_masks(world, "test", n_img)
        if not np.array_equal(imgs, clean):
            raise DataError("the stored synthetic world differs from its generator (its test images do not re-render); "
                            "ground-truth masks are unavailable")
        saliency["truth"] = masks
        maps["truth"] = masks.astype(np.float64)
    if args.saliency_maps is not None:
        m = sal.load_maps(args.saliency_maps, n_img, clean.shape[1:])
        saliency["file"], maps["file"] = sal.cumulative_mask(m), m

    primary = "truth" if "truth" in saliency else ("file" if "file" in saliency else "builtin")   # ϱ̄'s main source
    rows, arrays, summaries = [], {}, []
    with tempfile.TemporaryDirectory() as tmpd:
        for run_row in models:
            kind = run_row["kind"]
            folder = fetch_model(storage, run_row["run_id"], Path(tmpd))
            model, _ = load_model(folder, device=str(dev))
            model.eval().requires_grad_(False)
            if dev.type == "cuda":
                model.to(memory_format=torch.channels_last)
            try:
                model.features(torch.zeros(1, 1, *clean.shape[1:], device=dev), args.layer)
            except KeyError as e:
                raise UserError(f"--layer {args.layer}: {e.args[0]}") from None
            with torch.no_grad():
                x0 = model.prep(torch.from_numpy(np.array(target_u8[:, None])).to(dev))   # a copy: the loaded array is read-only
            opt, lr = opts.get(kind, default_optimizer(kind))
            label = f"{kind}[{run_row['ratio'] or '-'}, seed {run_row['seed']}]"
            log(f"reconstruct: {label} with {opt} lr {lr:g}")
            rec = reconstruct(lambda z: model.features(z, args.layer), x0, norms, steps, opt, lr, args.blur_sigma,
                              args.seed, log=log, label=label, reduction=getattr(args, "loss_reduction", "sum"),
                              check_steps=check_n, starts=n_starts)
            x0_np = x0.float().cpu().numpy()[:, 0]                                # (N, H, W)
            xr = rec.x[:, :, 0]                                                  # (N, R, H, W)
            ctrl = spectral_control(xr, x0_np[:, None])
            with torch.no_grad():
                goal = model.features(x0, args.layer).float()
                c_t = torch.from_numpy(ctrl.reshape(-1, 1, *ctrl.shape[-2:]).astype(np.float32)).to(dev)
                c_loss = (model.features(c_t, args.layer).float() - goal.repeat_interleave(len(norms), 0)
                          ).square().flatten(1).sum(1).cpu().numpy().reshape(len(clean), len(norms))
            arrays[f"recon_{kind}"], arrays[f"control_{kind}"] = xr.astype(np.float32), ctrl.astype(np.float32)
            arrays[f"loss_{kind}"], arrays[f"norm_{kind}"] = rec.loss, rec.norm
            share = float(rec.converged.mean())
            model_ok = share >= 0.9   # at most a tenth of its reconstructions still falling or swinging
            spreads, ranges = {}, {}
            hf_target = high_frequency_share(x0_np)
            move = (np.linalg.norm((rec.x - rec.main_x).reshape(*rec.loss.shape, -1), axis=-1)
                    / np.maximum(np.linalg.norm(rec.main_x.reshape(*rec.loss.shape, -1), axis=-1), 1e-12)
                    if rec.main_x is not None else np.full(rec.loss.shape, np.nan))
            variants = [("reconstruction", xr, rec.loss), ("spectral_control", ctrl, c_loss)]
            if rec.main_x is not None:   # the optimiser's own result, before the check: the paper's procedure
                variants.append(("optimizer_result", rec.main_x[:, :, 0], rec.main_loss))
            hfs = {variant: high_frequency_share(imgs) for variant, imgs, _ in variants}   # (N, R) each
            for source, masks in saliency.items():
                r_o = sal.rho(x0_np, masks)
                # over the starts whose result converged: ϱ̄'s max - min per (image, norm), and the range of the
                # median over images (what a difference between kinds' medians is to be measured against)
                spread, rng = np.full(rec.loss.shape, np.nan), np.full(len(norms), np.nan)
                n_ok = rec.converged.astype(int)
                if rec.start_x is not None:
                    rb_k = np.stack([sal.rho_bar(xk[:, :, 0], x0_np[:, None], masks[:, None]) for xk in rec.start_x])
                    spread, rng, n_ok = sal.start_spread(rb_k, rec.start_converged())
                spreads[source], ranges[source] = spread, rng
                for variant, imgs, losses in variants:
                    hf = hfs[variant]
                    rb = sal.rho_bar(imgs, x0_np[:, None], masks[:, None])
                    rr = sal.rho(imgs, masks[:, None])
                    for i in range(len(clean)):
                        for j, r in enumerate(norms):
                            rows.append({"run_id": run_row["run_id"], "kind": kind, "ratio": run_row["ratio"],
                                         "seed": run_row["seed"], "image": i, "norm": r, "variant": variant,
                                         "source": source, "rho": float(rr[i, j]), "rho_original": float(r_o[i]),
                                         "rho_bar": float(rb[i, j]), "activation_loss": float(losses[i, j]),
                                         "relative_loss": float(losses[i, j] / rec.target_activation[i])
                                         if rec.target_activation[i] > 0 else float("nan"),
                                         "achieved_norm": float(np.linalg.norm(imgs[i, j])),
                                         "target_norm": float(np.linalg.norm(x0_np[i])),
                                         "high_frequency_share": float(hf[i, j]),
                                         "target_high_frequency_share": float(hf_target[i]),
                                         # how far the check moved the optimiser's result, relative to its norm
                                         "check_move": float(move[i, j]) if variant == "reconstruction" else float("nan"),
                                         "optimizer": opt, "lr": lr, "steps": steps, "check_steps": check_n, "layer": args.layer,
                                         "target": args.target,
                                         "tail_drop": float(rec.tail_drop[i, j]) if variant == "reconstruction" else float("nan"),
                                         "tail_swing": float(rec.tail_swing[i, j]) if variant == "reconstruction" else float("nan"),
                                         "trivial_relative_loss": float(rec.trivial_loss[i, j] / rec.target_activation[i])
                                         if variant == "reconstruction" and rec.target_activation[i] > 0 else float("nan"),
                                         "loss_reduction": getattr(args, "loss_reduction", "sum"),
                                         # where the optimiser stopped, and what the line-search check found beyond it
                                         "optimizer_relative_loss": float(rec.main_loss[i, j] / rec.target_activation[i])
                                         if variant == "reconstruction" and rec.main_loss is not None
                                         and rec.target_activation[i] > 0 else float("nan"),
                                         "check_gain": float(rec.check_gain[i, j])
                                         if variant == "reconstruction" and rec.check_gain is not None else float("nan"),
                                         "starts": n_starts,
                                         "best_start": int(rec.best_start[i, j]) if rec.best_start is not None else 0,
                                         "rho_bar_start_spread": float(spread[i, j]) if variant == "reconstruction" else float("nan"),
                                         "rho_bar_start_range": float(rng[j]) if variant == "reconstruction" else float("nan"),
                                         # the starts whose result converged: the spread is over these (NaN below two)
                                         "starts_converged": int(n_ok[i, j]) if variant == "reconstruction" else None,
                                         "check_tail_drop": float(rec.check_tail_drop[i, j])
                                         if variant == "reconstruction" and rec.check_tail_drop is not None else float("nan"),
                                         "stalled": bool(rec.stalled[i, j]) if variant == "reconstruction" else False,
                                         "converged": bool(rec.converged[i, j]) if variant == "reconstruction" else False,
                                         "model_converged": model_ok})
            rel = rec.loss / np.where(rec.target_activation > 0, rec.target_activation, np.nan)[:, None]
            summaries.append(f"{label}: {rec.seconds:.1f}s, activation loss relative to ||f(x0)||² (median) "
                             + ", ".join(f"r={r:g}: {np.nanmedian(rel[:, j]) if np.isfinite(rel[:, j]).any() else float('nan'):.3g}"
                                         for j, r in enumerate(norms))
                             + "; achieved norm ≤ budget: " + str(bool((rec.norm <= np.array(norms) * (1 + 1e-4)).all()))
                             + (f"; the {opt} optimiser had stalled in {int(rec.stalled.sum())} of {rec.stalled.size} (the "
                                f"line-search check lowered the loss by >= 1% of ||f(x0)||² more; median "
                                f"{np.nanmedian(rec.check_gain):.2%}, at most {np.nanmax(rec.check_gain):.2%}); converged: "
                                f"{int(rec.converged.sum())} of {rec.converged.size} (the check's last 20 steps fell by < 1% and it is no worse than x0 shrunk into the ball)"
                                if rec.check_gain is not None else
                                f"; converged: {int(rec.converged.sum())} of {rec.converged.size} (over the last tenth of the "
                                f"{steps} steps the loss fell and swung by < 1% of ||f(x0)||²; median fall "
                                f"{np.nanmedian(rec.tail_drop):.2%}, swing {np.nanmedian(rec.tail_swing):.2%})"))
            log("reconstruct: " + summaries[-1])
            if rec.main_x is not None:
                summaries.append(f"{label}: the check moved the optimiser's results a median {np.nanmedian(move):.0%} of their "
                                 f"norm; share of power above 0.25 cycles/pixel (median): optimiser's "
                                 f"{np.median(hfs['optimizer_result']):.2f}, result "
                                 f"{np.median(hfs['reconstruction']):.2f}, targets {np.median(hf_target):.2f}")
                log("reconstruct: " + summaries[-1])
            if n_starts > 1:
                conv_k = rec.start_converged()
                summaries.append(f"{label}: {n_starts} starts, the result the lowest-loss one (start 0 in "
                                 f"{int((rec.best_start == 0).sum())} of {rec.best_start.size}); converged over every start: "
                                 f"{int(conv_k.sum())} of {conv_k.size}; ϱ̄ ({primary} saliency) over the converged starts: "
                                 "range of the median over images " + ", ".join(f"r={r:g}: {ranges[primary][j]:.3f}"
                                                                               for j, r in enumerate(norms))
                                 + "; median spread per image " + ", ".join(
                                     f"r={r:g}: {np.nanmedian(spreads[primary][:, j]):.3f}" if np.isfinite(spreads[primary][:, j]).any()
                                     else f"r={r:g}: -" for j, r in enumerate(norms)))
                log("reconstruct: " + summaries[-1])
            if not model_ok:
                summaries.append(f"{label}: NOT CONVERGED ({share:.0%} of its reconstructions settled, {opt} lr {lr:g}): "
                                 "left out of the median ϱ̄ table and the ϱ̄ figure; give it more --steps or --check-steps, or another "
                                 "--optimizer, before comparing it")
                log("reconstruct: warning: " + summaries[-1])
            dead = int((rec.target_activation == 0).sum())
            if dead:
                summaries.append(f"{label}: {args.layer} is all zero for {dead} of {len(clean)} targets (a dead layer): "
                                 "its reconstructions of those images stay at the starting noise and say nothing")
                log("reconstruct: warning: " + summaries[-1])
    table = pl.DataFrame(rows)
    # the comparison is between models whose reconstructions converged (every row stays in rho.parquet)
    compared = table.filter(pl.col("model_converged"))
    med = (compared.group_by("source", "variant", "kind", "norm").agg(pl.col("rho_bar").median().alias("median_rho_bar"),
                                                                       pl.col("rho_bar_start_spread").fill_nan(None).median()
                                                                       .alias("median_start_spread"),
                                                                       pl.col("rho_bar_start_range").fill_nan(None).median()
                                                                       .alias("start_range"),
                                                                       pl.len().alias("images"))
           .sort("source", pl.col("variant").replace_strict({"reconstruction": 0, "spectral_control": 1, "optimizer_result": 2}),
                 "kind", "norm"))
    from analysis import figures as figs

    with atomic_dir(args.out, overwrite=True, marker="reconstruction") as tmp:
        np.savez_compressed(tmp / "reconstructions.npz", clean=clean, target=target_u8,
                            norms=np.array(norms), kinds=np.array([m["kind"] for m in models]),
                            **{f"saliency_{k}": v for k, v in maps.items()},
                            **{f"mask_{k}": v for k, v in saliency.items()}, **arrays)
        table.write_parquet(tmp / "rho.parquet")
        table.write_csv(tmp / "rho.csv")
        med.write_parquet(tmp / "median_rho.parquet")
        med.write_csv(tmp / "median_rho.csv")
        kinds = [m["kind"] for m in models]
        grid = figs.reconstruction_grid(clean, target_u8, {k: arrays[f"recon_{k}"] for k in kinds},
                                        {k: arrays[f"control_{k}"] for k in kinds}, norms, args.target)
        figs.save(grid, tmp / "figures", "reconstructions")
        made = ["reconstructions"]
        if "mtl_monkey" in set(compared["kind"]) and compared["kind"].n_unique() > 1:
            sc = figs.rho_scatter(compared.filter(pl.col("source") == primary), norms, primary)
            figs.save(sc, tmp / "figures", "rho_scatter")
            made.append("rho_scatter")
        summary = {"sweep": lake.sweep, "lake": lake.root, "models": [{k: m[k] for k in ("run_id", "kind", "ratio", "seed")}
                                                                         for m in models],
                   "images": n_img, "norms": norms, "starts": n_starts, "steps": steps, "check_steps": check_n, "layer": args.layer, "target": args.target,
                   "device": str(dev), "saliency_sources": sorted(saliency), "primary_source": primary,
                   "figures": made, "log": summaries, "seconds": round(time.time() - t0, 1),
                   "median_rho_bar": med.filter(pl.col("source") == primary).to_dicts()}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        section = section_html(tmp, summary, med.filter(pl.col("source") == primary), made)
        (tmp / "section.html").write_text(section, encoding="utf-8")
    report_dir = None if args.no_report else (args.report or default_report(storage, lake.sweep))
    if report_dir is not None:
        from analysis.html import add_section

        add_section(report_dir, "reconstruction", section)
        log(f"reconstruct: section added to {Path(report_dir) / 'report.html'}")
    for kind_row in med.filter((pl.col("source") == primary) & (pl.col("variant") == "reconstruction")).partition_by("kind"):
        log(f"reconstruct: median ϱ̄ ({primary} saliency) of {kind_row['kind'][0]}: "
            + ", ".join(f"r={r:g}: {v:.3f}" for r, v in zip(kind_row["norm"], kind_row["median_rho_bar"])))
    log(f"reconstruct: {args.out} (figures {', '.join(made)}; {time.time() - t0:.1f}s)")
    summary["report"] = str(report_dir) if report_dir else None
    summary["out"] = str(args.out)
    return summary


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    cli_main(main)
