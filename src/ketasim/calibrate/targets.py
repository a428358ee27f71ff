"""Checking the model against observation tables: each row's metric, computed from a simulation.

``check(table)`` simulates every scenario (and trial) of the table once and returns one row per
observation: published value, model value (in the row's unit), error, tolerance, within or not.
``ketasim calibrate`` runs it on the package's own targets.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..params import ParameterSet, load_parameters
from ..result import SimulationResult
from ..scenario import Dose, Scenario
from ..simulate import simulate
from .data import METRIC_UNITS, TRIAL_METRICS, DataError, convert, load_observations, shipped_targets


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
    if metric == "half_life":
        keep = t >= time_h
        slope = -np.polyfit(t[keep], np.log(y[keep]), 1)[0]
        return float(math.log(2) / slope), METRIC_UNITS[metric]
    raise ValueError(f"metric {metric!r} is not a simulation metric")


#: simulations and trial summaries already computed, by (scenario or trial file, parameter digest):
#: a table asks for many metrics of the same run
_RUNS: dict[tuple, object] = {}


def _simulate(scenario: Scenario, params: ParameterSet) -> SimulationResult:
    key = (scenario, params.digest())
    if key not in _RUNS:
        _RUNS[key] = simulate(scenario, params=params)
    return _RUNS[key]


def _trial_summary(trial_path: str, params: ParameterSet) -> dict:
    from ..trial import run_trial

    key = (trial_path, params.digest())
    if key not in _RUNS:
        _RUNS[key] = run_trial(trial_path, params=params).summary
    return _RUNS[key]


def trial_metric(metric: str, arm: str, time_h: float, trial_path: str, params: ParameterSet) -> tuple[float, str]:
    summary = _trial_summary(trial_path, params)
    where = f"{Path(trial_path).name}: {metric}"
    if arm not in summary["arms"]:
        raise DataError(where, f"{arm!r} is not an arm of the trial; arms: {', '.join(summary['arms'])}")
    rows = [r for r in summary["arms"][arm]["assessments"] if abs(r["assessment [h]"] - time_h) < 1e-9]
    if not rows or rows[0][metric]["estimate"] is None:
        raise DataError(where, f"the trial has no {metric} at {time_h:g} h; add that time to its assessments")
    return float(rows[0][metric]["estimate"]), METRIC_UNITS[metric]


@lru_cache(maxsize=64)
def _scenario(path: str) -> Scenario:
    """Each scenario file read and validated once, however many observations it has."""
    return Scenario.from_toml(path)


def model_value(row: pd.Series, params: ParameterSet) -> float:
    """The model's value of one observation row, in the row's unit."""
    if row["metric"] in TRIAL_METRICS:
        value, unit = trial_metric(row["metric"], row["quantity"], row["time [h]"], row["scenario_path"], params)
    else:
        scenario = _scenario(row["scenario_path"])
        value, unit = simulation_metric(row["metric"], row["quantity"], row["time [h]"], scenario, params,
                                        _simulate(scenario, params))
    return convert(value, unit, str(row["unit"]))


def check(table: str | Path | None = None, params: ParameterSet | None = None) -> pd.DataFrame:
    """Every observation of ``table`` (default: the shipped targets) against the model."""
    params = params or load_parameters()
    df = load_observations(table or shipped_targets())
    rows = []
    for _, row in df.iterrows():
        model = model_value(row, params)
        error = model - float(row["value"])
        tol = float(row.get("tolerance", math.nan))
        allowed = tol * abs(float(row["value"])) if row.get("tolerance_kind", "absolute") == "relative" else tol
        rows.append({"target": row.get("target", ""), "quantity": row["quantity"], "metric": row["metric"],
                     "time": row.get("time", ""), "unit": row["unit"], "published": float(row["value"]), "model": model,
                     "error": error, "tolerance": allowed, "within": bool(abs(error) <= allowed) if allowed == allowed else None,
                     "source": row.get("source", "")})
    return pd.DataFrame(rows)
