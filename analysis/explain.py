"""What explains a co-training gain? The comparisons later work asks for, read from the seed-paired table
(analysis.precision): a co-trained kind against the Baseline, against its shuffled twin (is it the neural
content?), against a Baseline that low-passes its input (is it a low spatial-frequency prior?, Li et al.
2023), against co-training on pixel-derived targets (would any image-computable target do?, Attias et
al. 2024) and on targets with the data's statistics (Federer et al. 2020), each with its interval and
smallest detectable effect, beside effective robustness (robustness beyond what clean accuracy predicts,
fitted over every classifier), and one sentence per simpler explanation saying what the run supports.
"""

from __future__ import annotations

import html

import polars as pl

from analysis.precision import overall
from core.training import registry


def _effective(comps: pl.DataFrame, kind: str, reference: str) -> dict | None:
    t = comps.filter((pl.col("kind") == kind) & (pl.col("reference") == reference)
                     & (pl.col("statistic") == "effective_robustness"))
    if t.height > 1:
        t = t.filter(pl.col("setting") == "all")
    return t.row(0, named=True) if t.height else None


def verdict(row: dict, gain: dict | None) -> str:
    """beats | loses | no_separation | undecided: against a simpler explanation, at this run's power. Not
    separated needs the gain over the Baseline to be shown (its interval above 100), the interval against the
    simpler explanation to exclude a difference as large as the smallest gain the run allows (its upper end
    below the gain's lower end), and the run to have had the power to detect such a difference (its smallest
    detectable effect, at 80% power, below that gain)."""
    if row["low"] > 100:
        return "beats"
    if row["high"] < 100:
        return "loses"
    if (gain is not None and gain["low"] > 100 and row["mde"] < gain["low"] - 100
            and row["high"] < gain["low"]):
        return "no_separation"
    return "undecided"


def sentence(kind: str, reference: str, row: dict, gain: dict | None) -> str:
    k, what = registry.label(kind), registry.get(reference).stands_for or registry.label(reference)
    numbers = (f"{row['estimate']:.1f} [{row['low']:.1f}, {row['high']:.1f}] against {registry.label(reference)}, "
               f"{row['n_seeds']} seeds × {row['n_images']} images, smallest detectable effect {row['mde']:.1f}%")
    if row["n_seeds"] < 2:
        return f"{k} against {what}: one training seed, so this run cannot say ({numbers})."
    return {
        "beats": f"{k}: co-training beats {what} ({numbers}).",
        "loses": f"{k}: co-training is less robust than {what} ({numbers}).",
        "no_separation": f"{k}: co-training does not separate from {what} ({numbers}; the gain over the Baseline, "
                         f"at least {gain['low'] - 100:.1f}%, was detectable at 80% power).",
        "undecided": f"{k} against {what}: undecided at this power ({numbers}).",
    }[verdict(row, gain)]


def lead(kind: str, gain: dict | None) -> str:
    """The sentence that opens a kind's comparisons: whether there is a gain over the Baseline to explain."""
    k = registry.label(kind)
    if gain is None:
        return f"{k}: no comparison with the Baseline in this run, so there is no gain to explain."
    numbers = (f"{gain['estimate']:.1f} [{gain['low']:.1f}, {gain['high']:.1f}] against the Baseline, "
               f"{gain['n_seeds']} seeds, smallest detectable effect {gain['mde']:.1f}%")
    if gain["n_seeds"] >= 2 and gain["low"] > 100:
        return f"{k} is more robust than the Baseline ({numbers}); the lines below ask whether a simpler explanation accounts for it."
    if gain["n_seeds"] >= 2 and gain["high"] < 100:
        return f"{k} is less robust than the Baseline ({numbers}): there is no gain to explain; the lines below only rank it."
    return (f"{k}'s gain over the Baseline is not shown ({numbers}): the lines below rank it against the simpler "
            "explanations; they do not explain a gain.")


def explanation(comps: pl.DataFrame | None) -> list[dict]:
    """One entry per co-trained kind whose simpler explanations (its recipe's `explained_by`) are in the
    run: its comparison rows and the sentences."""
    if comps is None or comps.is_empty():
        return []
    present = set(comps["kind"].to_list())
    out = []
    for kind, recipe in registry.table().items():
        refs = [r for r in recipe.explained_by if r in present]
        if kind not in present or not refs:
            continue
        # each comparison read once: the table's rows, the gain and the sentences share them
        found = {ref: overall(comps, kind, ref) for ref in dict.fromkeys(("baseline", recipe.twin, *refs)) if ref}
        gain = found["baseline"]
        rows = []
        for ref, row in found.items():
            if row is not None:
                er = _effective(comps, kind, ref)
                rows.append({"against": registry.label(ref), "robustness": f"{row['estimate']:.1f} [{row['low']:.1f}, {row['high']:.1f}]",
                             "seeds": row["n_seeds"], "images": row["n_images"],
                             "smallest detectable effect (%)": round(row["mde"], 1),
                             "effective robustness (logit)": (f"{er['estimate']:+.3f} [{er['low']:+.3f}, {er['high']:+.3f}]"
                                                              if er else "–")})
        sentences = [lead(kind, gain)] + [sentence(kind, r, found[r], gain) for r in refs if found[r] is not None]
        out.append({"kind": kind, "table": pl.DataFrame(rows), "sentences": sentences})
    return out


def section(found: list[dict], table_html) -> str:
    """The report's "What explains it" section (empty when the run holds no explanation control)."""
    if not found:
        return ""
    parts = ["<div id='explain'><h2>What explains it</h2><p>Each co-trained kind against the Baseline, its shuffled twin "
             "(the neural content), a Baseline that low-passes its input (a low spatial-frequency prior), "
             "co-training on targets computed from the pixels and on targets with the data's statistics but no "
             "relation to the image, all paired by seed. Effective robustness: the "
             "difference in corrupted accuracy (logits) beyond what clean accuracy predicts on the line through "
             "every classifier of the run.</p>"]
    for e in found:
        parts.append(f"<h3>{html.escape(registry.label(e['kind']))}</h3>" + table_html(e["table"]))
        parts.append("<ul>" + "".join(f"<li><b>{html.escape(s)}</b></li>" for s in e["sentences"]) + "</ul>")
    return "".join(parts) + "</div>"
