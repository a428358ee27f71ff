"""Regimen optimisation under safety caps: ``ketasim optimise SPEC.toml`` (``ketasim.optimise``).

A spec declares a regimen space (one drug line whose amount, interval and number of doses, and
optionally the start of a course of psychotherapy, lie within bounds), an endpoint of the virtual
population to maximise (response or remission rate at a time, or the mean MADRS fall), caps on
safety and burden, and the label regimen to compare with. Every candidate regimen is a one-arm
virtual trial of the same patients (the spec's seed and population: common random numbers), so two
regimens differ only by what they give. Each trial is assessed 4 h after every session, where the
session's CADSS and blood-pressure peaks are read, and at the endpoint's time. The endpoint is read
from each patient's model MADRS, not a rating: the rater's error is drawn over the assessments,
which differ between regimens, and would make two regimens differ by noise.

Caps (``[caps]``, each optional): ``cadss_peak`` (the patients' mean highest session CADSS peak,
points), ``sbp_rise_fraction`` (the share of patients with a session SBP rise >= 40 mmHg),
``not_ready_at_2_h_fraction`` (the share of patients not meeting the discharge criteria of
``trial/discharge.py`` 2 h after a session, the label's observation time), ``drug_liking_peak`` (the
patients' mean highest session peak of drug liking, points on the bipolar 0-100 scale of abuse-potential
studies with 50 neutral: a cap on abuse liability, ``model/clinical.py``), ``cumulative_amount``
(the mean total amount per patient, e.g. "700 mg"), ``clinic_visits``
(dosing sessions by a supervised route plus therapy sessions), ``beyond_label_frequency_fraction``
and ``daily_use_fraction`` (the share of patients each exposure flag of ``trial/ketamine_use.py`` marks:
more dosing days in a week than the esketamine label's schedule, or a dose every day of a week).

Search (``method``): ``sobol`` evaluates ``budget`` regimens spread over the space by a scrambled
Sobol sequence (the label among them when it lies in the space); ``differential-evolution`` runs
SciPy's derivative-free search on the same evaluations with the caps as penalties, starting from the
label. A response rate over a finite population is a step function of the regimen, so no gradient is
used. The best regimen is the feasible one with the highest endpoint (ties: the smaller amount);
the report shows, for each cap, the trade-off front between the endpoint and that cap.

>>> spec = OptimiseSpec.from_dict({
...     "optimise": {"name": "demo", "seed": 1, "endpoint": "response", "at": "1 w", "budget": 3},
...     "population": {"n": 4, "preset": "treatment-resistant"},
...     "regimen": {"drug": "esketamine", "route": "intranasal", "amount": ["28 mg", "84 mg"],
...                 "every": "3.5 d", "count": [1, 2]},
...     "caps": {"cadss_peak": 40}})
>>> [name for name, *_ in spec.space.free()]
['amount', 'count']
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..dosing import SUPERVISED_ROUTES, total_amount_mg
from ..errors import ScenarioError
from ..model.clinical import DRUG_LIKING_NEUTRAL
from ..model.mechanisms import active
from ..params import ParameterSet, load_parameters
from ..population import PopulationSpec
from ..result import DISCLAIMER
from ..scenario import DRUG_ROUTES, GASES, INERT_DRUGS, MAX_AMOUNT, THERAPIES, Scenario, read_toml
from ..units import parse_quantity, parse_time
from .design import _known, _table, name_and_seed
from .discharge import NOT_READY_KEY, OBSERVATION_H
from .ketamine_use import USE_FLAGS
from .rules import SESSION_WINDOW_H
from .tally import LIKING

ENDPOINTS = ("response", "remission", "madrs_change")
METHODS = ("sobol", "differential-evolution")
NOT_READY_CAP = f"{NOT_READY_KEY}_fraction"  # not_ready_at_2_h_fraction
#: the exposure flags of trial/ketamine_use.py, capped as the share of patients flagged
FLAG_CAPS = {f"{flag}_fraction": flag for flag in USE_FLAGS}
CAPS = ("cadss_peak", "sbp_rise_fraction", NOT_READY_CAP, "drug_liking_peak", "cumulative_amount", "clinic_visits",
        *FLAG_CAPS)
#: each cap's metric column in the candidates table
CAP_COLUMNS = {"cadss_peak": "cadss_peak [points]", "sbp_rise_fraction": "sbp_rise_at_least_40_mmHg [fraction]",
               NOT_READY_CAP: f"{NOT_READY_KEY} [fraction]", "drug_liking_peak": LIKING,
               "cumulative_amount": "cumulative_amount [mg]", "clinic_visits": "clinic_visits [count]",
               **{cap: f"{flag} [fraction]" for cap, flag in FLAG_CAPS.items()}}
#: each number cap's allowed values (low, high); the rest are fractions, 0..1. The low end is the
#: value without any drug effect, from which a cap's excess is measured (drug liking: its neutral point)
CAP_RANGES = {"cadss_peak": (0.0, 92.0), "drug_liking_peak": (DRUG_LIKING_NEUTRAL, 100.0),
              "clinic_visits": (0.0, 10_000.0)}
MAX_BUDGET = 2000
SBP_RISE_MMHG = 40.0  # the label's rise of note (the trials' default)
_AMOUNT_UNITS = {"per_weight": "mg/kg", "absolute": "mg"}
_FIELDS = {"optimise": ("name", "seed", "endpoint", "at", "budget", "method"),
           "regimen": ("drug", "route", "amount", "amount_step", "every", "every_step", "count", "start", "duration",
                       "therapy"),
           "therapy": ("kind", "every", "count", "start")}


def _bounds(value: Any, where: str, parse: Callable[[Any, str], float]) -> tuple[float, float]:
    """A fixed value, or [low, high]."""
    if isinstance(value, list):
        if len(value) != 2:
            raise ScenarioError(where, f"{value!r}: give one value or [low, high]")
        low, high = parse(value[0], f"{where}[0]"), parse(value[1], f"{where}[1]")
        if not low <= high:
            raise ScenarioError(where, f"{value!r}: low must not exceed high")
        return low, high
    x = parse(value, where)
    return x, x


@dataclass(frozen=True)
class Regimen:
    """One concrete regimen of the space."""

    amount: float  # in the space's unit
    every_h: float
    count: int
    therapy_start_h: float | None = None

    def describe(self, space: RegimenSpace) -> dict[str, Any]:
        out = {f"amount [{space.unit}]": self.amount, "every [h]": self.every_h, "count": self.count}
        if space.therapy is not None:
            out["therapy_start [h]"] = self.therapy_start_h
        return out


@dataclass(frozen=True)
class Therapy:
    kind: str
    every_h: float
    count: int
    start_h: tuple[float, float]


@dataclass(frozen=True)
class RegimenSpace:
    """One dose line with bounded amount, interval and count, and an optional therapy course."""

    drug: str
    route: str
    unit: str  # mg or mg/kg
    amount: tuple[float, float]
    amount_step: float  # 0: continuous
    every_h: tuple[float, float]
    count: tuple[int, int]
    start_h: float = 0.0
    duration_h: float | None = None  # an IV infusion's length
    therapy: Therapy | None = None
    every_step_h: float = 12.0
    end_h: float = math.inf  # every dose before it (the endpoint's time)

    def free(self) -> list[tuple[str, float, float, bool]]:
        """(name, low, high, integer) of the dimensions the search moves."""
        dims = [("amount", *self.amount, False), ("every", *self.every_h, False), ("count", *self.count, True)]
        if self.therapy is not None:
            dims.append(("therapy_start", *self.therapy.start_h, False))
        return [d for d in dims if d[1] < d[2]]

    def regimen(self, values: Mapping[str, float]) -> Regimen:
        """The regimen at ``values`` of the free dimensions (fixed ones at their value), rounded to the
        amount step, whole hours and whole doses."""
        def pick(name, bounds):
            return float(np.clip(values.get(name, bounds[0]), *bounds))

        amount = pick("amount", self.amount)
        if self.amount_step:
            amount = float(np.clip(self.amount_step * round(amount / self.amount_step), *self.amount))
        step = self.every_step_h
        every = float(np.clip(step * round(pick("every", self.every_h) / step), *self.every_h))
        count = int(np.clip(round(pick("count", self.count)), *self.count))
        # doses after the endpoint's time would count against the caps and not towards the endpoint:
        # fewer doses, or (below the smallest count) a shorter interval
        room = self.end_h - self.start_h - 1e-6
        if count > 1 and (count - 1) * every > room:
            count = max(self.count[0], min(count, int(room // every) + 1))
            if (count - 1) * every > room:
                every = max(self.every_h[0], step * math.floor(room / (count - 1) / step))
        if count == 1:  # one dose has no interval: every single-dose regimen is the same one
            every = self.every_h[0]
        start = None
        if self.therapy:
            start = float(np.clip(round(pick("therapy_start", self.therapy.start_h)), *self.therapy.start_h))
        return Regimen(amount=round(amount, 6), every_h=every, count=count, therapy_start_h=start)

    def tables(self, r: Regimen) -> tuple[list[dict], list[dict]]:
        """(dose, therapy) tables of a trial arm."""
        dose = {"drug": self.drug, "route": self.route, "amount": f"{r.amount!r} {self.unit}",
                "at": [f"{self.start_h + i * r.every_h!r} h" for i in range(r.count)]}
        if self.duration_h:
            dose["duration"] = f"{self.duration_h!r} h"
        therapies = []
        if self.therapy is not None:
            t = self.therapy
            therapies.append({"kind": t.kind, "at": [f"{r.therapy_start_h + i * t.every_h!r} h" for i in range(t.count)]})
        return [dose], therapies

    def contains(self, r: Regimen) -> bool:
        inside = (self.amount[0] - 1e-9 <= r.amount <= self.amount[1] + 1e-9
                  and self.every_h[0] - 1e-9 <= r.every_h <= self.every_h[1] + 1e-9
                  and self.count[0] <= r.count <= self.count[1])
        if self.therapy is None:
            return inside and r.therapy_start_h is None
        low, high = self.therapy.start_h
        return inside and r.therapy_start_h is not None and low - 1e-9 <= r.therapy_start_h <= high + 1e-9


@dataclass(frozen=True)
class OptimiseSpec:
    """A validated optimisation spec."""

    name: str
    seed: int
    endpoint: str
    at_h: float
    budget: int
    method: str
    population: Mapping[str, Any]
    space: RegimenSpace
    caps: Mapping[str, float]
    label: tuple[list, list] | None  # (dose tables, therapy tables)
    label_regimen: Regimen | None  # the label as a point of the space, where it is one
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any] | OptimiseSpec) -> OptimiseSpec:
        if isinstance(source, OptimiseSpec):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        return cls.from_dict(read_toml(source, "optimisation spec"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimiseSpec:
        _known(data, ("optimise", "population", "regimen", "caps", "label"), "optimisation spec")
        opt = _table(data.get("optimise"), "optimise")
        _known(opt, _FIELDS["optimise"], "optimise")
        name, seed = name_and_seed(opt, "optimise", "regimen optimisation")
        endpoint = opt.get("endpoint", "response")
        if endpoint not in ENDPOINTS:
            raise ScenarioError("optimise.endpoint", f"{endpoint!r} is not allowed; allowed: {', '.join(ENDPOINTS)}")
        if "at" not in opt:
            raise ScenarioError("optimise.at", "needed: when the endpoint is read (e.g. \"4 w\")")
        at = parse_time(opt["at"], "optimise.at")
        if not at > 0:
            raise ScenarioError("optimise.at", f"{opt['at']!r} must be after the start")
        budget = opt.get("budget", 40)
        if isinstance(budget, bool) or not isinstance(budget, int) or not 2 <= budget <= MAX_BUDGET:
            raise ScenarioError("optimise.budget", f"{budget!r} must be a whole number of regimens in 2..{MAX_BUDGET}")
        method = opt.get("method", "sobol")
        if method not in METHODS:
            raise ScenarioError("optimise.method", f"{method!r} is not allowed; allowed: {', '.join(METHODS)}")
        population = _table(data.get("population"), "population")
        PopulationSpec.from_dict(population)  # checked now, used per candidate
        space = _space(_table(data.get("regimen"), "regimen"), at)
        caps = _caps(data.get("caps", {}), space)
        label, label_regimen = _label(data.get("label"), space)
        return cls(name=name, seed=seed, endpoint=endpoint, at_h=at, budget=budget, method=method,
                   population=dict(population), space=space, caps=caps, label=label, label_regimen=label_regimen,
                   raw=json.loads(json.dumps(data)))

    def describe(self) -> dict[str, Any]:
        s = self.space
        space = {"drug": s.drug, "route": s.route, f"amount [{s.unit}]": list(s.amount),
                 "amount_step": s.amount_step or None, "every [h]": list(s.every_h), "count": list(s.count),
                 "start [h]": s.start_h, "infusion [h]": s.duration_h}
        if s.therapy:
            space["therapy"] = {"kind": s.therapy.kind, "every [h]": s.therapy.every_h, "count": s.therapy.count,
                                "start [h]": list(s.therapy.start_h)}
        return {"name": self.name, "seed": self.seed, "endpoint": self.endpoint, "at [h]": self.at_h,
                "budget": self.budget, "method": self.method, "population": dict(self.population),
                "space": space, "caps": dict(self.caps), "label": self.raw.get("label")}


def _amount(text: Any, where: str, unit: str | None = None) -> tuple[str, float]:
    kind, value = parse_quantity(text, where, _AMOUNT_UNITS)
    found = _AMOUNT_UNITS[kind]
    if unit is not None and found != unit:
        raise ScenarioError(where, f"{text!r} is in {found}; this regimen's amounts are in {unit}")
    if not 0 < value <= MAX_AMOUNT[found]:
        raise ScenarioError(where, f"{text!r} must be above 0 and at most {MAX_AMOUNT[found]:g} {found}")
    return found, value


def _space(table: Mapping[str, Any], at_h: float) -> RegimenSpace:
    _known(table, _FIELDS["regimen"], "regimen")
    drug = table.get("drug")
    if drug not in DRUG_ROUTES or drug in INERT_DRUGS or drug in GASES:
        allowed = [d for d in DRUG_ROUTES if d not in INERT_DRUGS and d not in GASES]
        raise ScenarioError("regimen.drug", f"{drug!r} is not a drug dosed in mg; allowed: {', '.join(allowed)}")
    route = table.get("route")
    if route not in DRUG_ROUTES[drug]:
        raise ScenarioError("regimen.route", f"{route!r} is not a route for {drug}; allowed: {', '.join(DRUG_ROUTES[drug])}")
    for key in ("amount", "every", "count"):
        if key not in table:
            raise ScenarioError(f"regimen.{key}", "needed: a value or [low, high]")
    first = table["amount"][0] if isinstance(table["amount"], list) and table["amount"] else table["amount"]
    unit = _amount(first, "regimen.amount")[0]
    amount = _bounds(table["amount"], "regimen.amount", lambda v, w: _amount(v, w, unit)[1])
    step = _amount(table["amount_step"], "regimen.amount_step", unit)[1] if "amount_step" in table else 0.0
    every = _bounds(table["every"], "regimen.every", parse_time)
    every_step = parse_time(table.get("every_step", "12 h"), "regimen.every_step")
    if not every_step > 0:
        raise ScenarioError("regimen.every_step", f"{table['every_step']!r} must be > 0")
    if every[0] < 2 * SESSION_WINDOW_H:
        raise ScenarioError("regimen.every", f"{table['every']!r}: sessions must be at least {2 * SESSION_WINDOW_H:g} h "
                                             "apart (each is read over its 4-h window)")

    def whole(v, where):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 199:
            raise ScenarioError(where, f"{v!r} must be a whole number of doses in 1..199")
        return v

    count = tuple(int(c) for c in _bounds(table["count"], "regimen.count", whole))
    start = parse_time(table.get("start", "0 h"), "regimen.start")
    if start < 0:
        raise ScenarioError("regimen.start", f"{table['start']!r} must be >= 0")
    duration = None
    if "duration" in table:
        if route != "iv":
            raise ScenarioError("regimen.duration", f"an infusion length is only for route 'iv', not {route!r}")
        duration = parse_time(table["duration"], "regimen.duration")
        if not 1 / 60 <= duration <= SESSION_WINDOW_H:
            raise ScenarioError("regimen.duration", f"{table['duration']!r} must be 1 min to {SESSION_WINDOW_H:g} h")
    if start >= at_h:
        raise ScenarioError("regimen.start", f"the first dose ({start:g} h) must come before the endpoint ({at_h:g} h)")
    if count[0] > 1 and start + (count[0] - 1) * every[0] >= at_h:
        raise ScenarioError("regimen.count", f"{count[0]} doses every {every[0]:g} h from {start:g} h do not fit "
                                             f"before the endpoint ({at_h:g} h)")
    therapy = _therapy(table["therapy"]) if "therapy" in table else None
    if therapy is not None and therapy.start_h[1] + (therapy.count - 1) * therapy.every_h >= at_h:
        raise ScenarioError("regimen.therapy", f"{therapy.count} sessions every {therapy.every_h:g} h from up to "
                                               f"{therapy.start_h[1]:g} h do not end before the endpoint ({at_h:g} h)")
    return RegimenSpace(drug=drug, route=route, unit=unit, amount=amount, amount_step=step, every_h=every,
                        count=count, start_h=start, duration_h=duration, therapy=therapy, every_step_h=every_step,
                        end_h=at_h)


def _therapy(table: Any) -> Therapy:
    if not isinstance(table, Mapping):
        raise ScenarioError("regimen.therapy", "must be a table (kind, every, count, start)")
    _known(table, _FIELDS["therapy"], "regimen.therapy")
    kind = table.get("kind")
    if kind not in THERAPIES:
        raise ScenarioError("regimen.therapy.kind", f"{kind!r} is not allowed; allowed: {', '.join(THERAPIES)}")
    every = parse_time(table.get("every", "1 w"), "regimen.therapy.every")
    count = table.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100:
        raise ScenarioError("regimen.therapy.count", f"{count!r} must be a whole number in 1..100")
    if count > 1 and every <= 0:
        raise ScenarioError("regimen.therapy.every", "must be > 0")
    start = _bounds(table.get("start", "0 h"), "regimen.therapy.start", parse_time)
    if start[0] < 0:
        raise ScenarioError("regimen.therapy.start", "must be >= 0")
    return Therapy(kind=kind, every_h=every, count=count, start_h=start)


def _caps(table: Any, space: RegimenSpace) -> dict[str, float]:
    if not isinstance(table, Mapping):
        raise ScenarioError("caps", "must be a table")
    _known(table, CAPS, "caps")
    caps = {}
    for key, value in table.items():
        if key == "cumulative_amount":
            caps[key] = _amount(value, "caps.cumulative_amount", "mg")[1]
            continue
        low, high = CAP_RANGES.get(key, (0.0, 1.0))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            why = f" ({low:g} is its value without any drug; no regimen goes below it)" if low > 0 else ""
            raise ScenarioError(f"caps.{key}", f"{value!r} must be a number in {low:g}..{high:g}{why}")
        caps[key] = float(value)
    return caps


def _label(table: Any, space: RegimenSpace) -> tuple[tuple[list, list] | None, Regimen | None]:
    """The label regimen's tables, and its point in the space when it is one there."""
    if table is None:
        return None, None
    if not isinstance(table, Mapping):
        raise ScenarioError("label", "must be a table with [[label.dose]] (and [[label.therapy]])")
    _known(table, ("dose", "therapy"), "label")
    doses, therapies = list(table.get("dose", [])), list(table.get("therapy", []))
    if not doses:
        raise ScenarioError("label.dose", "needed: the label regimen's doses")
    try:
        scenario = Scenario.from_dict({"dose": doses, "therapy": therapies, "simulation": {"duration": "104 w"}})
    except ScenarioError as exc:
        raise ScenarioError(f"label.{exc.field}", str(exc).split(": ", 1)[1]) from None
    point = None
    if len(scenario.doses) == 1 and len(scenario.therapies) <= 1:
        d = scenario.doses[0]
        times = d.times_h
        regular = len(times) == 1 or np.ptp(np.diff(times)) < 1e-9
        if (d.drug, d.route, d.amount_unit, d.duration_h) == (space.drug, space.route, space.unit, space.duration_h) \
                and regular and abs(times[0] - space.start_h) < 1e-9:
            every = times[1] - times[0] if len(times) > 1 else space.every_h[0]
            therapy_start = None
            if space.therapy is not None and scenario.therapies:
                th, want = scenario.therapies[0], space.therapy
                sessions = th.times_h
                same = (th.kind == want.kind and len(sessions) == want.count
                        and (len(sessions) == 1 or np.allclose(np.diff(sessions), want.every_h)))
                therapy_start = sessions[0] if same else None
            candidate = Regimen(amount=d.amount, every_h=every, count=len(times), therapy_start_h=therapy_start)
            if space.contains(candidate):
                point = candidate
    return (doses, therapies), point


# ---------------------------------------------------------------------- evaluating regimens
def _assessments(scenario: Scenario, at_h: float) -> list[str]:
    """4 h after every session (its window read in full) and the endpoint's time."""
    times = {round(t + SESSION_WINDOW_H, 9) for d in scenario.doses for t in d.times_h} | {at_h}
    return [f"{t!r} h" for t in sorted(times)]


def evaluate(spec: OptimiseSpec, doses: list, therapies: list, params: ParameterSet) -> dict[str, float]:
    """The endpoint and every cap's metric of one regimen on the spec's virtual patients."""
    from . import run_trial

    scenario = Scenario.from_dict({"dose": doses, "therapy": therapies, "simulation": {"duration": "104 w"}})
    trial = {"trial": {"name": spec.name, "seed": spec.seed, "assessments": _assessments(scenario, spec.at_h)},
             "population": copy.deepcopy(dict(spec.population)),
             "arm": [{"name": "regimen", "dose": doses, "therapy": therapies}]}
    result = run_trial(trial, params=params)
    rows = result.patients[result.patients["status"] == "ok"]
    # the endpoint on each patient's model MADRS, not a rating: the rater's error is drawn over the
    # assessments, which differ between regimens, so ratings would compare them under different noise
    ep = result.spec.endpoints
    at = rows[np.isclose(rows["assessment [h]"], spec.at_h)]
    madrs, baseline = at["madrs_model [points]"].to_numpy(float), at["baseline_madrs_true [points]"].to_numpy(float)
    per_patient = rows.groupby("patient").agg(cadss=("cadss_peak [points]", "max"), sbp=("sbp_peak_rise [mmHg]", "max"),
                                             discharge=("discharge_ready_after [h]", "max"),
                                             liking=(LIKING, "max"), weight=("weight [kg]", "first"),
                                             **{flag: (flag, "first") for flag in USE_FLAGS})
    total = total_amount_mg(scenario.doses, per_patient["weight"].to_numpy(dtype=float))
    visits = {t for d in scenario.doses if d.route in SUPERVISED_ROUTES for t in d.times_h}
    visits |= {t for th in scenario.therapies for t in th.times_h}
    with np.errstate(invalid="ignore"):
        rates = {"response_rate": float(np.mean(madrs <= (1.0 - ep.response_fall) * baseline)) if madrs.size else np.nan,
                 "remission_rate": float(np.mean(madrs <= ep.remission_at_most)) if madrs.size else np.nan,
                 "madrs_change [points]": float(np.mean(madrs - baseline)) if madrs.size else np.nan}
    return {**rates,
            "cadss_peak [points]": float(per_patient["cadss"].mean()),
            "sbp_rise_at_least_40_mmHg [fraction]": float((per_patient["sbp"] >= SBP_RISE_MMHG).mean()),
            CAP_COLUMNS[NOT_READY_CAP]: float((per_patient["discharge"] > OBSERVATION_H).mean()),
            LIKING: float(per_patient["liking"].mean()),
            "cumulative_amount [mg]": float(np.mean(total)), "clinic_visits [count]": float(len(visits)),
            **{CAP_COLUMNS[cap]: float(per_patient[flag].astype(bool).mean()) for cap, flag in FLAG_CAPS.items()},
            "patients": int(len(per_patient)), "failed": int(result.summary["patients"]["failed"])}


def objective(spec: OptimiseSpec, metrics: Mapping[str, float]) -> float:
    """The value to maximise: a rate, or the mean MADRS fall (points)."""
    value = -metrics["madrs_change [points]"] if spec.endpoint == "madrs_change" else metrics[f"{spec.endpoint}_rate"]
    return float(value) if value is not None and math.isfinite(value) else math.nan


def violations(spec: OptimiseSpec, metrics: Mapping[str, float]) -> dict[str, float]:
    """Each cap's excess over its limit, relative to the limit's distance from no effect (0: met)."""
    out = {}
    for cap, limit in spec.caps.items():
        value = float(metrics[CAP_COLUMNS[cap]])
        room = max(limit - CAP_RANGES.get(cap, (0.0, 1.0))[0], 1e-9)
        out[cap] = max(0.0, value - limit) / room if math.isfinite(value) else math.inf
    return out


# ---------------------------------------------------------------------- the search
@dataclass(frozen=True)
class OptimiseResult:
    spec: OptimiseSpec
    candidates: pd.DataFrame  # one row per regimen evaluated
    summary: dict[str, Any]
    manifest: dict[str, Any]

    def write(self, folder: str | Path, report: bool = True) -> Path:
        """``optimise.json``, ``candidates.parquet``, ``manifest.json`` and ``report.html``, atomically."""
        from ..output import atomic_folder
        from . import _write_parquet

        with atomic_folder(folder) as tmp:
            _write_parquet(self.candidates, tmp / "candidates.parquet")
            (tmp / "optimise.json").write_text(json.dumps(self.summary, indent=2))
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str))
            if report:
                from .report import write_optimise_report

                write_optimise_report(self, tmp)
        return Path(folder)


class _Evaluations:
    """Regimens evaluated so far, each once (the search may ask twice for a rounded point)."""

    def __init__(self, spec: OptimiseSpec, params: ParameterSet, progress: Callable[[int, int], None] | None):
        self.spec, self.params, self.progress = spec, params, progress
        self.rows: dict[Regimen, dict[str, Any]] = {}

    def __call__(self, regimen: Regimen) -> dict[str, Any]:
        if regimen not in self.rows:
            doses, therapies = self.spec.space.tables(regimen)
            metrics = evaluate(self.spec, doses, therapies, self.params)
            bad = violations(self.spec, metrics)
            value = objective(self.spec, metrics)
            self.rows[regimen] = {"candidate": len(self.rows), **regimen.describe(self.spec.space), **metrics,
                                  "objective": value, "feasible": not any(bad.values()) and math.isfinite(value),
                                  "label": regimen == self.spec.label_regimen,
                                  **{f"excess_{k}": v for k, v in bad.items()}}
            if self.progress:
                self.progress(len(self.rows), self.spec.budget)
        return self.rows[regimen]

    @property
    def full(self) -> bool:
        return len(self.rows) >= self.spec.budget


def _sobol(spec: OptimiseSpec, evaluate_: _Evaluations) -> None:
    from scipy.stats import qmc

    dims = spec.space.free()
    if spec.label_regimen is not None:
        evaluate_(spec.label_regimen)
    if not dims:
        evaluate_(spec.space.regimen({}))
        return
    with warnings.catch_warnings():  # balance: the sequence's first points are used, not a power of two
        warnings.simplefilter("ignore", UserWarning)
        points = qmc.Sobol(len(dims), scramble=True, seed=spec.seed).random(4 * spec.budget)
    for u in points:
        if evaluate_.full:
            return
        values = {name: low + x * (high - low) for (name, low, high, _), x in zip(dims, u)}
        evaluate_(spec.space.regimen(values))


def _differential_evolution(spec: OptimiseSpec, evaluate_: _Evaluations) -> None:
    from scipy.optimize import differential_evolution

    dims = spec.space.free()
    if not dims:
        evaluate_(spec.space.regimen({}))
        return
    popsize = 5  # x the dimensions: the population

    def loss(x):
        if evaluate_.full:
            return math.inf
        row = evaluate_(spec.space.regimen({name: v for (name, *_), v in zip(dims, x)}))
        excess = sum(row.get(f"excess_{k}", 0.0) for k in spec.caps)
        if not math.isfinite(row["objective"]):
            return math.inf
        return -row["objective"] + 1e3 * excess  # a cap outweighs any endpoint

    x0 = None
    if spec.label_regimen is not None:
        point = spec.label_regimen.describe(spec.space)
        lookup = {"amount": point[f"amount [{spec.space.unit}]"], "every": point["every [h]"], "count": point["count"],
                  "therapy_start": point.get("therapy_start [h]")}
        x0 = [lookup[name] for name, *_ in dims]
    population = 2 ** math.ceil(math.log2(popsize * len(dims)))  # SciPy's Sobol start takes a power of two
    generations = max(0, spec.budget // population - 1)
    differential_evolution(loss, [(low, high) for _, low, high, _ in dims], seed=spec.seed, popsize=popsize,
                           maxiter=generations, polish=False, init="sobol", x0=x0, tol=0.0,
                           integrality=[integer for *_, integer in dims])


def _pareto(values: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Which candidates no other beats on both: higher endpoint and lower cap metric."""
    keep = np.ones(values.size, dtype=bool)
    for i in range(values.size):
        better = (values >= values[i]) & (costs <= costs[i]) & ((values > values[i]) | (costs < costs[i]))
        keep[i] = not better.any()
    return keep


def optimise(spec: str | Path | Mapping[str, Any] | OptimiseSpec, *, params: ParameterSet | str | Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> OptimiseResult:
    """Search the spec's regimen space for the best regimen that meets every cap, and compare it with
    the label regimen on the same virtual patients."""
    spec = OptimiseSpec.load(spec)
    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    started = _dt.datetime.now(_dt.timezone.utc)
    evaluations = _Evaluations(spec, params, progress)
    (_sobol if spec.method == "sobol" else _differential_evolution)(spec, evaluations)
    table = pd.DataFrame(list(evaluations.rows.values()))
    for cap, column in CAP_COLUMNS.items():
        table[f"pareto_{cap}"] = _pareto(table["objective"].to_numpy(), table[column].to_numpy())
    label = None
    if spec.label is not None:
        in_table = table[table["label"]]
        if len(in_table):
            label = in_table.iloc[0].to_dict()
        else:
            metrics = evaluate(spec, *spec.label, params)
            bad = violations(spec, metrics)
            value = objective(spec, metrics)
            label = {**metrics, "objective": value, "feasible": not any(bad.values()) and math.isfinite(value)}
    summary = _summary(spec, table, label)
    manifest = {"ketasim_version": _version(), "created": started.isoformat(timespec="seconds"),
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "spec": spec.describe(), "parameter_set_sha256": params.digest(), "mechanisms": list(active(params))}
    return OptimiseResult(spec=spec, candidates=table, summary=summary, manifest=manifest)


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, (np.floating, float)):
            out[k] = float(v) if math.isfinite(v) else None
        elif isinstance(v, (np.integer, np.bool_)):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def _summary(spec: OptimiseSpec, table: pd.DataFrame, label: Mapping[str, Any] | None) -> dict[str, Any]:
    feasible = table[table["feasible"]]
    best = None
    if len(feasible):
        best = feasible.sort_values(["objective", "cumulative_amount [mg]"], ascending=[False, True]).iloc[0]
    out: dict[str, Any] = {
        "disclaimer": DISCLAIMER, "spec": spec.describe(),
        "objective": ("mean MADRS fall [points]" if spec.endpoint == "madrs_change"
                      else f"{spec.endpoint} rate [fraction]") + f" at {spec.at_h:g} h",
        "evaluated": int(len(table)), "feasible": int(len(feasible)),
        "best": _clean(best.to_dict()) if best is not None else None,
        "label": _clean(label) if label is not None else None,
        "label_in_space": spec.label_regimen is not None,
        "pareto": {cap: table.loc[table[f"pareto_{cap}"], "candidate"].astype(int).tolist() for cap in CAP_COLUMNS},
        "note": "a virtual population's endpoint under the model's assumptions; not a recommendation for anyone",
    }
    if best is not None and label is not None:
        out["best_minus_label"] = {"objective": float(best["objective"] - label["objective"])}
    if best is None:
        out["why_none"] = "no regimen evaluated met every cap; widen the bounds, raise the budget or relax a cap"
    return out


def _version() -> str:
    from ..simulate import _version as version

    return version()
