"""Read one sweep from the results lake, compute every table and figure that the data allow, and
write them with a self-contained `report.html` (figures embedded). What cannot be computed is
said in the report (and returned), never silently skipped."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from analysis import bootstrap as bs
from analysis import controls as ctl
from analysis import html as H
from analysis import figures as figs
from analysis.explain import explanation
from analysis.findings import findings
from analysis.load import load, world_of
from analysis.precision import comparisons
from analysis.regression import format_table, regressions
from analysis.report_html import render
from analysis.scores import (MissingBaseline, accuracy_by_severity, group_summary, model_table, undefined_corruptions,
                             robustness_scores)
from core.io import atomic_dir, check_replaceable
from core.training import registry

# the classifiers of each family's default sweep: a missing one is named in the report
EXPECTED_KINDS = tuple(k for k in registry.names("mtl") if registry.get(k).classifier)
SIM_EXPECTED = tuple(k for k in registry.names("similarity") if registry.get(k).classifier)
# the paper's two-factor regression: the real targets' pool and the shuffled one (the reference, last)
POOLS = {"mtl_monkey": "MTL-Monkey", "mtl_shuffled": "MTL-Shuffled"}
# the similarity family: the brain-likeness factor is the similarity match; Sim-Shuffled is the reference
SIM_POOLS = {"sim_monkey": "Sim-Monkey", "sim_pixel": "Sim-Pixel", "sim_shuffled": "Sim-Shuffled"}


def _preset_kinds(runs: pl.DataFrame) -> tuple[str, ...]:
    """The kinds the runs' preset trains by default, when the preset names its own (empty otherwise, or for a
    preset this version does not know)."""
    from core.presets import PRESETS

    names = sorted(set(runs["preset"].drop_nulls().to_list())) if "preset" in runs.columns else []
    return PRESETS[names[0]].kinds if len(names) == 1 and names[0] in PRESETS else ()


@dataclass
class Report:
    out: Path
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    regression_text: str = ""
    controls: list = field(default_factory=list)      # analysis.controls.Control, the verdict's lines
    findings: list = field(default_factory=list)      # analysis.findings.Finding: the research question's answers
    explanation: list = field(default_factory=list)   # analysis.explain: the simpler explanations, compared
    world: str = ""                                   # the world's truth: planted strength, unknown, or real data


def build(results: str, out: str | Path, sweep: str | None = None, n_boot: int = 250, seed: int = 0,
          level: float = 0.95, log=print, include_unhealthy: bool = False, force: bool = False,
          out_flag: str = "--out") -> Report:
    """Compute everything for one sweep and write tables, figures and report.html under `out`
    (replacing only an earlier report there, unless `force`)."""
    t0 = time.time()
    check_replaceable(out, "report", out_flag, force)
    lake = load(results, sweep)
    out = Path(out)
    rep = Report(out)
    notes = rep.notes
    runs = lake.runs
    log(f"analysis: sweep '{lake.sweep}' from {lake.root}: {runs.height} runs")
    if lake.tintc != "generated":
        notes.append("the classifiers were scored on the published Tiny-ImageNet-C (--tintc-root), not on TIN-TC: "
                     "Hendrycks' 64-pixel corruption parameters, every image saved as JPEG quality 85, corrupted in "
                     "colour before the grey conversion; its robustness scores are not comparable with the paper's "
                     "TIN-TC ones (python -m core.data compare-tintc shows the difference per condition)")
    if len(lake.sweeps) > 1:
        notes.append(f"the lake holds sweeps {', '.join(lake.sweeps)}; this report covers '{lake.sweep}' (--sweep picks another)")
    bad = runs.filter(pl.col("status") != "ok")
    for r in bad.iter_rows(named=True):
        where = f" at epoch {r['diverged_epoch']}" if r["diverged_epoch"] is not None else ""
        notes.append(f"{r['kind']} ratio {r['ratio'] or '-'} seed {r['seed']}: {r['status']}{where}"
                     + (f" ({r['error'][:160]})" if r["error"] else "") + "; left out of scores and regressions")
    ok = runs.filter(pl.col("status") == "ok")
    # model health first: a model at chance, collapsed, with a dead layer or a worse-than-constant
    # neural prediction is named here and kept out of every score, figure and regression
    health = ctl.model_health(ok, lake.preds)
    rep.tables["health"] = health
    sick = health.filter(~pl.col("healthy"))
    for r in sick.iter_rows(named=True):
        notes.append(f"{r['kind']} ratio {r['ratio'] or '-'} seed {r['seed']}: {r['problem']}; "
                     + ("kept in scores and figures (--include-unhealthy): they do not answer the question"
                        if include_unhealthy else "left out of scores, figures and regressions"))
    if not include_unhealthy:
        ok = ok.filter(~pl.col("run_id").is_in(sick["run_id"].implode()))
    # which family's default kinds the run is expected to hold: read from the kinds' recipes (a kind of the
    # lake that this version does not register is left out of the question)
    recipes = [registry.table()[k] for k in set(runs["kind"].to_list()) if k in registry.table()]
    sim_family = any(r.family == "similarity" for r in recipes)
    mtl_family = any(r.family == "mtl" or r.families == ("mtl",) for r in recipes) or not sim_family
    expected = tuple(dict.fromkeys((EXPECTED_KINDS if mtl_family else ()) + (SIM_EXPECTED if sim_family else ())))
    # a preset with kinds of its own (controls, calibration, explain) expects its own classifiers, not the family's
    own = _preset_kinds(runs)
    if own:
        expected = tuple(k for k in own if k in registry.table() and registry.get(k).classifier)
    missing = [k for k in expected if k not in set(ok["kind"].to_list())]
    if missing:
        notes.append(f"no finished models of kind {', '.join(missing)}: comparisons involving them are missing")
    seeds = ok.group_by("kind", "ratio").agg(pl.col("seed").n_unique().alias("n"))
    if seeds.height and int(seeds["n"].max()) < 2:
        notes.append("one seed per model group: error bars resample test images only, not seeds")

    acc = lake.acc.filter(pl.col("run_id").is_in(ok["run_id"].implode()))
    scores = None
    if acc.is_empty():
        notes.append("no finished classifier has corruption accuracies: no robustness scores, bootstrap or regression")
    else:
        try:
            scores = robustness_scores(acc)
            rep.tables["robustness"] = scores
            for c in undefined_corruptions(acc):
                notes.append(f"robustness: the Baseline's accuracy on {c} is 0, so its relative score is undefined: "
                             f"{c} is left out of every score, overall and per category, and of the bootstrap")
        except MissingBaseline as e:
            notes.append(str(e))
    if not acc.is_empty():
        rep.tables["accuracy"] = accuracy_by_severity(acc)
    rep.tables["summary"] = group_summary(runs, scores)
    try:
        models = model_table(ok, acc) if scores is not None else None
    except MissingBaseline:
        models = None
    if models is not None:
        rep.tables["models"] = models

    classifier_runs = ok.filter(pl.col("run_id").is_in(lake.preds["run_id"].unique().implode()) if lake.preds.height
                                else pl.lit(False))
    comps = None
    if classifier_runs.height:
        log(f"analysis: seed-paired intervals ({n_boot} bootstrap replicates over test images)")
        cor = bs.correctness(lake.preds, classifier_runs)
        notes.extend(cor.dropped)
        try:
            comps, paired_notes = comparisons(cor, n_boot=n_boot, seed=seed, level=level)
            notes.extend(paired_notes)
            rep.tables["comparisons"] = comps
        except MissingBaseline as e:
            notes.append(f"intervals: {e}")
        rep.tables["clean_accuracy_ci"] = bs.clean_accuracy_bca(cor, n_boot=n_boot, seed=seed, level=level)
    else:
        notes.append("no per-image predictions: no intervals")

    near_chance = ctl.near_chance_categories(acc, ctl.chance_level(lake.preds) if lake.preds.height else float("nan"))
    notes.extend(f"robustness per category: {why}" for why in near_chance.values())
    # a control is "not run" only when the run neither recorded its kind (a crash leaves a record) nor was
    # meant to train it (a sweep stopped before the Oracle's stage was meant to: unclear, not green)
    rep.controls = ctl.run_controls(health, comps, recorded=set(runs["kind"].to_list()) | set(expected))
    rep.world = world_of(runs, notes)
    rep.tables["controls"] = pl.DataFrame([vars(c) for c in rep.controls])
    rep.findings = findings(comps)

    reg = None
    if models is not None:
        tables = []
        if mtl_family:
            r, reg_notes = regressions(models, POOLS)
            notes.extend(f"regression: {m}" for m in reg_notes)
            tables.append(r)
        if sim_family:
            r, reg_notes = regressions(models, SIM_POOLS, neural="sim_match", interaction_label="interaction (similarity)")
            notes.extend(f"regression (similarity family, sim_match as the brain-likeness factor): {m}" for m in reg_notes)
            tables.append(r)
        reg = pl.concat(tables)
        if reg.height:
            rep.tables["regression"] = reg
            rep.regression_text = format_table(reg)
    elif scores is None and not acc.is_empty():
        notes.append("regression: needs robustness scores, which need the Baseline")
    adv = lake.adversarial
    if adv is not None and not adv.is_empty():
        adv = adv.filter(pl.col("run_id").is_in(ok["run_id"].implode()))   # the models left in the scores
    if adv is not None and adv.is_empty() and lake.adversarial is not None and not lake.adversarial.is_empty():
        notes.append("adversarial: no model left in the scores has attack results (the others failed a health check "
                     "or did not finish): no adversarial figure")
    elif adv is not None and not adv.is_empty():
        rep.tables["adversarial"] = adv.drop("sweep", "stage")
        rep.tables["adversarial_summary"] = (
            adv.group_by("kind", "attack", "norm", "epsilon").agg(
                pl.len().alias("models"), pl.col("accuracy").mean(), pl.col("median_l2").mean(),
                pl.col("n_images").sum()).sort("attack", "norm", "kind", "epsilon", nulls_last=True))
    elif not ok.filter(pl.col("kind").is_in(list(EXPECTED_KINDS + SIM_EXPECTED))).is_empty():
        notes.append("no adversarial results in the lake (runs written before the attacks were added, or a preset "
                     "with adv_images 0)")
    spec = lake.spectral
    if spec is not None and not spec.is_empty():
        rep.tables["spectral"] = spec.filter(pl.col("run_id").is_in(ok["run_id"].implode())).drop("sweep", "stage")
    rep.explanation = explanation(comps)
    if not bad.is_empty():
        rep.tables["failed_runs"] = bad.select("run_id", "kind", "ratio", "seed", "status", "diverged_epoch", "error")

    with atomic_dir(out, overwrite=True, marker="report") as tmp:
        for name, t in rep.tables.items():
            t.write_parquet(tmp / f"{name}.parquet")
            t.write_csv(tmp / f"{name}.csv")
        fig_dir = tmp / "figures"
        made = {}
        if not acc.is_empty():
            made["accuracy_vs_severity"] = (figs.accuracy_vs_severity(acc, ok),
                                            "Accuracy against severity per corruption (paper Fig. 2), mean over ratios and seeds")
        if comps is not None:
            made["robustness_bars"] = (figs.robustness_bars(comps, near_chance, level),
                                       f"Robustness per category and overall with {level:.0%} intervals, paired by seed with the "
                                       "Baseline (Fig. 3A, 3B)")
        if models is not None and models.filter(pl.col("kind") == "mtl_monkey").height:
            r = reg.filter(pl.col("model") == "MTL-Monkey") if reg is not None and reg.height else None
            made["robustness_vs_feve"] = (figs.robustness_vs_neural(models, r),
                                          "MTL-Monkey: robustness against FEVe, coloured by clean accuracy (Fig. 3C)")
        if models is not None and models.filter(pl.col("kind").str.starts_with("mtl_")).height:
            made["metrics_vs_ratio"] = (figs.metrics_vs_ratio(models), "Clean accuracy and FEVe against the batch ratio")
        if models is not None and models.filter(pl.col("kind") == "sim_monkey").height:
            r = reg.filter(pl.col("model") == "Sim-Monkey") if reg is not None and reg.height else None
            made["robustness_vs_sim_match"] = (figs.robustness_vs_neural(models, r, kind="sim_monkey", neural="sim_match"),
                                               "Sim-Monkey: robustness against the similarity match, coloured by clean accuracy")
        if "spectral" in rep.tables and rep.tables["spectral"].height:
            made["spectral"] = (figs.spectral_sensitivity(rep.tables["spectral"]),
                                "Spectral sensitivity: accuracy on test images low- and high-pass filtered at each cut-off "
                                "(Li et al. 2023)")
        if "adversarial" in rep.tables:
            made["adversarial"] = (figs.adversarial_curves(rep.tables["adversarial"]),
                                   "Adversarial robustness: PGD accuracy against ε (L2 and L∞), mean over each kind's models")
        captions = {}
        for name, (fig, caption) in made.items():
            figs.save(fig, fig_dir, name)
            rep.figures[name] = out / "figures" / f"{name}.png"
            captions[name] = caption
        # sections added later by other commands (analysis.reconstruct) survive a rebuild
        kept = H.sections(Path(out))
        if kept:
            (tmp / H.SECTIONS).mkdir()
            for name, frag in kept.items():
                (tmp / H.SECTIONS / f"{name}.html").write_text(frag, encoding="utf-8")
        (tmp / "report.html").write_text(H.splice(render(lake, rep, captions, fig_dir, n_boot, level, seed), kept),
                                         encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps({
            "sweep": lake.sweep, "lake": lake.root, "runs": runs.height, "ok": ok.height, "notes": notes,
            "tables": sorted(rep.tables), "figures": sorted(made), "n_boot": n_boot, "seed": seed, "level": level,
            "world": rep.world, "controls": ctl.verdict(rep.controls), "control_lines": [vars(c) for c in rep.controls],
            "findings": [{"kind": f.kind, "reference": f.reference, "verdict": f.verdict, "sentence": f.sentence}
                         for f in rep.findings],
        }, indent=2))
    log(f"analysis: {len(rep.tables)} tables, {len(made)} figures, report {out / 'report.html'} ({time.time() - t0:.1f}s)")
    return rep


def console_lines(rep: Report) -> str:
    """What a command prints after building a report: the regression, the world, the controls and the
    plain-words answers (the report's path comes last, from the caller)."""
    from analysis.controls import format_controls
    from analysis.findings import format_findings

    parts = [rep.regression_text] if rep.regression_text else []
    if rep.controls:
        parts.append(format_controls(rep.controls, rep.world))
    if rep.findings:
        parts.append(format_findings(rep.findings))
    return "\n".join(parts)
