"""The representation analysis's section of a sweep's report.html: the median ϱ̄ table and the two figures."""

from __future__ import annotations

from pathlib import Path


def default_report(storage: str, sweep: str) -> Path | None:
    if "://" in storage:
        return None
    p = Path(storage) / "report" / sweep
    return p if (p / "report.html").is_file() else None


def section_html(folder: Path, summary: dict, med, made: list[str]) -> str:
    import html

    import polars as pl

    from analysis.html import image as _img, table as _html_table

    titles = {"reconstructions": "Constrained reconstructions (paper Fig. 5)", "rho_scatter": "ϱ̄ per image (paper Fig. 7)"}
    caps = {"reconstructions": "Constrained reconstructions (paper Fig. 5): rows are models per norm budget, then the "
                               "MTL-Monkey spectral control, the target and the clean image; columns are the first "
                               f"{min(6, summary['images'])} of the {summary['images']} test images",
            "rho_scatter": f"ϱ̄ of MTL-Monkey against each other model and its spectral control, per norm "
                           f"(paper Fig. 7; {'undistorted' if summary['target'] == 'clean' else 'NOISY'} targets; "
                           f"saliency: {summary['primary_source']}; models whose reconstructions did not converge "
                           "left out)"}
    if med.is_empty():
        table_html = ("<p><b>No model's reconstructions converged, so no ϱ̄ is compared</b> (see the lines below; "
                      "every value is still in rho.parquet, with <code>model_converged</code> false).</p>")
    else:
        wide = med.with_columns(pl.col("median_rho_bar").round(3)).pivot(on="norm", index=["variant", "kind"],
                                                                         values="median_rho_bar")
        table_html = ("<p>Median ϱ̄ per model kind (columns: norm budget), over models whose reconstructions "
                      "converged; ϱ̄ &gt; 0 means more power in the salient region than the target has. Rows "
                      "<code>reconstruction</code>: the results compared; <code>spectral_control</code>: the target "
                      "with a reconstruction's amplitude spectrum; "
                      + ("<code>optimizer_result</code>: the optimiser's own result before the check (the paper's "
                         "procedure), which on short runs still carries the starting noise and can differ from the "
                         "checked result in sign. " if summary.get("check_steps") else "")
                      + "</p>" + _html_table(wide, floats=3))
        if summary.get("starts", 1) > 1:
            spread = (med.filter(pl.col("variant") == "reconstruction").with_columns(pl.col("start_range").round(3))
                      .pivot(on="norm", index="kind", values="start_range"))
            table_html += (f"<p>How much ϱ̄ depends on where the optimisation starts (rows <code>reconstruction</code>): each kind's median ϱ̄ computed "
                           f"for each of the {summary['starts']} starts from different noise (converged ones), max − min "
                           "(the result above is, per image, the start that ended lowest). A difference between "
                           "kinds smaller than this is not a difference of models.</p>" + _html_table(spread, floats=3))
    parts = ["<h2>Representation analysis: constrained reconstruction</h2>",
             f"<p>{len(summary['models'])} models, {summary['images']} test images as targets: "
             + ("<b>undistorted</b> (as the paper's saliency analysis, Fig. 7)" if summary["target"] == "clean" else
                "<b>noisy</b> (Gaussian noise, severity 2, as the paper's Fig. 5; ϱ̄ on noisy targets mixes denoising "
                "into the saliency measure, unlike the paper's Fig. 7)")
             + f", layer <code>{html.escape(summary['layer'])}</code>, {summary['steps']} projected-gradient "
             f"steps per reconstruction" + (f" from each of {summary['starts']} starting noises (the lowest-loss start "
             "is the result)" if summary.get("starts", 1) > 1 else "")
             + (f", then up to {summary['check_steps']} line-search steps of the check (the "
             "result is the better point; the paper's procedure is --check-steps 0)" if summary.get("check_steps") else
             " (no check: the paper's procedure)") + f", norms {', '.join(f'{r:g}' for r in summary['norms'])}, on "
             f"{html.escape(summary['device'])}. Saliency source for ϱ̄: <b>{html.escape(summary['primary_source'])}</b> "
             f"(also in rho.parquet: {', '.join(summary['saliency_sources'])}).</p>",
             table_html,
             "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary["log"]) + "</ul>"]
    for name in made:
        parts.append(f"<h3>{titles[name]}</h3>" + _img(folder / "figures" / f"{name}.png", caps[name]))
    return "\n".join(parts)
