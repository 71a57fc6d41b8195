"""Figures (matplotlib, Agg): each function draws one figure and returns it; `save` writes PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from core.data.corruptions import CORRUPTIONS  # noqa: E402

from core.training import registry  # noqa: E402
from core.training.graph import RATIO_CLASSIFIERS  # noqa: E402

COLORS = {k: r.color for k, r in registry.table().items()}   # each kind's colour, from its recipe


def _kinds(present) -> list[str]:
    """The kinds present, in the registry's order (the Baseline first)."""
    present = list(dict.fromkeys(present))
    order = list(registry.names())
    return [k for k in order if k in present] + sorted(k for k in present if k not in order)


def label(kind: str) -> str:
    return registry.label(kind)


def save(fig, out: Path, name: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext in ("png", "svg"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=110 if ext == "png" else None, bbox_inches="tight")
        paths[ext] = p
    plt.close(fig)
    return paths


def accuracy_vs_severity(acc: pl.DataFrame, clean: pl.DataFrame):
    """Paper Fig. 2: accuracy against severity for each of the 14 corruptions, one line per model
    kind (mean over its ratios and seeds; severity 0 is the clean accuracy)."""
    per = acc.group_by("kind", "corruption", "severity").agg(pl.col("accuracy").mean())
    cl = clean.group_by("kind").agg(pl.col("clean_accuracy").mean())
    corrs = [c for c in CORRUPTIONS if c in set(per["corruption"].to_list())]
    ncol = 5
    nrow = max(1, int(np.ceil(len(corrs) / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow), sharex=True, sharey=True, squeeze=False)
    kinds = _kinds(per["kind"].to_list())
    for ax, c in zip(axes.flat, corrs):
        for k in kinds:
            d = per.filter((pl.col("kind") == k) & (pl.col("corruption") == c)).sort("severity")
            x, y = d["severity"].to_list(), d["accuracy"].to_list()
            c0 = cl.filter(pl.col("kind") == k)["clean_accuracy"]
            if len(c0) and c0[0] is not None:
                x, y = [0] + x, [c0[0]] + y
            ax.plot(x, y, marker="o", ms=3, lw=1.2, color=COLORS.get(k), label=label(k))
        ax.set_title(f"{c.replace('_', ' ')} ({CORRUPTIONS[c]})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(corrs):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("severity")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", ncol=1, frameon=False)
    fig.suptitle("Accuracy against corruption severity (0 = clean)")
    fig.tight_layout()
    return fig


def robustness_bars(comps: pl.DataFrame, near_chance: dict[str, str] | None = None, level: float = 0.95):
    """Paper Fig. 3A/B: robustness score overall and per category for each model kind against the Baseline
    (100, the dashed line), paired by seed, stratified over a kind's ratios where it has several
    (analysis.precision), each bar with its interval. A category in `near_chance` (scope -> why: the
    Baseline's accuracy there is near chance, so its ratios explode) gets a warning in place of bars."""
    near_chance = near_chance or {}
    d = comps.filter((pl.col("statistic") == "robustness") & (pl.col("reference") == "baseline")
                     & pl.col("level").is_in(["overall", "category"]))
    # one setting per kind: the stratified one ("all") where the kind has several
    multi = set(d.filter(pl.col("setting") == "all")["kind"].to_list())
    d = d.filter(pl.when(pl.col("kind").is_in(list(multi))).then(pl.col("setting") == "all").otherwise(True))
    scopes = [s for s in ("overall", "noise", "blur", "weather", "digital") if s in set(d["scope"].to_list())]
    kinds = _kinds(d["kind"].to_list())
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / max(1, len(kinds))
    one_seed = False
    for gi, kind in enumerate(kinds):
        g = d.filter(pl.col("kind") == kind)
        xs, ys, lo, hi = [], [], [], []
        for si, s in enumerate(scopes):
            r = g.filter(pl.col("scope") == s)
            if r.height and s not in near_chance:
                xs.append(si + (gi - (len(kinds) - 1) / 2) * width)
                ys.append(r["estimate"][0])
                lo.append(r["estimate"][0] - r["low"][0])
                hi.append(r["high"][0] - r["estimate"][0])
        n = int(g["n_seeds"][0]) if g.height else 0
        one_seed |= n == 1
        setting = g["setting"][0] if g.height else ""
        where = ", ratios averaged" if setting == "all" else (f", {setting}" if setting else "")
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=COLORS.get(kind),
               label=f"{label(kind)} ({n} seed{'' if n == 1 else 's'}{where})")
    for si, s in enumerate(scopes):
        if s in near_chance:
            ax.text(si, 100, "Baseline near chance:\nno ratio shown", ha="center", va="bottom", fontsize=8, color="#c62828")
    ax.axhline(100, color="k", lw=0.8, ls="--", label="Baseline (100 by definition)")
    ax.set_xticks(range(len(scopes)), scopes)
    ax.set_ylabel("robustness score (% of Baseline)")
    n_img = int(d["n_images"][0]) if d.height else 0
    title = f"Robustness against the Baseline of the same seed; bars: {level:.0%} intervals over seeds and {n_img} test images"
    if one_seed:
        title += "\n(one seed: those intervals cover test images only, not training runs)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def robustness_vs_neural(models: pl.DataFrame, reg: pl.DataFrame | None, kind: str = "mtl_monkey", neural: str = "feve"):
    """Paper Fig. 3C: robustness against neural performance for one pool, coloured by clean accuracy,
    with the fitted regression line at the pool's mean clean accuracy."""
    d = models.filter((pl.col("kind") == kind) & (pl.col("status") == "ok")).drop_nulls(["robustness", neural])
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    if d.height:
        sc = ax.scatter(d[neural], d["robustness"], c=d["clean_accuracy"], cmap="viridis", s=36, edgecolor="k", lw=0.4,
                        vmin=0.0, vmax=1.0)   # an accuracy: the colour scale is [0, 1], never padded past it
        fig.colorbar(sc, ax=ax, label="clean accuracy")
        if reg is not None and reg.height:
            coef = {r["term"]: r["coef"] for r in reg.iter_rows(named=True)}
            xs = np.linspace(float(d[neural].min()), float(d[neural].max()), 50)
            ys = coef["Intercept"] + coef["clean_accuracy"] * float(d["clean_accuracy"].mean()) + coef[neural] * xs
            p = reg.filter(pl.col("term") == neural)["p_value"][0]
            ax.plot(xs, ys, color="k", lw=1.2, label=f"fit at mean clean accuracy (p = {p:.2g} for {neural})")
            ax.legend(fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, f"no {label(kind)} models with a robustness score", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel({"feve": "FEVe (fraction of explainable variance explained)",
                   "sim_match": "similarity match (model vs neural image-pair geometry)"}.get(neural, neural))
    ax.set_ylabel("robustness score (%)")
    ax.set_title(f"{label(kind)}: robustness against neural performance")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def metrics_vs_ratio(models: pl.DataFrame, kinds=RATIO_CLASSIFIERS):
    """Clean accuracy and FEVe against the batch ratio (neural:classification), mean ± sd over seeds, for every
    kind the recipes sweep over ratios."""
    d = models.filter(pl.col("kind").is_in(list(kinds)) & (pl.col("status") == "ok"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, col, name in zip(axes, ("clean_accuracy", "feve"), ("clean accuracy", "FEVe")):
        kinds = _kinds(d["kind"].to_list())
        for i, k in enumerate(kinds):
            g = (d.filter(pl.col("kind") == k).group_by("ratio_value")
                 .agg(pl.col(col).mean().alias("m"), pl.col(col).std().fill_null(0).alias("s")).sort("ratio_value"))
            g = g.filter(pl.col("m").is_not_null() & pl.col("m").is_finite())
            if g.height:   # kinds a little apart along the ratio axis, so that no point hides another
                x = g["ratio_value"].to_numpy() * 2 ** (0.06 * (i - (len(kinds) - 1) / 2))
                ax.errorbar(x, g["m"], yerr=g["s"], marker="o", ms=4, capsize=2, color=COLORS.get(k), label=label(k))
        ax.set_xscale("log", base=2)
        ticks = d.select("ratio", "ratio_value").unique().drop_nulls().sort("ratio_value")
        ax.set_xticks(ticks["ratio_value"].to_list(), ticks["ratio"].to_list())   # read as 1:2, 2:1
        if ticks.height:   # half an octave either side of the grid: the kinds' small offsets stay small
            ax.set_xlim(min(ticks["ratio_value"]) / 2 ** 0.5, max(ticks["ratio_value"]) * 2 ** 0.5)
        ax.minorticks_off()
        ax.set_xlabel("batch ratio (neural : classification batches)")
        ax.set_ylabel(name)
        lo = min(0.0, float(d[col].min())) if d.height and d[col].is_not_null().any() else 0.0
        # the whole scale: a gap of 0.04 is not blown up to fill the panel; a point below 0 (MTL-Shuffled's
        # FEVe) is not cut by the axis
        ax.set_ylim(lo - 0.03 if lo < 0 else lo, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    n_seeds = d["seed"].n_unique() if d.height and "seed" in d.columns else 0
    fig.suptitle("Multi-task models across the ratio grid " + ("(mean ± sd over seeds)" if n_seeds > 1 else
                 "(one seed: no spread between training runs is shown)"))
    fig.tight_layout()
    return fig


def reconstruction_grid(clean: np.ndarray, target: np.ndarray, recons: dict, controls: dict, norms, target_kind: str,
                        max_images: int = 6):
    """Paper Fig. 5: for each norm budget one row per model and one for the MTL-Monkey spectral
    control (the first model's where there is no MTL-Monkey), then the target and the clean image;
    one column per test image. Each panel is scaled to its own range."""
    kinds = _kinds(recons)
    ctrl_kind = "mtl_monkey" if "mtl_monkey" in controls else kinds[0]
    n = min(max_images, len(clean))
    rows = []
    for j, r in enumerate(norms):
        rows += [(f"{label(k)}\nr={r:g}", recons[k][:n, j]) for k in kinds]
        rows.append((f"{label(ctrl_kind)}\nspectral ctrl\nr={r:g}", controls[ctrl_kind][:n, j]))
    rows.append(("target\n(" + ("Gaussian noise 2" if target_kind == "noisy" else "clean") + ")", target[:n].astype(float)))
    if target_kind == "noisy":
        rows.append(("clean", clean[:n].astype(float)))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.25 * n + 1.2, 1.25 * len(rows)), squeeze=False)
    for i, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[i, c]
            ax.imshow(imgs[c], cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(wspace=0.03, hspace=0.05)
    return fig


def rho_scatter(table: pl.DataFrame, norms, source: str, reference: str = "mtl_monkey"):
    """Paper Fig. 7: per norm, ϱ̄ of the reference model (y) against each other model's and the
    reference's spectral control (x), one point per image; above the diagonal = the reference puts
    more of its power in the salient region."""
    fig, axes = plt.subplots(1, len(norms), figsize=(3.6 * len(norms), 3.6), squeeze=False)
    ref = table.filter((pl.col("kind") == reference) & (pl.col("variant") == "reconstruction"))
    others = _kinds(k for k in table["kind"].unique().to_list() if k != reference)
    for j, r in enumerate(norms):
        ax = axes[0, j]
        y = ref.filter(pl.col("norm") == r).sort("image")["rho_bar"].to_numpy()
        series = [(label(k), COLORS.get(k, "#777"), "o",
                   table.filter((pl.col("kind") == k) & (pl.col("variant") == "reconstruction") & (pl.col("norm") == r))
                   .sort("image")["rho_bar"].to_numpy()) for k in others]
        series.append((f"{label(reference)} spectral control", COLORS.get(reference, "#777"), "x",
                       table.filter((pl.col("kind") == reference) & (pl.col("variant") == "spectral_control")
                                    & (pl.col("norm") == r)).sort("image")["rho_bar"].to_numpy()))
        vals = [y] + [s[3] for s in series]
        lo = min(float(np.nanmin(v)) for v in vals if len(v))
        hi = max(float(np.nanmax(v)) for v in vals if len(v))
        pad = 0.05 * (hi - lo or 1)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#999", lw=0.8, zorder=0)
        for name, color, marker, x in series:
            if len(x) == len(y):
                ax.scatter(x, y, s=14, color=color, marker=marker, label=name, alpha=0.8)
        ax.set_title(f"norm {r:g}", fontsize=10)
        ax.set_xlabel("ϱ̄ other model", fontsize=9)
        if j == 0:
            ax.set_ylabel(f"ϱ̄ {label(reference)}", fontsize=9)
    if axes[0, -1].get_legend_handles_labels()[0]:
        axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"saliency source: {source}", fontsize=9)
    fig.tight_layout()
    return fig


def _wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion k/n."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


def adversarial_curves(adv: pl.DataFrame):
    """PGD accuracy against ε for L2 and L∞ (each kind's models pooled; bars: Wilson 95% intervals over the
    attacked images), and HopSkipJump's median minimal L2 perturbation per model with its distribution-free
    95% interval over the images attacked (few images: a wide interval, shown as such)."""
    pgd = adv.filter(pl.col("attack") == "pgd")
    dec = adv.filter(pl.col("attack") != "pgd")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    for ax, norm in zip(axes[:2], ("l2", "linf")):
        d = pgd.filter(pl.col("norm") == norm)
        kinds = _kinds(d["kind"].to_list())
        for i, kind in enumerate(kinds):
            g = (d.filter(pl.col("kind") == kind).group_by("epsilon")
                 .agg((pl.col("accuracy") * pl.col("n_images")).sum().alias("k"), pl.col("n_images").sum().alias("n"))
                 .sort("epsilon"))
            x = g["epsilon"].to_numpy() * (255 if norm == "linf" else 1)
            x = x * (1 + 0.02 * (i - (len(kinds) - 1) / 2)) + 0.003 * (i - (len(kinds) - 1) / 2)   # apart, not hidden
            acc = (g["k"] / g["n"]).to_numpy()
            lo, hi = zip(*(_wilson(k, n) for k, n in zip(g["k"], g["n"])))
            ax.errorbar(x, acc, yerr=[acc - np.array(lo), np.array(hi) - acc], marker="o", ms=3, capsize=2,
                        color=COLORS.get(kind, "#777"), label=label(kind))
        n_img = int(d["n_images"].max()) if d.height else 0
        ax.set_xlabel("ε (L2, pixels in [0, 1])" if norm == "l2" else "ε (L∞, in 1/255)")
        ax.set_ylabel("accuracy under PGD")
        ax.set_ylim(0, 1)
        ax.set_title(f"PGD {norm.upper().replace('LINF', 'L∞')} ({n_img} images per model)", fontsize=9)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7, frameon=False)
    ax = axes[2]
    if dec.height:
        kinds = _kinds(dec["kind"].to_list())
        for i, k in enumerate(kinds):
            g = dec.filter(pl.col("kind") == k).sort("seed")
            xs = i + np.linspace(-0.2, 0.2, g.height) if g.height > 1 else np.array([float(i)])
            med = g["median_l2"].to_numpy().astype(float)
            lo = g["l2_low"].to_numpy().astype(float) if "l2_low" in g.columns else med
            hi = g["l2_high"].to_numpy().astype(float) if "l2_high" in g.columns else med
            fin = np.isfinite(med)
            if fin.any():
                top = np.where(np.isfinite(hi), hi, med)
                ax.errorbar(xs[fin], med[fin], yerr=[med[fin] - np.nan_to_num(lo[fin], nan=med[fin]),
                                                      np.nan_to_num(top[fin], nan=med[fin]) - med[fin]],
                            fmt="o", ms=5, capsize=3, color=COLORS.get(k, "#777"))
            for x in xs[~fin]:   # the model gives every image one class: no start, no perturbation found
                ax.text(x, 0, "none\nfound", ha="center", va="bottom", fontsize=7, color="#a00")
        ax.set_xticks(range(len(kinds)), [label(k) for k in kinds], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("median minimal L2 perturbation")
        n = int(dec["n_images"].max())
        ax.set_title(f"HopSkipJump, {dec['steps'][0]} steps: one point per model, bars: 95% interval of its median "
                     f"over {n} images", fontsize=8)
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "no decision-based attack results", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def spectral_sensitivity(spec: pl.DataFrame):
    """Accuracy on test images low-passed (left) and high-passed (right) at each cut-off, one line per kind
    (mean over its models, bars: s.d. over them; Li et al. 2023's analysis). A kind to the upper left of
    the Baseline in the low-pass panel and below it in the high-pass panel prefers low frequencies."""
    d = spec.group_by("kind", "filter", "cutoff").agg(pl.col("accuracy").mean().alias("mean"),
                                                      pl.col("accuracy").std().alias("sd"), pl.len().alias("n"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, kind_filter, title in ((axes[0], "low", "low-pass: frequencies up to the cut-off kept"),
                                   (axes[1], "high", "high-pass: frequencies from the cut-off up kept")):
        for k in _kinds(d["kind"].to_list()):
            g = d.filter((pl.col("kind") == k) & (pl.col("filter") == kind_filter)).sort("cutoff")
            if g.height:
                n = int(g["n"].max())
                ax.errorbar(g["cutoff"], g["mean"], yerr=g["sd"].fill_null(0), marker="o", ms=4, lw=1.2, capsize=2,
                            color=COLORS.get(k), label=f"{label(k)} ({n} model{'' if n == 1 else 's'})")
        ax.set_xscale("log")
        # the cut-offs themselves as the ticks, in plain numbers (log-axis minor labels overlap at this width)
        cuts = sorted(set(d["cutoff"].to_list()))
        ax.set_xticks(cuts, [f"{c:.3g}" for c in cuts])
        ax.minorticks_off()
        ax.set_xlabel("cut-off (cycles per pixel)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[1].legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    several = d.height and int(d["n"].max()) > 1
    fig.suptitle("Spectral sensitivity" + (" (bars: s.d. over a kind's models)" if several else " (one model per kind: no bars)"),
                 fontsize=10)
    fig.tight_layout()
    return fig
