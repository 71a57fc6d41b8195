"""The calibration study: the whole pipeline, with real training, against a known answer.

One sweep per synthetic world with a planted answer (core.data.planted: the share of the simulated
neurons that encode the objects' corruption-proof shape, 0 a true null). From each world's lake this
reads every co-trained kind's robustness against that world's own Baseline, paired by seed
(analysis.precision), and the two-factor regression's FEVe coefficient over MTL-Monkey's models, and
judges the instrument:
- no false discovery: at the null, no co-trained kind's interval lies above 100 (one below 100 is a harm,
  not a discovery: the null's neurons encode the fragile cue, and co-training on them may teach it; it is
  stated beside the check);
- the planted benefit found: at every planted strength above 0, the true-rates kind (MTL-True) and
  MTL-Monkey lie above 100 (an interval that includes 100 is "unclear", not shown at the run's power, with
  the smallest effect it could have detected; one wholly below 100 fails), and they rise with the strength:
  judged seed by seed against themselves (the Baseline drops out), the strongest world lies above the null
  and every step between neighbouring worlds lies above 100 (any of them wholly below 100 fails; one that
  includes 100 leaves the rise unclear, not shown at the run's power; the estimates' order alone shows nothing).
  Where a gain is not shown, the check says how many seeds one of its estimated size would need
  (`precision.seeds_needed`: a rough planning figure for a larger run);
- the negative control: MTL-Shuffled covers 100 in every world.
Writes a dose-response figure, the table (Parquet, CSV) and a self-contained report.html.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from analysis import bootstrap as bs
from analysis.precision import POWER, SEEDS_CAP, as_score, comparisons, overall, seed_interval, seeds_needed
from core.training import registry

KINDS = ("mtl_true", "mtl_monkey", "mtl_shuffled")   # the co-trained kinds the verdict reads
FOUND = ("mtl_true", "mtl_monkey")                   # must find a planted benefit


@dataclass
class Calibration:
    table: pl.DataFrame
    checks: list[tuple[str, str, str]] = field(default_factory=list)   # (name, pass | fail | unclear, detail)
    notes: list[str] = field(default_factory=list)
    rise: list[dict] = field(default_factory=list)   # `rises`: each kind across worlds, by seed

    @property
    def verdict(self) -> str:
        states = {c[1] for c in self.checks}
        return "fail" if "fail" in states else ("unclear" if "unclear" in states or not states else "pass")


def seed_scores(cor, n_boot: int, seed: int) -> dict:
    """Each co-trained kind's ln score against the Baseline of the same seed, overall, per seed and image
    replicate: {kind: (seeds, (1 + n_boot, k))}, and "images": the test images they are scored on (the image
    replicates of two worlds line up when their images do: the same draw for the same images)."""
    import numpy as np

    from analysis.precision import Paired

    p = Paired(cor, n_boot, seed)
    base = p.groups.get(("baseline", ""), {})
    out = {"images": tuple(np.asarray(cor.images).tolist())}
    if not base:
        return out
    keep = (p.a_c[0, list(base.values())] > 0).all(0)
    sel = p.scopes(keep)[0][2]
    for kind in KINDS:
        g = p.groups.get((kind, next((st for k, st in p.groups if k == kind), "")), {})
        seeds = sorted(set(g) & set(base))
        if seeds:
            out[kind] = (seeds, p.log_ratio([g[x] for x in seeds], [base[x] for x in seeds], sel))
    return out


def contrast(a: dict, b: dict, kind: str, level: float) -> dict | None:
    """`kind` in world b against itself in world a, paired by seed: 100·exp(mean_s [d_s(b) − d_s(a)]), with the
    interval and smallest detectable effect of `precision.seed_interval` (None: fewer than 2 seeds in both, or
    other test images in the two worlds)."""
    if kind not in a or kind not in b:
        return None
    if a["images"] != b["images"]:   # other test images: their noise is not shared, and no replicate pairs it
        return None
    seeds = sorted(set(a[kind][0]) & set(b[kind][0]))
    if len(seeds) < 2:
        return None
    pick = lambda v: v[1][:, [v[0].index(x) for x in seeds]]   # noqa: E731
    d = pick(b[kind]) - pick(a[kind])
    r = as_score(seed_interval(d, level))
    return {"estimate": r["estimate"], "low": r["low"], "high": r["high"], "mde": r["mde"], "n_seeds": len(seeds),
            "seeds_needed": seeds_needed(d, level)}


def contrast_pairs(values: list[float]) -> list[tuple[float, float]]:
    """The (from, to) worlds a rise is judged on, `values` sorted and starting at the null: the strongest against
    the null, then, with more than one planted world, each against the next weaker one."""
    return [(0.0, values[-1])] + (list(zip(values, values[1:])) if len(values) > 2 else [])


def rises(per_world: dict, level: float) -> list[dict]:
    """Each co-trained kind against itself across worlds, paired by seed: the Baseline (the same models in every
    world: the dial leaves the classification images alone) drops out, and with it the Baselines' spread
    from seed to seed, which each world's own score carries. First the strongest planted world against the null (the rise), then, with more than
    one planted world, each world against the next weaker one (the steps a monotone rise must not reverse)."""
    if 0.0 not in per_world or len(per_world) < 2:
        return []
    out = []
    for kind in KINDS:
        for a, b in contrast_pairs(sorted(per_world)):
            c = contrast(per_world[a], per_world[b], kind, level)
            if c is not None:
                out.append({"kind": kind, "from": a, "to": b, **c})
    return out


def health_notes(runs: pl.DataFrame, preds: pl.DataFrame) -> list[str]:
    """The models a world's own report leaves out as unhealthy (analysis.controls), which the calibration reads all
    the same: its question is the pipeline's answer over every model the dial produced, and a health rule read on
    the recording (MTL-Monkey's FEVe on degraded stimuli it never trained on) would select models differently in
    each world."""
    from analysis.controls import model_health

    bad = model_health(runs, preds).filter(~pl.col("healthy")).join(runs.select("run_id", "feve", "corr_avg"), on="run_id",
                                                                     how="left")
    out = []
    for (k,), g in bad.sort("kind", "seed").group_by("kind", maintain_order=True):
        span = lambda c: f"{g[c].min():.2f} to {g[c].max():.2f}" if g.height > 1 else f"{g[c][0]:.2f}"   # noqa: E731
        why = "; ".join(g["problem"].unique().to_list())
        if g["problem"].str.starts_with("predicts the neurons").all():   # the FEVe alone: its range, and the correlation's
            why = f"FEVe {span('feve')} on the recording's test stimuli"
            if g["corr_avg"].is_not_null().all() and g["corr_avg"].is_not_nan().all():
                why += f", its predictions correlating {span('corr_avg')} with the neurons' mean responses"
        out.append(f"{registry.label(k)} seed{'s' if g.height > 1 else ''} {', '.join(map(str, g['seed'].to_list()))}: left "
                   f"out of this world's own report as unhealthy ({why}); the calibration reads every model")
    return out


def world_rows(lake, planted: float, n_boot: int, seed: int, level: float, notes: list[str],
               per_world: dict | None = None, detect_level: float | None = None) -> list[dict]:
    """Each co-trained kind's overall robustness against the world's Baseline, and MTL-Monkey's FEVe coefficient
    (and, into `per_world[planted]`, the per-seed scores the rise is judged on)."""
    from analysis.regression import TooFewModels, two_factor
    from analysis.scores import model_table

    ok = lake.runs.filter(pl.col("status") == "ok")
    notes.extend(f"planted {planted:g}: {m}" for m in health_notes(ok, lake.preds))
    classifiers = ok.filter(pl.col("kind").is_in(list(registry.classifiers())))
    cor = bs.correctness(lake.preds, classifiers)
    comps, more = comparisons(cor, n_boot=n_boot, seed=seed, level=level)
    notes.extend(f"planted {planted:g}: {m}" for m in more)
    # the per-seed scores (the same Paired draw as `comparisons`): the rise reads them, and the finding checks'
    # intervals at the nominal level are drawn from them rather than from a second pass of `comparisons`
    scores = seed_scores(cor, n_boot, seed) if per_world is not None or detect_level else {}
    if per_world is not None:
        per_world[planted] = scores
    coef = (float("nan"), float("nan"), float("nan"))
    try:
        models = model_table(ok, lake.acc.filter(pl.col("run_id").is_in(ok["run_id"].implode())))
        t = two_factor(models.filter(pl.col("kind") == "mtl_monkey"), "feve", "MTL-Monkey").filter(pl.col("term") == "feve")
        coef = (t["coef"][0], t["ci_low"][0], t["ci_high"][0])
    except (TooFewModels, Exception) as e:   # noqa: BLE001 - the regression is reported where it can be fitted
        notes.append(f"planted {planted:g}: no FEVe coefficient ({str(e).splitlines()[0]})")
    rows = []
    for kind in KINDS:
        r = overall(comps, kind, "baseline")
        if r is None:
            notes.append(f"planted {planted:g}: no {kind} with a Baseline of the same seed")
            continue
        rows.append({"planted": planted, "sweep": lake.sweep, "kind": kind, "estimate": r["estimate"], "low": r["low"],
                     "high": r["high"], "mde": r["mde"], "n_seeds": r["n_seeds"], "n_images": r["n_images"],
                     "feve_coef": coef[0], "feve_coef_low": coef[1], "feve_coef_high": coef[2]})
        if detect_level and kind in scores:
            d = as_score(seed_interval(scores[kind][1], detect_level))
            rows[-1].update(detect_low=d["low"], detect_high=d["high"], detect_mde=d["mde"],
                            detect_seeds_needed=seeds_needed(scores[kind][1], detect_level))
    return rows


def family_level(level: float, planted: list[float]) -> float:
    """The level of each interval such that the study's coverage checks (every co-trained kind at the null,
    MTL-Shuffled in every other world) hold together at `level` for a flawless pipeline (Bonferroni): with
    three worlds, five intervals at 99%. Without it a correct pipeline would fail one check in four or five.
    The null-world checks are one-sided (only an interval above 100 fails), so there it is conservative."""
    m = sum(len(KINDS) if p == 0 else 1 for p in planted)
    return 1 - (1 - level) / max(1, m)


def place(r: dict) -> str:
    """Where an interval lies: above | below | covers 100, or unknown (not finite)."""
    lo, hi = r["low"], r["high"]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "unknown"
    return "above" if lo > 100 else ("below" if hi < 100 else "covers")


def judge(table: pl.DataFrame, rise: list[dict] | None = None) -> list[tuple[str, str, str]]:
    """The checks (name, pass | fail | unclear, detail) of the study's table; `rise` (from `rises`) each kind's
    seed-paired contrasts across worlds (the strongest against the null, each world against the next weaker),
    without which a rise is unclear: the estimates' order alone shows nothing."""
    def row(kind, p):
        t = table.filter((pl.col("kind") == kind) & (pl.col("planted") == p))
        return t.row(0, named=True) if t.height else None

    def fmt(r):
        return f"{r['estimate']:.1f} [{r['low']:.1f}, {r['high']:.1f}]"

    def power(r):
        """The run's power; where a benefit's interval includes 100, how many seeds one of the estimate's size needs."""
        m = r.get("mde")
        out = f", smallest detectable effect {m:.0f}%" if m is not None and m == m else ""
        n = r.get("seeds_needed")
        if out and n is not None and n == n and place(r) == "covers" and r["estimate"] > 100:
            out += (f" (a gain of its estimated size, at this run's spread from seed to seed, would need about {n:.0f} "
                    f"seeds for {POWER:.0%} power: a rough planning figure)" if math.isfinite(n) else
                    f" (no run of up to {SEEDS_CAP:,} seeds would show a gain of its estimated size at this run's spread)")
        return out

    values = sorted(set(table["planted"].to_list()))
    out = []
    if 0.0 in values:
        # a discovery is a benefit: an interval wholly above 100. One wholly below is a harm, which the null world
        # may well plant (its neurons encode the fragile cue, so co-training on them can teach it): stated, not failed
        have = {k: r for k in KINDS if (r := row(k, 0.0))}
        bad = [f"{registry.label(k)} {fmt(r)}" for k, r in have.items() if place(r) == "above"]
        harm = [registry.label(k) for k, r in have.items() if place(r) == "below"]
        lost = [registry.label(k) for k in KINDS if k not in have or place(have[k]) == "unknown"]
        detail = "; ".join(bad) or ", ".join(f"{registry.label(k)} {fmt(r)}" for k, r in have.items()) or "no models"
        if harm and not bad:
            detail += f" ({', '.join(harm)} below 100: a harm, not a benefit)"
        if lost and not bad:
            detail += f" (no interval for {', '.join(lost)})"
        out.append(("no false discovery in the null world", "fail" if bad else ("unclear" if lost else "pass"), detail))
    else:
        out.append(("no false discovery in the null world", "unclear", "the study has no world planted at 0"))
    def detecting(r):
        """The row with the interval the finding checks read (`detect_*`, at the nominal level) where it has one."""
        if r and r.get("detect_low") is not None:
            return {**r, "low": r["detect_low"], "high": r["detect_high"], "mde": r.get("detect_mde"),
                    **({"seeds_needed": r["detect_seeds_needed"]} if "detect_seeds_needed" in r else {})}
        return r

    for k in FOUND:
        planted = [(p, detecting(row(k, p))) for p in values if p > 0 and row(k, p)]
        if not planted:
            out.append((f"{registry.label(k)} finds the planted benefit", "unclear", "no planted world with this kind"))
            out.append((f"{registry.label(k)} rises with the planted strength", "unclear", "no planted world with this kind"))
            continue
        # found: the interval wholly above 100; refuted: wholly below; else the run could not tell at its power
        refuted = [f"{p:g}: {fmt(r)}" for p, r in planted if place(r) == "below"]
        unsure = [f"{p:g}: {fmt(r)}{power(r)}" for p, r in planted if place(r) in ("covers", "unknown")]
        state = "fail" if refuted else ("unclear" if unsure else "pass")
        out.append((f"{registry.label(k)} finds the planted benefit", state,
                    ("its interval lies below 100 at " + "; ".join(refuted)) if refuted else
                    ("not shown at this power, its interval includes 100 at " + "; ".join(unsure)) if unsure else
                    "; ".join(f"{p:g}: {fmt(r)}" for p, r in planted)))
        series = [(p, r["estimate"]) for p, r in [(p, row(k, p)) for p in values] if r]
        short = len(series) < 2 or series[0][0] != 0.0
        detail = " → ".join(f"{e:.1f} ({p:g})" for p, e in series) + (" (needs the null and a planted world)" if short else "")
        state = "unclear"
        if not short:
            # shown to rise: seed by seed, each kind against itself (the Baseline drops out), the strongest world
            # above the null and every step between neighbouring worlds above 100; shown not to: any of them
            # wholly below 100; else not shown at this power (the estimates' order alone shows nothing)
            mine = {(c["from"], c["to"]): c for c in rise or [] if c["kind"] == k}
            found = [(a, b, mine.get((a, b))) for a, b in contrast_pairs([p for p, _ in series])]
            where = [place(c) if c else "unknown" for _, _, c in found]
            state = "fail" if "below" in where else ("pass" if all(w == "above" for w in where) else "unclear")
            said = [f"{b:g} against {a:g}: " + (f"{fmt(c)}{power(c)}" if c else "no contrast (fewer than 2 shared seeds, "
                                               "or other test images)") for a, b, c in found]
            n = max((c["n_seeds"] for _, _, c in found if c), default=0)
            detail += f"; seed by seed ({n} seeds): " + "; ".join(said)
            if state == "unclear":
                detail += "; not shown at this power: " + ", ".join(f"{b:g} against {a:g}" for (a, b, _), w in zip(found, where)
                                                                    if w in ("covers", "unknown"))
            elif state == "fail":
                detail += "; it falls: " + ", ".join(f"{b:g} against {a:g}" for (a, b, _), w in zip(found, where) if w == "below")
        out.append((f"{registry.label(k)} rises with the planted strength", state, detail))
    sh = [(p, row("mtl_shuffled", p)) for p in values if row("mtl_shuffled", p)]
    bad = [f"{p:g}: {fmt(r)}" for p, r in sh if place(r) in ("above", "below")]
    lost = [f"{p:g}" for p in values if not row("mtl_shuffled", p) or place(row("mtl_shuffled", p)) == "unknown"]
    out.append(("MTL-Shuffled covers 100 in every world", "fail" if bad else ("unclear" if lost or not sh else "pass"),
                "; ".join(bad) or "; ".join(f"{p:g}: {fmt(r)}" for p, r in sh) + (f" (no interval at {', '.join(lost)})" if lost else "")
                or "no MTL-Shuffled models"))
    return out


def dose_response(table: pl.DataFrame, level: float):
    from analysis.figures import plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    offsets = {k: (i - 1) * 0.012 for i, k in enumerate(KINDS)}
    for k in KINDS:
        d = table.filter(pl.col("kind") == k).sort("planted")
        if d.height:
            x = [p + offsets[k] for p in d["planted"].to_list()]
            ax.errorbar(x, d["estimate"], yerr=[d["estimate"] - d["low"], d["high"] - d["estimate"]], marker="o", ms=5,
                        capsize=3, lw=1.4, color=registry.color(k), label=f"{registry.label(k)} ({d['n_seeds'].max()} seeds)")
    ax.axhline(100, color="k", lw=0.8, ls="--", label="each world's Baseline (100)")
    ax.set_xlabel("planted strength (share of the simulated neurons that encode shape; 0 = null)")
    ax.set_ylabel("robustness (% of the world's Baseline)")
    ax.set_title(f"Calibration: robustness against the planted benefit ({level:.0%} intervals, paired by seed)", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def build(storage: str, sweeps: list[tuple[float, str]], out: str | Path, n_boot: int = 250, seed: int = 0,
          level: float = 0.95, log=print) -> Calibration:
    """The calibration report over `sweeps` ((planted value, sweep name) each) of one storage, into `out`."""
    from analysis import figures as figs
    from analysis import html as H
    from analysis.load import load
    from analysis.tables import interval_text
    from core.io import atomic_dir

    notes, rows, per_world = [], [], {}
    detect_level, level = level, family_level(level, [p for p, _ in sweeps])
    for planted, name in sweeps:
        lake = load(storage, name)
        rows += world_rows(lake, planted, n_boot, seed, level, notes, per_world, detect_level)
    table = pl.DataFrame(rows) if rows else pl.DataFrame(schema={"planted": pl.Float64, "kind": pl.String})
    rise = rises(per_world, detect_level)
    cal = Calibration(table, judge(table, rise) if rows else [], notes, rise)
    out = Path(out)
    with atomic_dir(out, overwrite=True, marker="report") as tmp:
        table.write_parquet(tmp / "calibration.parquet")
        table.write_csv(tmp / "calibration.csv")
        figs.save(dose_response(table, level), tmp / "figures", "dose_response")
        items = "".join(f"<li style='color:{H.STATUS_COLOURS[s]}'><b>{s.upper()}</b> {html.escape(n)}: {html.escape(d)}</li>"
                        for n, s, d in cal.checks)
        show = table.select("planted", "kind", interval_text().alias("robustness"),
                            pl.col("mde").round(1).alias("smallest detectable effect (%)"), "n_seeds", "n_images",
                            pl.col("feve_coef").round(1).alias("FEVe coefficient (MTL-Monkey)")) if rows else table
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Calibration report</title><style>{H.CSS}</style>"
                "</head><body><h1>Calibration: the pipeline against a planted answer</h1>"
                "<p>Each world is the synthetic world with a planted benefit: a faint high-frequency class cue in every "
                "image, which a model trained on labels alone uses and the corruptions destroy, and a simulated V1 whose "
                "given share of neurons encodes the objects' shape instead (0: the null, the neurons encode the cue). "
                "Robustness is against each world's own Baseline, paired by seed, with intervals at "
                f"{level:.1%} (Bonferroni: the coverage checks hold together at {detect_level:.0%}); the checks that must "
                f"find the planted benefit read the same comparisons at {detect_level:.0%}. This checks the instrument; "
                "it is no finding about brains.</p>"
                f"<div id='controls' class='controls-{cal.verdict}' style='border:2px solid {H.STATUS_COLOURS[cal.verdict]};"
                f"padding:.5em 1em'><h2 style='color:{H.STATUS_COLOURS[cal.verdict]};border:0'>Calibration: {cal.verdict.upper()}</h2>"
                f"<ul>{items}</ul></div>"
                + H.image(tmp / "figures" / "dose_response.png", "Robustness against the planted strength, per kind")
                + "<h2>Per world</h2>" + H.table(show)
                + ("<h2>The rise, seed by seed</h2><p>Each kind in the strongest world against itself in the null world, "
                   "then each world against the next weaker one, paired by seed (the Baseline, the same models in every "
                   f"world, drops out), {detect_level:.0%} intervals. A rise is shown when all of them lie above 100. The last "
                   "column plans a larger run where a contrast includes 100: how many seeds an effect of the estimate's size "
                   "would need, at this run's spread from seed to seed (a rough figure: that spread is loosely known "
                   "from a few seeds).</p>"
                   + H.table(pl.DataFrame([{**c, "plan": plan(c)} for c in rise]).select(
                                                       pl.col("kind").map_elements(registry.label, return_dtype=pl.String),
                                                       pl.format("{} against {}", "to", "from").alias("worlds"),
                                                       interval_text().alias("robustness"),
                                                       pl.col("mde").round(1).alias("smallest detectable effect (%)"),
                                                       "n_seeds", pl.col("plan").alias(
                                                           f"seeds for its estimate's size at {POWER:.0%} power")))
                   if rise else "")
                + ("<h2>Notes</h2>" + "".join(f"<div class='note'>{html.escape(n)}</div>" for n in notes) if notes else "")
                + "</body></html>")
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps({"verdict": cal.verdict, "checks": cal.checks, "rise": rise, "notes": notes,
                                                      "sweeps": [s for _, s in sweeps]}, indent=2, default=str))
    if log:
        log(format_calibration(cal))
        log(f"calibration report: {out / 'report.html'}")
    return cal


def plan(c: dict) -> str:
    """The rise table's planning column: where a contrast's interval includes 100, the seeds an effect of its
    estimate's size would need (`precision.seeds_needed`); empty where it is already shown or refuted."""
    n = c.get("seeds_needed")
    if n is None or n != n or place(c) != "covers":
        return ""
    return f"{n:.0f}" if math.isfinite(n) else f"more than {SEEDS_CAP:,}"


def format_calibration(cal: Calibration) -> str:
    mark = {"pass": "PASS", "fail": "FAIL", "unclear": "UNCLEAR"}
    return "\n".join([f"calibration: {mark[cal.verdict]}"] + [f"  [{mark[s]:7s}] {n}: {d}" for n, s, d in cal.checks])

