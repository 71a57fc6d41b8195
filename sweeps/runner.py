"""Running a sweep: its models through one Ray Tune run in dependency order, the progress lines, the summary and the report."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from pathlib import Path

from core.errors import ConfigError
from core.presets import get_preset
from sweeps.cli import TRIAL_DRIVER_CPU, interruptible, ray_map, start_ray
from sweeps.console import clock, progress_callback, summarize


def run_config(spec, name: str, callbacks):
    from ray import tune

    from sweeps.stages import ray_storage

    storage, kwargs = ray_storage(spec)
    return tune.RunConfig(name=name, storage_path=storage, failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                          callbacks=callbacks, verbose=0, **kwargs)


def _trial_config(spec, task, tintc_path) -> dict:
    from sweeps.stages import task_config

    # local storage: the fit's own per-epoch checkpoint in STORAGE/work is the resume point, so Ray
    # Train checkpoints (a copy per epoch) are only reported for remote storage
    local = "://" not in spec.storage
    return task_config(spec, task, tintc_path, work_dir=str(Path(spec.storage).resolve() / "work" / task.run_id) if local else None,
                       checkpoint_every_epoch=not local)


def graph_searcher(spec, tasks, tintc_path, log, total: int, t0: float, slots: int = 1, weights: dict | None = None,
                   prior: float | None = None):
    """A Tune searcher that hands out the sweep's models in dependency order: a model is suggested as
    soon as its upstream's record is `ok` in the lake (not when a wave ends), the earliest stage
    first; a model whose upstream failed is recorded as failed without running. Tune asks again
    whenever a slot is free; `None` means "nothing is ready yet"."""
    from ray.tune.search import Searcher

    from core.training.graph import CLASSIFIERS
    from sweeps.stages import finished_run_ids, write_failed

    class GraphSearcher(Searcher):
        def __init__(self):
            super().__init__()
            self.pending = list(tasks)          # in stage order
            self.active = {}                    # trial id -> task, until the trial ends
            self.since = {}                     # trial id -> when it started
            self.took = []                      # (weight, seconds) of the models that started and ended here
            # (classifier?, planned seconds or 1) of a model: what the time-left estimate weighs it by
            self.weight = lambda t: (t.kind in CLASSIFIERS, (weights or {}).get(t.run_id, 1.0))
            self.first_estimate = None          # (elapsed, time left) when the first estimate was made
            self.done = finished_run_ids(spec)
            self.started = total - len(tasks)

        def left(self, now: float) -> float | None:
            """Seconds until the last model ends: the models still to run and the running ones' rest, each at
            its planned seconds scaled by what the finished models of its group (classifiers, neural-only)
            took against their plan; where its group has none finished, `prior` (the plan as it is), or without
            one what all finished models took; else None. On `slots` slots in dependency order
            (sweeps.timing.simulate). Without a plan every model weighs 1. (One group's factor says little about
            the other's: the first Monkey Predictors of the controls preset took 2.5x their plan, a small fit
            where a trial's fixed costs weigh most, and applied to the classifiers it said 1 h 27 min left
            where the plan had said 35 min.)"""
            from sweeps.timing import simulate

            def ratio(pairs):
                return sum(sec for _, sec in pairs) / max(sum(w for w, _ in pairs), 1e-9)

            def factor(group):   # seconds per planned second (per model where nothing was planned)
                own = [(w, sec) for g, w, sec in self.took if g == group]
                if own:
                    return ratio(own)
                if weights and prior is not None:
                    return prior
                return ratio([(w, sec) for _, w, sec in self.took]) if self.took else None

            factors = {g: factor(g) for g in (True, False)}
            if any(f is None for f in factors.values()):
                return None
            plan = {t.run_id: self.weight(t)[1] * factors[self.weight(t)[0]] for t in [*self.pending, *self.active.values()]}
            running = {a.run_id: max(0.0, plan[a.run_id] - (now - self.since.get(i, now))) for i, a in self.active.items()}
            return simulate([t.run_id for t in self.pending], plan, {t.run_id: t.upstream_id for t in self.pending},
                            slots, running)

        def set_search_properties(self, metric, mode, config, **spec_):
            return True

        def _may_come(self, run_id: str) -> bool:   # to run, or running, in this Tune run
            return any(t.run_id == run_id for t in self.pending) or any(t.run_id == run_id for t in self.active.values())

        def suggest(self, trial_id):
            for t in list(self.pending):
                if not t.upstream_id or self.done.get(t.upstream_id) == "ok":
                    self.pending.remove(t)
                    self.active[trial_id] = t
                    self.started += 1
                    now = time.perf_counter()
                    self.since[trial_id] = now
                    left = self.left(now)
                    if left is not None and self.first_estimate is None:
                        self.first_estimate = (now - t0, left)
                    if log:
                        log(f"model {self.started} of {total} starts: {t.label()} ({clock(now - t0)} elapsed, "
                            + (f"about {clock(left)} left)" if left is not None else "time left: known when a model has finished)"))
                    return {"t": _trial_config(spec, t, tintc_path)}
                if not self._may_come(t.upstream_id):   # the upstream ended without `ok` (or was never to run)
                    self.pending.remove(t)
                    write_failed(spec, t, f"upstream {t.upstream_id} did not finish ({self.done.get(t.upstream_id, 'missing')})")
                    self.done[t.run_id] = "failed"
            return Searcher.FINISHED if not self.pending else None

        def save(self, checkpoint_path: str):   # Tune saves its searcher with the experiment state
            with open(checkpoint_path, "w") as f:
                json.dump({"pending": [t.run_id for t in self.pending], "started": self.started,
                           "active": {i: t.run_id for i, t in self.active.items()}}, f)

        def restore(self, checkpoint_path: str):
            with open(checkpoint_path) as f:
                state = json.load(f)
            self.pending = [t for t in self.pending if t.run_id in set(state["pending"])]
            self.started = state["started"]
            # running when saved: Tune resumes them under the same trial ids, and each ends (ok, or with no
            # record after a crash) through on_trial_complete like any other; their start times are not known
            by_id = {t.run_id: t for t in tasks}
            self.active = {i: by_id[r] for i, r in state["active"].items() if r in by_id}

        def on_trial_complete(self, trial_id, result=None, error=False):
            t = self.active.pop(trial_id, None)
            began = self.since.pop(trial_id, None)
            if t is not None and began is not None and not error:
                self.took.append((*self.weight(t), time.perf_counter() - began))
            self.done = finished_run_ids(spec)   # the trial wrote its record (ok, diverged or failed) before it ended
            if t is not None and t.run_id not in self.done:
                self.done[t.run_id] = "failed"   # crashed past its retries: recorded after the run

    return GraphSearcher()


def planned_seconds(spec, tasks) -> dict | None:
    """run id -> the seconds `--plan` plans for the model on its CPU threads (sweeps.timing): the weights of
    the time-left estimate. None where they cannot be counted (the estimate then waits for finished models
    and weighs every model alike)."""
    try:
        from sweeps.plan import task_seconds

        return task_seconds(spec, tasks)
    except Exception:   # noqa: BLE001 - only the estimate depends on it
        return None


def prior_factor(spec) -> float | None:
    """Before a model of a group has finished: on CPUs the plan as it is (1 second per planned second); on
    GPUs none (a narrow model's share of a GPU is not known ahead)."""
    return None if spec.gpus_per_trial > 0 or spec.device == "cuda" else 1.0


def run_graph(spec, tasks, tintc_path, max_concurrent, log, total: int | None = None, t0: float | None = None):
    """One Ray Tune run for all `tasks` (in stage order), each started as soon as its upstream is in
    the lake; a task that ends without a record is recorded as failed afterwards. Returns the first
    estimate of the time left, (elapsed, left) in seconds, or None."""
    from ray import tune

    from sweeps.stages import finished_run_ids, trial_resources, tune_trial, write_failed

    t0 = time.perf_counter() if t0 is None else t0
    total = len(tasks) if total is None else total
    searcher = graph_searcher(spec, tasks, tintc_path, log, total, t0, max_concurrent, planned_seconds(spec, tasks),
                              prior_factor(spec))
    tuner = tune.Tuner(
        tune.with_resources(tune_trial, trial_resources(spec, TRIAL_DRIVER_CPU)),
        tune_config=tune.TuneConfig(search_alg=searcher,
                                    num_samples=len(tasks), max_concurrent_trials=max_concurrent,
                                    # local mode: the next model runs in the same process (torch and the code
                                    # imported once); a worker group is a new process per model anyway
                                    reuse_actors=spec.train_workers == 0),
        run_config=run_config(spec, f"{spec.sweep}-{uuid.uuid4().hex[:6]}", [progress_callback(log is None)]),
    )
    tuner.fit()
    done = finished_run_ids(spec)
    for t in tasks:
        if t.run_id not in done:
            write_failed(spec, t, "trial ended without a record (see the Ray logs under STORAGE/ray)")
    return searcher.first_estimate


def concurrency(spec, requested: int) -> int:
    import ray

    res = ray.cluster_resources()
    if spec.gpus_per_trial:
        k = int(res.get("GPU", 0) // spec.gpus_per_trial)
        if k < 1:
            raise ConfigError(f"--gpus-per-trial {spec.gpus_per_trial:g}: the cluster has {res.get('GPU', 0):g} GPUs")
    else:
        k = int(math.floor(res.get("CPU", 1) / (spec.cpus_per_trial + TRIAL_DRIVER_CPU) + 1e-9))
        if k < 1:
            raise ConfigError(f"--cpus-per-trial: the cluster has {res.get('CPU', 0):g} CPUs")
    return max(1, min(k, requested)) if requested else max(1, k)


def prepare_data(spec, log, ray_kwargs=None):
    """The driver builds shared inputs once, before any trial: the world, TIN-TC, the Oracles' corruption banks.

    Ray is started only if TIN-TC has to be built (as Ray tasks): a re-run whose inputs are all cached,
    and whose models are all in the lake, never starts it."""
    from core.data.corruptions import ensure_tintc
    from core.training.bundles import load_sources, oracle_bank
    from core.training.graph import CLASSIFIERS
    from core.training.kinds import tintc_source

    preset = get_preset(spec.preset)
    sources = load_sources(preset, spec.data_root, spec.tin_root, spec.neural_data, log=log, planted=spec.planted)
    tintc = None
    if any(k in CLASSIFIERS for k in spec.kinds):
        images, folder = tintc_source(preset, sources, spec.data_root)
        tintc = str(folder)
        import ray

        def map_fn(fn, jobs):   # Ray comes up on the first chunk to build, not before
            if ray_kwargs is not None:
                start_ray(ray_kwargs["address"], ray_kwargs["num_cpus"], print, verbose=ray_kwargs.get("verbose", False))
            yield from ray_map(fn, jobs)

        n_cpu = max(1, int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else
                    (ray_kwargs or {}).get("num_cpus") or os.cpu_count() or 1)
        if getattr(spec, "tintc_root", None):   # the published JPEGs of the same test images, decoded once
            from core.data.published_tintc import ensure_published, identity

            tintc = str(ensure_published(spec.tin_root, spec.tintc_root, len(images), spec.data_root, map_fn=map_fn, log=log))
            sources.info.update(identity(tintc))   # a classifier scored on them is another run (run_id_for)
        else:
            ensure_tintc(images, tintc, seed=0, log=log, map_fn=map_fn, chunk=max(4, min(32, len(images) // (4 * n_cpu))),
                         progress=log is not None)
    if "oracle" in spec.kinds:
        for seed in spec.seeds:   # one Oracle per seed, each with its own corruption draws
            oracle_bank(sources, Path(spec.data_root), seed, preset.oracle_variants, log)
    return sources, tintc


def run_sweep(spec, ray_kwargs, args) -> int:
    from sweeps.stages import finished_run_ids, plan

    log = None if args.quiet else print
    t0 = time.perf_counter()
    sources, tintc = prepare_data(spec, log, ray_kwargs)
    waves = plan(spec, sources.info)
    done = finished_run_ids(spec)
    total = sum(len(w) for w in waves)
    skipped = sum(1 for w in waves for t in w if done.get(t.run_id) in ("ok", "diverged"))
    todo = [t for w in waves for t in w if done.get(t.run_id) not in ("ok", "diverged")]
    if todo:
        start_ray(ray_kwargs["address"], ray_kwargs["num_cpus"], print, verbose=ray_kwargs.get("verbose", False))
        k = concurrency(spec, args.max_concurrent)
    print(f"sweep '{spec.sweep}' (preset {spec.preset}): {total} models, {skipped} already in the lake, "
          + (f"{len(todo)} to train, up to {k} at a time" if todo else "nothing to train (Ray not started)")
          + f"; results: {spec.storage}")

    def stopped(what):   # Ctrl-C or SIGTERM: nothing is recorded as failed, the same command goes on
        n = sum(1 for w in waves for t in w if finished_run_ids(spec).get(t.run_id) in ("ok", "diverged"))
        print(f"\n{what} after {time.perf_counter() - t0:.0f}s: {n} of {total} models are in the lake; run the same "
              "command again to train the rest (a model stopped mid-fit resumes from its last epoch)", file=sys.stderr)

    estimate = None
    with interruptible(stopped):
        if todo:
            if log:
                log(f"{len(todo)} models in one Ray Tune run, each started as soon as its upstream is in the lake "
                    f"(stages: {' -> '.join(', '.join(sorted({t.kind for t in w})) for w in waves if w)})")
            estimate = run_graph(spec, todo, tintc, k, log, total=total, t0=t0)
    summarize(spec, time.perf_counter() - t0, trained=len(todo), skipped=skipped, estimate=estimate)
    done = finished_run_ids(spec)
    failed = [t for w in waves for t in w if done.get(t.run_id) not in ("ok", "diverged")]
    if failed:   # everything that finished is written; the exit status says the sweep is not complete
        sys.stdout.flush()   # in order with the lines above when both streams go to one file
        print(f"{len(failed)} of {total} models failed ({', '.join(sorted({t.kind for t in failed}))}): their errors are "
              "in the lake's runs table and the report; fix the cause and re-run the same command to train only them",
              file=sys.stderr, flush=True)
    if hasattr(args, "no_report") and not args.no_report:
        write_report(spec, args)   # its last line, the last of the run: the report's path
    return 1 if failed else 0


def write_calibration_report(specs, args) -> None:
    """After one sweep per planted world: the calibration report over all of them (analysis.calibration),
    in STORAGE/report/<the sweeps' common name>."""
    from analysis.calibration import build
    from core.errors import UserError

    base = specs[0].sweep.rsplit("-planted", 1)[0]
    out = (Path.cwd() / f"report-{base}") if "://" in specs[0].storage else Path(specs[0].storage) / "report" / base
    try:
        build(specs[0].storage, [(s.planted, s.sweep) for s in specs], out, n_boot=args.bootstrap, log=print)
    except UserError as e:
        print(f"calibration report: not written: {e}")


def report_dir(spec, args) -> Path:
    if getattr(args, "report", None):
        return Path(args.report).resolve()
    if "://" in spec.storage:
        return Path.cwd() / f"report-{spec.sweep}"
    return Path(spec.storage) / "report" / spec.sweep


def write_report(spec, args) -> None:
    """The analysis of this sweep (python -m analysis), after the summary. A lake with nothing to
    analyse is said in one line; the sweep's own results stand either way."""
    from analysis.report import build, console_lines
    from core.errors import UserError

    out = report_dir(spec, args)
    try:
        rep = build(spec.storage, out, sweep=spec.sweep, n_boot=args.bootstrap, seed=0, log=print,
                    include_unhealthy=getattr(args, "include_unhealthy", False), force=getattr(args, "force", False),
                    out_flag="--report" if getattr(args, "report", None) else "report folder")
    except UserError as e:
        print(f"report: not written: {e}")
        return
    print(console_lines(rep))
    if rep.notes:
        print(f"the report has {len(rep.notes)} notes on what is missing")
    print(f"report: {out / 'report.html'}")
