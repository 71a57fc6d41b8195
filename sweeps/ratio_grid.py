"""The main job: the paper's stage graph over a ratio x seed grid, on Ray Tune + Ray Train.

    python sweeps/ratio_grid.py                       # demo preset, synthetic world, local Ray
    python sweeps/ratio_grid.py --preset paper --tin-root PATH --neural-data PATH --address auto --storage s3://bucket/run

Stages (each model a Ray Tune trial running one Ray Train TorchTrainer), in waves:
  1. monkey_predictor, oracle, baseline[seed]
  2. oracle_readout, mtl_monkey[ratio x seed], mtl_shuffled[ratio x seed]
  3. mtl_oracle[ratio x seed]
Results land in STORAGE/lake (Parquet: runs, epochs, corruption_accuracy, predictions);
finished models are skipped on a re-run, so --resume (or any re-run) completes only what is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# runnable as `python sweeps/ratio_grid.py` from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import cli_main  # noqa: E402
from sweeps.cli import add_common_flags, resolve_common, run_sweep  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python sweeps/ratio_grid.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(p)
    p.add_argument("--kinds", default="all",
                   help="comma-separated model kinds to run (default all: baseline, monkey_predictor, oracle, "
                        "oracle_readout, mtl_monkey, mtl_shuffled, mtl_oracle); upstream kinds are added as needed")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    spec, ray_kwargs = resolve_common(args, kinds=args.kinds)
    return run_sweep(spec, ray_kwargs, args)


if __name__ == "__main__":
    cli_main(main)
