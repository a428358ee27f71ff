"""What a fit leaves behind: fit.json, report.html and a parameter file ``simulate``/``trial`` accept."""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..params import ParameterSet  # noqa: E402
from ..plots import png_base64  # noqa: E402
from ..result import DISCLAIMER  # noqa: E402
from .fit import AvailabilityGroup, FitResult, Problem  # noqa: E402
from .hierarchical import Z95, HierarchicalResult, Patient  # noqa: E402


def _file_value(params: ParameterSet, name: str, x: float | None) -> float | None:
    """The value in the file's unit at log-shift ``x``; None where undefined (an unbounded interval)."""
    if x is None or not math.isfinite(x) or abs(x) > 700.0:
        return None
    return params[name].value * math.exp(x)


def fit_summary(problem: Problem, result: FitResult, params: ParameterSet, data_files: list[str],
                posterior: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything fit.json holds; values in each parameter's file unit."""
    estimates = {}
    for k, name in enumerate(result.names):
        p = params[name]
        se = float(result.standard_error[k])
        prof = result.profiles.get(name, {})
        entry = {
            "value": _file_value(params, name, float(result.x[k])), "unit": p.unit, "prior_value": p.value,
            "log_shift": float(result.x[k]),
            "standard_error_log": se if math.isfinite(se) else None,
            "wald_ci95": [_file_value(params, name, result.x[k] - 1.96 * se), _file_value(params, name, result.x[k] + 1.96 * se)],
            "profile_ci95": [_file_value(params, name, prof.get("lower_x")), _file_value(params, name, prof.get("upper_x"))],
            "identifiable": prof.get("identifiable"),
            "at_bound": bool(np.isclose(result.x[k], problem.lower[k]) or np.isclose(result.x[k], problem.upper[k])),
        }
        if posterior:
            post = posterior["parameters"][name]
            ci = [_file_value(params, name, post["lower_x"]), _file_value(params, name, post["upper_x"])]
            entry["posterior"] = {"mean": _file_value(params, name, post["mean_x"]), "ci95": ci,
                                  "r_hat": post["r_hat"], "ess": post["ess"]}
        estimates[name] = entry
    return {
        "disclaimer": DISCLAIMER, "data": data_files,
        "method": "maximum a posteriori" if problem.use_prior else "maximum likelihood",
        "error_model": "Gaussian; SD/sqrt(n) from the table, else 10 % of the observed value"
                       + ("; plus a between-study variance per group (Paule-Mandel)" if problem.tau2 else ""),
        "between_study_sd": {k: math.sqrt(v) for k, v in problem.tau2.items()},
        "objective": result.objective, "n_observations": problem.n_observations,
        "converged": result.converged, "message": result.message, "starts": result.starts,
        "estimates": estimates,
        "bayes": None if posterior is None else {k: posterior[k] for k in ("chains", "warmup", "samples")},
        # for sampling parameter uncertainty: value = file value x exp(log-shift), log-shifts ~ N(x, C)
        "covariance_log_shift": None if result.covariance is None else {
            "parameters": list(result.names),
            "matrix": [[float(v) if math.isfinite(v) else None for v in row] for row in _known_covariance(result)]},
    }


def _known_covariance(result: FitResult) -> np.ndarray:
    """The covariance with the rows and columns of parameters the profile finds not identifiable set
    to NaN: the pseudo-inverse gives them a near-zero variance, which would claim they are known."""
    cov = np.array(result.covariance, dtype=float, copy=True)
    unknown = [k for k, n in enumerate(result.names) if result.profiles.get(n, {}).get("identifiable") is False]
    cov[unknown, :] = np.nan
    cov[:, unknown] = np.nan
    return cov


def draws_table(posterior: dict[str, Any], problem: Problem, params: ParameterSet):
    """The posterior draws as a table: ``chain``, ``draw`` and one column per parameter in its file
    unit (``"pk.v_central [L]"``), one row per draw (``draws.parquet`` of ``ketasim fit --bayes``)."""
    import pandas as pd

    draws = np.asarray(posterior["draws_x"])  # (chains, samples, parameters) of log-shifts
    chains, samples, _ = draws.shape
    table = {"chain": np.repeat(np.arange(chains), samples), "draw": np.tile(np.arange(samples), chains)}
    for k, name in enumerate(problem.names):
        table[f"{name} [{params[name].unit}]"] = params[name].value * np.exp(draws[:, :, k].ravel())
    return pd.DataFrame(table)


def _fitted_entry(est: dict[str, Any], p) -> tuple[float, float, str]:
    """(value in the file unit, within the range; between-patient cv; where the cv comes from) of one
    fitted parameter."""
    value = min(max(est["value"], p.range[0]), p.range[1])
    spread = est.get("between_patient")
    if spread:
        return value, spread["cv"], "between-patient, fitted"
    if est.get("random") is False:  # fitted as the same in every patient
        return value, 0.0, "the same in every patient in the hierarchical fit"
    return value, p.cv, ""


def parameter_file(summary: dict[str, Any], params: ParameterSet, data_files: list[str]) -> str:
    """A parameter override file (TOML) with the fitted values; after a hierarchical fit, each random
    parameter's ``cv`` is its fitted between-patient CV, so a virtual population drawn with the file
    has the fitted variability."""
    today = _dt.date.today().isoformat()
    how = "hierarchical ketasim fit" if "n_patients" in summary else "ketasim fit"
    lines = [f"# Fitted by `ketasim fit` on {today} to {', '.join(data_files)}.",
             "# Use with `ketasim simulate --params THIS_FILE` or `ketasim trial --params THIS_FILE`.", ""]
    for name, est in summary["estimates"].items():
        p = params[name]
        value, cv, why = _fitted_entry(est, p)
        lines += [f'["{name}"]', f"value = {value!r}", f'unit = "{p.unit}"', f"range = [{p.range[0]!r}, {p.range[1]!r}]",
                  f"cv = {cv!r}" + (f"  # {why}" if why else ""),
                  f'source = "calibrated: {how} of {", ".join(Path(f).name for f in data_files)}"',
                  f"description = {json.dumps(p.description)}", ""]
    return "\n".join(lines)


def fitted_parameters(summary: dict[str, Any], params: ParameterSet) -> ParameterSet:
    """``params`` with the fit's values and CVs: the set ``params.toml`` gives on top of the same base."""
    entries = {name.replace(".", "__"): _fitted_entry(est, params[name]) for name, est in summary["estimates"].items()}
    return (params.replace(**{k: v for k, (v, _, _) in entries.items()})
            .replace_cv(**{k: cv for k, (_, cv, _) in entries.items()}))


def _availability_figure(g: AvailabilityGroup, x: np.ndarray) -> tuple[str, str]:
    pred, _ = g.predict(x)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"{r['quantity']} ({r.get('source', '')[:30]})" for _, r in g.rows.iterrows()]
    pos = np.arange(len(labels))
    ax.errorbar(pos, g.observed, yerr=1.96 * g.total_sigma, fmt="o", capsize=4, label="observed (95 %, with between-study SD)")
    ax.plot(pos, pred, "s", label="fitted")
    ax.set_xticks(pos, labels, rotation=20, ha="right", fontsize=6)
    ax.set_ylabel("bioavailability [fraction]")
    ax.set_title(f"observed vs fitted: {Path(g.scenario).name}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return Path(g.scenario).name, png_base64(fig, dpi=100)


def _observed_vs_predicted(problem: Problem, x: np.ndarray) -> list[tuple[str, str]]:
    figures = []
    for g in problem.groups:
        if isinstance(g, AvailabilityGroup):
            figures.append(_availability_figure(g, x))
            continue
        values = g.function(x)
        pred = values[g.out_index, g.time_index] - np.where(g.baseline, values[g.out_index, 0], 0.0)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for o, name in enumerate(g.function.outputs):
            sel = g.out_index == o
            unit = next(v.unit for v in g.function.model.outputs if v.name == name)
            t = g.function.times[g.time_index[sel]]
            axes[0].errorbar(t, g.observed[sel], yerr=g.total_sigma[sel], fmt="o", label=f"{name} observed [{unit}]")
            axes[0].plot(t, pred[sel], "-", label=f"{name} fitted [{unit}]")
            axes[1].plot(t, (pred[sel] - g.observed[sel]) / g.total_sigma[sel], "o", label=name)
        axes[0].set_xlabel("time [h]")
        axes[0].set_ylabel("value [output unit]")
        axes[0].legend(fontsize=7)
        axes[1].axhline(0, c="grey", lw=1)
        axes[1].set_xlabel("time [h]")
        axes[1].set_ylabel("weighted residual [SD]")
        axes[0].set_title(f"observed vs fitted: {Path(g.scenario).name}", fontsize=9)
        axes[1].set_title("residuals", fontsize=9)
        fig.tight_layout()
        figures.append((Path(g.scenario).name, png_base64(fig, dpi=100)))
    return figures


def _profiles(result: FitResult) -> list[tuple[str, str]]:
    figures = []
    for name, prof in result.profiles.items():
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        rise = 2.0 * (np.asarray(prof["objective"]) - result.objective)
        ax.plot(prof["x"], rise, "o-")
        ax.axhline(3.84, ls="--", c="grey", label="95 % threshold (chi-square 1 df)")
        ax.set_xlabel(f"log({name} / file value) [-]")
        ax.set_ylabel("2 x objective rise [-]")
        ax.set_title(f"profile: {name}" + ("" if prof["identifiable"] else " (not identifiable)"), fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        figures.append((name, png_base64(fig, dpi=100)))
    return figures


def _posterior_cell(e: dict[str, Any]) -> str:
    if "posterior" not in e:
        return "-"
    return f"{_ci(e['posterior']['ci95'])} (R-hat {e['posterior']['r_hat']:.3f}, ESS {e['posterior']['ess']:.0f})"


def _page(title: str, body: str) -> str:
    """A fit report's page: its title, the disclaimer above and below the body."""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
.disclaimer{{background:#fff4e5;border-left:4px solid #e69500;padding:.6em 1em}}
table{{border-collapse:collapse;font-size:.85em}}td,th{{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>{title}</h1>
<p class="disclaimer"><strong>For research and teaching only.</strong> {html.escape(DISCLAIMER)}</p>
{body}
<p class="disclaimer">{html.escape(DISCLAIMER)}</p></body></html>"""


def vpc_section(check, reason: str = "") -> str:
    """The fit report's visual predictive check: ``check`` (a ``ketasim.vpc.VPCResult`` of the data set
    simulated with the fitted parameters) or, without one, ``reason``."""
    if check is None:
        return f"<h2>Visual predictive check</h2><p>Not made: {html.escape(reason)}</p>"
    from ..vpc import summary_html

    return ("<h2>Visual predictive check</h2><p>The event data set's design simulated with the fitted parameters "
            "(params.toml: fitted values, and each parameter's between-patient CV as written there) and the "
            "mapping's residual error; the bins are in vpc.csv.</p>" + summary_html(check))


def write_fit_report(folder: Path, problem: Problem, result: FitResult, summary: dict[str, Any],
                     vpc: str = "") -> None:
    """report.html of a pooled fit; ``vpc`` is the section from ``vpc_section``."""
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{e['prior_value']:.4g}</td><td>{e['value']:.4g}</td><td>{html.escape(e['unit'])}</td>"
        f"<td>{_ci(e['profile_ci95'])}</td><td>{_ci(e['wald_ci95'])}</td><td>{'yes' if e['identifiable'] else 'no'}</td>"
        f"<td>{_posterior_cell(e)}</td></tr>" for n, e in summary["estimates"].items())
    images = "".join(f"<figure><img src='data:image/png;base64,{png}' alt='{html.escape(t)}'><figcaption>{html.escape(t)}"
                     "</figcaption></figure>" for t, png in _observed_vs_predicted(problem, result.x) + _profiles(result))
    body = f"""\
<p>{html.escape(summary['method'])}; objective {summary['objective']:.4g} over {summary['n_observations']} observations;
converged: {summary['converged']}. Error model: {html.escape(summary['error_model'])}.
Data: {html.escape(', '.join(summary['data']))}.</p>
<table><tr><th>parameter</th><th>file value</th><th>estimate</th><th>unit</th><th>profile 95 % CI</th>
<th>Wald 95 % CI</th><th>identifiable</th><th>posterior 95 % CrI</th></tr>{rows}</table>
{images}
{vpc}
"""
    (folder / "report.html").write_text(_page("ketasim fit", body), encoding="utf-8")


def _ci(pair) -> str:
    lo, hi = pair
    return f"{'-' if lo is None else format(lo, '.4g')} to {'-' if hi is None else format(hi, '.4g')}"


def _between_patient_cv(omega2: float) -> float:
    """The coefficient of variation of a log-normal parameter whose log has variance ``omega2``
    (the parameter files' ``cv``; ``ketasim.population`` inverts it)."""
    return math.sqrt(math.expm1(omega2))


def _log_scale_interval(value: float, se: float) -> list[float | None]:
    """The 95 % Wald interval of a positive quantity on the log scale (delta method), value x/
    exp(1.96 se / value); an end that over- or underflows (a variance at zero) is None."""
    if not (math.isfinite(se) and value > 0):
        return [None, None]
    r = Z95 * se / value
    if r > 700.0:
        return [0.0, None]
    return [value * math.exp(-r), value * math.exp(r)]


def hierarchical_summary(result: HierarchicalResult, params: ParameterSet, data_files: list[str]) -> dict[str, Any]:
    """fit.json of ``ketasim fit --hierarchical``; values in each parameter's file unit. ``estimates``
    holds the typical values (the population medians), as a pooled fit's does."""
    estimates = {}
    for k, name in enumerate(result.names):
        p = params[name]
        x, se = float(result.mu[k]), float(result.mu_se[k])
        entry = {"value": _file_value(params, name, x), "unit": p.unit, "prior_value": p.value, "log_shift": x,
                 "standard_error_log": se if math.isfinite(se) else None,
                 "wald_ci95": [_file_value(params, name, x - Z95 * se), _file_value(params, name, x + Z95 * se)],
                 "identifiable": bool(math.isfinite(se)),
                 "at_bound": bool(np.isclose(x, result.lower[k]) or np.isclose(x, result.upper[k])),
                 "random": name in result.random}
        if name in result.random:
            r = result.random.index(name)
            w, w_se = float(result.omega2[r]), float(result.omega2_se[r])
            entry["between_patient"] = {
                "omega2_log": w, "omega2_log_se": w_se if math.isfinite(w_se) else None,
                "omega2_log_ci95": _log_scale_interval(w, w_se),
                "cv": _between_patient_cv(w), "shrinkage": float(result.shrinkage[r])}
        estimates[name] = entry
    s, s_se = result.residual_scale, result.residual_scale_se
    return {
        "disclaimer": DISCLAIMER, "data": data_files,
        "method": "hierarchical: log-normal random effects, Lindstrom-Bates alternation (penalised nonlinear least "
                  "squares and a linear mixed-effects step), Laplace objective",
        "error_model": "Gaussian; each row's SD times a residual scale estimated with the rest; where the table gives "
                       "error_proportional and error_additive, the SD at the individual prediction (generalised "
                       "least squares)",
        "objective_minus2_log_likelihood": result.objective, "n_observations": result.n_observations,
        "n_patients": len(result.patient_ids), "iterations": result.iterations, "converged": result.converged,
        "residual_scale": {"value": s, "standard_error": s_se if math.isfinite(s_se) else None,
                           "wald_ci95": _log_scale_interval(s, s_se)},
        "conditional_modes_unsettled": result.modes_unsettled,
        "estimates": estimates, "history": result.history,
    }


def _hierarchical_figure(patients: list[Patient], result: HierarchicalResult) -> str:
    """Observed against the population prediction (typical values) and against each patient's own."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    phi = result.phi()
    for i, p in enumerate(patients):
        for g in p.groups:
            typical, _ = g.predict(result.mu)
            own, _ = g.predict(phi[i])
            axes[0].plot(typical, g.observed, ".", color="#1f77b4", alpha=0.6)
            axes[1].plot(own, g.observed, ".", color="#d62728", alpha=0.6)
    for ax, title in zip(axes, ("population prediction (typical values)", "individual prediction (empirical Bayes)")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], "-", color="grey", lw=1)
        ax.set_xlabel("predicted [output unit]")
        ax.set_ylabel("observed [output unit]")
        ax.set_title(f"observed vs {title}", fontsize=9)
    fig.tight_layout()
    return png_base64(fig, dpi=100)


def write_hierarchical_report(folder: Path, patients: list[Patient], result: HierarchicalResult,
                              summary: dict[str, Any], individual, vpc: str = "") -> None:
    """report.html of a hierarchical fit; ``vpc`` is the section from ``vpc_section``."""

    def omega_cells(e):
        b = e.get("between_patient")
        if not b:
            return "<td>fixed</td><td>-</td><td>-</td>"
        return f"<td>{b['cv']:.3g}</td><td>{_ci(b['omega2_log_ci95'])}</td><td>{b['shrinkage']:.2f}</td>"

    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{e['prior_value']:.4g}</td><td>{e['value']:.4g}</td><td>{html.escape(e['unit'])}</td>"
        f"<td>{_ci(e['wald_ci95'])}</td>{omega_cells(e)}</tr>" for n, e in summary["estimates"].items())
    shown = individual[individual["random"]].head(400)
    ind_rows = "".join(
        f"<tr><td>{html.escape(str(r['patient']))}</td><td>{html.escape(r['parameter'])}</td><td>{r['value']:.4g}</td>"
        f"<td>{r['lower95']:.4g} to {r['upper95']:.4g}</td><td>{html.escape(r['unit'])}</td></tr>"
        for _, r in shown.iterrows())
    more = len(individual[individual["random"]]) - len(shown)
    rs = summary["residual_scale"]
    body = f"""\
<p>{html.escape(summary['method'])}. {summary['n_patients']} patients, {summary['n_observations']} observations;
-2 log L (Laplace) {summary['objective_minus2_log_likelihood']:.6g}; {summary['iterations']} iterations, converged:
{summary['converged']}. Error model: {html.escape(summary['error_model'])}; residual scale {rs['value']:.3g}
(1 when the declared error model is right). Data: {html.escape(', '.join(summary['data']))}.</p>
<h2>Population</h2>
<table><tr><th>parameter</th><th>file value</th><th>typical value</th><th>unit</th><th>Wald 95 % CI</th>
<th>between-patient CV [fraction]</th><th>log-variance 95 % CI</th><th>shrinkage [fraction]</th></tr>{rows}</table>
<figure><img src='data:image/png;base64,{_hierarchical_figure(patients, result)}' alt='observed vs predicted'>
<figcaption>Observed against predicted, in each output's unit: left at the typical values, right at each
patient's own (empirical Bayes) values.</figcaption></figure>
<h2>Individual estimates</h2>
<p>Empirical Bayes (conditional mode) with the 95 % interval of each patient's Laplace posterior, given the
population estimates; all of them in individual.csv.{f' {more} more rows there.' if more > 0 else ''}</p>
<table><tr><th>patient</th><th>parameter</th><th>value</th><th>95 % interval</th><th>unit</th></tr>{ind_rows}</table>
{vpc}
"""
    (folder / "report.html").write_text(_page("ketasim hierarchical fit", body), encoding="utf-8")
