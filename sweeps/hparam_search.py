"""Hyperparameter search for the multi-task trainer: Optuna (TPE) through Ray Tune, with ASHA.

    python sweeps/hparam_search.py --preset demo --trials 16
    python sweeps/hparam_search.py --preset study --trials 64 --metric val_accuracy --address auto

Searches the MTL-Monkey fit's learning rate, momentum, weight decay, readout initialisation
(mu and sigma ranges) and neural:classification ratio. The Monkey Predictor it needs is taken from
the lake (or trained first). Every trial is recorded in the results lake (sweep '<name>-hparam'):
finished ones by their worker, early-stopped ones (ASHA) with status 'stopped' and their last
metrics. Output: the records in STORAGE/lake (no report), a closing table of every trial, best first,
and the best configuration as flags that `ratio_grid.py` accepts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import ConfigError, Parser, cli_main, require_installed  # noqa: E402
require_installed()  # before the imports below need them
from sweeps.cli import (TRIAL_DRIVER_CPU, add_common_flags, interruptible, resolve_common,  # noqa: E402
                        start_ray, worlds)
from sweeps.console import progress_callback  # noqa: E402
from sweeps.plan import presets_help  # noqa: E402
from sweeps.runner import concurrency, prepare_data, run_config  # noqa: E402

SEARCH_RATIOS = ("1:5", "1:3", "1:2", "1:1", "2:1", "3:1")
SEARCHED = ("lr", "momentum", "weight_decay", "init_mu_range", "init_sigma_range")


def trial_task(spec_dict: dict, config: dict):
    """The spec (with this trial's hyperparameters) and task of one search trial, from its Tune config.

    Used by the trial itself and by the driver when it records early-stopped trials, so both agree
    on the run id."""
    from dataclasses import replace

    from core.presets import get_preset
    from core.training.kinds import base_config, run_id_for
    from sweeps.stages import SweepSpec, Task, task_overrides

    base = SweepSpec(**spec_dict)
    spec = replace(base, cls_overrides={**base.cls_overrides, **{k: config[k] for k in SEARCHED}})
    ratio, seed = config["ratio"], spec.seeds[0]
    cfg = base_config("mtl_monkey", get_preset(spec.preset), ratio, seed, **task_overrides(spec, "mtl_monkey"))
    rid = run_id_for("mtl_monkey", spec.preset, ratio, seed, cfg, config["sources_info"], config["upstream_id"])
    return spec, Task("mtl_monkey", ratio, seed, rid, config["upstream_id"]), cfg


def hparam_trial(config: dict) -> None:
    """Tune function: one MTL-Monkey model with the sampled hyperparameters (via one Ray Train run)."""
    from sweeps.stages import task_config, tune_trial

    spec, task, _ = trial_task(config["spec"], config)
    work = config.get("work_root") and f"{config['work_root']}/{task.run_id}"
    tune_trial({"t": task_config(spec, task, config["tintc"], work_dir=work)})


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python sweeps/hparam_search.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=presets_help("the search trains the Monkey Predictor of the preset's first seed (unless the lake "
                                   f"has it) and --trials MTL-Monkey models of that seed, at ratios sampled from "
                                   f"{','.join(SEARCH_RATIOS)} (or --ratios), each up to the preset's epochs (--max-epochs "
                                   "caps them) unless ASHA stops it sooner", grid=False))
    add_common_flags(p)
    p.add_argument("--trials", type=int, default=16, help="number of Optuna trials (default 16)")
    p.add_argument("--metric", default="val_accuracy", choices=["val_accuracy", "val_correlation"],
                   help="what to maximise, reported every epoch (default val_accuracy)")
    p.add_argument("--grace-period", type=int, default=2, help="ASHA: epochs before a trial may be stopped (default 2)")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the Optuna sampler (default 0)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: expected >= 1")
    spec, ray_kwargs = resolve_common(args, kinds="mtl_monkey", one_world=True)
    spec = worlds(args, spec)[0]
    spec.sweep = (args.sweep or spec.sweep) + "-hparam"
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from core.results import write_table
    from core.results.lake import now, provenance
    from sweeps.runner import run_graph
    from sweeps.stages import finished_run_ids, lake_root, plan, trial_resources

    log = None if args.quiet else print
    if not args.verbose:   # "A new study created in memory ...": the progress lines say what runs
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()

    def stopped(what):   # Ctrl-C or SIGTERM
        print(f"\n{what} after {time.perf_counter() - t0:.0f}s: the trials that finished are in {lake_root(spec)} (sweep "
              f"'{spec.sweep}'); a new search starts afresh, with the Monkey Predictor from the lake once it is there",
              file=sys.stderr)

    start_ray(ray_kwargs["address"], ray_kwargs["num_cpus"], print, verbose=ray_kwargs.get("verbose", False))
    sources, tintc = prepare_data(spec, log)
    # the Monkey Predictor: from the lake, or trained first
    waves = plan(spec, sources.info)
    predictor = [t for w in waves for t in w if t.kind == "monkey_predictor"][0]
    # any sweep's record will do: the same run id is the same model (e.g. the grid's, in this storage)
    if finished_run_ids(spec, any_sweep=True).get(predictor.run_id) == "ok":
        if log:
            log(f"using the Monkey Predictor {predictor.run_id} already in the lake")
    else:
        if log:
            log("training the Monkey Predictor first")
        with interruptible(stopped):
            run_graph(spec, [predictor], tintc, 1, log)
        if finished_run_ids(spec).get(predictor.run_id) != "ok":
            raise ConfigError("the Monkey Predictor did not finish; see the Ray logs under STORAGE/ray")

    space = {
        "lr": tune.loguniform(1e-3, 0.3),
        "momentum": tune.uniform(0.5, 0.95),
        "weight_decay": tune.loguniform(1e-5, 1e-3),
        "init_mu_range": tune.uniform(0.05, 0.5),
        "init_sigma_range": tune.uniform(0.05, 0.8),
        "ratio": tune.choice(list(spec.ratios if args.ratios else SEARCH_RATIOS)),
        "spec": __import__("dataclasses").asdict(spec), "sources_info": sources.info, "tintc": tintc,
        "upstream_id": predictor.run_id,
        "work_root": str(Path(spec.storage).resolve() / "work") if "://" not in spec.storage else None,
    }
    k = concurrency(spec, args.max_concurrent)
    tuner = tune.Tuner(
        tune.with_resources(hparam_trial, trial_resources(spec, TRIAL_DRIVER_CPU)),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=args.metric, mode="max", num_samples=args.trials,
            search_alg=ConcurrencyLimiter(OptunaSearch(seed=args.search_seed), max_concurrent=k),
            # rungs by epoch, not by report: a worker restarted after a fault says its finished epochs again
            scheduler=ASHAScheduler(time_attr="epoch", grace_period=args.grace_period, reduction_factor=2),
            reuse_actors=spec.train_workers == 0),
        run_config=run_config(spec, f"{spec.sweep}-{int(time.time())}", [progress_callback(log is None, stopped_by="ASHA")]),
    )
    with interruptible(stopped):
        grid = tuner.fit()
    # record trials that ASHA stopped early (finished ones wrote their own records)
    done = finished_run_ids(spec)
    rows = []
    for r in grid:
        c = r.config
        hist = r.metrics_dataframe
        best_metric = float(hist[args.metric].max()) if hist is not None and args.metric in hist else math.nan
        last_epoch = int(hist["epoch"].max()) if hist is not None and "epoch" in hist and hist["epoch"].notna().any() else 0
        _, task, cfg = trial_task(c["spec"], c)
        rid = task.run_id
        status = done.get(rid) or ("failed" if r.error else "stopped")
        rows.append({**{k2: c[k2] for k2 in SEARCHED}, "ratio": c["ratio"], args.metric: best_metric,
                     "outcome": status if status != "stopped" else f"stopped by ASHA after epoch {last_epoch}"})
        if rid not in done:
            write_table(lake_root(spec), "runs", [{
                "run_id": rid, "kind": "mtl_monkey", "ratio": c["ratio"], "seed": spec.seeds[0], "preset": spec.preset,
                "status": status, "error": str(r.error or "stopped early by ASHA")[:2000], "val_accuracy": best_metric
                if args.metric == "val_accuracy" else math.nan, "epochs": int(len(hist)) if hist is not None else 0,
                "upstream": predictor.run_id, "config": json.dumps(__import__("dataclasses").asdict(cfg)),
                "created_at": now(), **provenance()}], spec.sweep, "mtl_monkey", rid)
    rows.sort(key=lambda r: -r[args.metric] if r[args.metric] == r[args.metric] else math.inf)
    print(f"\nsearch finished in {time.perf_counter() - t0:.0f}s: {len(rows)} trials, recorded in {lake_root(spec)} (sweep '{spec.sweep}')")
    for r in rows:   # every trial, best first
        print(f"  {args.metric} {r[args.metric]:.4f}  ratio {r['ratio']}  lr {r['lr']:.4g}  momentum {r['momentum']:.3f}  "
              f"weight_decay {r['weight_decay']:.3g}  mu {r['init_mu_range']:.3f}  sigma {r['init_sigma_range']:.3f}  "
              f"{r['outcome']}")
    b = rows[0]
    print("\nbest, as grid flags:\n  python sweeps/ratio_grid.py --preset {} --ratios {} --set lr={:.4g},momentum={:.4g},"
          "weight_decay={:.4g},init_mu_range={:.4g},init_sigma_range={:.4g}".format(
              spec.preset, b["ratio"], b["lr"], b["momentum"], b["weight_decay"], b["init_mu_range"], b["init_sigma_range"]))
    return 0


if __name__ == "__main__":
    cli_main(main)
