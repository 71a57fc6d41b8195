"""HTML pieces of the report: tables, embedded figures, the controls verdict box, and named
sections that other commands (analysis.reconstruct) add to a report and that survive a rebuild."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import polars as pl

from analysis import controls as ctl
from core.errors import UserError


def decimals(column: str, floats: int = 3) -> int:
    """One number format per quantity: robustness scores and effects (percentages) to one decimal, everything
    else (accuracies, FEVe, correlations, p-values) to `floats`."""
    return 1 if column.startswith(("robustness", "smallest detectable effect")) else floats


def table(df: pl.DataFrame, floats: int = 3, max_rows: int = 400) -> str:
    """A polars table as HTML (NaN and empty as –), in a horizontally scrolling box."""
    if df.is_empty():
        return "<p class='muted'>(empty)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    places = [decimals(c, floats) for c in df.columns]
    body = []
    for row in df.head(max_rows).iter_rows():
        cells = []
        for v, d in zip(row, places):
            if isinstance(v, float):
                s = "–" if v != v else f"{v:.{d}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{d}f}"
            else:
                s = "–" if v is None or v == "" else str(v)
            cells.append(f"<td>{html.escape(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='muted'>first {max_rows} of {df.height} rows; all in the CSV</p>" if df.height > max_rows else ""
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>{more}"


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'><figcaption>{html.escape(alt)}</figcaption></figure>"


CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0;font-size:12px}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.muted{color:#777}.note{background:#fff6e0;border-left:4px solid #e0a000;padding:.4em .8em;margin:.3em 0}
img{max-width:100%}.scroll{overflow-x:auto;max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:12px}pre{background:#f7f7f7;padding:.6em;overflow:auto}"""


def world_line(world: str) -> str:
    """The world the run is in, with its planted truth (or that there is none), under the title."""
    return f"<p id='world' class='note'><b>World:</b> {html.escape(world)}</p>" if world else ""


STATUS_COLOURS = {"pass": "#1a7f37", "unclear": "#b07d00", "fail": "#c62828", "not run": "#6e6e6e"}


def controls_box(controls: list, n_seeds: int = 0) -> str:
    """The verdict box that opens the report: green, amber or red, one line per control (the world's truth is
    the line above it, `world_line`)."""
    v = ctl.verdict(controls)
    colour = STATUS_COLOURS[v]
    title = {"pass": "Controls: all passed", "unclear": "Controls: UNCLEAR (see the amber lines)",
             "fail": "Controls FAILED: the scores below do not answer the question until the red lines are fixed"}[v]
    if v == "pass" and any(c.status == "not run" for c in controls):
        title = "Controls: all that ran passed (see the grey lines for those this run does not train)"
    items = "".join(f"<li style='color:{STATUS_COLOURS[c.status]}'>"
                    f"<b>{c.status.upper()}</b> {html.escape(c.name)}: {html.escape(c.detail)}</li>" for c in controls)
    scope = ""
    if n_seeds == 1:
        scope = ("<p class='muted'>One seed per model: the intervals resample test images only, so a pass says the "
                 "pipeline is healthy, not that an effect holds across seeds (run more seeds, e.g. "
                 "<code>--preset controls</code>).</p>")
    return (f"<div id='controls' class='controls-{v}' style='border:2px solid {colour};padding:.5em 1em;margin:1em 0'>"
            f"<h2 style='color:{colour};margin-top:.2em;border:0'>{html.escape(title)}</h2><ul>{items}</ul>{scope}</div>")


SECTIONS = "sections"
_BEGIN, _END = "<!-- sections:begin -->", "<!-- sections:end -->"


def sections(report_dir: Path) -> dict[str, str]:
    d = Path(report_dir) / SECTIONS
    return {f.stem: f.read_text(encoding="utf-8") for f in sorted(d.glob("*.html"))} if d.is_dir() else {}


def splice(page: str, sections: dict[str, str]) -> str:
    """Put the added sections (in name order) before the report's Files heading, replacing any
    earlier copy of them."""
    block = _BEGIN + "\n".join(sections[k] for k in sorted(sections)) + _END
    if _BEGIN in page and _END in page:
        a, rest = page.split(_BEGIN, 1)
        return a + block + rest.split(_END, 1)[1]
    anchor = "<h2>Files</h2>"
    return page.replace(anchor, block + anchor, 1) if anchor in page else page.replace("</body>", block + "</body>", 1)


def add_section(report_dir: str | Path, name: str, fragment: str) -> Path:
    """Add (or replace) a named HTML section in an existing report; a later rebuild of the report
    keeps it. Both files are replaced atomically."""
    from core.io import atomic_file

    report_dir = Path(report_dir)
    page = report_dir / "report.html"
    if not page.is_file():
        raise UserError(f"--report {report_dir}: no report.html there; run `python -m analysis --results ... --out "
                        f"{report_dir}` (or the main job) first")
    (report_dir / SECTIONS).mkdir(exist_ok=True)
    with atomic_file(report_dir / SECTIONS / f"{name}.html") as tmp:
        Path(tmp).write_text(fragment, encoding="utf-8")
    text = splice(page.read_text(encoding="utf-8"), sections(report_dir))
    with atomic_file(page) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return page


def findings_box(found: list) -> str:
    """The research question answered in plain words (analysis.findings), below the controls."""
    if not found:
        return ""
    colour = {"more": "#1a7f37", "less": "#c62828", "undecided": "#555", "one_seed": "#b07d00"}
    items = "".join(f"<li style='color:{colour[f.verdict]}'>{html.escape(f.sentence)}</li>" for f in found)
    return (f"<div id='findings' style='border:1px solid #bbb;padding:.5em 1em;margin:1em 0'>"
            f"<h2 style='margin-top:.2em;border:0'>Is co-training more robust?</h2><ul>{items}</ul>"
            "<p class='muted'>Each line compares models of the same seed (same initial weights, same classification "
            "batches) and averages over seeds; with several seeds the interval holds seed-to-seed and test-image noise, "
            "with one seed test-image noise only. \"Not "
            "distinguishable\" is not \"no effect\": read it beside the smallest detectable effect.</p></div>")
