"""python -m core.training: train and evaluate one model without Ray.

Writes into --out: the model (`model.pt`), its checkpoints (`checkpoint/`), `run.json`, and its
records as a results lake (`runs/`, `epochs/`, `corruption_accuracy/`, `predictions/`, Parquet,
hive-partitioned by sweep and stage). A kind that reads an upstream model (listed below) takes it from
--upstream, or trains it first under OUT/upstream/<kind> when --upstream is omitted.
Re-running with the same --out resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from core.errors import DEVICES, ConfigError, Parser, check_device, cli_main


def parser() -> argparse.ArgumentParser:
    from core.presets import PRESETS
    from core.training import registry   # light: flag errors answer before torch is imported

    import textwrap

    kinds = "\n".join(textwrap.fill(r.summary + (f" (reads {r.upstream})" if r.upstream else ""), 100,
                                    initial_indent=f"  {k:17s}", subsequent_indent=" " * 19)
                      for k, r in registry.table().items())
    p = Parser(prog="python -m core.training", description=__doc__ + "\nkinds:\n" + kinds,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", required=True, choices=registry.names(), metavar="KIND", help="model kind (listed above)")
    d = PRESETS["smoke"]
    p.add_argument("--preset", default="smoke", choices=list(PRESETS),
                   help=f"data and budget (default smoke: synthetic world '{d.world}', up to {d.max_epochs} epochs for a "
                        f"classifier, {d.neural_epochs} for the Monkey Predictor, "
                        f"{d.readout_epochs} for the Oracle readout; `python sweeps/ratio_grid.py --help` lists every preset)")
    p.add_argument("--ratio", default="1:1", help="neural:classification batches for mtl_* kinds (default 1:1)")
    p.add_argument("--alpha", type=float, help="weight of the similarity loss for sim_* kinds (default 10, Li et al.)")
    p.add_argument("--seed", type=int, default=0, help="model seed (default 0)")
    p.add_argument("--out", required=True, type=Path, help="output folder: model.pt, checkpoint/, run.json and the "
                   "records (runs/, epochs/, ...: Parquet); an upstream trained first goes to OUT/upstream/<kind>")
    p.add_argument("--upstream", type=Path, help="folder of the upstream model (default: train it first)")
    p.add_argument("--data-root", type=Path, default=Path("data"), help="where data sets and caches live (default ./data)")
    p.add_argument("--tin-root", type=Path, help="Tiny ImageNet folder (preset paper)")
    p.add_argument("--neural-data", type=Path, help="neural data set in the project's format (preset paper)")
    p.add_argument("--device", default="auto", help=f"{DEVICES} (default auto: a GPU where torch finds one)")
    p.add_argument("--max-epochs", type=int, help="override the preset's epoch cap")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice; a sweep's "
                   "trials use their --cpus-per-trial, 1 by default)")
    p.add_argument("--no-corruptions", action="store_true", help="skip the TIN-TC evaluation")
    p.add_argument("--sweep", default="single", help="sweep name for the lake partition (default single)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def train(kind, preset, ratio, seed, out: Path, upstream, sources, args, log, tintc_cache) -> Path:
    from core.results import write_table
    from core.training import registry
    from core.training.kinds import run_kind

    recipe = registry.get(kind)
    if recipe.upstream and upstream is None:
        up_kind = recipe.upstream
        up_out = out / "upstream" / up_kind
        if log:
            log(f"== training upstream {up_kind} into {up_out}")
        upstream = train(up_kind, preset, ratio, seed, up_out, None, sources, args, log, tintc_cache)
    overrides = {"device": args.device, "threads": args.threads}
    if args.alpha is not None:
        if args.alpha < 0:
            raise ConfigError(f"--alpha {args.alpha}: expected >= 0")
        if recipe.grid == "alpha":
            overrides["sim_alpha"] = args.alpha
    if args.max_epochs:
        overrides["max_epochs"] = args.max_epochs
    tintc = tintc_cache() if (recipe.classifier and not args.no_corruptions) else None
    t = time.perf_counter()
    if log:
        log(f"== training {kind} (preset {preset.name}, ratio {ratio if recipe.grid == 'ratio' else '-'}, seed {seed})")
    res = run_kind(kind, preset, ratio, seed, out, sources, upstream, args.data_root, tintc=tintc,
                   log=log, overrides=overrides)
    for table, rows in (("runs", [res.run]), ("epochs", res.epochs),
                        ("corruption_accuracy", res.corruption_accuracy), ("predictions", res.predictions),
                        ("adversarial", res.adversarial), ("spectral", res.spectral)):
        write_table(out, table, rows, args.sweep, kind, res.run["run_id"])
    r = res.run
    from core.progress import number   # "-" where a value does not apply (the Monkey Predictor has no classifier)

    print(f"{kind}: status {r['status']}, clean accuracy {number(r['clean_accuracy'])}, FEVe {number(r['feve'])}, "
          f"{r['epochs']} epochs in {time.perf_counter() - t:.1f}s -> {out}")
    return out


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from core.presets import get_preset
    from core.training.cycler import parse_ratio

    parse_ratio(args.ratio)   # flag checks first: they answer before torch is imported (cuda devices excepted)
    check_device(args.device)
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: expected a non-negative integer")
    if args.upstream is not None and not (args.upstream / "model.pt").is_file():
        raise ConfigError(f"--upstream {args.upstream}/model.pt: missing; expected a model folder written by "
                          "`python -m core.training`")
    preset = get_preset(args.preset)
    from core.training.bundles import load_sources

    log = None if args.quiet else print
    sources = load_sources(preset, args.data_root, args.tin_root, args.neural_data, log=log)
    cache = {}

    def tintc_cache():
        if "t" not in cache:
            from core.data.corruptions import ensure_tintc
            from core.training.kinds import tintc_source

            images, path = tintc_source(preset, sources, args.data_root)
            cache["t"] = ensure_tintc(images, path, seed=0, log=log)
        return cache["t"]

    train(args.kind, preset, args.ratio, args.seed, args.out, args.upstream, sources, args, log, tintc_cache)
    return 0


if __name__ == "__main__":
    cli_main(main)
