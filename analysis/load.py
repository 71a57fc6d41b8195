"""One sweep of the results lake as polars tables: its runs, accuracies, per-image predictions, attacks and
spectral sensitivity, with the corruption set it was scored on and the world it ran in."""

from __future__ import annotations

import json
from dataclasses import dataclass

import polars as pl

from core.errors import DataError, UserError
from core.io import join_uri
from core.results import read_table


@dataclass
class Lake:
    root: str
    sweep: str
    runs: pl.DataFrame
    acc: pl.DataFrame
    preds: pl.DataFrame
    sweeps: list[str]
    adversarial: pl.DataFrame = None
    tintc: str = "generated"
    spectral: pl.DataFrame = None   # the corruption set the classifiers were scored on ("published-<hash>": --tintc-root)


def lake_root(results: str) -> str:
    """`results` is the sweep's storage (holding `lake/`) or the lake itself; local path or URI."""
    import pyarrow.fs as pafs

    from core.results.lake import _fs

    fs, base = _fs(results)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"--results {results}: no such directory")
    if fs.get_file_info(f"{base}/lake").type == pafs.FileType.Directory:
        return join_uri(results, "lake")
    if fs.get_file_info(f"{base}/runs").type == pafs.FileType.Directory:
        return results
    raise DataError(f"--results {results}: not a results lake (expected a 'lake/' or 'runs/' folder inside; "
                    "point it at the --storage of a sweep)")


def tintc_source(runs: pl.DataFrame, sweep: str, root: str) -> str:
    """The one corruption set a sweep's classifiers were scored on; a sweep that mixes the generated
    TIN-TC and the published Tiny-ImageNet-C cannot be scored (image i of a condition would be two
    different pictures, and the Baseline of one set would divide the accuracy of the other)."""
    import json

    from core.training.graph import CLASSIFIERS

    cls = runs.filter(pl.col("kind").is_in(list(CLASSIFIERS)) & (pl.col("status") == "ok"))
    found = {json.loads(d or "{}").get("tintc") or "generated" for d in cls["data"]} if "data" in cls.columns else set()
    if len(found) > 1:
        raise DataError(f"{root}/runs: sweep {sweep!r} mixes classifiers scored on different corruption sets "
                        f"({', '.join(sorted(found))}); give each its own --sweep name (a sweep with --tintc-root "
                        "is named <preset>-published by default)")
    return found.pop() if found else "generated"


def world_of(runs: pl.DataFrame, notes: list[str]) -> str:
    """The world a sweep's models ran in, from their records (runs.data's `world`); records written before
    it was kept say nothing, and a sweep that mixes worlds is named in the notes."""
    worlds = sorted({json.loads(d or "{}").get("world", "") for d in runs["data"].to_list()} - {""}) if "data" in runs.columns else []
    if len(worlds) > 1:
        notes.append(f"this sweep mixes worlds ({'; '.join(worlds)}): its comparisons pool models that saw different truths")
    return worlds[0] if len(worlds) == 1 else ("; ".join(worlds) if worlds else "")


def load(results: str, sweep: str | None = None) -> Lake:
    root = lake_root(results)
    runs = pl.from_arrow(read_table(root, "runs"))
    if runs.is_empty():
        raise DataError(f"--results {results}: the lake holds no runs yet (nothing to analyse)")
    sweeps = sorted(runs["sweep"].unique().to_list())
    if sweep is None:
        latest = runs.group_by("sweep").agg(pl.col("created_at").max()).sort("created_at").row(-1, named=True)
        sweep = latest["sweep"]
    elif sweep not in sweeps:
        raise UserError(f"--sweep {sweep!r}: not in the lake at {results}; it holds {', '.join(sweeps)}")
    runs = runs.filter(pl.col("sweep") == sweep)
    # one row per run: a re-run writes the same file, so duplicates mean a corrupted lake
    dup = runs.filter(pl.col("run_id").is_duplicated())
    if dup.height:
        raise DataError(f"{root}/runs: run {dup['run_id'][0]} is recorded {dup.height} times in sweep {sweep!r}")

    # the similarity family's grid coordinate is alpha (its `ratio` is empty in the lake): its models
    # are grouped as "α=<value>" wherever the MTL models are grouped by ratio
    sim = runs.filter(pl.col("alpha").is_not_null() & pl.col("alpha").is_not_nan() & pl.col("kind").str.starts_with("sim_"))
    setting = {r["run_id"]: f"α={r['alpha']:g}" for r in sim.select("run_id", "alpha").iter_rows(named=True)}

    def with_setting(t):
        if not setting or t.is_empty():
            return t
        return t.with_columns(pl.when(pl.col("run_id").is_in(list(setting))).then(pl.col("run_id").replace(setting))
                              .otherwise(pl.col("ratio")).alias("ratio"))

    def table(name):
        t = pl.from_arrow(read_table(root, name))
        return with_setting(t.filter(pl.col("sweep") == sweep) if t.height else t)

    tintc = tintc_source(runs, sweep, root)
    return Lake(root, sweep, with_setting(runs), table("corruption_accuracy"), table("predictions"), sweeps,
                table("adversarial"), tintc, table("spectral"))
