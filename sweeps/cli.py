"""Flags, validation, Ray start-up and the wave runner shared by the sweep scripts."""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

from core.errors import ConfigError
from core.io import join_uri
from core.presets import PRESETS, get_preset
from core.training.cycler import parse_ratio
from core.training.graph import FAMILIES, KINDS, UPSTREAM

os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter is silent at verbose=0: our own progress lines instead
# Train V2's controller polls its workers every 2 s by default, which adds ~10 s to every short
# trial on a local instance (measured: 34 -> 24 s for an empty TorchTrainer trial at 0.2 s); a
# local Ray started by this driver inherits this. On a `ray up` cluster the default stands.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
TRIAL_DRIVER_CPU = 0.05   # the Tune function only launches the trainer


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo)")
    p.add_argument("--storage", default=os.environ.get("BRAINROBUST_STORAGE") or "results",
                   help="results folder or URI (s3://, gs://; default $BRAINROBUST_STORAGE, which cluster.yaml sets "
                        "on every node, else ./results)")
    p.add_argument("--data-root", default="data", help="folder for the synthetic world and caches, readable by every node (default ./data)")
    p.add_argument("--sweep", help="sweep name: its partition in the lake (default: the preset's name)")
    p.add_argument("--ratios", help="comma-separated n:c ratios, e.g. 1:15,1:1,5:1 (default: the preset's; paper: the 12 of the paper)")
    p.add_argument("--seeds", help="comma-separated non-negative seeds (default: the preset's)")
    p.add_argument("--address", help="existing Ray cluster ('auto' on a `ray up` head node); default: start a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per model, at most 1; fractions share a GPU (default 0)")
    p.add_argument("--cpus-per-trial", type=float, default=0.0, help="CPUs per model (default: 1 on CPU runs, 2 with GPUs)")
    p.add_argument("--max-concurrent", type=int, default=0, help="cap on models trained at once (default: as many as resources allow)")
    p.add_argument("--tin-root", help="Tiny ImageNet folder (preset paper)")
    p.add_argument("--neural-data", help="neural recordings in the project's format (preset paper; see `python -m core.data convert`)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--max-epochs", type=int, help="override the preset's epoch cap (quick looks)")
    p.add_argument("--set", default="", metavar="KEY=VALUE,...",
                   help="training overrides for the classification-bearing fits, e.g. lr=0.05,momentum=0.9, or for "
                        "one kind with a prefix, e.g. mtl_monkey.lr=0.01 (keys of core.training.config.TrainConfig; "
                        "hparam_search.py prints the best as such a flag); the architecture keys model, width and "
                        "readout_layer reach every kind, e.g. width=0.0625 for a quick look at the paper preset")
    p.add_argument("--resume", action="store_true", help="finish an interrupted sweep (finished models are always skipped; this also says so)")
    p.add_argument("--quiet", action="store_true", help="only the summary")


def _list(text: str, what: str, conv):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} {text!r}: expected a comma-separated list")
    return [conv(t) for t in items]


def _seed(t: str) -> int:
    try:
        v = int(t)
    except ValueError:
        raise ConfigError(f"--seeds: {t!r} is not an integer; expected non-negative integers like 0,1,2") from None
    if v < 0:
        raise ConfigError(f"--seeds: {v} is negative; expected non-negative integers like 0,1,2")
    return v


def _alpha(t: str) -> float:
    try:
        v = float(t)
    except ValueError:
        raise ConfigError(f"--alphas: {t!r} is not a number; expected non-negative weights like 1,10") from None
    if not v >= 0 or v == float("inf"):
        raise ConfigError(f"--alphas: {t}; expected finite non-negative weights like 1,10")
    return v


def _ratio(t: str) -> str:
    try:
        parse_ratio(t)
    except ConfigError as e:
        raise ConfigError(f"--ratios: {e}") from None
    return t


def check_storage(storage: str) -> None:
    """Fail early, in one line, if results cannot be written there."""
    from sweeps.stages import fs_and_path

    try:
        fs, path = fs_and_path(storage)
        probe = f"{path}/.write-probe-{uuid.uuid4().hex[:8]}"
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except (OSError, ValueError) as e:  # pyarrow's I/O errors are OSError (ArrowInvalid: ValueError)
        raise ConfigError(f"--storage {storage}: not writable ({str(e).splitlines()[0]})") from None


def check_dirs(args) -> None:
    """--data-root is a folder, or not there yet; checked before anything is created."""
    d = Path(args.data_root)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"--data-root {d}: not a directory (expected a folder for the synthetic world and caches)")


def check_address(address: str) -> None:
    """An explicit host:port must answer before we try to join it."""
    if address in ("auto", "local") or ":" not in address:
        return  # resolved by Ray itself
    host, port = address.replace("ray://", "").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except (OSError, ValueError) as e:
        raise ConfigError(f"--address {address}: unreachable ({e})") from None


def parse_set(text: str) -> dict:
    """'lr=0.05,mtl_monkey.momentum=0.9' -> typed TrainConfig overrides; a KIND. prefix limits one to
    that model kind. Unknown keys or kinds and bad values raise."""
    import dataclasses

    from core.config import from_dict
    from core.training.config import TrainConfig

    if not text:
        return {}
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in text.split(","):
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE or KIND.KEY=VALUE")
        k, v = (x.strip() for x in item.split("=", 1))
        kind, _, key = k.rpartition(".")
        if kind and kind not in KINDS:
            raise ConfigError(f"--set {k}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if key not in types:
            raise ConfigError(f"--set: unknown key {key!r}; expected keys of TrainConfig such as lr, momentum, weight_decay")
        t = types[key] if isinstance(types[key], str) else types[key].__name__
        try:
            out[k] = {"float": float, "int": int, "bool": lambda x: x.lower() in ("1", "true", "yes"), "str": str}[t](v)
        except (ValueError, KeyError):
            raise ConfigError(f"--set {k}={v}: expected a {t}") from None
    from sweeps.stages import ARCH_KEYS

    for k in out:
        kind, _, key = k.rpartition(".")
        if kind in ("oracle", "oracle_readout") and key in ARCH_KEYS:
            raise ConfigError(f"--set {k}: the Oracle Readout loads the Oracle's weights, so both must have the same "
                              f"{key}; set it for every kind instead (--set {key}=...)")
    for scope in {k.rpartition(".")[0] for k in out}:  # validates values (e.g. momentum range) per kind
        from_dict(TrainConfig, {k.rpartition(".")[2]: v for k, v in out.items() if k.rpartition(".")[0] in ("", scope)},
                  where="--set")
    return out


def resolve_common(args, kinds: str = "all"):
    from sweeps.stages import SweepSpec

    preset = get_preset(args.preset)
    ratios = _list(args.ratios, "ratios", _ratio) if args.ratios else list(preset.ratios)
    seeds = _list(args.seeds, "seeds", _seed) if args.seeds else list(preset.seeds)
    family = getattr(args, "family", "mtl")
    if family not in FAMILIES:
        raise ConfigError(f"--family {family!r}: expected one of {', '.join(FAMILIES)}")
    alphas = _list(args.alphas, "alphas", _alpha) if getattr(args, "alphas", None) else [10.0]
    if kinds == "all":
        kind_list = list(FAMILIES[family])
    else:
        kind_list = _list(kinds, "kinds", str)
        bad = [k for k in kind_list if k not in KINDS]
        if bad:
            raise ConfigError(f"--kinds: unknown kind {bad[0]!r}; expected some of {', '.join(KINDS)}")
        for k in list(kind_list):  # add upstream kinds
            while k in UPSTREAM:
                k = UPSTREAM[k]
                if k not in kind_list:
                    kind_list.append(k)
    if preset.world is None and not (args.tin_root and args.neural_data):
        raise ConfigError(f"--preset {preset.name} trains on real data: give --tin-root and --neural-data")
    for flag in ("tin_root", "neural_data"):
        v = getattr(args, flag)
        if v and not Path(v).exists():
            raise ConfigError(f"--{flag.replace('_', '-')} {v}: no such file or directory")
    if args.gpus_per_trial < 0 or args.cpus_per_trial < 0 or args.max_concurrent < 0:
        raise ConfigError("--gpus-per-trial, --cpus-per-trial and --max-concurrent must be >= 0")
    if args.gpus_per_trial > 1:
        raise ConfigError(f"--gpus-per-trial {args.gpus_per_trial:g}: several GPUs per model (DDP) is not supported yet; "
                          "use at most 1 (trials then run side by side, one per GPU)")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise ConfigError(f"--max-epochs {args.max_epochs}: expected >= 1")
    if args.sweep is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", args.sweep):
        # the name becomes a folder of the lake (sweep=<name>): it must not leave the storage root
        raise ConfigError(f"--sweep {args.sweep!r}: expected letters, digits, '_', '.', '-' (no '/' or leading '.')")
    if args.address:
        check_address(args.address)
    check_dirs(args)
    check_storage(args.storage)
    cpus = args.cpus_per_trial or (2.0 if args.gpus_per_trial else 1.0)
    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else {}
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())  # workers run elsewhere
    spec = SweepSpec(sweep=args.sweep or preset.name, preset=preset.name, storage=storage,
                     data_root=str(Path(args.data_root).resolve()), ratios=ratios, seeds=seeds, kinds=kind_list, alphas=alphas,
                     tin_root=args.tin_root, neural_data=args.neural_data, gpus_per_trial=args.gpus_per_trial,
                     cpus_per_trial=cpus - TRIAL_DRIVER_CPU if not args.gpus_per_trial else cpus,
                     device=args.device, overrides=overrides, cls_overrides=parse_set(args.set))
    ray_kwargs = {"address": args.address, "num_cpus": args.num_cpus if not args.address else None}
    return spec, ray_kwargs


def bind_loopback() -> None:
    """Make a local Ray (no --address) listen on 127.0.0.1 only.

    By default Ray 2.60 on Linux binds its GCS, raylet and worker gRPC ports to every interface. With
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 it takes the loopback address as the node IP, as it does on a
    laptop running macOS, and every server binds there. Ray reads the variable when it is imported, and
    its workers when they start: set both. A cluster (`--address`) keeps its node IPs.
    """
    import ray._private.ray_constants as rc

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    rc.ENABLE_RAY_CLUSTER = False


def start_ray(address: str | None, num_cpus: int | None, log):
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    kwargs = dict(logging_level="WARNING", log_to_driver=False, configure_logging=True)
    try:
        if address:
            ctx = ray.init(address=address, **kwargs)
        else:
            bind_loopback()
            ctx = ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(f"--address {address}: cannot join Ray ({str(e).splitlines()[0]})") from None
    url = getattr(ctx, "dashboard_url", "") or ""
    if log:
        log(f"Ray {ray.__version__}: {int(ray.cluster_resources().get('CPU', 0))} CPUs, "
            f"{int(ray.cluster_resources().get('GPU', 0))} GPUs; dashboard: "
            + (f"http://{url} (token authentication: `ray get-auth-token` prints the token the page asks for)"
               if url else "not running (install ray[default])"))
    return ctx


def ray_map(fn, jobs):
    """Ray-task version of `map` for the TIN-TC build: results as they complete."""
    import ray

    remote = ray.remote(num_cpus=1)(fn)
    pending = [remote.remote(j) for j in jobs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])


def _say(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def progress_callback(quiet: bool):
    """A Tune callback printing one line per trial report: stage, ratio, seed, epoch, accuracy, FEV(e)."""
    from ray import tune

    class Progress(tune.Callback):
        def __init__(self):
            self.shown = set()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if quiet or result.get("kind") is None:
                return
            # a restarted worker says its finished epochs again (one may have died with the old worker)
            key = (trial.trial_id, result.get("phase"), result.get("epoch"), result.get("done"))
            if key in self.shown:
                return
            self.shown.add(key)
            head = f"  {result.get('kind'):16s} ratio {result.get('ratio') or '-':>5s} seed {result.get('seed')}  "
            feve, corr = result.get("feve", math.nan), result.get("val_correlation", math.nan)
            if result.get("done") is True and result.get("status") == "failed":
                _say(head + f"done: failed: {result.get('error', '')}")
            elif result.get("done") is True:   # a classifier has no FEVe, a predictor's accuracy is chance
                _say(head + f"done: {result.get('status')}, clean acc {result.get('clean_accuracy', math.nan):.3f}"
                     + (f", FEVe {feve:.3f}" if feve == feve else ""))
            else:
                _say(head + f"{result.get('phase', '')} epoch {result.get('epoch')}  val acc "
                     f"{result.get('val_accuracy', math.nan):.3f}" + (f"  val corr {corr:.3f}" if corr == corr else ""))

        def on_trial_error(self, iteration, trials, trial, **info):
            _say(f"  trial {trial.trial_id} failed: {trial.error_file or ''}")

    return Progress()


def run_wave(spec, tasks, tintc_path, max_concurrent, log) -> None:
    from ray import tune

    from sweeps.stages import task_config, tune_trial

    storage = join_uri(spec.storage, "ray")
    kwargs = {}
    if "://" in storage:
        from sweeps.stages import fs_and_path

        fs, storage = fs_and_path(storage)
        kwargs["storage_filesystem"] = fs
    else:
        storage = str(Path(storage).resolve())
    local = "://" not in spec.storage
    # local storage: the fit's own per-epoch checkpoint in STORAGE/work is the resume point, so Ray
    # Train checkpoints (a copy per epoch) are only reported for remote storage
    configs = [task_config(spec, t, tintc_path,
                           work_dir=str(Path(spec.storage).resolve() / "work" / t.run_id) if local else None,
                           checkpoint_every_epoch=not local) for t in tasks]
    tuner = tune.Tuner(
        tune.with_resources(tune_trial, {"CPU": TRIAL_DRIVER_CPU}),
        param_space={"t": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=False),
        run_config=tune.RunConfig(name=f"{spec.sweep}-{tasks[0].kind}-{uuid.uuid4().hex[:6]}", storage_path=storage,
                                  failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                                  callbacks=[progress_callback(log is None)], verbose=0, **kwargs),
    )
    tuner.fit()


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


def prepare_data(spec, log):
    """The driver builds shared inputs once, before any trial: the world, TIN-TC, the Oracles' corruption banks."""
    from core.data.corruptions import ensure_tintc
    from core.training.kinds import CLASSIFIERS, load_sources, oracle_bank, tintc_source

    preset = get_preset(spec.preset)
    sources = load_sources(preset, spec.data_root, spec.tin_root, spec.neural_data, log=log)
    tintc = None
    if any(k in CLASSIFIERS for k in spec.kinds):
        images, folder = tintc_source(preset, sources, spec.data_root)
        tintc = str(folder)
        import ray

        n_cpu = max(1, int(ray.cluster_resources().get("CPU", 1)))
        ensure_tintc(images, tintc, seed=0, log=log, map_fn=ray_map, chunk=max(4, min(32, len(images) // (4 * n_cpu))),
                     progress=log is not None)
    if "oracle" in spec.kinds:
        for seed in spec.seeds:   # one Oracle per seed, each with its own corruption draws
            oracle_bank(sources, Path(spec.data_root), seed, preset.oracle_variants, log)
    return sources, tintc


def run_sweep(spec, ray_kwargs, args) -> int:
    from sweeps.stages import finished_run_ids, plan, write_failed

    log = None if args.quiet else print
    t0 = time.perf_counter()
    start_ray(ray_kwargs["address"], ray_kwargs["num_cpus"], print)
    sources, tintc = prepare_data(spec, log)
    waves = plan(spec, sources.info)
    k = concurrency(spec, args.max_concurrent)
    done = finished_run_ids(spec)
    total = sum(len(w) for w in waves)
    skipped = sum(1 for w in waves for t in w if done.get(t.run_id) in ("ok", "diverged"))
    print(f"sweep '{spec.sweep}' (preset {spec.preset}): {total} models, {skipped} already in the lake, "
          f"{total - skipped} to train, up to {k} at a time; results: {spec.storage}")
    for i, wave in enumerate(waves, 1):
        done = finished_run_ids(spec)
        todo = []
        for t in wave:
            if done.get(t.run_id) in ("ok", "diverged"):
                continue
            if t.upstream_id and done.get(t.upstream_id) != "ok":
                write_failed(spec, t, f"upstream {t.upstream_id} did not finish ({done.get(t.upstream_id, 'missing')})")
                continue
            todo.append(t)
        if not todo:
            continue
        if log:
            log(f"wave {i}: {', '.join(sorted({t.kind for t in todo}))} ({len(todo)} models)")
        run_wave(spec, todo, tintc, k, log)
        done = finished_run_ids(spec)
        for t in todo:
            if t.run_id not in done:
                write_failed(spec, t, "trial ended without a record (see the Ray logs under STORAGE/ray)")
    summarize(spec, time.perf_counter() - t0)
    if hasattr(args, "no_report") and not args.no_report:
        write_report(spec, args)
    done = finished_run_ids(spec)
    failed = [t for w in waves for t in w if done.get(t.run_id) not in ("ok", "diverged")]
    if failed:   # everything that finished is written; the exit status says the sweep is not complete
        print(f"{len(failed)} of {total} models failed ({', '.join(sorted({t.kind for t in failed}))}): their errors are "
              "in the lake's runs table and the report; fix the cause and re-run the same command to train only them",
              file=sys.stderr)
        return 1
    return 0


def report_dir(spec, args) -> Path:
    if getattr(args, "report", None):
        return Path(args.report).resolve()
    if "://" in spec.storage:
        return Path.cwd() / f"report-{spec.sweep}"
    return Path(spec.storage) / "report" / spec.sweep


def write_report(spec, args) -> None:
    """The analysis of this sweep (python -m analysis), after the summary. A lake with nothing to
    analyse is said in one line; the sweep's own results stand either way."""
    from analysis.report import build
    from core.errors import UserError

    out = report_dir(spec, args)
    try:
        rep = build(spec.storage, out, sweep=spec.sweep, n_boot=args.bootstrap, seed=0, log=print,
                    include_unhealthy=getattr(args, "include_unhealthy", False),
                    out_flag="--report" if getattr(args, "report", None) else "report folder")
    except UserError as e:
        print(f"report: not written: {e}")
        return
    if rep.regression_text:
        print(rep.regression_text)
    if rep.controls:
        from analysis.controls import format_controls

        print(format_controls(rep.controls))
    print(f"report: {out / 'report.html'}" + (f" ({len(rep.notes)} notes on what is missing)" if rep.notes else ""))


def summarize(spec, seconds: float) -> None:
    import polars as pl

    from analysis.scores import robustness_scores
    from core.results import read_table
    from sweeps.stages import lake_root

    runs = pl.from_arrow(read_table(lake_root(spec), "runs"))
    runs = runs.filter(pl.col("sweep") == spec.sweep) if runs.height else runs
    acc = pl.from_arrow(read_table(lake_root(spec), "corruption_accuracy"))
    acc = acc.filter(pl.col("sweep") == spec.sweep) if acc.height else acc
    print(f"\nsweep '{spec.sweep}' finished in {seconds:.0f}s; lake: {lake_root(spec)}")
    if runs.height == 0:
        print("no runs recorded")
        return
    ok = pl.col("status") == "ok"   # the means are over finished models only (a diverged model has no scores)
    by_kind = runs.group_by("kind").agg(
        pl.len().alias("models"), ok.sum().alias("ok"),
        pl.col("clean_accuracy").filter(ok).mean().alias("clean_acc"), pl.col("feve").filter(ok).mean().alias("FEVe"),
        pl.col("sim_match").filter(ok).mean().alias("sim_match"))
    acc = acc.filter(pl.col("run_id").is_in(runs.filter(ok)["run_id"].implode())) if acc.height else acc
    print("per kind: means over its ok models, unhealthy ones included (the report's controls say which to leave out)")
    try:
        rob = robustness_scores(acc, by=["kind"]).filter(pl.col("scope") == "overall").select("kind", "robustness")
        by_kind = by_kind.join(rob, on="kind", how="left")
    except ValueError as e:
        print(f"(no robustness scores: {e})")
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, float_precision=3):
        print(by_kind.sort("kind"))
    bad = runs.filter(pl.col("status") != "ok")
    for r in bad.iter_rows(named=True):
        print(f"  {r['kind']} ratio {r['ratio'] or '-'} seed {r['seed']}: {r['status']}: {(r['error'] or '')[:200]}")
