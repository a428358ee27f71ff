"""Non-compartmental analysis (NCA) of concentration-time profiles.

The usual exposure summary of pharmacometrics, computed from the sampled points alone (no model):

- ``Cmax``, ``Tmax`` (first time of the maximum), ``Clast``, ``Tlast`` (last positive
  concentration);
- ``AUClast`` by the linear-up / log-down trapezoidal rule (linear while concentrations rise or
  stay, logarithmic while they fall and both are positive; the rule of PKNCA and Phoenix
  WinNonlin);
- the terminal slope ``lambda_z``: log-linear least squares over the last 3 or more positive points
  after Tmax; among the choices, the largest adjusted R^2, and of those within 1e-4 of it the one
  with the most points (PKNCA's default). Reported with its points, time range and adjusted R^2;
  not estimated (NaN) when fewer than 3 points follow Tmax or the slope is not negative;
- ``AUCinf = AUClast + Clast / lambda_z``, the extrapolated share, ``t1/2 = ln 2 / lambda_z``;
- per dosing interval (``tau``): ``Ctrough`` (the concentration at the interval's end, or the
  last sample in it), ``AUCtau``, and the accumulation ratio of the last interval's AUC over the
  first's. An interval runs from one dose time to the next with both ends included, so a sample
  at a dose time is the earlier interval's trough and the later one's first value: right for
  oral, nasal and infused doses, whose concentrations are continuous there; after an IV bolus,
  sample just after the dose time.

Units follow the table: a column written ``"name [unit]"`` gives its unit, and the results carry
``ng/mL*h``-style units built from it.

>>> import numpy as np
>>> t = np.array([0.5, 1, 2, 4, 6, 8, 12])
>>> c = 100 * np.exp(-0.2 * t)                      # one compartment, k = 0.2 1/h
>>> r = profile(t, c)
>>> round(r["lambda_z"], 6), round(r["half_life"], 4)
(0.2, 3.4657)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import ScenarioError

MIN_POINTS = 3
ADJ_R2_TOLERANCE = 1e-4


class NCAError(ScenarioError):
    """A table or option NCA cannot use; the field names the column or option."""


def auc_linear_up_log_down(t: np.ndarray, c: np.ndarray) -> float | np.ndarray:
    """Area under the points (t ascending): linear where c rises or stays, log-linear where it falls
    between two positive values. ``c`` may hold one profile per row (an array of areas back)."""
    t, c = np.asarray(t, float), np.asarray(c, float)
    if t.size < 2:
        return 0.0 if c.ndim == 1 else np.zeros(c.shape[0])
    dt, c0, c1 = np.diff(t), c[..., :-1], c[..., 1:]
    falling = (c1 < c0) & (c1 > 0) & (c0 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_part = (c0 - c1) / np.log(c0 / c1) * dt
    # summed in time order, so a profile's area does not depend on how many rows come with it
    area = np.cumsum(np.where(falling, log_part, (c0 + c1) / 2 * dt), axis=-1)[..., -1]
    return float(area) if c.ndim == 1 else area


def terminal_slope(t: np.ndarray, c: np.ndarray, *, min_points: int = MIN_POINTS,
                   tolerance: float = ADJ_R2_TOLERANCE) -> dict:
    """``lambda_z`` and how it was found (see the module docstring); NaN fields when not estimable."""
    t, c = np.asarray(t, float), np.asarray(c, float)
    none = {"lambda_z": math.nan, "intercept": math.nan, "points": 0, "t_first": math.nan, "t_last": math.nan,
            "adj_r2": math.nan}
    if t.size == 0:
        return none
    after = np.arange(t.size) > int(np.argmax(c))  # the peak itself is not part of the terminal phase
    keep = after & (c > 0)
    tt, ll = t[keep], np.log(c[keep])
    if tt.size < min_points:
        return none
    # every candidate (the last n points, n >= min_points) at once, from sums over the tail: O(N), not
    # N least-squares fits; centred on the last point against cancellation
    x, y = (tt - tt[-1])[::-1], (ll - ll[-1])[::-1]
    n = np.arange(1, x.size + 1, dtype=float)
    sx, sy, sxx, sxy, syy = (np.cumsum(v) for v in (x, y, x * x, x * y, y * y))
    sxx_c, sxy_c, syy_c = sxx - sx * sx / n, sxy - sx * sy / n, syy - sy * sy / n
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sxy_c / sxx_c
        r2 = np.where(syy_c > 0, 1.0 - np.maximum(syy_c - slope * sxy_c, 0.0) / syy_c, 1.0)
        adj = 1.0 - (1.0 - r2) * (n - 1) / (n - 2)
    usable = (n >= min_points) & (slope < 0)
    if not usable.any():
        return none
    top = adj[usable].max()
    points = int(n[usable & (adj >= top - tolerance)].max())  # the most points near the best
    slope, intercept = np.polyfit(tt[-points:], ll[-points:], 1)  # the chosen fit, as a least-squares fit
    return {"lambda_z": float(-slope), "intercept": float(intercept), "points": points,
            "t_first": float(tt[-points]), "t_last": float(tt[-1]),
            "adj_r2": float(adj[points - 1])}


def profile(t: Sequence[float], c: Sequence[float], *, start: float | None = None, tau: float | None = None) -> dict:
    """NCA of one profile; times relative to ``start`` (default: the first sample); ``tau`` adds
    Ctrough and AUCtau for the interval [start, start + tau]."""
    t, c = np.asarray(t, float), np.asarray(c, float)
    order = np.argsort(t, kind="stable")
    t, c = t[order], c[order]
    start = float(t[0]) if start is None else float(start)
    if tau is not None:
        inside = (t >= start - 1e-12) & (t <= start + tau + 1e-12)
        t, c = t[inside], c[inside]
    rel = t - start
    out = {"n_samples": int(t.size)}
    if t.size == 0 or not np.isfinite(c).all():
        return {**out, "cmax": math.nan, "tmax": math.nan, "clast": math.nan, "tlast": math.nan, "auc_last": math.nan,
                **_terminal(rel, c, math.nan, math.nan)}
    k = int(np.argmax(c))
    positive = np.flatnonzero(c > 0)
    last = int(positive[-1]) if positive.size else t.size - 1
    auc_last = auc_linear_up_log_down(rel[:last + 1], c[:last + 1])
    out.update(cmax=float(c[k]), tmax=float(rel[k]), clast=float(c[last]), tlast=float(rel[last]), auc_last=auc_last)
    out.update(_terminal(rel, c, float(c[last]), auc_last))
    if tau is not None:
        at_end = np.isclose(rel, tau, atol=1e-9)
        out["ctrough"] = float(c[at_end][-1]) if at_end.any() else float(c[-1])
        out["auc_tau"] = auc_linear_up_log_down(rel, c)
    return out


def _terminal(rel, c, clast: float, auc_last: float) -> dict:
    slope = terminal_slope(rel, c)
    lam = slope["lambda_z"]
    auc_inf = auc_last + clast / lam if lam == lam and lam > 0 else math.nan
    return {"lambda_z": lam, "lambda_z_points": slope["points"], "lambda_z_t_first": slope["t_first"],
            "lambda_z_t_last": slope["t_last"], "lambda_z_adj_r2": slope["adj_r2"],
            "half_life": math.log(2) / lam if lam == lam and lam > 0 else math.nan, "auc_inf": auc_inf,
            "auc_extrapolated": (auc_inf - auc_last) / auc_inf if auc_inf == auc_inf and auc_inf > 0 else math.nan}


# ---------------------------------------------------------------------- tables
_UNIT = re.compile(r"^(.*?)\s*\[(.+)\]\s*$")


def column_unit(name: str) -> str:
    """``"pk.ketamine_plasma [ng/mL]"`` -> ``"ng/mL"``; empty when the name carries none."""
    m = _UNIT.match(name)
    return m.group(2) if m else ""


#: result column -> how its unit is built from the concentration unit C and time unit T
_RESULT_UNITS = {"cmax": "{C}", "tmax": "{T}", "clast": "{C}", "tlast": "{T}", "auc_last": "{C}*{T}",
                 "lambda_z": "1/{T}", "lambda_z_t_first": "{T}", "lambda_z_t_last": "{T}", "half_life": "{T}",
                 "auc_inf": "{C}*{T}", "auc_extrapolated": "fraction", "ctrough": "{C}", "auc_tau": "{C}*{T}",
                 "lambda_z_adj_r2": "1", "lambda_z_points": "count", "n_samples": "count", "start": "{T}",
                 "accumulation_ratio": "1"}


def concentration_columns(df: pd.DataFrame, unit: str = "ng/mL") -> list[str]:
    """The columns in ``unit`` (``"name [unit]"``): by default ng/mL, the unit of every drug and
    metabolite concentration ketasim writes."""
    return [c for c in df.columns if column_unit(str(c)) == unit]


def tables(df: pd.DataFrame, *, time: str, concentrations: Sequence[str], id_column: str | None = None,
           dose_times: Sequence[float] | None = None, tau: float | None = None) -> pd.DataFrame:
    """``table`` for several concentration columns of one unit, one below the other, with an
    ``output`` column naming each (the column without its unit)."""
    if not concentrations:
        raise NCAError("--concentration", "no concentration column given (or none found for 'all')")
    units = {column_unit(c) for c in concentrations}
    if len(units) > 1:
        raise NCAError("--concentration", f"the columns have different units ({', '.join(sorted(units))}); "
                                          "give columns of one unit")
    parts = [table(df, time=time, concentration=c, id_column=id_column, dose_times=dose_times, tau=tau)
             .assign(output=_UNIT.sub(r"\1", c)) for c in concentrations]
    out = pd.concat(parts, ignore_index=True)
    return out[["output", *[c for c in out.columns if c != "output"]]]


def table(df: pd.DataFrame, *, time: str, concentration: str, id_column: str | None = None,
          dose_times: Sequence[float] | None = None, tau: float | None = None) -> pd.DataFrame:
    """NCA of every profile in ``df`` (one per ``id_column`` value; the whole table without one),
    per dosing interval when ``dose_times`` are given (each interval from one dose to the next, the
    last of length ``tau`` if given, else to the last sample). Columns carry units."""
    for field, column in (("--time", time), ("--concentration", concentration), ("--id", id_column)):
        if column is not None and column not in df.columns:
            raise NCAError(field, f"no column {column!r}; the table has: {', '.join(map(str, df.columns))}")
    values = pd.to_numeric(df[concentration], errors="coerce")
    times = pd.to_numeric(df[time], errors="coerce")
    if values.isna().any() or times.isna().any():
        raise NCAError("--concentration" if values.isna().any() else "--time",
                       "every value must be a number (a missing or text value was found)")
    if (values < 0).any():
        raise NCAError("--concentration", "concentrations must be >= 0")
    doses = sorted(float(d) for d in dose_times) if dose_times else None
    rows = []
    data = df.assign(_t=times, _c=values)
    groups = data.groupby(id_column, sort=False) if id_column else [(None, data)]
    for key, g in groups:
        g = g.sort_values("_t", kind="stable")
        if doses is None:
            rows.append({"id": key, "interval": 1, "start": float(g["_t"].iloc[0]),
                         **profile(g["_t"].to_numpy(), g["_c"].to_numpy())})
            continue
        intervals = []
        for i, d in enumerate(doses):
            length = (doses[i + 1] - d) if i + 1 < len(doses) else (tau if tau is not None else float(g["_t"].max()) - d)
            r = profile(g["_t"].to_numpy(), g["_c"].to_numpy(), start=d, tau=length)
            intervals.append({"id": key, "interval": i + 1, "start": d, **r})
        first, last = intervals[0].get("auc_tau"), intervals[-1].get("auc_tau")
        for r in intervals:
            r["accumulation_ratio"] = last / first if first and len(intervals) > 1 else math.nan
        rows.extend(intervals)
    out = pd.DataFrame(rows)
    if id_column is None:
        out = out.drop(columns="id")
    c_unit, t_unit = column_unit(concentration) or "C", column_unit(time) or "T"
    return out.rename(columns={k: f"{k} [{u.format(C=c_unit, T=t_unit)}]" for k, u in _RESULT_UNITS.items()
                               if k in out.columns})
