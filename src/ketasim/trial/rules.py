"""Adaptive dosing rules of a trial arm (``[[arm.rule]]``), read and checked when the file is read.

A rule governs the sessions of one drug of its arm (``drug``; the arm's only drug by default) and is
evaluated at each of those sessions, before the dose, on the patient's simulated state: the latent
(model) MADRS then, and the peaks of CADSS and systolic blood pressure and the plasma concentration
read after the previous administration. A clinic decides on a rated MADRS; the rules see the model's
value so that a decision is the same whatever the rater's error (``ketasim.trial.adaptive`` carries
them out).

``titrate``
    From session ``from_session`` (default 2) the dose steps up to ``to`` and stays there, once the
    MADRS has fallen by less than ``if_madrs_fall_below`` (default: the trial's response criterion)
    and the last administration was tolerated (``if_cadss_below``, ``if_sbp_rise_below``, each
    optional): the esketamine label's 56 -> 84 mg step.
``hold``
    The dose is skipped (``action = "skip"``) or given ``delay`` later (``action = "delay"``) when the
    previous session's post-dose CADSS peak or SBP rise reached ``if_cadss_at_least`` or
    ``if_sbp_rise_at_least``. A session that was held leaves no post-dose reading, so the session
    after it is not held for the same reason.
``stop``
    No further doses once the pre-dose MADRS meets ``on`` ("response" or "remission", the trial's
    criteria) at ``consecutive`` sessions in a row (default 1).
``target-concentration``
    Therapeutic drug monitoring: the plasma concentration ``output`` read ``measured`` after the
    start of an administration scales the next dose towards ``target`` (linear kinetics:
    next = last x target / measured), within ``min`` and ``max``.

>>> rules = parse_rules([{"type": "titrate", "to": "84 mg"}], "arm[0].rule",
...                     ({"drug": "esketamine", "route": "intranasal", "amount": "56 mg", "start": "0 d",
...                       "every": "3.5 d", "count": 8},), 28 * 24.0)
>>> rules.drug, rules.sessions_h[:3], rules.titrate.to
('esketamine', (0.0, 84.0, 168.0), 84.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..scenario import GASES, INERT_DRUGS, MAX_AMOUNT, parse_times
from ..units import parse_quantity, parse_time

SESSION_WINDOW_H = 4.0  # after a dose: CADSS and blood pressure peak and settle within it
#: where a session's peaks are read, after each administration: every 5 min for 2 h (CADSS, blood
#: pressure and NMDA block peak within it for every route), then every 15 min to 4 h
SESSION_OFFSETS_H = np.concatenate([np.arange(0.0, 2.0, 5 / 60), np.arange(2.0, SESSION_WINDOW_H + 1e-9, 0.25)])


def session_window(times: np.ndarray, dose_h: float, until_h: float = math.inf) -> np.ndarray:
    """Indices of the ``times`` (h) in a session's window: from the dose to ``SESSION_WINDOW_H`` after
    it, or to ``until_h`` (an assessment) if sooner."""
    return np.flatnonzero((times >= dose_h - 1e-9) & (times <= min(until_h, dose_h + SESSION_WINDOW_H) + 1e-9))
RULE_TYPES = ("titrate", "hold", "stop", "target-concentration")
HOLD_ACTIONS = ("skip", "delay")
STOP_ON = ("response", "remission")
#: concentrations a target-concentration rule may steer by (ng/mL, from the pk layer)
TARGET_OUTPUTS = ("pk.ketamine_plasma", "pk.s_ketamine_plasma", "pk.r_ketamine_plasma", "pk.norketamine_plasma")
_FIELDS = {
    "titrate": ("to", "from_session", "if_madrs_fall_below", "if_cadss_below", "if_sbp_rise_below"),
    "hold": ("if_cadss_at_least", "if_sbp_rise_at_least", "action", "delay"),
    "stop": ("on", "consecutive"),
    "target-concentration": ("output", "target", "measured", "min", "max"),
}
_AMOUNT_UNITS = {"per_weight": "mg/kg", "absolute": "mg"}


@dataclass(frozen=True)
class Titrate:
    to: float  # amount in the governed dose's unit (mg or mg/kg)
    from_session: int = 2  # 1-based
    if_madrs_fall_below: float | None = None  # fraction; None: the trial's response criterion
    if_cadss_below: float | None = None  # points
    if_sbp_rise_below: float | None = None  # mmHg


@dataclass(frozen=True)
class Hold:
    if_cadss_at_least: float | None  # points
    if_sbp_rise_at_least: float | None  # mmHg
    action: str = "skip"
    delay_h: float = 0.0


@dataclass(frozen=True)
class Stop:
    on: str = "remission"
    consecutive: int = 1


@dataclass(frozen=True)
class TargetConcentration:
    output: str
    target_ng_ml: float
    measured_h: float  # after the start of an administration
    min_amount: float  # in the governed dose's unit
    max_amount: float


@dataclass(frozen=True)
class ArmRules:
    """The rules of one arm and the sessions they govern (times from the arm's start, h)."""

    drug: str
    unit: str  # "mg", "mg/kg" or "" (an inert drug)
    sessions_h: tuple[float, ...]
    titrate: Titrate | None = None
    hold: Hold | None = None
    stop: Stop | None = None
    target: TargetConcentration | None = None

    @property
    def delay_h(self) -> float:
        return self.hold.delay_h if self.hold and self.hold.action == "delay" else 0.0

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"drug": self.drug, "sessions": len(self.sessions_h)}
        for name in ("titrate", "hold", "stop", "target"):
            rule = getattr(self, name)
            if rule is not None:
                out[name] = {k: v for k, v in rule.__dict__.items() if v is not None}
        return out


def _number(table: Mapping[str, Any], key: str, where: str, low: float, high: float) -> float | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ScenarioError(f"{where}.{key}", f"{value!r} must be a number in {low:g}..{high:g}")
    return float(value)


def _whole(table: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScenarioError(f"{where}.{key}", f"{value!r} must be a whole number in {low}..{high}")
    return value


def _amount(text: Any, field: str, unit: str) -> float:
    kind, value = parse_quantity(text, field, _AMOUNT_UNITS)
    if _AMOUNT_UNITS[kind] != unit:
        raise ScenarioError(field, f"{text!r} is in {_AMOUNT_UNITS[kind]}, the governed doses in {unit}; use {unit}")
    if not 0 < value <= MAX_AMOUNT[unit]:
        raise ScenarioError(field, f"{text!r} must be above 0 and at most {MAX_AMOUNT[unit]:g} {unit}")
    return value


def _governed(doses: tuple[Mapping[str, Any], ...], drug: str, doses_field: str) -> tuple[str, tuple[float, ...]]:
    """The unit of the governed lines and their session times (h from the arm's start)."""
    units, times = set(), []
    for i, d in enumerate(doses):
        if d.get("drug") != drug:
            continue
        text = d.get("amount")
        if drug in INERT_DRUGS or text is None:
            units.add("")
        elif drug in GASES:
            units.add("%")
        else:
            kind, _ = parse_quantity(text, f"{doses_field}[{i}].amount", _AMOUNT_UNITS)
            units.add(_AMOUNT_UNITS[kind])
        times += parse_times(d, f"{doses_field}[{i}]")
    if len(units) > 1:
        raise ScenarioError(doses_field, f"the {drug} doses mix units ({', '.join(sorted(units))}); "
                                             "rules need one unit")
    return units.pop(), tuple(sorted(set(times)))


def parse_rules(value: Any, where: str, doses: tuple[Mapping[str, Any], ...], period_h: float,
                doses_field: str | None = None) -> ArmRules | None:
    """The ``rule`` list of an arm or a scenario (``where`` is its field path, e.g. ``arm[0].rule``;
    ``doses_field`` that of the doses it governs, by default ``arm[0].dose``), or None."""
    if value is None:
        return None
    doses_field = doses_field or where.rsplit(".", 1)[0] + ".dose"
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
        raise ScenarioError(where, "must be a non-empty list of [[arm.rule]] tables")
    drugs = sorted({d.get("drug") for d in doses})
    if len(drugs) != 1:
        raise ScenarioError(where, f"rules need doses of one drug; these doses give "
                                   f"{', '.join(map(str, drugs)) or 'nothing'}")
    drug = drugs[0]
    unit, sessions = _governed(doses, drug, doses_field)
    for a, b in zip(sessions, sessions[1:]):
        if b - a < SESSION_WINDOW_H:
            raise ScenarioError(where, f"sessions at {a:g} h and {b:g} h are less than {SESSION_WINDOW_H:g} h apart: "
                                       "a rule reads each session's post-dose window before the next")
    parsed: dict[str, Any] = {}
    for i, table in enumerate(value):
        here = f"{where}[{i}]"
        kind = table.get("type")
        if kind not in RULE_TYPES:
            raise ScenarioError(f"{here}.type", f"{kind!r} is not allowed; allowed: {', '.join(RULE_TYPES)}")
        unknown = sorted(set(table) - {"type", "drug", *_FIELDS[kind]})
        if unknown:
            raise ScenarioError(here, f"unknown key(s) {', '.join(map(repr, unknown))} for a {kind} rule; allowed: "
                                      f"type, drug, {', '.join(_FIELDS[kind])}")
        if table.get("drug", drug) != drug:
            raise ScenarioError(f"{here}.drug", f"{table['drug']!r} is not dosed in this arm; allowed: {drug}")
        key = "amount" if kind in ("titrate", "target-concentration") else kind
        if key in parsed:
            raise ScenarioError(here, "an arm takes one rule of each kind (and titrate or target-concentration, "
                                      "not both)")
        if key == "amount" and unit not in _AMOUNT_UNITS.values():
            raise ScenarioError(f"{here}.type", f"a {kind} rule needs a drug dosed in mg or mg/kg; {drug} is not")
        parsed[key] = _parse_one(kind, table, here, unit, sessions, period_h)
    amount = parsed.get("amount")
    return ArmRules(drug=drug, unit=unit, sessions_h=sessions,
                    titrate=amount if isinstance(amount, Titrate) else None, hold=parsed.get("hold"),
                    stop=parsed.get("stop"), target=amount if isinstance(amount, TargetConcentration) else None)


def _free_after(sessions: tuple[float, ...], period_h: float) -> float:
    """The shortest time from a session to the next one (or to the period's end)."""
    ends = list(sessions[1:]) + [period_h]
    return min(b - a for a, b in zip(sessions, ends))


def _parse_one(kind: str, table: Mapping[str, Any], here: str, unit: str, sessions: tuple[float, ...],
               period_h: float):
    if kind == "titrate":
        if "to" not in table:
            raise ScenarioError(f"{here}.to", f"needed: the amount to step up to (in {unit})")
        return Titrate(to=_amount(table["to"], f"{here}.to", unit),
                       from_session=_whole(table, "from_session", here, 2, 2, max(2, len(sessions))),
                       if_madrs_fall_below=_number(table, "if_madrs_fall_below", here, 0.0, 1.0),
                       if_cadss_below=_number(table, "if_cadss_below", here, 0.0, 92.0),
                       if_sbp_rise_below=_number(table, "if_sbp_rise_below", here, 0.0, 200.0))
    if kind == "hold":
        cadss = _number(table, "if_cadss_at_least", here, 0.0, 92.0)
        sbp = _number(table, "if_sbp_rise_at_least", here, 0.0, 200.0)
        if cadss is None and sbp is None:
            raise ScenarioError(here, "a hold rule needs if_cadss_at_least or if_sbp_rise_at_least (or both)")
        action = table.get("action", "skip")
        if action not in HOLD_ACTIONS:
            raise ScenarioError(f"{here}.action", f"{action!r} is not allowed; allowed: {', '.join(HOLD_ACTIONS)}")
        delay = 0.0
        if action == "delay":
            if "delay" not in table:
                raise ScenarioError(f"{here}.delay", "needed with action = \"delay\" (e.g. \"1 d\")")
            delay = parse_time(table["delay"], f"{here}.delay")
            room = _free_after(sessions, period_h) - SESSION_WINDOW_H
            if not 0 < delay <= room:
                raise ScenarioError(f"{here}.delay", f"{table['delay']!r} must be > 0 and at most {room:g} h, so that "
                                                     f"a delayed dose and its {SESSION_WINDOW_H:g}-h window end before "
                                                     "the next session (or the period's end)")
        elif "delay" in table:
            raise ScenarioError(f"{here}.delay", "only with action = \"delay\"")
        return Hold(if_cadss_at_least=cadss, if_sbp_rise_at_least=sbp, action=action, delay_h=delay)
    if kind == "stop":
        on = table.get("on", "remission")
        if on not in STOP_ON:
            raise ScenarioError(f"{here}.on", f"{on!r} is not allowed; allowed: {', '.join(STOP_ON)}")
        return Stop(on=on, consecutive=_whole(table, "consecutive", here, 1, 1, 20))
    # target-concentration
    output = table.get("output", TARGET_OUTPUTS[0])
    if output not in TARGET_OUTPUTS:
        raise ScenarioError(f"{here}.output", f"{output!r} is not allowed; allowed: {', '.join(TARGET_OUTPUTS)}")
    for key in ("target", "measured", "max"):
        if key not in table:
            raise ScenarioError(f"{here}.{key}", {"target": "needed: the concentration to reach (e.g. \"150 ng/mL\")",
                                                  "measured": "needed: when the level is read after the dose starts "
                                                              "(e.g. \"40 min\")",
                                                  "max": f"needed: the largest amount the rule may give (in {unit})"}[key])
    _, target = parse_quantity(table["target"], f"{here}.target", {"concentration": "ng/mL"})
    if not target > 0:
        raise ScenarioError(f"{here}.target", f"{table['target']!r} must be above 0 ng/mL")
    measured = parse_time(table["measured"], f"{here}.measured")
    room = min(SESSION_WINDOW_H, _free_after(sessions, period_h))
    if not 0 < measured <= room:
        raise ScenarioError(f"{here}.measured", f"{table['measured']!r} must be > 0 and at most {room:g} h after "
                                                "the dose starts")
    high = _amount(table["max"], f"{here}.max", unit)
    low = _amount(table["min"], f"{here}.min", unit) if "min" in table else 0.0
    if low >= high:
        raise ScenarioError(f"{here}.min", f"{table['min']!r} must be below max ({table['max']!r})")
    return TargetConcentration(output=output, target_ng_ml=target, measured_h=measured, min_amount=low,
                               max_amount=high)
