"""Flags, validation and Ray start-up shared by the sweep scripts (sweeps/runner.py runs the waves)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import socket
import sys
import uuid
from pathlib import Path

from core.errors import ConfigError, check_device, handle_sigterm, interruption
from core.presets import PRESETS, get_preset
from core.training.cycler import parse_ratio
from core.training import registry

os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
# Ctrl-C: a KeyboardInterrupt that our driver handles (finished models kept, one line on how to go on),
# not Tune's handler, which ends the wave as if it were done and advises `Tuner.restore(...)`
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter is silent at verbose=0: our own progress lines instead
# Train V2's controller polls its workers every 2 s by default, which adds ~10 s to every short
# trial on a local instance (measured: 34 -> 24 s for an empty TorchTrainer trial at 0.2 s); a
# local Ray started by this driver inherits this. On a `ray up` cluster the default stands.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
TRIAL_DRIVER_CPU = 0.05   # the Tune function only launches the trainer
LOCAL_CONTROLLER_RETRIES = 3   # a local worker group that cannot start in 4 x 60 s never will: fail the model


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="demo", help=f"one of {', '.join(PRESETS)} (default demo; what each trains: "
                                                    "below)")
    p.add_argument("--storage", default=os.environ.get("BRAINROBUST_STORAGE") or "results",
                   help="results folder or URI (s3://, gs://; default $BRAINROBUST_STORAGE, which cluster.yaml sets "
                        "on every node, else ./results): the records land in STORAGE/lake, the models in "
                        "STORAGE/models, Ray's state in STORAGE/ray")
    p.add_argument("--data-root", default="data", help="folder for the synthetic world and caches, readable by every node (default ./data)")
    p.add_argument("--sweep", help="sweep name: its partition in the lake (default: the preset's name)")
    p.add_argument("--ratios", help="comma-separated n:c ratios, e.g. 1:15,1:1,5:1 (default: the preset's; paper: the 12 of the paper)")
    p.add_argument("--seeds", help="comma-separated non-negative seeds (default: the preset's)")
    p.add_argument("--address", help="existing Ray cluster ('auto' on a `ray up` head node); default: start a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per model, at most 1; fractions share a GPU (default 0)")
    p.add_argument("--cpus-per-trial", type=float, default=0.0, help="CPUs per model (default: 1 on CPU runs, 2 with GPUs)")
    p.add_argument("--train-workers", type=int, choices=(0, 1), default=0,
                   help="Ray Train workers per model: 0 runs each fit in Train V2's local mode inside its Tune trial "
                        "(a reused process; about 2 s of orchestration per model on 2 cores), 1 in a worker group of "
                        "its own (a fresh controller and worker process per model; about 11.5 s). Default 0; docs/architecture.md says why")
    p.add_argument("--max-concurrent", type=int, default=0, help="cap on models trained at once (default: as many as resources allow)")
    p.add_argument("--tin-root", help="Tiny ImageNet folder (preset paper)")
    p.add_argument("--tintc-root", help="the published Tiny-ImageNet-C folder (<corruption>/<severity>/<wnid>/<file>.JPEG; "
                                        "needs --tin-root): classifiers are scored on its JPEGs of the test images instead "
                                        "of on corruptions generated here (their run ids differ accordingly)")
    p.add_argument("--neural-data", help="neural recordings in the project's format (preset paper; see `python -m core.data convert`)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (default auto: a GPU where torch finds one); checked before anything "
                        "starts: cuda needs a GPU that torch finds where this command runs, or, with --address, "
                        "--gpus-per-trial, so that Ray places each model on a GPU (the cluster must have GPUs)")
    p.add_argument("--max-epochs", type=int, help="override the preset's epoch cap (quick looks)")
    p.add_argument("--planted", metavar="P,...", help="synthetic worlds with a planted answer, one sweep each: the share "
                   "(0..1) of the simulated neurons that encode the objects' shape, which survives the corruptions (0 is "
                   "the null: the neurons encode the fragile cue, so their content cannot help; default: the preset's, the "
                   "calibration preset's 0,0.5,1; left out for the other presets: the default world, whose benefit is "
                   "unknown)")
    p.add_argument("--set", default="", metavar="KEY=VALUE,...",
                   help="training overrides for the classification-bearing fits, e.g. lr=0.05,momentum=0.9, or for "
                        "one kind with a prefix, e.g. mtl_monkey.lr=0.01 (keys of core.training.config.TrainConfig; "
                        "hparam_search.py prints the best as such a flag); the architecture keys model, width and "
                        "readout_layer reach every kind, e.g. width=0.0625 for a quick look at the paper preset")
    p.add_argument("--resume", action="store_true", help="finish an interrupted sweep (finished models are always skipped; this also says so)")
    p.add_argument("--quiet", action="store_true", help="only the summary")
    p.add_argument("--verbose", action="store_true",
                   help="Ray's own console output too: its INFO logs, the Tune and Train processes' output, and the "
                        "start-up warnings kept out by default (the raylet's worker-count warning, Tune's bottleneck "
                        "warnings)")


def _list(text: str, what: str, conv):
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} {text!r}: expected a comma-separated list")
    out = [conv(t) for t in items]
    dup = next((t for t, v in zip(items, out) if out.count(v) > 1), None)
    if dup is not None:   # the same model twice would share one run id and one work folder
        raise ConfigError(f"--{what} {text!r}: {dup} is given twice")
    return out


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
    """Fail early, in one line, if results cannot be written there: a local folder through its nearest
    existing parent (nothing is created), a URI by writing and removing a probe file."""
    from sweeps.stages import fs_and_path

    if "://" not in storage:
        from core.io import check_writable

        if Path(storage).exists() and not Path(storage).is_dir():
            raise ConfigError(f"--storage {storage}: not writable (a file, not a folder)")
        try:
            check_writable(Path(storage) / "lake", "--storage")
        except ConfigError as e:
            raise ConfigError(f"--storage {storage}: not writable ({str(e).split(': ', 1)[1]})") from None
        return
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
        if kind and kind not in registry.names():
            raise ConfigError(f"--set {k}: unknown kind {kind!r}; expected one of {', '.join(registry.names())}")
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


def resolve_common(args, kinds: str = "all", one_world: bool = False):
    from sweeps.stages import SweepSpec

    preset = get_preset(args.preset)
    ratios = _list(args.ratios, "ratios", _ratio) if args.ratios else list(preset.ratios)
    seeds = _list(args.seeds, "seeds", _seed) if args.seeds else list(preset.seeds)
    family = getattr(args, "family", "mtl")
    alphas = _list(args.alphas, "alphas", _alpha) if getattr(args, "alphas", None) else [10.0]
    if kinds == "all":   # the preset's own kinds (the calibration and explanation studies), else the family's
        kind_list = list(preset.kinds) if preset.kinds and family == "mtl" else list(registry.names(family))
    else:
        kind_list = _list(kinds, "kinds", str)
        bad = [k for k in kind_list if k not in registry.names()]
        if bad:
            raise ConfigError(f"--kinds: unknown kind {bad[0]!r}; expected some of {', '.join(registry.names())}")
    kind_list = registry.with_upstream(kind_list)
    synthetic = preset.world is not None and not (args.tin_root or args.neural_data)
    needs_truth = [k for k in kind_list if registry.get(k).synthetic_only]
    if needs_truth and not synthetic and not getattr(args, "plan", False):
        raise ConfigError(f"--kinds: {needs_truth[0]} co-trains on the simulated population's true rates, which real data "
                          "does not have; it runs on the synthetic world only")
    if getattr(args, "alphas", None) and not any(registry.get(k).grid == "alpha" for k in kind_list):
        raise ConfigError(f"--alphas {args.alphas}: weights of the similarity loss, but no similarity-family model is to "
                          "run; add --family similarity (or both), or --kinds with a sim_* kind")
    if preset.world is None and not (args.tin_root and args.neural_data) and not getattr(args, "plan", False):
        raise ConfigError(f"--preset {preset.name} trains on real data: give --tin-root and --neural-data")
    if getattr(args, "tintc_root", None) and not args.tin_root:
        raise ConfigError("--tintc-root needs --tin-root: its JPEGs are matched to the Tiny ImageNet val images by file name and class")
    for flag in ("tin_root", "neural_data", "tintc_root"):
        v = getattr(args, flag, None)
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
    check_device(args.device, on_cluster=bool(args.address))
    if args.device.startswith("cuda") and args.address and not args.gpus_per_trial:
        raise ConfigError(f"--device {args.device} with --address: give --gpus-per-trial too (e.g. 1), so that Ray "
                          "places each model on a node with a GPU")
    if args.device.startswith("cuda:") and args.device != "cuda:0" and args.gpus_per_trial:
        raise ConfigError(f"--device {args.device}: with --gpus-per-trial, Ray gives each model a GPU of its own, "
                          "which the model sees as cuda:0; use --device cuda")
    if args.address:
        check_address(args.address)
    values = planted_values(args, preset, synthetic)
    if one_world and len(values) > 1:
        raise ConfigError(f"--planted: this command runs in one world, here {len(values)} (preset {preset.name}); "
                          "give one planted value")
    check_dirs(args)
    if not getattr(args, "plan", False):   # --plan only reads: it creates no folder, not even a probe
        check_storage(args.storage)
    cpus = args.cpus_per_trial or (2.0 if args.gpus_per_trial else 1.0)
    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else {}
    storage = args.storage if "://" in args.storage else str(Path(args.storage).resolve())  # workers run elsewhere
    # a sweep scored on the published Tiny-ImageNet-C is its own sweep: the report never pools the two sets
    default_name = preset.name + ("-published" if getattr(args, "tintc_root", None) else "")
    spec = SweepSpec(sweep=args.sweep or default_name, preset=preset.name, storage=storage,
                     data_root=str(Path(args.data_root).resolve()), ratios=ratios, seeds=seeds, kinds=kind_list, alphas=alphas,
                     tin_root=args.tin_root, neural_data=args.neural_data, tintc_root=getattr(args, "tintc_root", None),
                     gpus_per_trial=args.gpus_per_trial,
                     cpus_per_trial=cpus - TRIAL_DRIVER_CPU if not args.gpus_per_trial else cpus,
                     device=args.device, overrides=overrides, cls_overrides=parse_set(args.set),
                     controller_retries=-1 if args.address else LOCAL_CONTROLLER_RETRIES, train_workers=getattr(args, "train_workers", 0))
    ray_kwargs = {"address": args.address, "num_cpus": args.num_cpus if not args.address else None,
                  "verbose": getattr(args, "verbose", False)}
    return spec, ray_kwargs


def _planted(t: str) -> float:
    try:
        v = float(t)
    except ValueError:
        raise ConfigError(f"--planted: {t!r} is not a number; expected shares between 0 (the null) and 1, e.g. 0,0.5,1") from None
    if not 0 <= v <= 1:
        raise ConfigError(f"--planted: {v:g} is outside 0..1 (the share of the simulated neurons that encode shape)")
    return v


def planted_values(args, preset, synthetic: bool) -> list[float]:
    """--planted's values, or the preset's planted worlds; refused for real data."""
    values = _list(args.planted, "planted", _planted) if getattr(args, "planted", None) else list(preset.planted)
    if values and not synthetic:
        raise ConfigError("--planted picks synthetic worlds with a planted answer; real data has no planted truth")
    return values


def worlds(args, spec) -> list:
    """One sweep per world: the preset's planted worlds or --planted (each named <sweep>-planted<value>), or
    the spec as it is (the default world, or real data)."""
    from dataclasses import replace

    values = planted_values(args, get_preset(spec.preset), True)
    return [replace(spec, planted=v, sweep=f"{spec.sweep}-planted{v:g}") for v in values] or [spec]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin_state_api(port: int) -> None:
    """Point Ray's state API, in this process and in every process the local Ray starts, at this
    instance's dashboard.

    Ray Train's placement-group cleaner asks the state API whether its controller is alive without
    naming a cluster; with a second Ray instance on the same machine (another sweep, a test) that
    lookup fails ("Found multiple active Ray instances") or asks the other instance, which knows no
    such controller: the cleaner then judges a live run dead, placement groups leak, and the next
    wave's worker groups never start (seen: a demo sweep stalled beside the test suite). Ray reads
    RAY_API_SERVER_ADDRESS before anything else; its servers and workers inherit the driver's
    environment, so setting it before `ray.init` reaches all of them.
    """
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"


# what Ray prints that says nothing a user can act on: kept out of the console unless --verbose
HARMLESS_RAYLET = ("maximum expected startup concurrency",)   # "N PYTHON worker processes have been started ..."
QUIET_LOGGERS = ("ray.tune", "ray.train")   # bottleneck notes ("... operation took 2.1 s"), retry chatter: our lines say it


def keep_ray_quiet() -> None:
    """Leave the raylet's harmless warnings out of the console and Tune's and Train's warnings below
    errors. The raylet's messages reach the driver through `ray._private.worker.print_to_stdstream`
    (called by its error-listener thread by name, so replacing the module attribute filters them);
    every other raylet message (a worker killed for memory, say) still comes through."""
    import ray._private.worker as w

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if getattr(w.print_to_stdstream, "keeps_harmless_out", False):
        return
    show = w.print_to_stdstream

    def filtered(data, ignore_prefix):
        if data.get("pid") == "raylet":
            data = {**data, "lines": [ln for ln in data.get("lines", []) if not any(h in ln for h in HARMLESS_RAYLET)]}
            if not data["lines"]:
                return None
        return show(data, ignore_prefix)

    filtered.keeps_harmless_out = True
    w.print_to_stdstream = filtered


def start_ray(address: str | None, num_cpus: int | None, log, verbose: bool = False):
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    kwargs = dict(logging_level="INFO" if verbose else "WARNING", log_to_driver=verbose, configure_logging=True)
    if not verbose:
        keep_ray_quiet()
    # our own dashboard line below says that token authentication is on and how to get the token
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    port = None
    try:
        if address:
            ctx = ray.init(address=address, **kwargs)
        else:
            bind_loopback()
            port = free_port()
            pin_state_api(port)
            # address="local": always a new instance of our own, even where `ray start` left one running
            ctx = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                           dashboard_port=port, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        what = f"--address {address}: cannot join Ray" if address else "cannot start a local Ray"
        raise ConfigError(f"{what} ({str(e).splitlines()[0]})") from None
    handle_sigterm()   # ray.init installed a native SIGTERM handler (a C++ stack trace, no clean-up): ours again
    url = getattr(ctx, "dashboard_url", "") or ""
    if port and url and not url.endswith(f":{port}"):   # the port was taken meanwhile
        pin_state_api(int(url.rsplit(":", 1)[1]))
        print(f"warning: Ray's dashboard took {url}, not port {port}: with another Ray instance on this machine, "
              "Ray Train's clean-up may ask the wrong one (run one sweep at a time)", file=sys.stderr)
    if log:
        log(f"Ray {ray.__version__}: {int(ray.cluster_resources().get('CPU', 0))} CPUs, "
            f"{int(ray.cluster_resources().get('GPU', 0))} GPUs; dashboard: "
            + (f"http://{url} (token authentication: `ray get-auth-token` prints the token the page asks for)"
               if url else "not running (install ray[default])"))
    return ctx


RAY_SETTLE_S = 5.0   # how long an interrupted driver watches the local Ray's processes before a normal exit


def ray_died_with_us(node, settle: float = RAY_SETTLE_S) -> bool:
    """Whether the local Ray `node` lost a process after the signal: polled for up to `settle` seconds, since
    a GCS or raylet that got the same SIGTERM takes a moment to end (read at once, it raced the driver and a
    process group's stop could still take the slow way out: 60 s, then status 1)."""
    import time

    deadline = time.monotonic() + settle
    while node.remaining_processes_alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


@contextlib.contextmanager
def interruptible(say):
    """Ctrl-C or SIGTERM inside the block: `say(what)` ("interrupted" or "terminated (SIGTERM)"; one line
    on what is kept and how to go on), then exit with 130 or 143. Where the signal reached the whole
    process group (a batch scheduler's stop), the local Ray's own processes die with it, and Ray's
    shutdown at exit would wait 60 s for its GCS and then end the process with status 1: what is left
    of that Ray is stopped here and the process exits at once. They may still be shutting down when the
    driver gets here, so it watches them for up to RAY_SETTLE_S before taking the normal way out."""
    try:
        yield
    except KeyboardInterrupt as e:
        import ray

        what, status = interruption(e)
        say(what)
        node = getattr(ray._private.worker, "_global_node", None)   # None, or nothing started here: a normal exit
        if node is not None and ray_died_with_us(node):
            node.kill_all_processes(check_alive=False, allow_graceful=False)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        raise SystemExit(status) from None


def ray_map(fn, jobs):
    """Ray-task version of `map` for the TIN-TC build: results as they complete."""
    import ray

    remote = ray.remote(num_cpus=1)(fn)
    pending = [remote.remote(j) for j in jobs]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
