"""Read one sweep from the results lake, compute every table and figure that the data allow, and
write them with a self-contained `report.html` (figures embedded). What cannot be computed is
said in the report (and returned), never silently skipped."""

from __future__ import annotations

import datetime as dt
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from analysis import bootstrap as bs
from analysis import controls as ctl
from analysis import html as H
from analysis import figures as figs
from analysis import tables
from analysis.explain import explanation, section as explain_section
from analysis.findings import findings
from analysis.precision import comparisons
from analysis.regression import format_table, regressions
from analysis.scores import (MissingBaseline, accuracy_by_severity, group_summary, model_table, undefined_corruptions,
                             robustness_scores)
from core.errors import DataError, UserError
from core.io import atomic_dir, check_replaceable, join_uri
from core.training import registry
from core.training.cycler import ratio_value
from core.results import read_table

# the classifiers of each family's default sweep: a missing one is named in the report
EXPECTED_KINDS = tuple(k for k in registry.names("mtl") if registry.get(k).classifier)
SIM_EXPECTED = tuple(k for k in registry.names("similarity") if registry.get(k).classifier)
# the paper's two-factor regression: the real targets' pool and the shuffled one (the reference, last)
POOLS = {"mtl_monkey": "MTL-Monkey", "mtl_shuffled": "MTL-Shuffled"}
# the similarity family: the brain-likeness factor is the similarity match; Sim-Shuffled is the reference
SIM_POOLS = {"sim_monkey": "Sim-Monkey", "sim_pixel": "Sim-Pixel", "sim_shuffled": "Sim-Shuffled"}


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
    sim_family = any(k.startswith("sim_") for k in runs["kind"].to_list())
    mtl_family = any(k.startswith(("mtl_", "oracle")) for k in runs["kind"].to_list()) or not sim_family
    expected = tuple(dict.fromkeys((EXPECTED_KINDS if mtl_family else ()) + (SIM_EXPECTED if sim_family else ())))
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
    rep.controls = ctl.run_controls(health, comps)
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
        (tmp / "report.html").write_text(H.splice(_render(lake, rep, captions, fig_dir, n_boot, level, seed), kept),
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


def _render(lake: Lake, rep: Report, captions: dict, fig_dir: Path, n_boot: int, level: float, seed: int) -> str:
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
             H.controls_box(rep.controls, len(seeds), rep.world),
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
                     "seeds. The smallest detectable effect is what this run could have shown at 80% power, two-sided 5%.</p>")
        parts.append(H.table(tables.robustness_table(c, "baseline")))
        twins = tables.robustness_table(c, "mtl_shuffled")
        if twins.height:
            parts.append("<p>Against MTL-Shuffled at the same ratio and seed (the comparison that isolates the neural "
                         "content):</p>" + H.table(twins))
        sims = tables.robustness_table(c, "sim_shuffled")
        if sims.height:
            parts.append("<p>Against Sim-Shuffled at the same α and seed:</p>" + H.table(sims))
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
