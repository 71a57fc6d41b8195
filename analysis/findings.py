"""What a run says about the research question, in plain words: is each co-trained kind more robust than
the Baseline, and than its shuffled twin, at the precision this run had?

Each answer reads one seed-paired comparison (analysis.precision): "more robust" when its interval lies
above 100, "less robust" when below, otherwise "not distinguishable at this power", always with the
smallest effect the run could have detected, so that "not shown" is never read as "not there". A
comparison from one training seed says so: its interval covers test images only.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from analysis.precision import overall
from core.training import registry


@dataclass
class Finding:
    kind: str
    reference: str
    verdict: str        # more | less | undecided | one_seed
    sentence: str
    row: dict


def judge(row: dict) -> str:
    if row["low"] > 100:
        return "more"
    if row["high"] < 100:
        return "less"
    return "undecided"


def describe(kind: str, reference: str, row: dict) -> Finding:
    """One comparison as a finding with its sentence."""
    v = judge(row)
    k, ref = registry.label(kind), registry.label(reference)
    n, m = row["n_seeds"], row["n_images"]
    where = " (its ratios averaged within each seed)" if row["setting"] == "all" else (
        f" ({row['setting']})" if row["setting"] else "")
    numbers = f"{row['estimate']:.1f} [{row['low']:.1f}, {row['high']:.1f}], {n} seed{'' if n == 1 else 's'} × {m} test images"
    if n < 2:
        return Finding(kind, reference, "one_seed", (
            f"{k}{where} against {ref}: {numbers}. One training seed: the interval covers test images only, not training "
            f"runs, which vary more, so this run cannot show whether {k} is more robust than {ref}; run several seeds "
            "(--preset controls)."), row)
    text = {"more": f"more robust than {ref}",
            "less": f"less robust than {ref}",
            "undecided": f"not distinguishable from {ref} at this power"}[v]
    return Finding(kind, reference, v, (
        f"{k}{where}: {text}, {numbers}; this run could have detected an effect of {row['mde']:.1f}% or more "
        f"(80% power, two-sided 5%)."), row)


def findings(comps: pl.DataFrame | None) -> list[Finding]:
    """For each kind the research question is about (the recipes' `asked`) in the run: against the
    Baseline, then against its shuffled twin."""
    if comps is None or comps.is_empty():
        return []
    out = []
    present = set(comps["kind"].to_list())
    for kind, recipe in registry.table().items():
        if not recipe.asked or kind not in present:
            continue
        for ref in ("baseline", recipe.twin):
            row = overall(comps, kind, ref) if ref else None
            if row is not None:
                out.append(describe(kind, ref, row))
    return out


def format_findings(found: list[Finding]) -> str:
    """Plain-text lines for the console."""
    if not found:
        return ""
    return "\n".join(["research question (robustness against the reference, seed-paired):"]
                     + [f"  {f.sentence}" for f in found])
