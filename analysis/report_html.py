"""report.html: the page itself, from a built Report (analysis.report)."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

import polars as pl

from analysis import html as H
from analysis import tables
from analysis.explain import section as explain_section
from analysis.load import Lake
from core.training import registry
from core.training.cycler import ratio_value


def render(lake: Lake, rep, captions: dict, fig_dir: Path, n_boot: int, level: float, seed: int) -> str:
    runs = lake.runs
    # describe the run by a classifier's config (the Baseline's when there is one)
    pick = runs.filter(pl.col("kind") == "baseline")
    first = (pick if pick.height else runs).row(0, named=True)
    cfg = json.loads(first["config"]) if first.get("config") else {}
    try:
        data = json.loads(first["data"]) if first.get("data") else {}
    except json.JSONDecodeError:
        data = {"data": first["data"]}
    versions = first.get("versions") or "{}"
    kinds = runs.group_by("kind").agg(pl.len().alias("models"), (pl.col("status") == "ok").sum().alias("ok")).sort("kind")
    ratios = sorted({r for r in runs["ratio"].to_list() if r and ":" in r}, key=ratio_value)
    alphas = sorted({r for r in runs["ratio"].to_list() if r and r.startswith("α=")}, key=lambda a: float(a[2:]))
    seeds = sorted(set(runs["seed"].to_list()))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Robustness report: {html.escape(lake.sweep)}</title>"
             f"<style>{H.CSS}</style></head><body>",
             f"<h1>Robustness report: sweep <code>{html.escape(lake.sweep)}</code></h1>",
             f"<p class='muted'>written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} from <code>{html.escape(lake.root)}</code></p>",
             H.world_line(rep.world),
             H.controls_box(rep.controls, len(seeds)),
             H.findings_box(rep.findings),
             "<h2>What was run</h2><ul>",
             f"<li>preset <b>{html.escape(str(first['preset']))}</b>, model {html.escape(str(cfg.get('model', '?')))} "
             f"(width {cfg.get('width', '?')}), batch {cfg.get('batch_size', '?')}, up to {cfg.get('max_epochs', '?')} epochs</li>",
             f"<li>ratios (neural : classification batches): {html.escape(', '.join(ratios) or '–')}"
             + (f"; similarity-loss weights: {html.escape(', '.join(alphas))}" if alphas else "")
             + f"; seeds: {', '.join(map(str, seeds))}</li>",
             f"<li>data: <code>{html.escape(json.dumps(data, sort_keys=True)[:600])}</code></li>",
             f"<li>code {html.escape(str(first.get('git_sha')))}; versions <code>{html.escape(versions)}</code></li>",
             f"<li>intervals: {level:.0%}, paired by seed, with {n_boot} bootstrap replicates over test images (seed {seed})</li></ul>",
             H.table(kinds)]
    if rep.notes:
        parts.append("<h2>What is missing or failed</h2>" + "".join(f"<div class='note'>{html.escape(n)}</div>" for n in rep.notes))
    t = rep.tables
    if "summary" in t:
        parts.append("<h2>Scores per model group</h2><p>Clean accuracy, FEVe and correlation (mean over seeds) and the "
                     "overall robustness score: 100 × mean over the 14 corruptions of A<sub>c</sub>/A<sub>c</sub><sup>Baseline</sup>; "
                     "sim_match: correlation of the model's image-pair similarities with the neurons' on the neural test "
                     "images (the similarity family's brain-likeness).</p>")
        parts.append(H.table(t["summary"]))
    if "comparisons" in t:
        c = t["comparisons"]
        parts.append(f"<h2>Robustness with intervals, paired by seed</h2><p>estimate [{level:.0%} interval] against the "
                     "Baseline of the same seed, the mean over seeds of ln(score) turned back into a score (for one seed, the "
                     "paper's score). The interval holds the seed-to-seed spread (t quantile of its k−1 degrees of freedom) "
                     f"and the test-image noise every seed shares ({n_boot} paired bootstrap replicates over the images). "
                     "Setting <code>all</code>: a kind's ratios averaged within each seed (stratified), never pooled as "
                     "seeds. The smallest detectable effect is what this run could have shown at 80% power, two-sided 5%; p is "
                     "the two-sided p-value of no difference, left blank (–) for one seed, whose interval covers test "
                     "images only, not training runs.</p>")
        parts.append(H.table(tables.robustness_table(c, "baseline")))
        # every twin a recipe names (MTL-Shuffled, Sim-Shuffled): the comparison that isolates the neural content
        for twin in dict.fromkeys(r.twin for r in registry.table().values() if r.twin):
            rows = tables.robustness_table(c, twin)
            if rows.height:
                setting = {"ratio": "ratio", "alpha": "α"}.get(registry.get(twin).grid, "setting")
                parts.append(f"<p>Against {html.escape(registry.label(twin))} at the same {setting} and seed (for the "
                             "kinds that co-train on neural data, the comparison that isolates the neural content; for the "
                             "others, whether their targets do better than shuffled ones):</p>" + H.table(rows))
        parts.append("<p>Clean accuracy over seeds and test images:</p>" + H.table(tables.clean_table(c)))
    parts.append(explain_section(rep.explanation, H.table))
    if "regression" in t:
        parts.append("<h2>Two-factor regression</h2><p><code>robustness ~ clean_accuracy + feve</code> per pool (every ratio × seed), "
                     "and <code>robustness ~ (clean_accuracy + feve) * pool</code> over both: its <code>feve:pool</code> term tests "
                     "whether the neural coefficient differs between real and shuffled targets. For the similarity family the brain-likeness "
                     "factor is <code>sim_match</code> (model vs neural image-pair similarity) in place of FEVe, with Sim-Shuffled as the "
                     "reference pool. std_coef: the same fit on z-scored variables.</p>")
        parts.append(f"<pre>{html.escape(rep.regression_text)}</pre>")
    for name in captions:
        parts.append(f"<h2>{html.escape(captions[name].split(' (')[0])}</h2>" + H.image(fig_dir / f"{name}.png", captions[name]))
    if "robustness" in t:
        per_c = t["robustness"].filter(pl.col("level") == "corruption").pivot(on="scope", index=["kind", "ratio"], values="robustness")
        parts.append("<h2>Robustness per corruption</h2>" + H.table(per_c, floats=1))
    if "failed_runs" in t:
        parts.append("<h2>Failed runs</h2>" + H.table(t["failed_runs"]))
    parts.append("<h2>Files</h2><p>" + ", ".join(f"{n}.parquet/.csv" for n in t) + "; figures/*.png and *.svg</p></body></html>")
    return "\n".join(parts)
