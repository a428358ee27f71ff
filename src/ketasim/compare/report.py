"""The HTML report of ``ketasim compare``: scores, the hypothesis x experiment table, a figure."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from ..plots import plt, png_base64
from ..report import html_page


def predictions_figure(result) -> str:
    """One panel per observation: its 95 % interval (grey) and each variant's prediction."""
    rows = result.rows
    # an experiment may observe the same arm, metric and time in several trials (subgroups: Diekamp 2021)
    panels = rows.groupby(["experiment", "arm", "metric", "time", "trial"], sort=False, dropna=False)
    several = rows.drop_duplicates(["experiment", "trial"]).groupby("experiment").size()
    variants = list(result.variants["variant"])
    cols = 4
    lines = int(np.ceil(panels.ngroups / cols))
    fig, axes = plt.subplots(lines, cols, figsize=(3.4 * cols, 2.1 + 0.13 * len(variants) * lines), dpi=100,
                             squeeze=False)
    for ax, (key, panel) in zip(axes.flat, panels):
        r = panel.set_index("variant").loc[variants]
        y = np.arange(len(variants))
        ax.axvspan(r["low"].iloc[0], r["high"].iloc[0], color="#cccccc")
        ax.axvline(r["observed"].iloc[0], color="k", lw=1)
        ax.plot(r["model"], y, "o", color="#1f77b4", ms=4)
        ax.set_yticks(y, variants if ax in axes[:, 0] else [""] * len(y), fontsize=6)
        ax.invert_yaxis()
        trial = f" ({Path(key[4]).stem})" if several[key[0]] > 1 else ""
        ax.set_title(f"{key[0]}{trial}\n{key[1]}, {key[2]} @ {key[3]}", fontsize=7)
        ax.set_xlabel(f"[{r['unit'].iloc[0]}]", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    for ax in list(axes.flat)[panels.ngroups:]:
        ax.set_visible(False)
    fig.tight_layout()
    return png_base64(fig)


def _reached(value) -> str:
    if value is None or value != value:  # not fitted (None, or NaN after a DataFrame round trip)
        return "not fitted"
    return "yes" if value else "<strong>no</strong>"


def _table(head: list[str], body: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><tr>{h}</tr>{b}</table>"


def write_compare_report(result, path: Path) -> Path:
    """``report.html``: the disclaimer, the variants' scores, each experiment and which variants
    explain it, the predictions figure and every row."""
    v = result.variants
    scores = _table(
        ["variant", "mechanisms", "reaches Murrough 2013 24 h", "fitted factor", "explained [rows]", "log L", "k",
         "AIC", "BIC", "delta AIC", "Akaike weight"],
        [[html.escape(r["variant"]), html.escape(r["mechanisms"]), _reached(r["reaches_fit_target"]),
          f"{r['fitted_factor']:.3g}", f"{r['explained [rows]']}/{r['observations']}", f"{r['log_likelihood']:.2f}",
          str(r["k"]), f"{r['aic']:.2f}", f"{r['bic']:.2f}", f"{r['delta_aic']:.2f}", f"{r['akaike_weight']:.3f}"]
         for _, r in v.iterrows()])
    fits = _table(["variant", "fitted gains", "model at 24 h [MADRS points]", "note"],
                  [[html.escape(f.variant.name), html.escape(", ".join(f"{k} = {x:.4g}" for k, x in f.gains.items()) or "-"),
                    "-" if f.model != f.model else f"{f.model:.2f}", html.escape(f.note)] for f in result.fits])
    experiments = _table(["experiment", "finding", "explained by", "source"],
                         [[html.escape(r["experiment"]), html.escape(str(r["finding"])),
                           html.escape(", ".join(r["explained_by"])) if r["explained_by"] else "<strong>none</strong>",
                           html.escape(str(r["source"]))] for _, r in result.experiments().iterrows()])
    rows = result.rows
    matrix = _table(["variant", "experiment", "trial", "arm", "metric", "time", "observed", "95 % interval", "model",
                     "unit", "within", "log L", "grade"],
                    [[html.escape(r["variant"]), html.escape(r["experiment"]), html.escape(str(r["trial"])),
                      html.escape(str(r["arm"])),
                      html.escape(r["metric"]), html.escape(str(r["time"])), f"{r['observed']:.3g}",
                      f"{r['low']:.3g} .. {r['high']:.3g}", f"{r['model']:.3g}", html.escape(str(r["unit"])),
                      "yes" if r["within"] else "<strong>no</strong>", f"{r['log_likelihood']:.2f}", r["grade"]]
                     for _, r in rows.iterrows()])
    body = f"""<p>Each variant is first calibrated the same way: one common factor on its own mechanisms' gains brings its
mean MADRS change 24 h after ketamine 0.5 mg/kg/40 min to Murrough 2013 (-16.5 points); no gain shared by
every route is refitted. The experiments below were never used to fit or to choose anything; they are
evidence for comparing the hypotheses. k counts the variant's own gains plus the fitted factor; AIC and BIC
penalise variants with more hypotheses.</p>
<h2>Scores (best first)</h2>
{scores}
<h2>Calibration of each variant</h2>
{fits}
<h2>Which hypothesis explains which result</h2>
<p>Explained: every prediction of the experiment within the observation's 95 % interval.</p>
{experiments}
<h2>Predictions</h2>
<figure><img alt="predictions" src="data:image/png;base64,{predictions_figure(result)}">
<figcaption>Grey: the observation's 95 % interval; black line: the observation; dots: each variant's
prediction (its virtual trial's estimate).</figcaption></figure>
<h2>Every observation under every variant</h2>
<p>Grades: H read from the primary source; M through a secondary page; Q a qualitative finding with an
assumed spread (see compare.csv and the experiments table for each row's basis).</p>
{matrix}"""
    page = html_page(f"ketasim compare: {len(v)} variants on {rows['experiment'].nunique()} experiments", body, 1300)
    path.write_text(page)
    return path


def write_design_report(result, path: Path) -> Path:
    """``report.html`` of ``ketasim compare --design``: candidates ranked by patients per arm."""
    t = result.table
    a, b = (h.name for h in result.spec.hypotheses)
    body = [[html.escape(str(r["candidate"])), html.escape(str(r["preset"])), html.escape(str(r["assessment"])),
             f"{r[f'effect under {a} [MADRS points]']:.2f}", f"{r[f'effect under {b} [MADRS points]']:.2f}",
             f"{r['difference [MADRS points]']:.2f}", f"{r['between-patient sd [MADRS points]']:.2f}",
             f"{r['standardised difference']:.3f}",
             "never" if not math.isfinite(r["patients per arm"]) else f"{math.ceil(r['patients per arm'])}"]
            for _, r in t.iterrows()]
    table = _table(["candidate", "population", "assessment", f"effect under {a} [MADRS points]",
                    f"effect under {b} [MADRS points]", "difference [MADRS points]", "between-patient SD [MADRS points]",
                    "standardised difference", f"patients per arm ({result.spec.power:.0%} power)"], body)
    fits = _table(["hypothesis", "mechanisms", "fitted gains", "note"],
                  [[html.escape(f.variant.name), html.escape("+".join(f.variant.mechanisms)),
                    html.escape(", ".join(f"{k} = {x:.4g}" for k, x in f.gains.items()) or "-"), html.escape(f.note)]
                   for f in result.fits])
    body = f"""<p>Each candidate ran as a virtual parallel trial of {result.spec.patients} patients per arm under both
hypotheses (same seed, same patients). Effect: mean MADRS change of the active arm minus the control
arm. Patients per arm: a two-arm trial's effect estimate (standard error SD sqrt(2/n)) tells the two
predictions apart with {result.spec.power:.0%} power at two-sided alpha {result.spec.alpha:g}.
Best separating first.</p>
{table}
<h2>Calibration of the two hypotheses</h2>
{fits}"""
    page = html_page(f"Which experiment separates {a} from {b}?", body, 1300)
    path.write_text(page)
    return path
