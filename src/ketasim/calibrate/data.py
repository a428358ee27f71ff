"""Observation tables: what was measured, when, under which scenario, and how precisely.

A table (CSV or Parquet) has one row per observation with the columns

``scenario``
    the scenario TOML (or, for population metrics, the trial TOML) that produced it, relative to
    the table's folder;
``quantity``
    an output name such as ``pk.s_ketamine_plasma`` or ``clinical.madrs`` (``a/b`` for a ratio of
    two outputs; the arm name for trial metrics);
``time``
    when, as text with a unit (``"40 min"``, ``"24 h"``); empty for metrics over the whole run;
``value``, ``unit``
    the observation in any unit convertible to the output's unit;
``metric`` (optional, default ``at``)
    of a simulated scenario: ``at``, ``change`` (from the value at 0), ``relative_change``, ``peak``,
    ``peak_time``, ``bioavailability`` (AUC against the same amount given IV), ``clearance``
    (dose / AUC), ``half_life`` (log-linear from ``time`` to the end), ``auc_ratio`` (AUC to infinity
    of ``a`` over that of ``b``, for a ``quantity`` written ``a/b``); of a trial arm (``quantity``
    is the arm): ``response_rate``, ``remission_rate``, ``mean_change`` (rated MADRS change from
    baseline), ``fraction_of_change`` (mean change at ``time`` over that at ``reference_time``),
    ``difference_in_change`` (against the arm named in ``control``), ``cadss_peak_mean`` (mean
    session peak of the first session), ``median_relapse_after`` (Kaplan-Meier median time from
    ``time`` to relapse, among the responders at the first assessment after it);
``sd``, ``n`` (optional)
    spread and size of summary data: the observation's standard error is ``sd / sqrt(n)``;
``patient`` (optional)
    an id for individual data (a hierarchical fit, ``ketasim fit --hierarchical``, needs it);
``error_proportional``, ``error_additive`` (optional)
    a residual error model, ``sd = sqrt((p prediction)^2 + a^2)`` with ``a`` in the row's unit, which
    a hierarchical fit evaluates at each patient's prediction (otherwise ``sd`` stands);
``reference_time``, ``control`` (optional)
    what ``fraction_of_change`` and ``difference_in_change`` compare with;
``target``, ``tolerance``, ``tolerance_kind``, ``low``, ``high``, ``tolerance_basis``, ``source`` (optional)
    for calibration checks: the target id, the accepted error (``relative`` or ``absolute``, or an
    accepted interval ``low``..``high`` in the row's unit where the source gives one, e.g. a
    confidence interval), where that tolerance comes from, and the citation.

The package's own calibration targets are shipped in this form (``ketasim/data/targets.csv``).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import ScenarioError
from ..units import parse_time, registry

TRIAL_METRICS = ("response_rate", "remission_rate", "mean_change", "sd_change", "fraction_of_change",
                 "difference_in_change", "cadss_peak_mean", "median_relapse_after")
METRICS = ("at", "change", "relative_change", "peak", "peak_time", "bioavailability", "clearance", "half_life",
           "auc_ratio", *TRIAL_METRICS)
TIMED_METRICS = ("at", "change", "relative_change", "response_rate", "remission_rate", "half_life", "mean_change",
                 "sd_change", "fraction_of_change", "difference_in_change", "median_relapse_after")
REQUIRED = ("scenario", "quantity", "value", "unit")
#: unit of each metric that does not carry the output's unit
METRIC_UNITS = {"peak_time": "h", "bioavailability": "dimensionless", "clearance": "L/h", "half_life": "h",
                "auc_ratio": "dimensionless",
                "relative_change": "dimensionless", "response_rate": "dimensionless", "remission_rate": "dimensionless",
                "mean_change": "MADRS points", "sd_change": "MADRS points", "fraction_of_change": "dimensionless",
                "difference_in_change": "MADRS points", "cadss_peak_mean": "points", "median_relapse_after": "h"}


class DataError(ScenarioError):
    """An observation table is malformed; the field names the file, row and column."""


def shipped_targets() -> Path:
    """The package's own calibration targets as an observation table."""
    return Path(str(resources.files("ketasim").joinpath("data/targets.csv")))


def shipped_oral_peaks() -> Path:
    """The human oral peaks (Cmax, Tmax) to which ``pk.ka_oral`` is fitted, as an observation table."""
    return Path(str(resources.files("ketasim").joinpath("data/pk_absorption.csv")))


def shipped_validation() -> Path:
    """The package's validation cases (predicted, never fitted) as an observation table."""
    return Path(str(resources.files("ketasim").joinpath("data/validation.csv")))


def observations_from_dataset(dataset, folder: str | Path) -> Path:
    """An event data set's observations (``ketasim.dataset``) as an observation table in ``folder``,
    next to one scenario file per ID: each DV row an ``at`` row of its ID, with its standard
    deviation from the mapping's residual error model at the observed value,
    sd = sqrt((p DV)^2 + a^2), and the model itself (``error_proportional`` p, ``error_additive`` a,
    which a hierarchical fit evaluates at the predictions instead). Returns the table's path
    (``load_observations`` reads it)."""
    from ..model.system import default_model
    from ..scenario import scenario_toml

    folder = Path(folder)
    units = {v.name: v.unit for v in default_model().outputs}
    errors = dataset.mapping["error"]
    rows = []
    for k, p in enumerate(dataset.patients):
        name = f"id_{k + 1}.toml"
        (folder / name).write_text(scenario_toml(p.scenario), encoding="utf-8")
        for (_, o), t in zip(p.observations.iterrows(), p.simulation_times):
            if not math.isfinite(o["dv"]):
                continue
            if o["output"] not in errors:
                raise DataError("--mapping", f"no residual error model in [error] for {o['output']} (row {o['row']})")
            e = errors[o["output"]]
            sd = math.hypot(e["proportional"] * o["dv"], e["additive"])
            if not sd > 0:
                raise DataError("--mapping", f"the error model of {o['output']} gives sd 0 at row {o['row']}")
            rows.append({"scenario": name, "quantity": o["output"], "time": f"{float(t)!r} h", "value": o["dv"],
                         "unit": units[o["output"]], "sd": sd, "patient": p.id,
                         "error_proportional": e["proportional"], "error_additive": e["additive"]})
    if not rows:
        raise DataError(dataset.source, "no observation rows with a DV to fit")
    path = folder / "observations.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def load_observations(path: str | Path) -> pd.DataFrame:
    """Read and check a table; adds ``scenario_path`` (absolute) and ``time [h]`` columns."""
    path = Path(path)
    try:
        df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype={"time": str})
    except FileNotFoundError:
        raise DataError(str(path), "no such file") from None
    except Exception as exc:  # pandas raises many parser errors; all mean the file is not a table
        raise DataError(str(path), f"cannot read the table: {exc}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(str(path), f"missing column(s) {', '.join(missing)}; needed: {', '.join(REQUIRED)}")
    if df.empty:
        raise DataError(str(path), "the table has no rows")
    df = df.copy()
    if "metric" not in df.columns:
        df["metric"] = "at"
    df["metric"] = df["metric"].fillna("at")
    times, scenarios = [], []
    for i, row in df.iterrows():
        where = f"{path.name} row {i + 2}"
        if row["metric"] not in METRICS:
            raise DataError(f"{where}: metric", f"{row['metric']!r} is not allowed; allowed: {', '.join(METRICS)}")
        if not isinstance(row["value"], (int, float)) or not math.isfinite(float(row["value"])):
            raise DataError(f"{where}: value", f"{row['value']!r} must be a finite number")
        time = row.get("time")
        if row["metric"] in TIMED_METRICS and (not isinstance(time, str) or not time.strip()):
            raise DataError(f"{where}: time", f"needed for metric {row['metric']!r} (e.g. \"24 h\")")
        times.append(parse_time(time, f"{where}: time") if isinstance(time, str) and time.strip() else math.nan)
        _check_comparison(row, where)
        if row["metric"] == "auc_ratio" and "/" not in str(row["quantity"]):
            raise DataError(f"{where}: quantity", f"{row['quantity']!r}: metric 'auc_ratio' needs two outputs written a/b")
        _check_interval(row, where)
        scenario = (path.parent / str(row["scenario"])).resolve()
        if not scenario.is_file():
            raise DataError(f"{where}: scenario", f"{row['scenario']!r} not found next to the table")
        scenarios.append(str(scenario))
        _check_unit(str(row["unit"]), f"{where}: unit")
        if row["unit"] in DIFFERENCE_ONLY_UNITS and row["metric"] not in DIFFERENCE_METRICS:
            raise DataError(f"{where}: unit", f"{row['unit']!r} converts differences between two ratings only "
                                              f"(metrics {', '.join(DIFFERENCE_METRICS)}), not {row['metric']!r}")
        for column, low in (("sd", 0.0), ("n", 1.0)):
            v = row.get(column)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                if not isinstance(v, (int, float)) or not math.isfinite(v) or v < low or (column == "sd" and v == 0):
                    need = "> 0" if column == "sd" else ">= 1"
                    raise DataError(f"{where}: {column}", f"{v!r} must be a number {need}")
    df["time [h]"] = times
    df["reference_time [h]"] = [parse_time(t, f"{path.name} row {i + 2}: reference_time") if _given(t) else math.nan
                                for i, t in enumerate(df.get("reference_time", [math.nan] * len(df)))]
    df["scenario_path"] = scenarios
    return df


def _given(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""


def _check_comparison(row, where: str) -> None:
    """``fraction_of_change`` needs a reference time and ``difference_in_change`` a control arm."""
    needs = {"fraction_of_change": "reference_time", "difference_in_change": "control"}.get(row["metric"])
    if needs and not _given(row.get(needs)):
        raise DataError(f"{where}: {needs}", f"needed for metric {row['metric']!r}")


def _check_interval(row, where: str) -> None:
    """``low`` and ``high``, where given, are numbers with low <= value <= high."""
    low, high = row.get("low"), row.get("high")
    if not (_given(low) or _given(high)):
        return
    if not (_given(low) and _given(high)):
        raise DataError(f"{where}: low", "give both low and high (the accepted interval), or neither")
    for column, v in (("low", low), ("high", high)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(f"{where}: {column}", f"{v!r} must be a finite number")
    if not low <= float(row["value"]) <= high:
        raise DataError(f"{where}: low", f"the interval {low:g}..{high:g} must contain the value {row['value']:g}")


#: MADRS points per HAM-D-17 point (Leucht S et al. J Affect Disord 2018;226:326)
MADRS_PER_HAMD17 = 1.3
#: HAM-D-24 points per HAM-D-17 point in a change: the slope of the IRT score correspondence between
#: the two versions (Rush AJ et al. Biol Psychiatry 2003;54:573 and Trivedi MH et al. Psychol Med
#: 2004;34:73, as tabulated at ids-qids.org, "Interpretation", Table 3) over HAM-D-17 totals 7-29
#: (least squares through the table's midpoints: 1.45, intercept -1.8)
HAMD24_PER_HAMD17 = 1.45

#: units whose factor is a linking's slope: right for a change or its spread, wrong for a level
DIFFERENCE_ONLY_UNITS = ("HAM-D-24 points",)
DIFFERENCE_METRICS = ("mean_change", "sd_change", "difference_in_change")

#: units pint does not know, in families of mutually convertible units (factor to the family's base)
UNIT_FAMILIES = (
    {"fraction": 1.0, "dimensionless": 1.0, "ratio": 1.0, "%": 0.01},
    {"fold baseline": 1.0, "% baseline": 0.01},
    {"fraction healthy": 1.0},
    # MADRS points; HAM-D-17 points by the equipercentile linking of Leucht 2018 (the model's
    # clinical.madrs_per_hamd, which a test keeps equal to this factor); HAM-D-24 points for changes
    # and spreads (the linking's slope, so for differences between two ratings, not for levels)
    {"points": 1.0, "MADRS points": 1.0, "HAM-D points": MADRS_PER_HAMD17,
     "HAM-D-24 points": MADRS_PER_HAMD17 / HAMD24_PER_HAMD17},
    {"r": 1.0},
    {"z": 1.0},
)


def _family(unit: str) -> dict[str, float] | None:
    return next((f for f in UNIT_FAMILIES if unit in f), None)


def _check_unit(unit: str, where: str) -> None:
    if _family(unit) is not None:
        return
    try:
        registry().parse_units(unit)
    except Exception:  # pint raises several types for unknown units
        raise DataError(where, f"unknown unit {unit!r}") from None


def convert(value: float, unit: str, to: str, where: str = "unit") -> float:
    """``value`` in ``unit`` expressed in ``to``; incompatible units raise ``DataError``."""
    if unit == to:
        return float(value)
    a, b = _family(unit), _family(to)
    if a is not None or b is not None:
        if a is not b:
            raise DataError(where, f"{unit!r} cannot be converted to the output's unit {to!r}")
        return float(value) * a[unit] / b[to]
    ureg = registry()
    try:
        return float(ureg.Quantity(value, ureg.parse_units(unit)).to(ureg.parse_units(to)).magnitude)
    except Exception:  # pint: dimensionality errors and unknown units
        raise DataError(where, f"{unit!r} cannot be converted to the output's unit {to!r}") from None
