"""The main job: the paper's stage graph over a ratio x seed grid, on Ray Tune + Ray Train.

    python sweeps/ratio_grid.py                       # demo preset, synthetic world, local Ray
    python sweeps/ratio_grid.py --family similarity   # Li et al.'s similarity family over alpha x seed
    python sweeps/ratio_grid.py --preset paper --tin-root PATH --neural-data PATH --address auto --storage s3://bucket/run

Stages (each model a Ray Tune trial running one Ray Train run; a model starts as soon as its
upstream is in the lake, the earliest stage first):
  1. monkey_predictor, oracle[seed], baseline[seed] (and sim_pixel[alpha x seed])
  2. oracle_readout[seed], mtl_monkey[ratio x seed], mtl_shuffled[ratio x seed]
     (and sim_monkey, sim_shuffled[alpha x seed])
  3. mtl_oracle[ratio x seed] (reads the Oracle readout of its seed)
With --family similarity: baseline[seed], monkey_predictor, then sim_monkey, sim_shuffled and
sim_pixel over --alphas x seeds (--family both runs the two families together).
Every classifier is also attacked (PGD L2/Linf at several epsilons, HopSkipJump's minimal L2).
Results land in STORAGE/lake (Parquet: runs, epochs, corruption_accuracy, predictions, adversarial);
finished models are skipped on a re-run, so --resume (or any re-run) completes only what is missing.
At the end the analysis (python -m analysis) writes the scores, regression, bootstrap intervals,
figures and report.html to STORAGE/report/<sweep> (./report-<sweep> when STORAGE is a URI).
The last line printed is the report's path. Exit status: 0 all models finished; 1 some model failed
(its error is in the lake); 2 bad flags or data (one line, nothing started); 130 interrupted (Ctrl-C),
143 terminated (SIGTERM, e.g. `kill` or a batch scheduler): finished models stay in the lake and the
same command goes on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# runnable as `python sweeps/ratio_grid.py` from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.errors import Parser, UserError, cli_main, require_installed  # noqa: E402
require_installed()  # before the imports below need them
from core.presets import get_preset  # noqa: E402
from sweeps.cli import add_common_flags, planted_values, resolve_common, worlds  # noqa: E402
from sweeps.plan import presets_help  # noqa: E402
from sweeps.runner import run_sweep  # noqa: E402
from analysis.controls import INCLUDE_UNHEALTHY_HELP  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python sweeps/ratio_grid.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog=presets_help("a sweep trains the preset's kinds where it names them, else, per seed, a Baseline, an Oracle and "
                                   "its readout, per ratio and seed an MTL-Monkey, MTL-Shuffled and MTL-Oracle, and one Monkey "
                                   "Predictor (the stages above); "
                                   "--plan lists every model, what the lake already holds and the compute, and starts nothing"))
    add_common_flags(p)
    p.add_argument("--family", default="mtl", choices=["mtl", "similarity", "both"],
                   help="mtl: Safarani et al.'s multi-task co-training (default); similarity: Li et al.'s "
                        "representational-similarity regularisation (sim_monkey, sim_shuffled, sim_pixel); both")
    p.add_argument("--alphas", help="comma-separated weights of the similarity loss for --family similarity "
                   "(default 10, as Li et al.)")
    p.add_argument("--kinds", default="all",
                   help="comma-separated model kinds to run (default all of the family: baseline, monkey_predictor, "
                        "oracle, oracle_readout, mtl_monkey, mtl_shuffled, mtl_oracle; or baseline, monkey_predictor, "
                        "sim_monkey, sim_shuffled, sim_pixel; the calibration and explain presets: their own kinds); "
                        "the others: mtl_true (co-trained on a synthetic world's true rates), baseline_lowpass, "
                        "mtl_pixel, mtl_surrogate; upstream kinds are added as needed")
    p.add_argument("--report", metavar="DIR", help="where the analysis writes report.html, tables and figures "
                   "(default STORAGE/report/<sweep>, or ./report-<sweep> when STORAGE is a URI)")
    p.add_argument("--plan", action="store_true", help="print the models the grid will train, what the lake already "
                   "holds, and an estimate of compute (CPU core-hours, GPU-hours) and disk; start nothing")
    p.add_argument("--force", action="store_true", help="replace the report folder even if it holds files this "
                   "command did not write (default: only an earlier report there is replaced)")
    p.add_argument("--no-report", action="store_true", help="skip the analysis at the end (run python -m analysis later)")
    p.add_argument("--bootstrap", type=int, default=250, metavar="N", help="bootstrap replicates for the report's error bars (default 250)")
    p.add_argument("--include-unhealthy", action="store_true", help="report: " + INCLUDE_UNHEALTHY_HELP)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap {args.bootstrap}: expected at least 1 replicate")
    if args.report and len(planted_values(args, get_preset(args.preset), True)) > 1:   # before anything is written
        raise UserError("--report names one folder, but this runs one sweep per planted world: leave it out (each "
                        "world's report and the calibration report land under STORAGE/report/)")
    spec, ray_kwargs = resolve_common(args, kinds=args.kinds)
    specs = worlds(args, spec)
    if args.plan:
        from sweeps.plan import print_plans

        import os

        cores = None if args.address else (args.num_cpus or os.cpu_count())
        return print_plans(specs, cores)
    if not args.no_report:   # checked before any training: the report may replace only an earlier report
        from core.io import check_replaceable, check_writable
        from sweeps.runner import report_dir

        flag = "--report" if args.report else "report folder"
        for s in specs:
            check_replaceable(report_dir(s, args), "report", flag, args.force)
            check_writable(report_dir(s, args), flag)
    codes = [run_sweep(s, ray_kwargs, args) for s in specs]
    if len(specs) > 1 and not args.no_report:
        from sweeps.runner import write_calibration_report

        write_calibration_report(specs, args)
    return max(codes)


if __name__ == "__main__":
    cli_main(main)
