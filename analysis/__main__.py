"""python -m analysis --results PATH_OR_URI --out DIR: scores, regression, bootstrap, figures, report.html."""

from __future__ import annotations

import argparse

from analysis.controls import INCLUDE_UNHEALTHY_HELP
from core.errors import Parser, UserError, cli_main


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m analysis",
        description="Analyse one sweep from the results lake: robustness scores relative to the Baseline (overall, per "
                    "category, per corruption), the two-factor regression robustness ~ clean_accuracy + feve per pool "
                    "and its interaction over MTL-Monkey and MTL-Shuffled, bootstrap intervals over test images and "
                    "seeds, figures (PNG and SVG) and a self-contained report.html. Whatever the lake lacks (no "
                    "Baseline, one seed, failed runs) is stated in the report; what can be computed still is.")
    p.add_argument("--results", required=True, metavar="PATH_OR_URI",
                   help="a sweep's --storage (holding lake/) or the lake itself; local path or s3://, gs://, ... URI")
    p.add_argument("--out", required=True, metavar="DIR", help="local folder for tables, figures and report.html "
                   "(an earlier report there is replaced as a whole when the new one is complete, so a failed run leaves "
                   "the old one; a folder holding anything else is refused unless --force)")
    p.add_argument("--sweep", help="which sweep in the lake (default: the most recently written)")
    p.add_argument("--bootstrap", type=int, default=250, metavar="N", help="bootstrap replicates (default 250, as the paper)")
    p.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0; the same seed gives the same intervals)")
    p.add_argument("--force", action="store_true", help="replace --out even if it holds files this command did not "
                   "write (default: only an earlier report is replaced)")
    p.add_argument("--include-unhealthy", action="store_true", help=INCLUDE_UNHEALTHY_HELP)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap {args.bootstrap}: expected at least 1 replicate")
    if not 0 < args.level < 1:
        raise UserError(f"--level {args.level}: expected a coverage between 0 and 1, e.g. 0.95")
    from analysis.report import build, console_lines

    rep = build(args.results, args.out, sweep=args.sweep, n_boot=args.bootstrap, seed=args.seed, level=args.level,
                include_unhealthy=args.include_unhealthy, force=args.force)
    for n in rep.notes:
        print(f"  note: {n}")
    print(console_lines(rep))
    print(f"report: {rep.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    cli_main(main)
