"""A trial's primary analysis and what counts as its success: the ``[trial.success]`` table.

``[trial.success]`` names one endpoint, the arm compared with the control, and the test::

    [trial.success]
    endpoint = "madrs_change"   # "madrs_change", "response", "remission" or "relapse"
    at = "24 h"                 # one of the trial's assessments (not for relapse)
    arm = "ketamine"            # default: the first arm that is not the control
    alpha = 0.05
    sided = "one"               # "one" or "two"
    margin = 2.0                # optional: a non-inferiority margin (MADRS points, or a proportion)

The estimate is always arm minus control: the difference in mean MADRS change (Welch t; paired t
within patients in a crossover), the difference in response or remission proportions (pooled
two-proportion z test; Wald interval), or the relapse hazard ratio among responders (Cox with
Efron ties; log-rank test). Favourable means a larger fall in MADRS, a higher proportion, or a
hazard ratio below 1.

Success
    superiority, one-sided: the one-sided p-value in the favourable direction is below ``alpha``;
    superiority, two-sided: the two-sided p-value is below ``alpha`` and the estimate is favourable
    (under the null hypothesis this happens with probability ``alpha / 2``);
    non-inferiority (``margin``): the confidence bound on the unfavourable side (one-sided at
    ``alpha``, or two-sided at ``alpha``) lies within the margin.

Every function here works on replicates at once: arrays of shape (replicates, patients), NaN where a
patient is absent (not finished by the solver, not randomised, or beyond the sample size).

>>> import numpy as np
>>> rule = SuccessRule(endpoint="madrs_change", at_h=24.0, arm="k", alpha=0.05, sided="one")
>>> arm = np.array([[-10.0, -12.0, -9.0, -14.0]]); control = np.array([[-2.0, -4.0, -1.0, -3.0]])
>>> out = analyse_continuous(rule, arm, control)
>>> float(out["estimate"][0]), bool(out["success"][0])
(-8.75, True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ScenarioError
from ..units import parse_time

ENDPOINTS = ("madrs_change", "response", "remission", "relapse")
SIDES = ("one", "two")
FIELDS = ("endpoint", "at", "arm", "alpha", "sided", "margin")
ASSESSMENT_H = "assessment [h]"


@dataclass(frozen=True)
class SuccessRule:
    """A validated ``[trial.success]`` table."""

    endpoint: str
    at_h: float | None  # the assessment (None for relapse)
    arm: str
    alpha: float = 0.05
    sided: str = "two"
    margin: float | None = None  # non-inferiority margin; None: superiority

    @property
    def unit(self) -> str:
        return {"madrs_change": "points", "relapse": "hazard ratio"}.get(self.endpoint, "proportion")

    @property
    def estimate_name(self) -> str:
        return {"madrs_change": "difference in MADRS change [points]", "response": "difference in response [proportion]",
                "remission": "difference in remission [proportion]",
                "relapse": "relapse hazard ratio [ratio]"}[self.endpoint]

    def describe(self) -> dict[str, Any]:
        kind = "superiority" if self.margin is None else f"non-inferiority, margin {self.margin:g} {self.unit}"
        return {"endpoint": self.endpoint, "at [h]": self.at_h, "arm": self.arm, "alpha": self.alpha,
                "sided": self.sided, "hypothesis": kind, "estimate": self.estimate_name}


def parse_success(value: Any, arms: tuple[str, ...], control: str, assessments_h: tuple[float, ...],
                  design: str) -> SuccessRule | None:
    """``[trial.success]`` checked against the trial's arms, assessments and design (None if absent)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ScenarioError("trial.success", "must be a table")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise ScenarioError("trial.success", f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(FIELDS)}")
    endpoint = value.get("endpoint")
    if endpoint not in ENDPOINTS:
        raise ScenarioError("trial.success.endpoint", f"{endpoint!r} is not allowed; allowed: {', '.join(ENDPOINTS)}")
    others = [a for a in arms if a != control]
    if not others:
        raise ScenarioError("trial.success", "needs an arm besides the control to compare with it")
    arm = value.get("arm", others[0])
    if arm not in others:
        raise ScenarioError("trial.success.arm", f"{arm!r} is not an arm other than the control; allowed: {', '.join(others)}")
    at_h = None
    if endpoint == "relapse":
        if "at" in value:
            raise ScenarioError("trial.success.at", "relapse is analysed over the whole follow-up; leave 'at' out")
    else:
        if "at" not in value:
            raise ScenarioError("trial.success.at", f"needed for {endpoint!r}: one of the trial's assessments")
        at_h = parse_time(value["at"], "trial.success.at")
        if not any(math.isclose(at_h, t, rel_tol=1e-9, abs_tol=1e-9) for t in assessments_h):
            shown = ", ".join(f"{t:g} h" for t in assessments_h)
            raise ScenarioError("trial.success.at", f"{value['at']!r} is not an assessment; allowed: {shown}")
        at_h = min(assessments_h, key=lambda t: abs(t - at_h))
    alpha = value.get("alpha", 0.05)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 0.5:
        raise ScenarioError("trial.success.alpha", f"{alpha!r} must be a number between 0 and 0.5")
    sided = value.get("sided", "two")
    if sided not in SIDES:
        raise ScenarioError("trial.success.sided", f"{sided!r} is not allowed; allowed: {', '.join(SIDES)}")
    margin = value.get("margin")
    if margin is not None:
        if endpoint == "relapse":
            raise ScenarioError("trial.success.margin", "a non-inferiority margin is for madrs_change, response or "
                                                        "remission, not relapse")
        high = 60.0 if endpoint == "madrs_change" else 1.0
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 < margin < high:
            raise ScenarioError("trial.success.margin", f"{margin!r} must be a number between 0 and {high:g}")
        margin = float(margin)
    if design == "crossover" and endpoint != "madrs_change":
        raise ScenarioError("trial.success.endpoint", f"a crossover trial is analysed within patients; only "
                                                      f"'madrs_change' is allowed, not {endpoint!r}")
    return SuccessRule(endpoint=endpoint, at_h=at_h, arm=arm, alpha=float(alpha), sided=sided, margin=margin)


# ---------------------------------------------------------------------- decisions
def _decide(rule: SuccessRule, estimate, se, dist, better_low: bool) -> dict[str, np.ndarray]:
    """p-value, interval and success from an estimate, its standard error and the reference
    distribution (scipy frozen, one per replicate via broadcasting). ``better_low``: a lower estimate
    is favourable."""
    level = rule.alpha if rule.sided == "one" else rule.alpha / 2.0
    q = dist.ppf(1.0 - level)
    lower, upper = estimate - q * se, estimate + q * se
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule.margin is None:
            z = estimate / se
            favourable = z < 0 if better_low else z > 0
            one = dist.cdf(z) if better_low else dist.sf(z)  # one-sided p in the favourable direction
            p = one if rule.sided == "one" else 2.0 * np.minimum(dist.cdf(z), dist.sf(z))
            success = (p < rule.alpha) & favourable if rule.sided == "two" else p < rule.alpha
        else:
            # H0: arm worse than control by the margin or more
            bound = rule.margin if better_low else -rule.margin
            z = (estimate - bound) / se
            p = dist.cdf(z) if better_low else dist.sf(z)
            success = upper < bound if better_low else lower > bound
    defined = np.isfinite(estimate) & np.isfinite(se) & (se > 0)
    return {"estimate": estimate, "lower": np.where(defined, lower, np.nan), "upper": np.where(defined, upper, np.nan),
            "p_value": np.where(defined, p, np.nan), "success": defined & success}


def _counts(x: np.ndarray) -> np.ndarray:
    return np.sum(np.isfinite(x), axis=-1)


def analyse_continuous(rule: SuccessRule, arm: np.ndarray, control: np.ndarray | None,
                       paired: bool = False) -> dict[str, np.ndarray]:
    """MADRS change: Welch's t on (replicates, patients) of arm and control, or, ``paired``, a one-sample
    t on the within-patient differences ``arm`` (control None)."""
    arm = np.atleast_2d(np.asarray(arm, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        if paired:
            n1 = _counts(arm)
            estimate = np.nanmean(arm, axis=1)
            se = np.nanstd(arm, axis=1, ddof=1) / np.sqrt(n1)
            df = n1 - 1.0
            n0 = n1
        else:
            control = np.atleast_2d(np.asarray(control, dtype=float))
            n1, n0 = _counts(arm), _counts(control)
            v1, v0 = np.nanvar(arm, axis=1, ddof=1) / n1, np.nanvar(control, axis=1, ddof=1) / n0
            estimate = np.nanmean(arm, axis=1) - np.nanmean(control, axis=1)
            se = np.sqrt(v1 + v0)
            df = (v1 + v0) ** 2 / (v1 ** 2 / (n1 - 1.0) + v0 ** 2 / (n0 - 1.0))  # Welch-Satterthwaite
    out = _decide(rule, estimate, se, stats.t(np.where(np.isfinite(df) & (df > 0), df, 1.0)), better_low=True)
    return {**out, "n_arm": n1, "n_control": n0}


def analyse_proportions(rule: SuccessRule, arm: np.ndarray, control: np.ndarray) -> dict[str, np.ndarray]:
    """Response or remission (1/0, NaN absent): the risk difference, tested by the pooled z statistic
    for superiority and by the unpooled Wald statistic against the margin for non-inferiority."""
    arm, control = np.atleast_2d(np.asarray(arm, dtype=float)), np.atleast_2d(np.asarray(control, dtype=float))
    n1, n0 = _counts(arm), _counts(control)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p0 = np.nansum(arm, axis=1) / n1, np.nansum(control, axis=1) / n0
        estimate = p1 - p0
        wald = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        if rule.margin is None:
            pooled = (p1 * n1 + p0 * n0) / (n1 + n0)
            se = np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n0))
        else:
            se = wald
    out = _decide(rule, estimate, se, stats.norm, better_low=False)
    # the interval is always Wald's (the pooled SE is only the test's)
    q = stats.norm.ppf(1.0 - (rule.alpha if rule.sided == "one" else rule.alpha / 2.0))
    out["lower"], out["upper"] = estimate - q * wald, estimate + q * wald
    return {**out, "n_arm": n1, "n_control": n0}


def analyse_relapse(rule: SuccessRule, arm: tuple[np.ndarray, np.ndarray], control: tuple[np.ndarray, np.ndarray]
                    ) -> dict[str, np.ndarray]:
    """Relapse among responders, per replicate: (time, event) arrays of shape (replicates, patients),
    time NaN for a patient not at risk. Hazard ratio (Cox, Efron ties) and the log-rank p-value."""
    from . import statistics as st

    (t1, e1), (t0, e0) = arm, control
    reps = t1.shape[0]
    out = {k: np.full(reps, np.nan) for k in ("estimate", "lower", "upper", "p_value")}
    out["success"] = np.zeros(reps, dtype=bool)
    out["n_arm"], out["n_control"] = _counts(t1), _counts(t0)
    level = rule.alpha if rule.sided == "one" else rule.alpha / 2.0
    for r in range(reps):
        a, c = np.isfinite(t1[r]), np.isfinite(t0[r])
        time = np.concatenate([t1[r][a], t0[r][c]])
        event = np.concatenate([e1[r][a], e0[r][c]]).astype(bool)
        group = np.concatenate([np.ones(a.sum(), dtype=int), np.zeros(c.sum(), dtype=int)])
        if a.sum() < 1 or c.sum() < 1 or not event.any():
            continue
        with _quiet():
            hr = st.cox_hazard_ratio(time, event, group, level=1.0 - 2.0 * level)
            lr = st.logrank_test(time, event, group)
        favourable = hr["hazard_ratio"] < 1.0
        p_two = lr["p_value"]
        p = p_two if rule.sided == "two" else (p_two / 2.0 if favourable else 1.0 - p_two / 2.0)
        out["estimate"][r], out["lower"][r], out["upper"][r], out["p_value"][r] = (
            hr["hazard_ratio"], hr["lower"], hr["upper"], p)
        out["success"][r] = bool(p < rule.alpha and favourable)
    return out


@contextmanager
def _quiet():
    """Silence numpy's warnings for empty or constant groups (their results are NaN and say so)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ---------------------------------------------------------------------- from the patients table
def patient_outcomes(rule: SuccessRule, design: str, control: str, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per analysed patient of the compared arms: ``group`` ("arm" or "control"; "paired" in a
    crossover), ``stream`` and ``index`` (the patient's random stream and number: patient "s-i"), and
    ``value`` (MADRS change, or 1/0 for response and remission, or the within-patient difference), or
    ``time`` [h] and ``event`` for relapse (responders only). ``rows``: the analysed patients table."""
    columns = ["group", "stream", "index", "value", "time", "event"]
    if rule.endpoint == "relapse":
        from .tally import per_patient, relapse_data

        frames = []
        for group, name in (("arm", rule.arm), ("control", control)):
            pp = per_patient(rows[rows["arm"] == name])
            at_risk = pp[pp["at_risk"].astype(bool)]
            time, event = relapse_data(pp)
            frames.append(patient_numbers(at_risk["patient"]).assign(group=group, value=np.nan, time=time, event=event))
        return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    at = rows[np.isclose(rows[ASSESSMENT_H], rule.at_h)]
    column = {"madrs_change": "madrs_change [points]", "response": "responder", "remission": "remitter"}[rule.endpoint]
    if design == "crossover":
        a = at[at["arm"] == rule.arm].set_index("patient")[column]
        c = at[at["arm"] == control].set_index("patient")[column]
        diff = (a - c).dropna()
        return patient_numbers(pd.Series(diff.index)).assign(group="paired", value=diff.to_numpy(dtype=float), time=np.nan,
                                                  event=False)[columns]
    frames = []
    for group, name in (("arm", rule.arm), ("control", control)):
        g = at[at["arm"] == name]
        frames.append(patient_numbers(g["patient"]).assign(group=group, value=g[column].to_numpy(dtype=float), time=np.nan,
                                                event=False))
    return pd.concat(frames, ignore_index=True)[columns]


def patient_numbers(patients: pd.Series) -> pd.DataFrame:
    """Patient ids "stream-index" split into integers."""
    parts = patients.astype(str).str.split("-", n=1, expand=True)
    if parts.empty:
        return pd.DataFrame({"stream": np.empty(0, dtype=int), "index": np.empty(0, dtype=int)})
    return pd.DataFrame({"stream": parts[0].astype(int).to_numpy(), "index": parts[1].astype(int).to_numpy()})


def analyse(rule: SuccessRule, groups: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rule's test on (replicates, patients) arrays: ``groups`` holds "arm" and "control" (values,
    or (time, event) pairs for relapse) or "paired"."""
    if "paired" in groups:
        return analyse_continuous(rule, groups["paired"], None, paired=True)
    if rule.endpoint == "relapse":
        return analyse_relapse(rule, groups["arm"], groups["control"])
    if rule.endpoint == "madrs_change":
        return analyse_continuous(rule, groups["arm"], groups["control"])
    return analyse_proportions(rule, groups["arm"], groups["control"])


def primary_analysis(rule: SuccessRule, design: str, control: str, rows: pd.DataFrame) -> dict[str, Any]:
    """The whole trial's primary analysis, for its summary."""
    return primary_from_outcomes(rule, design, patient_outcomes(rule, design, control, rows))


def primary_from_outcomes(rule: SuccessRule, design: str, outcomes: pd.DataFrame) -> dict[str, Any]:
    """The primary analysis from ``patient_outcomes`` (gathered chunk by chunk, or at once)."""
    groups = {}
    for group, g in outcomes.groupby("group"):
        if rule.endpoint == "relapse":
            groups[group] = (g["time"].to_numpy(dtype=float)[None, :], g["event"].to_numpy(dtype=bool)[None, :])
        else:
            groups[group] = g["value"].to_numpy(dtype=float)[None, :]
    empty = np.full((1, 0), np.nan)
    for group in (("paired",) if design == "crossover" else ("arm", "control")):
        groups.setdefault(group, (empty, empty.astype(bool)) if rule.endpoint == "relapse" else empty)
    from .tally import _num

    out = analyse(rule, groups)
    value = {k: (bool(v[0]) if k == "success" else int(v[0]) if k.startswith("n_") else _num(v[0])) for k, v in out.items()}
    return {**rule.describe(), **value}
