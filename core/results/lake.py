"""Results lake: Parquet tables `runs`, `epochs`, `corruption_accuracy`, `predictions`.

Layout: ``ROOT/<table>/sweep=<sweep>/stage=<stage>/<run_id>.parquet`` (hive partitioning;
`polars.scan_parquet(ROOT/<table>/**/*.parquet, hive_partitioning=True)` reads a table back).
One file per model and table, never appended: local files are written to a temporary name and
renamed; on object stores (s3://, gs://) a single PUT is already atomic. ROOT may be any
pyarrow filesystem URI.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import subprocess
import uuid
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.errors import ConfigError

F64, I64, STR, BOOL = pa.float64(), pa.int64(), pa.string(), pa.bool_()

# Columns every table carries to identify the model (hive partition columns sweep/stage live in the path).
KEY = [("run_id", STR), ("kind", STR), ("ratio", STR), ("seed", I64)]

TABLES: dict[str, pa.Schema] = {
    "runs": pa.schema(KEY + [
        ("ratio_value", F64), ("preset", STR), ("family", STR), ("alpha", F64),
        ("status", STR), ("error", STR), ("diverged_epoch", I64),
        ("clean_accuracy", F64),
        ("val_accuracy", F64),          # of the weights evaluated (the config's `select`: best epoch or final)
        ("val_accuracy_final", F64),    # of the last epoch's weights
        ("fev", F64), ("feve", F64),
        ("feve_neurons", I64),   # neurons in the FEVe mean; the others had no explainable variance (left out)
        ("corr_trial", F64), ("corr_avg", F64), ("corr_true", F64),
        ("sim_match", F64),
        ("readout_alive", F64),   # share of the readout layer's channels that respond to any test image (0: dead)
        ("epochs", I64), ("train_seconds", F64), ("wall_seconds", F64), ("images_per_s", F64), ("device", STR), ("node", STR),
        ("resumed", STR),   # "phase:epoch" for each training phase resumed from its checkpoint after a fault
        ("upstream", STR), ("config", STR), ("data", STR),
        ("git_sha", STR), ("versions", STR), ("created_at", STR),
    ]),
    "epochs": pa.schema(KEY + [
        ("phase", STR), ("epoch", I64), ("lr", F64), ("train_seconds", F64), ("images_per_s", F64),
        ("loss_classification", F64), ("loss_neural", F64), ("loss_consistency", F64),
        ("log_var_classification", F64), ("log_var_neural", F64),
        ("loss_similarity", F64), ("sim_layer_weights", STR),
        ("val_accuracy", F64), ("val_correlation", F64), ("n_reductions", I64),
    ]),
    "corruption_accuracy": pa.schema(KEY + [
        ("corruption", STR), ("category", STR), ("severity", I64), ("accuracy", F64), ("n_images", I64),
    ]),
    # adversarial robustness: PGD accuracy at each epsilon (median_l2 null), and the minimal L2
    # perturbation of a decision-based attack (epsilon null; accuracy = share of images it failed on)
    "adversarial": pa.schema(KEY + [
        ("attack", STR), ("norm", STR), ("epsilon", F64), ("accuracy", F64), ("n_images", I64),
        ("median_l2", F64), ("l2_low", F64), ("l2_high", F64),   # the median's distribution-free 95% interval
        ("steps", I64), ("library", STR),
    ]),
    # spectral sensitivity: accuracy on the test images low- or high-pass filtered at a cut-off (cycles per pixel)
    "spectral": pa.schema(KEY + [
        ("filter", STR), ("cutoff", F64), ("accuracy", F64), ("n_images", I64),
    ]),
    "predictions": pa.schema(KEY + [
        ("condition", STR), ("severity", I64), ("image", I64), ("label", I64), ("predicted", I64), ("correct", BOOL),
    ]),
}


def _fs(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" in str(root):
        try:
            return pafs.FileSystem.from_uri(str(root))
        except (pa.ArrowInvalid, OSError) as e:
            raise ConfigError(f"storage {root!r}: {e}") from None
    return pafs.LocalFileSystem(), str(Path(root).resolve())


def table_path(root: str, table: str, sweep: str, stage: str, run_id: str) -> str:
    return f"{root}/{table}/sweep={sweep}/stage={stage}/{run_id}.parquet"


def write_table(root: str | os.PathLike, table: str, rows: list[dict] | pa.Table, sweep: str, stage: str,
                run_id: str, filesystem: pafs.FileSystem | None = None) -> str:
    """Write one model's rows of `table`; returns the path written."""
    schema = TABLES[table]
    if isinstance(rows, pa.Table):
        t = rows.select(schema.names).cast(schema)
    else:
        t = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    fs, base = (filesystem, str(root)) if filesystem is not None else _fs(str(root))
    path = table_path(base, table, sweep, stage, run_id)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{parent}/.{run_id}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            pq.write_table(t, tmp, filesystem=fs)
            os.replace(tmp, path)
        except BaseException:
            try:
                fs.delete_file(tmp)
            except (FileNotFoundError, OSError):
                pass
            raise
    else:
        pq.write_table(t, path, filesystem=fs)
    return path


def read_table(root: str | os.PathLike, table: str, filesystem: pafs.FileSystem | None = None) -> pa.Table:
    """All files of `table` under `root` (with sweep and stage columns from the path); empty if none."""
    import pyarrow.dataset as ds

    fs, base = (filesystem, str(root)) if filesystem is not None else _fs(str(root))
    path = f"{base}/{table}"
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return TABLES[table].empty_table()
    part = ds.partitioning(pa.schema([("sweep", STR), ("stage", STR)]), flavor="hive")
    # the full schema, so files written before a column was added read back with nulls in it
    schema = pa.schema(list(TABLES[table]) + [pa.field("sweep", STR), pa.field("stage", STR)])
    d = ds.dataset(path, filesystem=fs, format="parquet", partitioning=part, schema=schema,
                   exclude_invalid_files=True, ignore_prefixes=[".", "_"])
    return d.to_table()


@functools.lru_cache(maxsize=1)
def provenance() -> dict:
    """git SHA of the project, package versions, host."""
    here = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    vers = {}
    for p in ("torch", "torchvision", "numpy", "ray", "imagecorruptions-imaug", "pyarrow"):
        try:
            vers[p] = version(p)
        except PackageNotFoundError:
            pass
    vers["python"] = platform.python_version()
    import json

    return {"git_sha": sha or "unknown", "versions": json.dumps(vers, sort_keys=True)}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
