"""The HTML report of ``ketasim calibrate``: every target against the model, and the placebo and
escitalopram arms week by week against the pooled data they are calibrated to."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from ..plots import plt, png_base64
from ..report import html_page
from .data import convert, load_observations, shipped_targets

#: the virtual trial behind the pooled placebo-arm and SSRI-arm targets
POOLED_ARMS_TRIAL = "ssri_rct_trial.toml"


def _pooled_rows() -> pd.DataFrame:
    table = load_observations(shipped_targets())
    return table[table["scenario_path"].str.endswith(POOLED_ARMS_TRIAL)]


def trajectories_figure(summary: dict, rows: pd.DataFrame) -> str:
    """Three panels: each arm's mean MADRS change by week (95 % CI), the same as a share of its
    week-6 change with Posternak 2005's week-2 shares, and response rates with Furukawa 2016's band."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100)
    colours = {"placebo": "#777777", "escitalopram": "#1f77b4"}
    for arm, colour in colours.items():
        rates = summary["arms"][arm]["assessments"]
        weeks = np.array([0.0] + [a["assessment [h]"] / 168.0 for a in rates])
        change = np.array([0.0] + [a["madrs_change [points]"]["mean"] for a in rates])
        lower = np.array([0.0] + [a["madrs_change [points]"]["lower"] for a in rates])
        upper = np.array([0.0] + [a["madrs_change [points]"]["upper"] for a in rates])
        axes[0].plot(weeks, change, "o-", color=colour, label=f"{arm} (model)")
        axes[0].fill_between(weeks, lower, upper, color=colour, alpha=0.2)
        week6 = change[np.argmin(np.abs(weeks - 6.0))]
        axes[1].plot(weeks, change / week6, "o-", color=colour, label=f"{arm} (model)")
        axes[2].plot(weeks[1:], [a["response_rate"]["estimate"] for a in rates], "o-", color=colour, label=f"{arm} (model)")
    for _, row in rows.iterrows():
        low, high = row.get("low"), row.get("high")
        if row["metric"] == "fraction_of_change":
            colour = colours.get(row["quantity"], "k")
            tol = float(row["tolerance"])
            axes[1].errorbar([row["time [h]"] / 168.0], [row["value"]], yerr=[[tol], [tol]], fmt="s", color=colour,
                             mfc="white", capsize=4, label=f"{row['quantity']}: Posternak 2005 (pooled)")
        elif row["metric"] == "response_rate":
            axes[2].fill_between([row["time [h]"] / 168.0 - 0.3, row["time [h]"] / 168.0 + 0.3], [low, low], [high, high],
                                 color="#777777", alpha=0.3, label="placebo: Furukawa 2016 (pooled)")
        elif row["metric"] == "difference_in_change":
            week = row["time [h]"] / 168.0
            placebo = summary["arms"][str(row["control"])]["assessments"]
            base = next(a["madrs_change [points]"]["mean"] for a in placebo if abs(a["assessment [h]"] / 168.0 - week) < 1e-9)
            lo, hi = (convert(v, str(row["unit"]), "MADRS points") for v in (low, high))
            axes[0].errorbar([week + 0.1], [base + (lo + hi) / 2], yerr=[[(hi - lo) / 2], [(hi - lo) / 2]], fmt="s",
                             color=colours["escitalopram"], mfc="white", capsize=4,
                             label="escitalopram: placebo + Jakobsen 2017 difference")
    axes[0].set(xlabel="time [weeks]", ylabel="mean MADRS change [points]", title="Mean change from baseline")
    axes[1].set(xlabel="time [weeks]", ylabel="share of week-6 change [fraction]", title="Time course")
    axes[2].set(xlabel="time [weeks]", ylabel="response rate [fraction]", title="Response (MADRS fall >= 50 %)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return png_base64(fig)


def write_calibration_report(path: Path, table: pd.DataFrame, params=None) -> Path:
    """``report.html``: the disclaimer, the figure of the pooled arms and the table of targets."""
    from ..params import load_parameters
    from .targets import _trial

    rows = _pooled_rows()
    figure = ""
    if not rows.empty:
        summary = _trial(str(rows["scenario_path"].iloc[0]), params or load_parameters()).summary
        figure = (f"<figure><img alt='pooled arms' src='data:image/png;base64,{trajectories_figure(summary, rows)}'>"
                  "<figcaption>The escitalopram 10 mg and placebo arms of a virtual 8-week trial (population "
                  "<code>mdd-rct</code>, rated MADRS with the observation model) against the pooled data they are "
                  "calibrated to: Posternak 2005 (47 trials), Furukawa 2016 (252 trials), Jakobsen 2017 (49 trials). "
                  "Bands: 95 % CI of the virtual arm's mean.</figcaption></figure>")
    within = int(table["within"].sum())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("target", "metric", "time", "published", "model", "unit",
                                                          "accepted", "within", "tolerance basis"))
    body = "".join(
        f"<tr><td>{html.escape(str(r['target']))}</td><td>{html.escape(str(r['metric']))}</td>"
        f"<td>{html.escape(str(r['time']) if r['time'] == r['time'] else '')}</td><td>{r['published']:.4g}</td>"
        f"<td>{r['model']:.4g}</td><td>{html.escape(str(r['unit']))}</td><td>{r['low']:.4g} .. {r['high']:.4g}</td>"
        f"<td>{'yes' if r['within'] else '<strong>NO</strong>'}</td><td>{html.escape(str(r['tolerance_basis']))}</td></tr>"
        for _, r in table.iterrows())
    content = f"""<h2>Placebo and SSRI arms, week by week</h2>
{figure}
<h2>Every target</h2>
<p>Each accepted interval is the source's own uncertainty for its sample size (the basis column says how).</p>
<table><tr>{head}</tr>{body}</table>"""
    page = html_page(f"ketasim calibration: {within}/{len(table)} targets within tolerance", content)
    path.write_text(page)
    return path
