"""Checking the model against observation tables: each row's metric, computed from a simulation.

``check(table)`` simulates every scenario (and trial) of the table once and returns one row per
observation: published value, model value (in the row's unit), error, tolerance, within or not.
``ketasim calibrate`` runs it on the package's own targets.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..params import ParameterSet, load_parameters
from ..result import SimulationResult
from ..scenario import Dose, Scenario
from ..simulate import simulate
from .data import (
    METRIC_UNITS,
    TRIAL_METRICS,
    DataError,
    convert,
    load_observations,
    shipped_oral_peaks,
    shipped_targets,
    shipped_validation,
)


def auc_to_infinity(times: np.ndarray, values: np.ndarray, tail_points: int = 60) -> float:
    """Trapezoid AUC plus the log-linear tail (the usual non-compartmental extrapolation)."""
    area = float(np.sum(np.diff(times) * (values[1:] + values[:-1]) / 2))
    tail_t, tail_y = times[-tail_points:], values[-tail_points:]
    slope = -np.polyfit(tail_t, np.log(tail_y), 1)[0]
    return area + float(values[-1] / slope) if slope > 0 else area


def _series(result: SimulationResult, quantity: str) -> tuple[np.ndarray, str]:
    if "/" in quantity:
        a, b = quantity.split("/", 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return result[a] / result[b], "ratio"
    return result[quantity], result.unit(quantity)


def _iv_reference(scenario: Scenario) -> Scenario:
    """The same amounts as IV boluses: the denominator of a bioavailability."""
    return replace(scenario, doses=tuple(Dose(d.drug, "iv", d.amount, d.amount_unit, d.times_h) for d in scenario.doses))


def _dose_mg(scenario: Scenario) -> float:
    return sum(d.amount_mg(scenario.patient.weight_kg) * len(d.times_h) for d in scenario.doses)


def simulation_metric(metric: str, quantity: str, time_h: float, scenario: Scenario, params: ParameterSet,
                      result: SimulationResult) -> tuple[float, str]:
    """(value, unit) of ``metric`` of ``quantity`` in one simulated scenario."""
    y, unit = _series(result, quantity)
    t = result.times_h
    if metric == "at":
        return float(np.interp(time_h, t, y)), unit
    if metric == "change":
        return float(np.interp(time_h, t, y) - y[0]), unit
    if metric == "relative_change":
        return float(np.interp(time_h, t, y) / y[0] - 1.0), METRIC_UNITS[metric]
    if metric == "peak":
        return float(np.max(y)), unit
    if metric == "peak_time":
        return float(t[int(np.argmax(y))]), METRIC_UNITS[metric]
    if metric == "bioavailability":
        reference = _simulate(_iv_reference(scenario), params)
        return auc_to_infinity(t, y) / auc_to_infinity(reference.times_h, _series(reference, quantity)[0]), \
            METRIC_UNITS[metric]
    if metric == "clearance":  # dose [mg] / AUC [ng/mL h] = 1000 L/h
        return _dose_mg(scenario) * 1000.0 / auc_to_infinity(t, y), METRIC_UNITS[metric]
    if metric == "auc_ratio":  # exposure of one output relative to another (metabolite : parent)
        numerator, denominator = quantity.split("/", 1)
        return auc_to_infinity(t, result[numerator]) / auc_to_infinity(t, result[denominator]), METRIC_UNITS[metric]
    if metric == "half_life":
        keep = t >= time_h
        slope = -np.polyfit(t[keep], np.log(y[keep]), 1)[0]
        return float(math.log(2) / slope), METRIC_UNITS[metric]
    raise ValueError(f"metric {metric!r} is not a simulation metric")


#: simulations and trial summaries already computed, by (scenario or trial file, parameter digest):
#: a table asks for many metrics of the same run
_RUNS: dict[tuple, object] = {}


#: output step at which an oral peak is read, whatever the scenario's own (h)
_PEAK_GRID_H = 0.5 / 60.0


def _interpolated_peak(times: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Peak time and height of the parabola through the largest sample and its neighbours, so that
    a fit on the peak does not move in steps of the output grid (``simulation_metric`` reads the
    grid's own maximum)."""
    i = int(np.argmax(values))
    if i == 0 or i == len(values) - 1:
        return float(times[i]), float(values[i])
    (t0, t1, t2), (y0, y1, y2) = times[i - 1:i + 2], values[i - 1:i + 2]
    curvature = (y2 - y1) / (t2 - t1) - (y1 - y0) / (t1 - t0)
    if curvature >= 0.0:
        return float(t1), float(y1)
    # vertex of the parabola through the three points (equal spacing)
    h = t1 - t0
    shift = 0.5 * h * (y0 - y2) / (y0 - 2.0 * y1 + y2)
    height = y1 - 0.25 * (y0 - y2) * shift / h
    return float(t1 + shift), float(height)


def oral_peak_errors(params: ParameterSet, table: str | Path | None = None) -> pd.DataFrame:
    """Each ``peak`` or ``peak_time`` row of an observation table (default: the shipped oral peaks)
    against the model, in standard errors of its published mean (SD / sqrt(n)): the residuals to
    which ``fit_oral_absorption_rate`` fits ``pk.ka_oral``."""
    path = Path(table or shipped_oral_peaks())
    rows = load_observations(path)
    errors = []
    for i, row in rows.iterrows():
        if row["metric"] not in ("peak", "peak_time"):
            raise DataError(f"{path.name} row {i + 2}: metric", f"{row['metric']!r}; allowed: peak, peak_time")
        scenario = _scenario(row["scenario_path"])
        # not through the run cache: a fit asks once for each of many parameter sets
        result = simulate(replace(scenario, output_every_h=min(scenario.output_every_h, _PEAK_GRID_H)), params=params)
        series, unit = _series(result, row["quantity"])
        peak_time, peak = _interpolated_peak(result.times_h, series)
        model, unit = (peak, unit) if row["metric"] == "peak" else (peak_time, METRIC_UNITS["peak_time"])
        model = convert(model, unit, str(row["unit"]), f"{path.name} row {i + 2}: unit")
        errors.append((model - row["value"]) / (row["sd"] / math.sqrt(row["n"])))
    return rows.assign(error_se=errors)


def fit_oral_absorption_rate(params: ParameterSet, table: str | Path | None = None) -> float:
    """``pk.ka_oral`` (1/h) minimising the squared oral-peak errors within its declared range."""
    from scipy.optimize import minimize_scalar

    def cost(ka: float) -> float:
        return float((oral_peak_errors(params.replace(pk__ka_oral=ka), table)["error_se"] ** 2).sum())

    low, high = params["pk.ka_oral"].range
    return float(minimize_scalar(cost, bounds=(low, high), method="bounded", options={"xatol": 1e-3}).x)


def _simulate(scenario: Scenario, params: ParameterSet) -> SimulationResult:
    key = (scenario, params.digest())
    if key not in _RUNS:
        _RUNS[key] = simulate(scenario, params=params)
    return _RUNS[key]


def _trial(trial_path: str, params: ParameterSet):
    from ..trial import run_trial

    key = (trial_path, params.digest())
    if key not in _RUNS:
        _RUNS[key] = run_trial(trial_path, params=params)
    return _RUNS[key]


def _assessment(summary: dict, arm: str, time_h: float, where: str) -> dict:
    if arm not in summary["arms"]:
        raise DataError(where, f"{arm!r} is not an arm of the trial; arms: {', '.join(summary['arms'])}")
    rows = [r for r in summary["arms"][arm]["assessments"] if abs(r["assessment [h]"] - time_h) < 1e-9]
    if not rows:
        raise DataError(where, f"the trial has no assessment at {time_h:g} h; add that time to its assessments")
    return rows[0]


def _change(summary: dict, arm: str, time_h: float, where: str, moment: str = "mean") -> float:
    """The arm's mean (or between-patient SD, ``moment="sd"``) of the MADRS change at ``time_h``."""
    value = _assessment(summary, arm, time_h, where)["madrs_change [points]"][moment]
    if value is None:
        raise DataError(where, f"no patient of {arm!r} was analysed at {time_h:g} h")
    return float(value)


def median_relapse_after(patients: pd.DataFrame, spec, arm: str, time_h: float) -> float:
    """Kaplan-Meier median time (h) from ``time_h`` to relapse among the patients responding at the
    first assessment after it; relapse by the trial's own rule (``relapse_course``: ``consecutive``
    assessments at or above the threshold), censored at the last assessment. ``inf`` when not reached."""
    from ..trial.run import relapse_course
    from ..trial.statistics import km_median
    from ..trial.summary import analysed

    ep = spec.endpoints
    rows = analysed(patients)
    rows = rows[(rows["arm"] == arm) & (rows["assessment [h]"] > time_h + 1e-9)]
    madrs = rows.pivot(index=["patient", "period"], columns="assessment [h]", values="madrs [points]")
    base = rows.groupby(["patient", "period"])["baseline_madrs [points]"].first().loc[madrs.index].to_numpy()
    times = madrs.columns.to_numpy(dtype=float)
    madrs = madrs.to_numpy()
    # at risk: responding at the first assessment after time_h (the end of treatment), not later
    responder = np.zeros_like(madrs, dtype=bool)
    responder[:, 0] = madrs[:, 0] <= (1.0 - ep.response_fall) * base
    _, relapse_time, _, at_risk = relapse_course(madrs, responder, times, ep.relapse_at_least,
                                                 ep.relapse_consecutive, np.zeros(len(madrs), dtype=bool))
    event = ~np.isnan(relapse_time[at_risk])
    time = np.where(event, relapse_time[at_risk], times[-1]) - time_h
    return float(km_median(time, event)["median"])


def trial_metric(row: pd.Series, params: ParameterSet) -> tuple[float, str]:
    """(value, unit) of a trial metric for one observation row (``quantity`` is the arm)."""
    metric, arm, time_h, trial_path = row["metric"], row["quantity"], row["time [h]"], row["scenario_path"]
    result = _trial(trial_path, params)
    summary = result.summary
    where = f"{Path(trial_path).name}: {metric}"
    unit = METRIC_UNITS[metric]
    if metric in ("response_rate", "remission_rate"):
        estimate = _assessment(summary, arm, time_h, where)[metric]["estimate"]
        if estimate is None:
            raise DataError(where, f"no patient of {arm!r} was analysed at {time_h:g} h")
        return float(estimate), unit
    if metric == "mean_change":
        return _change(summary, arm, time_h, where), unit
    if metric == "sd_change":
        return _change(summary, arm, time_h, where, "sd"), unit
    if metric == "fraction_of_change":
        return _change(summary, arm, time_h, where) / _change(summary, arm, row["reference_time [h]"], where), unit
    if metric == "difference_in_change":
        return _change(summary, arm, time_h, where) - _change(summary, str(row["control"]), time_h, where), unit
    if arm not in summary["arms"]:
        raise DataError(where, f"{arm!r} is not an arm of the trial; arms: {', '.join(summary['arms'])}")
    if metric == "cadss_peak_mean":
        return float(summary["arms"][arm]["side_effects"]["cadss_peak [points]"]["mean"]), unit
    if metric == "median_relapse_after":
        return median_relapse_after(result.patients, result.spec, arm, time_h), unit
    raise ValueError(f"metric {metric!r} is not a trial metric")


@lru_cache(maxsize=64)
def _scenario(path: str) -> Scenario:
    """Each scenario file read and validated once, however many observations it has."""
    return Scenario.from_toml(path)


def model_value(row: pd.Series, params: ParameterSet) -> float:
    """The model's value of one observation row, in the row's unit."""
    if row["metric"] in TRIAL_METRICS:
        value, unit = trial_metric(row, params)
    else:
        scenario = _scenario(row["scenario_path"])
        value, unit = simulation_metric(row["metric"], row["quantity"], row["time [h]"], scenario, params,
                                        _simulate(scenario, params))
    return convert(value, unit, str(row["unit"]))


def check(table: str | Path | None = None, params: ParameterSet | None = None, *,
          only: Collection[str] | None = None) -> pd.DataFrame:
    """Every observation of ``table`` (default: the shipped targets) against the model; with ``only``,
    the rows of those targets (ids of the ``target`` or ``case`` column) alone, so that checking a
    few rows does not run every trial of the table.

    >>> from ketasim.calibrate import check
    >>> table = check(only=["kamp2020_racemic_cl_v"])
    >>> table[["target", "metric", "unit", "within"]].to_dict("records")
    [{'target': 'kamp2020_racemic_cl_v', 'metric': 'clearance', 'unit': 'L/h', 'within': True}]
    """
    params = params or load_parameters()
    df = load_observations(table or shipped_targets())
    if only is not None:
        df = _only(df, only)
    rows = []
    for _, row in df.iterrows():
        model = model_value(row, params)
        value = float(row["value"])
        low, high = accepted_interval(row)
        rows.append({"target": row.get("target", row.get("case", "")), "quantity": row["quantity"], "metric": row["metric"],
                     "time": row.get("time", ""), "unit": row["unit"], "published": value, "model": model,
                     "error": model - value, "low": low, "high": high,
                     "within": bool(low <= model <= high) if low == low else None,
                     "tolerance_basis": row.get("tolerance_basis", row.get("accept", "")), "source": row.get("source", "")})
    return pd.DataFrame(rows)


def _only(df: pd.DataFrame, ids: Collection[str]) -> pd.DataFrame:
    """The rows of the targets (or cases) named in ``ids``; an unknown id, or none, is refused naming the
    argument ``only`` and the ids the table has."""
    ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
    column = "target" if "target" in df.columns else "case"
    known = df[column].astype(str) if column in df.columns else pd.Series([""] * len(df), index=df.index)
    allowed = ", ".join(dict.fromkeys(known))
    if not ids:
        raise DataError("only", f"no {column} named; allowed: {allowed}")
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise DataError("only", f"unknown {column}(s) {', '.join(unknown)}; allowed: {allowed}")
    return df[known.isin(ids)]


def validate(params: ParameterSet | None = None, *, only: Collection[str] | None = None) -> pd.DataFrame:
    """Every shipped validation case (``ketasim/data/validation.csv``: published results the model
    predicts and was never fitted to) against the model, or with ``only`` the rows of those cases;
    columns as ``check``, with ``case`` for ``target``."""
    return (check(shipped_validation(), params, only=only)
            .rename(columns={"target": "case", "tolerance_basis": "accept"}))


def accepted_interval(row: pd.Series) -> tuple[float, float]:
    """The interval a model value must fall in: ``low``..``high`` where given, else the value plus
    or minus the (absolute or relative) tolerance; NaN bounds without a tolerance."""
    value = float(row["value"])
    low, high = row.get("low"), row.get("high")
    if low is not None and low == low and high is not None and high == high:
        return float(low), float(high)
    tol = float(row.get("tolerance", math.nan))
    allowed = tol * abs(value) if row.get("tolerance_kind", "absolute") == "relative" else tol
    return value - allowed, value + allowed
