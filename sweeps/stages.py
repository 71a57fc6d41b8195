"""The stage graph on Ray Tune and Ray Train.

The stages, in dependency order (one task = one model), come from the kind registry
(core.training.registry): a kind's stage is one more than its upstream's. The whole sweep is one Tune
run in which a task starts as soon as its upstream's record is in the lake (sweeps.runner.graph_searcher),
so a stage need not wait for the previous one to end. For the default kinds:

    stage 1: monkey_predictor[seed], oracle[seed], baseline[seed], sim_pixel[alpha, seed]
    stage 2: oracle_readout[seed], mtl_monkey[ratio, seed], mtl_shuffled[ratio, seed],
             sim_monkey[alpha, seed], sim_shuffled[alpha, seed]
    stage 3: mtl_oracle[ratio, seed]

(The sim_* kinds are the similarity family, Li et al. 2019: `--family similarity`.)

Every task has a run id (hash of its resolved config, data and upstream run id). A task whose
record is already in the results lake is skipped, so a re-run or `--resume` never repeats work
and never duplicates rows. Each Tune trial runs a Ray Train fit (Train V2; by default in its local mode,
inside the trial's process) whose training function calls the plain `core` functions and writes the
model's lake records itself.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

from core.io import atomic_file, join_uri
from core.presets import get_preset

# core.training.kinds (torch, torchvision, the corruption package) is imported inside the functions
# that need it: the Tune trial process that only launches the Train run never does.


def stages(kinds) -> list[list[str]]:
    """The kinds of a sweep by stage (core.training.registry.stage: 1 + its upstream's), within a stage
    those that other kinds read first, so that the next stage can start early."""
    from core.training import registry

    read = {r.upstream for r in registry.table().values() if r.upstream}
    order = list(registry.names())
    ks = sorted(set(kinds), key=lambda k: (registry.stage(k), k not in read, order.index(k)))
    n = max((registry.stage(k) for k in ks), default=0)
    return [[k for k in ks if registry.stage(k) == i] for i in range(1, n + 1)]


@dataclass
class SweepSpec:
    """Everything a trial needs, JSON-serialisable (it travels in the Tune config)."""

    sweep: str
    preset: str
    storage: str                 # local path or URI of the results (lake/, models/, ray/)
    data_root: str               # local path every node can read (synthetic world, caches)
    ratios: list[str]
    seeds: list[int]
    kinds: list[str]
    alphas: list[float] = field(default_factory=lambda: [10.0])   # similarity-loss weights (sim_* kinds)
    tin_root: str | None = None
    neural_data: str | None = None
    tintc_root: str | None = None   # the published Tiny-ImageNet-C JPEGs as TIN-TC (default: generated corruptions)
    planted: float | None = None    # a synthetic world with a planted answer (core.data.planted); None: the default world
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    device: str = "auto"
    overrides: dict = field(default_factory=dict)        # TrainConfig overrides for every fit
    cls_overrides: dict = field(default_factory=dict)    # ... and for classification-bearing fits only (--set)
    max_failures: int = 1        # retries of a trial (Tune) and of its worker group (Train)
    # Train controller retries (a worker group that cannot start: its resources never came). A local
    # Ray has all it will ever have, so a bounded number; a cluster may be autoscaling: no bound.
    controller_retries: int = -1
    # Ray Train workers per model: 0 = Train V2's local mode (the fit runs inside the Tune trial's own
    # process; Tune reports, checkpoints and retries), 1 = a Train worker group of one (an extra
    # controller and worker process per model). docs/architecture.md ("Why local mode") has the measurement.
    train_workers: int = 0


@dataclass
class Task:
    kind: str
    ratio: str
    seed: int
    run_id: str
    upstream_id: str = ""
    alpha: float | None = None   # sim_* kinds: weight of the similarity loss

    def setting(self) -> str:
        """The grid coordinate besides the seed: the ratio, or α for the similarity family."""
        return f"α={self.alpha:g}" if self.alpha is not None else (self.ratio or "-")

    def label(self) -> str:
        return f"{self.kind}[{self.setting()}, seed {self.seed}]"


# ----------------------------------------------------------------------------- storage


def fs_and_path(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def trial_threads(spec: SweepSpec) -> int:
    """The torch threads of one trial: its CPU share, rounded, at least one (what a model trains on and
    what --plan and the time-left line plan with)."""
    return max(1, int(round(spec.cpus_per_trial)))


def lake_root(spec: SweepSpec) -> str:
    return join_uri(spec.storage, "lake")


def model_dir(spec: SweepSpec, run_id: str) -> str:
    return join_uri(spec.storage, "models", run_id)


def finished_run_ids(spec: SweepSpec, any_sweep: bool = False) -> dict[str, str]:
    """run_id -> status of the runs already recorded for this sweep (or, with `any_sweep`, for any
    sweep in the storage: a run id is a content hash, and models are stored by run id)."""
    from core.results import read_table

    t = read_table(lake_root(spec), "runs")
    if t.num_rows == 0:
        return {}
    rows = t.select(["run_id", "status", "sweep"]).to_pylist()
    return {r["run_id"]: r["status"] for r in rows if any_sweep or r["sweep"] == spec.sweep}


# ----------------------------------------------------------------------------- tasks


# overrides that change the network itself: an unscoped `--set width=...` reaches every kind (the Oracle
# Readout loads the Oracle's weights, so the two must agree); other keys reach the classifiers only
ARCH_KEYS = ("model", "width", "readout_layer")


def task_overrides(spec: SweepSpec, kind: str, alpha: float | None = None) -> dict:
    """The TrainConfig overrides of one task (the same in the planner and in the worker)."""
    from core.training.graph import CLASSIFIERS

    plain = {k: v for k, v in spec.cls_overrides.items() if "." not in k}
    arch = {k: v for k, v in plain.items() if k in ARCH_KEYS}   # the architecture reaches every kind of the graph
    own = {k.split(".", 1)[1]: v for k, v in spec.cls_overrides.items() if k.startswith(kind + ".")}
    grid = {"sim_alpha": alpha} if alpha is not None else {}
    return {**spec.overrides, **(plain if kind in CLASSIFIERS else arch), **own, **grid}


def plan(spec: SweepSpec, sources_info: dict) -> list[list[Task]]:
    """All tasks of the sweep, stage by stage, with their run ids (upstream ids chained). A kind is run at
    every seed, and over the ratios or the alphas where its recipe's grid says so; it reads the upstream of
    its own seed (one Monkey Predictor and one Oracle per seed), so kinds can be compared within a seed."""
    from core.training import registry
    from core.training.kinds import base_config, identity_extra, run_id_for

    preset = get_preset(spec.preset)
    ids: dict[tuple[str, int], str] = {}   # (kind, seed) -> run id
    waves = []
    for kinds in stages(spec.kinds):
        tasks = []
        for kind in kinds:
            recipe = registry.get(kind)
            cells = {"ratio": lambda: [(r, s) for r in spec.ratios for s in spec.seeds],
                     "alpha": lambda: [(a, s) for a in spec.alphas for s in spec.seeds],
                     "seed": lambda: [("", s) for s in spec.seeds]}[recipe.grid]()
            for cell, seed in cells:
                up = ids.get((recipe.upstream, seed), "") if recipe.upstream else ""
                alpha = float(cell) if recipe.grid == "alpha" else None
                ratio = cell if recipe.grid == "ratio" else ""
                cfg = base_config(kind, preset, ratio or "1:1", seed, **task_overrides(spec, kind, alpha))
                rid = run_id_for(kind, preset.name, ratio, seed, cfg, sources_info, up, identity_extra(kind, preset))
                tasks.append(Task(kind, ratio, seed, rid, up, alpha))
                ids[(kind, seed)] = rid
        waves.append(tasks)
    return waves


# ----------------------------------------------------------------------------- the Train worker


def _download(spec: SweepSpec, src: str, dest: Path) -> None:
    fs, path = fs_and_path(src)
    if isinstance(fs, pafs.LocalFileSystem) and Path(path).is_dir():
        shutil.copytree(path, dest, dirs_exist_ok=True)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(path, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())


def _upload_model(spec: SweepSpec, out: Path, run_id: str) -> None:
    fs, path = fs_and_path(model_dir(spec, run_id))
    fs.create_dir(path, recursive=True)
    for name in ("model.pt", "run.json"):
        with open(out / name, "rb") as src, fs.open_output_stream(f"{path}/.{name}.tmp") as dst:
            shutil.copyfileobj(src, dst)
        fs.move(f"{path}/.{name}.tmp", f"{path}/{name}")


PAUSE_ENV = "BRAINROBUST_PAUSE_AFTER_EPOCH"


def _fault_pause(row: dict, run_id: str, work: Path) -> None:
    """Fault-injection point for the tests: with BRAINROBUST_PAUSE_AFTER_EPOCH=N:DIR, the worker,
    once epoch N is checkpointed and reported, writes DIR/<run_id>.json (its pid, node, work folder
    and the epoch) and waits there until DIR/<run_id>.go appears (at most 10 minutes), so a test can
    kill it, or remove its node, at a known point inside the fit instead of racing printed lines.
    Unset (always, outside the tests), it does nothing."""
    import ray

    spec = os.environ.get(PAUSE_ENV, "")
    if not spec:
        return
    epoch, folder = spec.split(":", 1)
    if row["epoch"] != int(epoch):
        return
    marker = Path(folder) / f"{run_id}.json"
    if marker.exists():   # paused once already (this is the restarted worker): go on
        return
    with atomic_file(marker) as tmp:
        Path(tmp).write_text(json.dumps({"pid": os.getpid(), "epoch": row["epoch"], "phase": row.get("phase", ""),
                                         "node": ray.get_runtime_context().get_node_id(), "work": str(work)}))
    deadline = time.time() + 600
    while time.time() < deadline and not marker.with_suffix(".go").exists():
        time.sleep(0.2)


def error_text(e: BaseException) -> str:
    """A failure for the lake: type, message and the failing line (the innermost frame)."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def train_worker(config: dict) -> None:
    """Runs inside a Ray Train worker: one model, plain `core`, records into the lake."""
    import ray.train
    import ray.tune
    import torch

    from core.data.corruptions import load_tintc
    from core.results import write_table
    from core.training.bundles import load_sources
    from core.training.graph import CLASSIFIERS
    from core.training.kinds import run_kind

    spec = SweepSpec(**config["spec"])
    task = Task(**config["task"])
    preset = get_preset(spec.preset)
    threads = trial_threads(spec)
    torch.set_num_threads(threads)
    # local storage: work under STORAGE/work, so a re-run after a killed driver resumes the fit;
    # otherwise a node-local folder, restored from Ray Train's last checkpoint after a restart
    work = Path(config["work_dir"]) if config.get("work_dir") else Path(tempfile.gettempdir()) / "brainrobust-work" / task.run_id
    # local mode: the Tune trial is the process, so Tune's report, checkpoint and retries are the ones that count
    local = spec.train_workers == 0
    ckpt = ray.tune.get_checkpoint() if local else ray.train.get_checkpoint()
    if not config.get("work_dir"):
        # remote storage: Ray Train's checkpoint is the only resume point; a node-local folder left by an
        # earlier sweep on this node (same run id) is ours, and stale: start it afresh
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    if ckpt is not None:
        with ckpt.as_directory() as d:
            shutil.copytree(d, work / "checkpoint", dirs_exist_ok=True)

    say, checkpoint = (ray.tune.report, ray.tune.Checkpoint) if local else (ray.train.report, ray.train.Checkpoint)

    try:
        sources = load_sources(preset, spec.data_root, spec.tin_root, spec.neural_data, log=None, planted=spec.planted)
        if spec.tintc_root and config.get("tintc"):   # the published TIN-TC: part of a classifier's identity
            from core.data.published_tintc import identity

            sources.info.update(identity(config["tintc"]))
        upstream = None
        if task.upstream_id:
            upstream = work / "upstream"
            _download(spec, model_dir(spec, task.upstream_id), upstream)
        tintc = load_tintc(config["tintc"]) if (task.kind in CLASSIFIERS and config.get("tintc")) else None

        def report(row, ckpt_path):
            metrics = {k: row[k] for k in ("epoch", "phase", "val_accuracy", "val_correlation", "lr", "images_per_s")}
            metrics.update(kind=task.kind, ratio=task.setting(), seed=task.seed, done=False)
            if ckpt_path is not None and config.get("checkpoint_every_epoch", True):
                say(metrics, checkpoint=checkpoint.from_directory(str(work / "checkpoint")))
            else:
                say(metrics)
            if ckpt_path is not None:   # an epoch just finished (not one said again after a resume)
                _fault_pause(row, task.run_id, work)

        overrides = {**task_overrides(spec, task.kind, task.alpha), "device": spec.device, "threads": threads}
        res = run_kind(task.kind, preset, task.ratio, task.seed, work, sources, upstream, spec.data_root,
                       tintc=tintc, report=report, log=None, overrides=overrides)
    except OSError:
        raise   # storage or network trouble may pass: Ray retries the worker (FailureConfig)
    except Exception as e:   # noqa: BLE001 - the same config fails the same way: record it, do not retry
        error = error_text(e)
        write_failed(spec, task, error)
        # every metric a Tune search may ask for is in the report (NaN), or the search itself would stop
        say({"kind": task.kind, "ratio": task.setting(), "seed": task.seed, "done": True, "epoch": 0,
                          "status": "failed", "error": error.splitlines()[0][:300], "clean_accuracy": float("nan"),
                          "feve": float("nan"), "val_accuracy": float("nan"), "val_correlation": float("nan")})
        return
    if res.run["run_id"] != task.run_id:
        raise RuntimeError(f"run id mismatch: planned {task.run_id}, trained {res.run['run_id']}")
    res.run["node"] = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:12]}"
    if local or ray.train.get_context().get_world_rank() == 0:   # local mode: one process, rank 0
        _upload_model(spec, work, task.run_id)
        root = lake_root(spec)
        for table, rows in (("epochs", res.epochs), ("corruption_accuracy", res.corruption_accuracy),
                            ("predictions", res.predictions), ("adversarial", res.adversarial), ("spectral", res.spectral),
                            ("runs", [res.run])):  # runs last: it marks completion
            write_table(root, table, rows, spec.sweep, task.kind, task.run_id)
    r = res.run
    corr = [e["val_correlation"] for e in res.epochs if e.get("val_correlation") == e.get("val_correlation")]
    # the final report repeats the best validation metrics: a Tune search with a metric needs them in every report
    say({"kind": task.kind, "ratio": task.setting(), "seed": task.seed, "done": True, "status": r["status"],
                      "clean_accuracy": r["clean_accuracy"], "feve": r["feve"], "epoch": r["epochs"],
                      "val_accuracy": r["val_accuracy"], "val_correlation": max(corr) if corr else float("nan")})


# ----------------------------------------------------------------------------- the Tune trial


def tune_trial(config: dict) -> None:
    """A Tune function trainable: runs one Ray Train fit (Train V2 pattern) for its task.

    By default (`train_workers` 0) in Train V2's local mode: the training function runs here, in the
    trial's own process (reused for the next model), reporting and checkpointing through Tune. With
    `train_workers` 1, in a worker group of one, which trains without a torch process group: a
    `DataParallelTrainer` with the plain `BackendConfig`. (A `TorchTrainer` would start gloo's TCPStore,
    which listens on every interface, for a group of one worker that never communicates.)"""
    import ray.train
    import ray.tune
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    config = config["t"]
    spec = SweepSpec(**config["spec"])
    task = Task(**config["task"])
    use_gpu = spec.gpus_per_trial > 0
    per_worker = ({"GPU": spec.gpus_per_trial, "CPU": max(spec.cpus_per_trial, 0.01)} if use_gpu
                  else {"CPU": spec.cpus_per_trial})
    storage, storage_kwargs = ray_storage(spec)
    trainer = DataParallelTrainer(
        train_worker,
        train_loop_config=config,
        backend_config=ray.train.BackendConfig(),
        scaling_config=(ray.train.ScalingConfig(num_workers=0) if spec.train_workers == 0 else
                        ray.train.ScalingConfig(num_workers=1, use_gpu=use_gpu, resources_per_worker=per_worker)),
        run_config=ray.train.RunConfig(
            name=f"{spec.sweep}-{task.run_id}",  # stable across restores: derived from the task, not a timestamp
            storage_path=storage, **storage_kwargs,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures,
                                                   controller_failure_limit=spec.controller_retries),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    trainer.fit()


def trial_resources(spec: SweepSpec, driver_cpu: float) -> dict:
    """What one Tune trial asks of Ray: in local mode the model's own CPUs (and GPU share) besides the
    trial driver's sliver; with a worker group only the sliver (the worker asks for the rest)."""
    if spec.train_workers:
        return {"CPU": driver_cpu}
    if spec.gpus_per_trial > 0:
        return {"CPU": driver_cpu + spec.cpus_per_trial, "GPU": spec.gpus_per_trial}
    return {"CPU": driver_cpu + spec.cpus_per_trial}


def ray_storage(spec: SweepSpec) -> tuple[str, dict]:
    """Where Ray Tune and Ray Train keep their state (STORAGE/ray): an absolute local path, or a
    URI's path with its pyarrow filesystem as `storage_filesystem`."""
    storage = join_uri(spec.storage, "ray")
    if "://" not in storage:
        return str(Path(storage).resolve()), {}
    fs, path = fs_and_path(storage)
    return path, {"storage_filesystem": fs}


def spec_dict(spec: SweepSpec) -> dict:
    return asdict(spec)


def task_config(spec: SweepSpec, task: Task, tintc: str | None, **extra) -> dict:
    return {"spec": spec_dict(spec), "task": asdict(task), "tintc": tintc, **extra}


def write_failed(spec: SweepSpec, task: Task, error: str) -> None:
    """Record a task that could not run (its upstream failed, or its trial errored)."""
    from core.results import provenance, write_table
    from core.results.lake import now

    write_table(lake_root(spec), "runs", [{
        "run_id": task.run_id, "kind": task.kind, "ratio": task.ratio, "seed": task.seed, "preset": spec.preset,
        "alpha": task.alpha if task.alpha is not None else float("nan"), "status": "failed", "error": error[:2000], "upstream": task.upstream_id, "created_at": now(),
        "config": json.dumps(task_overrides(spec, task.kind, task.alpha), sort_keys=True), **provenance()}], spec.sweep, task.kind, task.run_id)
