"""The HTML report of a virtual trial: design, population, trajectories, rates, relapse, side effects."""

from __future__ import annotations

import html
import json
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..plots import png_base64  # noqa: E402
from ..result import DISCLAIMER  # noqa: E402
from . import statistics as st  # noqa: E402
from .discharge import DISCHARGE_CRITERIA, NOT_READY_KEY, READY_BY_H, ready_by_key  # noqa: E402
from .ketamine_use import FLAG_MEANINGS, USE_COLUMNS, USE_FLAGS  # noqa: E402
from .tally import ASSESSMENT, LIKING, LIKING_MEANING, TrialTally  # noqa: E402

MECHANISM = ("nmda_block_interneuron_peak [fraction]", "spine_density [fold baseline]", "pfc_gbc [z]", "il6 [pg/mL]")



def _days(hours: np.ndarray) -> np.ndarray:
    return np.asarray(hours, dtype=float) / 24.0


def _arms(tally: TrialTally) -> list[str]:
    """The arms with analysed patients, in the trial's order."""
    return [a.name for a in tally.spec.arms if a.name in tally.parts["arms"]]


def trajectories_figure(tally: TrialTally):
    """Mean MADRS with its 95 % CI band and the 10-90 % range of patients, per arm, from baseline."""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for arm in _arms(tally):
        tr = tally.trajectory(arm)
        x = _days(np.array(tr["time [h]"]))
        line, = ax.plot(x, tr["mean [points]"], marker="o", label=f"{arm}: mean")
        ax.fill_between(x, tr["p10 [points]"], tr["p90 [points]"], color=line.get_color(), alpha=0.12,
                        label=f"{arm}: 10-90 % of patients")
        ax.fill_between(x, tr["lower [points]"], tr["upper [points]"], color=line.get_color(), alpha=0.35)
    threshold = tally.spec.endpoints.remission_at_most
    ax.axhline(threshold, ls=":", c="grey", lw=1, label=f"remission threshold (MADRS {threshold:.3g}) [points]")
    ax.set_xlabel("time from the start of the period [d]")
    ax.set_ylabel("MADRS [points]")
    ax.set_title("MADRS trajectories (mean, 95 % CI band, 10-90 % range)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def rates_figure(summary: dict[str, Any]):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, key, title in ((axes[0], "response_rate", "Response"), (axes[1], "remission_rate", "Remission")):
        for arm, s in summary["arms"].items():
            rows = s["assessments"]
            x = _days(np.array([r[ASSESSMENT] for r in rows]))
            est = np.array([r[key]["estimate"] if r[key]["estimate"] is not None else np.nan for r in rows], dtype=float)
            lo = np.array([r[key]["lower"] if r[key]["lower"] is not None else np.nan for r in rows], dtype=float)
            hi = np.array([r[key]["upper"] if r[key]["upper"] is not None else np.nan for r in rows], dtype=float)
            ax.errorbar(x, 100 * est, yerr=[100 * (est - lo), 100 * (hi - est)], marker="o", capsize=3, label=arm)
        ax.set_title(f"{title} rate (Wilson 95 % CI)")
        ax.set_xlabel("time from the start of the period [d]")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("patients [%]")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def relapse_figure(tally: TrialTally):
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for arm in _arms(tally):
        time, event = tally.relapse(arm)
        if time.size == 0:
            continue
        km = st.kaplan_meier(time, event)
        line, = ax.step(_days(km["time"]), 100 * km["survival"], where="post", label=f"{arm} (n at risk {time.size})")
        ax.fill_between(_days(km["time"]), 100 * km["lower"], 100 * km["upper"], step="post", alpha=0.2,
                        color=line.get_color())
    ax.set_xlabel("time from response [d]")
    ax.set_ylabel("responders free of relapse [%]")
    ax.set_title("Relapse among responders (Kaplan-Meier, log-log 95 % CI)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def mechanism_figure(tally: TrialTally):
    fig, axes = plt.subplots(1, len(MECHANISM), figsize=(12, 3.0))
    for ax, column in zip(axes, MECHANISM):
        for arm in _arms(tally):
            times, means = tally.mechanism_means(arm, column)
            ax.plot(_days(times), means, marker="o", label=arm)
        ax.set_title(column.split(" [")[0], fontsize=9)
        ax.set_ylabel(column, fontsize=8)
        ax.set_xlabel("time [d]", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    return f"{x:.{digits}g}"


def _interval(d: dict[str, Any], scale: float = 1.0, digits: int = 3) -> str:
    def f(v):
        return v if v is None or isinstance(v, str) else v * scale

    return f"{_fmt(f(d['estimate']), digits)} ({_fmt(f(d['lower']), digits)} to {_fmt(f(d['upper']), digits)})"


def _population_table(tally: TrialTally) -> str:
    head = "<tr><th>sequence / arm</th><th>n</th><th>women [%]</th><th>weight [kg]</th><th>age [y]</th>" \
           "<th>baseline MADRS [points]</th><th>CYP2B6 poor [%]</th><th>BDNF Met carriers [%]</th>" \
           "<th>high inflammation [%]</th><th>solver failures</th></tr>"
    rows = []

    def spread(m):
        return f"{m.mean:.1f} ± {m.sd:.1f}"

    for seq, g in tally.population().items():
        pct = {k: f"{100 * g[k] / g['n']:.0f}" for k in ("female", "cyp2b6_poor", "met_carriers", "high_inflammation")}
        rows.append(
            f"<tr><td>{html.escape(str(seq))}</td><td>{g['n']}</td><td>{pct['female']}</td>"
            f"<td>{spread(g['weight'])}</td><td>{spread(g['age'])}</td><td>{spread(g['baseline'])}</td>"
            f"<td>{pct['cyp2b6_poor']}</td><td>{pct['met_carriers']}</td>"
            f"<td>{pct['high_inflammation']}</td><td>{g['failures']}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _endpoint_table(summary: dict[str, Any]) -> str:
    head = "<tr><th>arm</th><th>assessment [h]</th><th>n</th><th>MADRS change [points], mean (95 % CI)</th>" \
           "<th>response [%] (95 % CI)</th><th>remission [%] (95 % CI)</th></tr>"
    rows = []
    for arm, s in summary["arms"].items():
        for r in s["assessments"]:
            c = r["madrs_change [points]"]
            rows.append(f"<tr><td>{html.escape(arm)}</td><td>{r[ASSESSMENT]:.4g}</td><td>{r['n']}</td>"
                        f"<td>{_fmt(c['mean'])} ({_fmt(c['lower'])} to {_fmt(c['upper'])})</td>"
                        f"<td>{_interval(r['response_rate'], 100)}</td><td>{_interval(r['remission_rate'], 100)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


#: the values the ketamine-use table shows (the flags follow)
USE_VALUES = tuple(c for c in USE_COLUMNS if c not in USE_FLAGS)
#: the discharge readings the side-effect table shows (trial/discharge.py)
DISCHARGE_KEYS = (ready_by_key(READY_BY_H[0]), NOT_READY_KEY)


def _side_effect_table(summary: dict[str, Any]) -> str:
    rows = []
    # a patients table written before drug liking was recorded is reported without it ("-" in an arm without patients)
    liking = any(LIKING in s["side_effects"] for s in summary["arms"].values())
    for arm, s in summary["arms"].items():
        se = s["side_effects"]
        rates = [(k, v) for k, v in se.items() if "estimate" in v]
        rows.append(f"<tr><td>{html.escape(arm)}</td>"
                    + "".join(f"<td>{_interval(v, 100)} [{v['k']}/{v['n']}]</td>" for _, v in rates)
                    + f"<td>{_fmt(se['cadss_peak [points]']['mean'])}</td><td>{_fmt(se['sbp_peak_rise [mmHg]']['mean'])}</td>"
                    + (f"<td>{_fmt(se[LIKING]['mean']) if LIKING in se else '-'}</td>" if liking else "")
                    + "".join(f"<td>{_interval(se['discharge'][k], 100)}</td>" for k in DISCHARGE_KEYS)
                    + f"<td>{_interval(s['relapse']['median_time_to_relapse [h]'])}</td></tr>")
    first = next(iter(summary["arms"].values()))["side_effects"]
    heads = "".join(f"<th>{html.escape(k)} [%] (95 % CI)</th>" for k, v in first.items() if "estimate" in v)
    discharge = "".join(f"<th>{k.replace('_', ' ')} [%] (95 % CI)</th>" for k in DISCHARGE_KEYS)
    liking_head = "<th>mean peak drug liking [points, 50 neutral]</th>" if liking else ""
    return (f"<table><tr><th>arm</th>{heads}<th>mean peak CADSS [points]</th><th>mean peak SBP rise [mmHg]</th>"
            f"{liking_head}{discharge}<th>median time to relapse [h] (95 % CI)</th></tr>{''.join(rows)}</table>"
            f"<p>Model discharge criteria, each patient's slowest session among those the assessments report: "
            f"{html.escape(DISCHARGE_CRITERIA)}. Sedation, dizziness and nausea are not model outputs; they could "
            "only lengthen these times.</p>"
            + (f"<p>{html.escape(LIKING_MEANING)}</p>" if liking else ""))


def _ketamine_use_table(summary: dict[str, Any]) -> str:
    """Ketamine given per patient over the course and the exposure flags (trial/ketamine_use.py)."""
    if not all("ketamine_use" in s for s in summary["arms"].values()):
        return "<p>Not in this patients table (written before ketamine use was recorded).</p>"
    rows = []
    for arm, s in summary["arms"].items():
        e = s["ketamine_use"]
        rows.append(f"<tr><td>{html.escape(arm)}</td>"
                    + "".join(f"<td>{_fmt(e[c]['mean'])} ({_fmt(e[c]['max'])})</td>" for c in USE_VALUES)
                    + "".join(f"<td>{_interval(e[f'{f}_fraction'], 100)}</td>" for f in USE_FLAGS) + "</tr>")
    heads = ("".join(f"<th>{html.escape(c.replace('_', ' '))}, mean (max)</th>" for c in USE_VALUES)
             + "".join(f"<th>{f.replace('_', ' ')} [%] (95 % CI)</th>" for f in USE_FLAGS))
    flags = " ".join(f"<i>{f.replace('_', ' ')}</i>: {html.escape(m)}." for f, m in FLAG_MEANINGS.items())
    return (f"<table><tr><th>arm</th>{heads}</tr>{''.join(rows)}</table><p>Ketamine drugs (racemic ketamine, "
            f"esketamine, arketamine) per patient over the whole course (run-in and lead-in included; a crossover's "
            f"patients count in both arms); days with a dose, from the first, and the most in any 7 and any 180 "
            f"consecutive days (the exposure measure of the largest survey of urinary symptoms in ketamine users). "
            f"{flags} "
            "These flag dosing patterns; the model does not predict bladder or cognitive injury.</p>")


def _comparison_table(summary: dict[str, Any]) -> str:
    rows = []
    for c in summary["comparisons"]:
        for r in c["assessments"]:
            rows.append(f"<tr><td>{html.escape(c['arm'])} vs {html.escape(c['control'])}</td><td>{r[ASSESSMENT]:.4g}</td>"
                        f"<td>{_interval(r['difference_in_madrs_change [points]'])}</td>"
                        f"<td>{_interval(r['odds_ratio_response'])}</td>"
                        f"<td>{_interval(c['relapse_hazard_ratio'])}</td></tr>")
    if not rows:
        return "<p>One arm: no between-arm comparison.</p>"
    return ("<table><tr><th>comparison</th><th>assessment [h]</th><th>difference in MADRS change [points] (95 % CI)</th>"
            f"<th>odds ratio for response (95 % CI)</th><th>relapse hazard ratio (95 % CI)</th></tr>{''.join(rows)}</table>")


def _write_page(folder, title: str, caveat: str, body: str) -> None:
    """``report.html``: the title, the disclaimer with ``caveat``, ``body``, and the disclaimer again."""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
.disclaimer{{background:#fff4e5;border-left:4px solid #e69500;padding:.6em 1em}}
table{{border-collapse:collapse;font-size:.82em;margin:.5em 0 1.5em}}
td,th{{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}}
img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="disclaimer"><strong>For research and teaching only.</strong> {html.escape(DISCLAIMER)} {html.escape(caveat)}</p>
{body}
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
</body></html>
"""
    (folder / "report.html").write_text(page, encoding="utf-8")


def _uncertainty_table(u: dict[str, Any] | None) -> str:
    """Parameter uncertainty against between-patient variability (trials run with parameter draws)."""
    if not u:
        return ""
    rows = []
    for arm, entries in u["arms"].items():
        for e in entries:
            both, alone = e["interval95_with_parameter_uncertainty [points]"], e["interval95_patients_only [points]"]
            rows.append(f"<tr><td>{html.escape(arm)}</td><td>{_fmt(e[ASSESSMENT])}</td><td>{_fmt(e['mean_change [points]'])}</td>"
                        f"<td>{_fmt(both[0])} to {_fmt(both[1])}</td><td>{_fmt(alone[0])} to {_fmt(alone[1])}</td>"
                        f"<td>{_fmt(e['sd_of_mean_from_parameters [points]'])}</td>"
                        f"<td>{_fmt(e['sd_between_patients [points]'])}</td>"
                        f"<td>{_fmt(e['share_of_mean_variance_from_parameters'])}</td></tr>")
    return (f"<h2>Parameter uncertainty</h2><p>{html.escape(u['kind'])} from {html.escape(u['source'])}: one draw "
            f"per block of {u['draw_block [patients]']} patients ({u['blocks']} blocks); "
            f"{u['values_moved_to_range_ends']} drawn values moved to a range's end. {html.escape(u['method'])}.</p>"
            "<table><tr><th>arm</th><th>assessment [h]</th><th>mean change [points]</th>"
            "<th>95 % interval with parameter uncertainty [points]</th><th>95 % CI from patients alone [points]</th>"
            "<th>SD of the mean from parameters [points]</th><th>SD between patients [points]</th>"
            f"<th>share of the mean's variance from parameters</th></tr>{''.join(rows)}</table>")


def _dosing_table(summary: dict[str, Any]) -> str:
    """What adaptive dosing rules did per arm (trials with ``[[arm.rule]]``)."""
    arms = {arm: s["adaptive_dosing"] for arm, s in summary["arms"].items() if "adaptive_dosing" in s}
    if not arms:
        return ""
    rows = []
    for arm, d in arms.items():
        counts = "".join(f"<td>{d[f'doses_{w}']['total']} ({_fmt(d[f'doses_{w}']['mean_per_patient'])})</td>"
                         for w in ("given", "held", "delayed", "titrated", "stopped"))
        total = d["dose_total [mg]"] or {}
        rows.append(f"<tr><td>{html.escape(arm)}</td><td>{d['patients']}</td>{counts}"
                    f"<td>{_interval(d['patients_stopped'], 100)}</td>"
                    f"<td>{_fmt(total.get('mean'))} ({_fmt(total.get('p10'))} to {_fmt(total.get('p90'))})</td></tr>")
    heads = "".join(f"<th>doses {w} [count] (per patient)</th>" for w in ("given", "held", "delayed", "titrated",
                                                                          "not given after a stop"))
    return ("<h2>Dosing decisions</h2><p>Each session's dose as the arm's rules decided it on the simulated patient's "
            "state (the patients table holds every decision in <code>dose_decisions</code>).</p>"
            f"<table><tr><th>arm</th><th>patients</th>{heads}<th>stopped [%] (95 % CI)</th>"
            f"<th>amount given [mg] mean (10th to 90th percentile)</th></tr>{''.join(rows)}</table>")


def write_trial_report(result, folder) -> None:
    """``report.html`` (figures embedded) in ``folder``."""
    tally = result.tally or TrialTally.of_frame(result.spec, result.patients)
    summary = result.summary
    figures = []
    if _arms(tally):
        figures = [("MADRS trajectories", trajectories_figure(tally)), ("Response and remission", rates_figure(summary)),
                   ("Relapse among responders (Kaplan-Meier)", relapse_figure(tally)),
                   ("Mechanism readouts per arm", mechanism_figure(tally))]
    imgs = "\n".join(f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{png_base64(f)}'>"
                     f"<figcaption>{html.escape(t)}</figcaption></figure>" for t, f in figures)
    design = json.dumps(summary["trial"], indent=2)
    counts = summary["patients"]
    title = f"ketasim virtual trial: {result.spec.name}"
    body = f"""<p>Design: <strong>{html.escape(result.spec.design)}</strong>; {counts['simulated']} patients simulated,
{counts['randomised']} analysed, {counts['failed']} not finished by the solver
{html.escape(json.dumps(counts['failed_reasons'])) if counts['failed'] else ''}.</p>
<h2>Population</h2>
{_population_table(tally)}
<h2>Endpoints per arm</h2>
{_endpoint_table(summary)}
<h2>Between arms</h2>
{_comparison_table(summary)}
<h2>Side effects and relapse (Kaplan-Meier median among responders)</h2>
{_side_effect_table(summary)}
<h2>Ketamine use over the course</h2>
{_ketamine_use_table(summary)}
{_dosing_table(summary)}
{_uncertainty_table(summary.get("parameter_uncertainty"))}
<h2>Figures</h2>
{imgs}
<h2>Trial design</h2>
<pre>{html.escape(design)}</pre>
"""
    _write_page(folder, title, "A virtual trial describes a model population; it says nothing about what any "
                               "person should receive.", body)


# ---------------------------------------------------------------------- power analyses
def power_figure(summary: dict[str, Any]):
    """Probability of success against the sample size, with Monte Carlo intervals, the target and,
    where available, the normal approximation."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    rows = summary["sample_sizes"]
    n = np.array([r["n"] for r in rows], dtype=float)
    est = np.array([r["power"]["estimate"] for r in rows])
    lo, hi = np.array([r["power"]["lower"] for r in rows]), np.array([r["power"]["upper"] for r in rows])
    ax.errorbar(n, est, yerr=[est - lo, hi - est], marker="o", capsize=3, label="simulated (Wilson 95 % MC interval)")
    approx = summary["normal_approximation"]
    if approx.get("available"):
        xs = [int(k) for k in approx["power"]]
        ax.plot(xs, [approx["power"][str(k)] for k in xs], ls="--", marker="x", label="normal approximation")
    ax.axhline(summary["target_power"], ls=":", c="grey", label=f"target {summary['target_power']:g}")
    ax.set_xscale("log")
    ax.set_xticks(n)
    ax.set_xticklabels([f"{int(v)}" for v in n])
    ax.set_xlabel(f"sample size [{summary['sample_size_means']}]")
    ax.set_ylabel("probability of success [fraction]")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def effect_figure(table: pd.DataFrame, summary: dict[str, Any]):
    """The estimated effect over replicates at each sample size."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sizes = sorted(table["n"].unique())
    data = [table.loc[table["n"] == s, "estimate"].dropna().to_numpy() for s in sizes]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(sizes) + 1), [str(s) for s in sizes])
    ax.set_xlabel(f"sample size [{summary['sample_size_means']}]")
    ax.set_ylabel(summary["success"]["estimate"])
    ax.set_title("Estimated effect across replicate trials (box: quartiles; whiskers: 1.5 IQR)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_power_report(result, folder) -> None:
    """``report.html`` of a power analysis in ``folder``."""
    summary = result.summary
    figures = [("Probability of success", power_figure(summary)),
               ("Estimated effect", effect_figure(result.replicates, summary))]
    imgs = "\n".join(f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{png_base64(f)}'>"
                     f"<figcaption>{html.escape(t)}</figcaption></figure>" for t, f in figures)
    rows = "".join(
        f"<tr><td>{r['n']}</td><td>{r['successes']}/{r['replicates']}</td>"
        f"<td>{_interval(r['power'])}</td><td>{_fmt(r['estimate']['median'])} "
        f"({_fmt(r['estimate']['p2.5'])} to {_fmt(r['estimate']['p97.5'])})</td>"
        f"<td>{_fmt(r['analysed_per_replicate']['arm'])} / {_fmt(r['analysed_per_replicate']['control'])}</td></tr>"
        for r in summary["sample_sizes"])
    smallest = summary["smallest_n_reaching_target"]
    rule = json.dumps(summary["success"], indent=2)
    title = f"ketasim power analysis: {result.spec.name}"
    body = f"""<p>{html.escape(summary['design'])} design; sample size means {html.escape(summary['sample_size_means'])};
{summary['patients']['simulated']} patients simulated, {summary['patients']['failed']} not finished by the solver.
Smallest sample size reaching power {summary['target_power']:g}:
<strong>{smallest if smallest is not None else 'none of those given'}</strong>.</p>
<h2>Probability of success per sample size</h2>
<table><tr><th>n</th><th>successes / replicates</th><th>power (Wilson 95 % MC interval)</th>
<th>{html.escape(summary['success']['estimate'])}: median (2.5-97.5 % of replicates)</th>
<th>analysed per replicate: arm / control</th></tr>{rows}</table>
<h2>Figures</h2>
{imgs}
<h2>Success criterion</h2>
<pre>{html.escape(rule)}</pre>
<p>{html.escape(summary['replicates_are'])}.</p>
"""
    _write_page(folder, title, "A power analysis of virtual trials describes a model population; it says nothing "
                               "about what any person should receive.", body)


# ---------------------------------------------------------------------- regimen optimisation
def tradeoff_figure(result):
    """For each cap: the endpoint against the cap's metric over every regimen evaluated, the
    trade-off front (no regimen better on both), the cap, the best feasible regimen and the label."""
    from .optimise import CAP_COLUMNS

    table, summary, spec = result.candidates, result.summary, result.spec
    caps = list(CAP_COLUMNS)
    fig, axes = plt.subplots(1, len(caps), figsize=(3.1 * len(caps), 3.2), sharey=True)
    for ax, cap in zip(axes, caps):
        column = CAP_COLUMNS[cap]
        ok = table["feasible"].to_numpy()
        ax.scatter(table.loc[ok, column], table.loc[ok, "objective"], s=14, c="tab:blue", label="meets every cap")
        ax.scatter(table.loc[~ok, column], table.loc[~ok, "objective"], s=14, c="lightgrey", label="breaks a cap")
        front = table[table[f"pareto_{cap}"]].sort_values(column)
        ax.step(front[column], front["objective"], where="post", c="tab:orange", lw=1, label="trade-off front")
        if cap in spec.caps:
            ax.axvline(spec.caps[cap], ls=":", c="red", label="cap")
        best, label = summary["best"], summary["label"]
        if best:
            ax.scatter([best[column]], [best["objective"]], marker="*", s=120, c="gold", edgecolors="k", label="best", zorder=3)
        if label and label.get(column) is not None:
            ax.scatter([label[column]], [label["objective"]], marker="D", s=40, c="none", edgecolors="k", label="label",
                       zorder=3)
        ax.set_xlabel(column)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(summary["objective"])
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def write_optimise_report(result, folder) -> None:
    """``report.html`` of a regimen optimisation in ``folder``."""
    from .optimise import CAP_COLUMNS

    summary, spec = result.summary, result.spec
    img = png_base64(tradeoff_figure(result))
    metrics = ["objective", "response_rate", "remission_rate", "madrs_change [points]", *CAP_COLUMNS.values(), "feasible"]
    regimen = [c for c in result.candidates.columns if c.startswith(("amount [", "every [", "count", "therapy_start"))]

    def row(name, entry):
        if not entry:
            return f"<tr><td>{html.escape(name)}</td><td colspan='{len(regimen) + len(metrics)}'>none</td></tr>"
        cells = "".join(f"<td>{_fmt(entry.get(c)) if not isinstance(entry.get(c), bool) else entry.get(c)}</td>"
                        for c in regimen + metrics)
        return f"<tr><td>{html.escape(name)}</td>{cells}</tr>"

    heads = "".join(f"<th>{html.escape(c)}</th>" for c in regimen + metrics)
    top = result.candidates.sort_values("objective", ascending=False).head(15).to_dict("records")
    caps = ", ".join(f"{html.escape(CAP_COLUMNS[k])} at most {v:g}" for k, v in spec.caps.items()) or "none"
    body = f"""<p>Objective: <strong>{html.escape(summary['objective'])}</strong>, maximised over
{summary['evaluated']} regimens ({html.escape(spec.method)}); {summary['feasible']} met every cap ({caps}). Every
regimen ran on the same {spec.population.get('n')} virtual patients (seed {spec.seed}).</p>
<h2>Best regimen and the label regimen</h2>
<table><tr><th></th>{heads}</tr>{row('best within the caps', summary['best'])}{row('label', summary['label'])}</table>
<p>{html.escape(summary.get('why_none', ''))}</p>
<h2>Trade-off fronts</h2>
<figure><img alt='trade-off fronts' src='data:image/png;base64,{img}'><figcaption>The endpoint against each cap's
metric for every regimen evaluated; the front joins the regimens no other beats on both.</figcaption></figure>
<h2>Regimens with the highest objective</h2>
<table><tr><th>candidate</th>{heads}</tr>{''.join(row(str(r['candidate']), r) for r in top)}</table>
<h2>Spec</h2>
<pre>{html.escape(json.dumps(summary['spec'], indent=2))}</pre>
"""
    _write_page(folder, f"ketasim regimen optimisation: {spec.name}",
                "The best regimen here is the best for a model population under the model's assumptions and the "
                "caps declared; it is not a recommendation for anyone.", body)
