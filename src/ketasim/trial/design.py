"""Trial files: what a virtual trial gives to whom, when it looks, and what counts as an outcome.

A trial file holds ``[trial]`` (name, seed, design, assessments, endpoint definitions),
``[population]`` (see ``ketasim.population``), ``[[arm]]`` entries with the same ``[[dose]]`` and
``[[therapy]]`` tables as a scenario, and, by design, ``[run_in]`` (randomised withdrawal) or
``[background]`` (an ongoing oral antidepressant for add-on trials, or any design). Times in arms are
counted from the start of the arm's treatment period; assessments from the same origin.

Designs
-------
``parallel``
    Each arm has its own patients (``population.n`` per arm); the period starts at 0.
``crossover``
    Every patient receives every arm, in sequences that rotate the arm order (AB/BA for two arms),
    patients alternating between sequences; each period lasts until the last assessment and is
    followed by ``washout``. The drug and its effects carry over mechanistically.
``randomised-withdrawal``
    ``population.n`` patients receive the open-label ``[run_in]`` treatment; those who meet its
    ``select`` criterion at the end (``responders`` or ``remitters``, against the pre-treatment
    MADRS) enter the arms (assigned before the run-in by index, which is the same as randomising
    the selected, because assignment is independent of outcome); relapse is then followed.
``add-on``
    A parallel trial on top of an ongoing oral antidepressant: ``[background]`` doses (times from
    the start of the ``lead_in``) run in every arm; the trial starts ``lead_in`` later, and its
    baseline is the MADRS then.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from ..params import load_parameters
from ..population import PopulationSpec
from ..scenario import MAX_DURATION_H, Scenario, parse_mechanisms, parse_times, read_toml
from ..units import parse_time
from .rules import ArmRules, parse_rules
from .success import SuccessRule, parse_success

DESIGNS = ("parallel", "crossover", "randomised-withdrawal", "add-on")
SELECTIONS = ("responders", "remitters")
TRIAL_FIELDS = ("name", "seed", "design", "assessments", "control", "washout", "response", "remission",
                "relapse", "side_effects", "success", "exposure")
#: plasma ketamine's session exposure is in every patients table; ``[trial] exposure`` adds others
ALWAYS_EXPOSURE = "pk.ketamine_plasma"
TOP_LEVEL = ("trial", "population", "arm", "run_in", "background", "model")
MAX_ASSESSMENTS = 200
#: the largest remission or relapse threshold a trial may set (MADRS points)
MADRS_THRESHOLD_MAX = 60.0


@dataclass(frozen=True)
class Endpoints:
    """Outcome definitions (defaults in the issue's words; MADRS points, mmHg)."""

    response_fall: float = 0.5  # response: MADRS fall >= 50 % from baseline
    remission_at_most: float = 10.0  # remission: MADRS <= 10
    relapse_at_least: float = 22.0  # relapse: MADRS >= 22 ...
    relapse_consecutive: int = 2  # ... at two consecutive assessments after response
    cadss_at_least: float = 4.0  # dissociation of note: CADSS >= 4 (assumption: a common cut-off)
    sbp_rise_at_least: float = 40.0  # the label's SBP rise >= 40 mmHg
    #: the HAM-D-17 thresholds as written, where the file gave remission or relapse on that scale
    #: (the two fields above are then their MADRS equivalents, used everywhere)
    remission_hamd_at_most: float | None = None
    relapse_hamd_at_least: float | None = None

    def describe(self) -> dict[str, str]:
        """The definitions in words, with the HAM-D threshold beside its MADRS equivalent."""
        def on_scale(madrs: float, hamd: float | None, sign: str) -> str:
            if hamd is None:
                return f"MADRS {sign} {madrs:g}"
            return f"HAM-D-17 {sign} {hamd:g} (MADRS {sign} {madrs:.4g} by the shipped Leucht 2018 linking)"
        return {
            "response": f"MADRS fall >= {self.response_fall:.0%} from baseline",
            "remission": on_scale(self.remission_at_most, self.remission_hamd_at_most, "<="),
            "relapse": (f"{on_scale(self.relapse_at_least, self.relapse_hamd_at_least, '>=')} at "
                        f"{self.relapse_consecutive} consecutive assessments after response"),
            "dissociation": f"CADSS >= {self.cadss_at_least:g} points",
            "blood pressure": f"SBP rise >= {self.sbp_rise_at_least:g} mmHg"}


@dataclass(frozen=True)
class Arm:
    name: str
    doses: tuple[Mapping[str, Any], ...]
    therapies: tuple[Mapping[str, Any], ...]
    #: adaptive dosing (``[[arm.rule]]``, see ``ketasim.trial.rules``); None: the doses as written
    rules: ArmRules | None = None


@dataclass(frozen=True)
class Period:
    """One treatment period of a sequence: the arm given and when its clock starts (simulation h)."""

    arm: str
    start_h: float


@dataclass(frozen=True)
class Sequence:
    """What one group of patients receives over the whole simulation."""

    stream: int  # random stream of its patients (arm or sequence number)
    name: str
    scenario: Scenario  # doses and therapies of every period; the patient is filled in per patient
    periods: tuple[Period, ...]
    n: int
    baseline_h: float | None = None  # fixed baseline time (withdrawal: before the run-in); else each period's start
    selection: tuple[float, str] | None = None  # (time h, "responders"|"remitters") for randomised withdrawal


@dataclass(frozen=True)
class TrialSpec:
    """A validated trial file."""

    name: str
    seed: int
    design: str
    assessments_h: tuple[float, ...]
    endpoints: Endpoints
    population: PopulationSpec
    arms: tuple[Arm, ...]
    control: str
    sequences: tuple[Sequence, ...]
    raw: Mapping[str, Any]
    #: the mechanisms the model includes (``[model] mechanisms``); None: the calibrated set
    mechanisms: tuple[str, ...] | None = None
    #: the primary analysis and what counts as success (``[trial.success]``); None: not declared
    success: SuccessRule | None = None
    #: concentration outputs whose session exposure (Cmax, Tmax, AUC) the patients table adds to
    #: plasma ketamine's (``[trial] exposure``)
    exposure: tuple[str, ...] = ()

    @property
    def duration_h(self) -> float:
        return self.sequences[0].scenario.duration_h

    @property
    def adaptive(self) -> bool:
        """Whether any arm doses by rules."""
        return any(a.rules for a in self.arms)

    @property
    def n_patients(self) -> int:
        return sum(s.n for s in self.sequences)

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any] | TrialSpec) -> TrialSpec:
        if isinstance(source, TrialSpec):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        data = read_toml(source, "trial")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialSpec:
        _known(data, TOP_LEVEL, "trial file")
        for key in ("trial", "population", "arm"):
            if key not in data:
                raise ScenarioError(key, "needed in a trial file ([trial], [population] and at least one [[arm]])")
        trial = _table(data["trial"], "trial")
        _known(trial, TRIAL_FIELDS, "trial")
        name, seed = name_and_seed(trial, "trial", "virtual trial")
        design = trial.get("design", "parallel")
        if design not in DESIGNS:
            raise ScenarioError("trial.design", f"{design!r} is not allowed; allowed: {', '.join(DESIGNS)}")
        assessments = _assessments(trial.get("assessments"))
        endpoints = _endpoints(trial)
        population = PopulationSpec.from_dict(_table(data["population"], "population"))
        arms = _arms(data["arm"], assessments[-1])
        names = [a.name for a in arms]
        control = trial.get("control", names[-1])
        if control not in names:
            raise ScenarioError("trial.control", f"{control!r} is not an arm; allowed: {', '.join(names)}")
        for key, allowed in (("washout", ("crossover",)), ("run_in", ("randomised-withdrawal",))):
            present = key in trial or key in data
            if present and design not in allowed:
                raise ScenarioError(key if key in data else f"trial.{key}", f"only for design {allowed[0]!r}, not {design!r}")
        if design == "add-on" and "background" not in data:
            raise ScenarioError("background", "an add-on trial needs a [background] table with the ongoing treatment")
        if design == "crossover" and len(arms) < 2:
            raise ScenarioError("arm", "a crossover trial needs at least two arms")
        background = _background(data.get("background"))
        sequences = _sequences(design, arms, assessments, population.n, background, trial, data.get("run_in"))
        success = parse_success(trial.get("success"), tuple(names), control, assessments, design)
        return cls(name=name, seed=seed, design=design, assessments_h=assessments, endpoints=endpoints,
                   population=population, arms=arms, control=control, sequences=sequences,
                   raw=json.loads(json.dumps(data)), mechanisms=_mechanisms(data.get("model")), success=success,
                   exposure=_exposure(trial.get("exposure", [])))

    def describe(self) -> dict[str, Any]:
        """Plain-data description for manifests and reports."""
        out = {
            "name": self.name, "seed": self.seed, "design": self.design,
            "assessments [h]": list(self.assessments_h), "control": self.control,
            "endpoints": self.endpoints.describe(),
            "sequences": [{"name": s.name, "n": s.n, "periods": [{"arm": p.arm, "start [h]": p.start_h} for p in s.periods]}
                          for s in self.sequences],
            "duration [h]": self.duration_h,
            "population": self.population.describe(),
            "mechanisms": list(self.mechanisms) if self.mechanisms is not None else "calibrated set",
            "success": self.success.describe() if self.success else None,
        }
        if self.adaptive:
            out["adaptive dosing"] = {a.name: a.rules.describe() for a in self.arms if a.rules}
        return out


# ---------------------------------------------------------------------- parsing helpers
def concentration_outputs() -> tuple[str, ...]:
    """The model's outputs in ng/mL: what ``[trial] exposure`` may name."""
    from ..model.system import default_model

    return tuple(o.name for o in default_model().outputs if o.unit == "ng/mL")


def _exposure(value: Any) -> tuple[str, ...]:
    allowed = [o for o in concentration_outputs() if o != ALWAYS_EXPOSURE]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScenarioError("trial.exposure", f"a list of concentration outputs, e.g. [\"pk.norketamine_plasma\"]; "
                                              f"allowed: {', '.join(allowed)}")
    for name in value:
        if name == ALWAYS_EXPOSURE:
            raise ScenarioError("trial.exposure", f"{name} is in every patients table already; remove it")
        if name not in allowed:
            raise ScenarioError("trial.exposure", f"{name!r} is not a concentration output; allowed: "
                                                  f"{', '.join(allowed)}")
    if len(set(value)) < len(value):
        raise ScenarioError("trial.exposure", "an output is named twice")
    return tuple(value)


def _mechanisms(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    table = _table(value, "model")
    _known(table, ("mechanisms",), "model")
    return parse_mechanisms(table, "model.mechanisms")


def name_and_seed(table: Mapping[str, Any], where: str, default_name: str) -> tuple[str, int]:
    """A run's ``name`` (non-empty text) and ``seed`` (needed: the results depend on it)."""
    name = table.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(f"{where}.name", "must be a non-empty text")
    seed = table.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise ScenarioError(f"{where}.seed", f"{seed!r} must be a whole number >= 0 (results depend on it; "
                                             "give it explicitly)")
    return name.strip(), seed


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ScenarioError(where, "must be a table")
    return value


@functools.cache
def madrs_per_hamd() -> float:
    """MADRS points per HAM-D-17 point of the shipped parameter set (Leucht 2018's linking), which
    converts thresholds written on the HAM-D scale."""
    return load_parameters().value("clinical.madrs_per_hamd")


def _one_scale(table: Mapping[str, Any], madrs_key: str, hamd_key: str, where: str) -> str:
    """The key a threshold is given under: on the MADRS or on the HAM-D-17 scale, not both."""
    if madrs_key in table and hamd_key in table:
        raise ScenarioError(f"{where}.{hamd_key}", f"give either {madrs_key} or {hamd_key}, not both")
    return hamd_key if hamd_key in table else madrs_key


def _points_threshold(table: Mapping[str, Any], suffix: str, where: str, default: float) -> tuple[float, float | None]:
    """(MADRS threshold, the HAM-D-17 one as written or None) of ``madrs_<suffix>`` or
    ``hamd_<suffix>``, both bounded by the MADRS bound 60; the linking is read only for HAM-D."""
    key = _one_scale(table, f"madrs_{suffix}", f"hamd_{suffix}", where)
    if key.startswith("madrs"):
        return _number(table, key, where, default, 0.0, MADRS_THRESHOLD_MAX), None
    hamd = _number(table, key, where, 0.0, 0.0, math.floor(MADRS_THRESHOLD_MAX / madrs_per_hamd()))
    return hamd * madrs_per_hamd(), hamd


def _known(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ScenarioError(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def _assessments(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ScenarioError("trial.assessments", "needed: a list of times such as [\"40 min\", \"24 h\", \"7 d\"]")
    if len(value) > MAX_ASSESSMENTS:
        raise ScenarioError("trial.assessments", f"{len(value)} assessments; at most {MAX_ASSESSMENTS}")
    times = [parse_time(v, f"trial.assessments[{i}]") for i, v in enumerate(value)]
    for i, t in enumerate(times):
        if t <= 0:
            raise ScenarioError(f"trial.assessments[{i}]", f"{value[i]!r} must be after the start (> 0); "
                                                           "the baseline is taken at the start anyway")
    if any(b <= a for a, b in zip(times, times[1:])):
        raise ScenarioError("trial.assessments", "times must increase strictly")
    return tuple(times)


def _number(table: Mapping[str, Any], key: str, where: str, default: float, low: float, high: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ScenarioError(f"{where}.{key}", f"{value!r} must be a number in {low:g}..{high:g}")
    return float(value)


def _endpoints(trial: Mapping[str, Any]) -> Endpoints:
    d = Endpoints()
    response = _table(trial.get("response", {}), "trial.response")
    remission = _table(trial.get("remission", {}), "trial.remission")
    relapse = _table(trial.get("relapse", {}), "trial.relapse")
    side = _table(trial.get("side_effects", {}), "trial.side_effects")
    _known(response, ("madrs_fall", "hamd_fall"), "trial.response")
    _known(remission, ("madrs_at_most", "hamd_at_most"), "trial.remission")
    _known(relapse, ("madrs_at_least", "hamd_at_least", "consecutive"), "trial.relapse")
    _known(side, ("cadss_at_least", "sbp_rise_at_least"), "trial.side_effects")
    consecutive = relapse.get("consecutive", d.relapse_consecutive)
    if isinstance(consecutive, bool) or not isinstance(consecutive, int) or not 1 <= consecutive <= 10:
        raise ScenarioError("trial.relapse.consecutive", f"{consecutive!r} must be a whole number in 1..10")
    # the linking is proportional (MADRS = k x HAM-D), so a fractional fall is the same on both scales
    fall_key = _one_scale(response, "madrs_fall", "hamd_fall", "trial.response")
    remission_madrs, remission_hamd = _points_threshold(remission, "at_most", "trial.remission", d.remission_at_most)
    relapse_madrs, relapse_hamd = _points_threshold(relapse, "at_least", "trial.relapse", d.relapse_at_least)
    return Endpoints(
        response_fall=_number(response, fall_key, "trial.response", d.response_fall, 0.01, 1.0),
        remission_at_most=remission_madrs,
        relapse_at_least=relapse_madrs,
        relapse_consecutive=consecutive,
        remission_hamd_at_most=remission_hamd,
        relapse_hamd_at_least=relapse_hamd,
        cadss_at_least=_number(side, "cadss_at_least", "trial.side_effects", d.cadss_at_least, 0.0, 92.0),
        sbp_rise_at_least=_number(side, "sbp_rise_at_least", "trial.side_effects", d.sbp_rise_at_least, 0.0, 200.0),
    )


def _treatment(table: Mapping[str, Any], where: str, length_h: float) -> tuple[tuple, tuple]:
    """Dose and therapy tables of an arm, run-in or background, checked as a scenario of ``length_h``."""
    doses, therapies = table.get("dose", []), table.get("therapy", [])
    for key, value in (("dose", doses), ("therapy", therapies)):
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise ScenarioError(f"{where}.{key}", f"must be a list of [[{where}.{key}]] tables")
    try:
        Scenario.from_dict({"dose": doses, "therapy": therapies,
                            "simulation": {"duration": f"{length_h!r} h", "output_every": f"{length_h!r} h"}})
    except ScenarioError as exc:
        field = exc.field if exc.field.startswith(("dose", "therapy")) else "dose"
        raise ScenarioError(f"{where}.{field}", str(exc).split(": ", 1)[1]) from None
    return tuple(doses), tuple(therapies)


def _arms(value: Any, period_h: float) -> tuple[Arm, ...]:
    if not isinstance(value, list) or not value:
        raise ScenarioError("arm", "needed: at least one [[arm]] table")
    arms, seen = [], set()
    for i, entry in enumerate(value):
        where = f"arm[{i}]"
        entry = _table(entry, where)
        _known(entry, ("name", "dose", "therapy", "rule"), where)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ScenarioError(f"{where}.name", "needed: a non-empty text")
        if name in seen:
            raise ScenarioError(f"{where}.name", f"{name!r} is used by two arms; names must differ")
        seen.add(name)
        doses, therapies = _treatment(entry, where, period_h)
        rules = parse_rules(entry.get("rule"), f"{where}.rule", doses, period_h)
        arms.append(Arm(name=name, doses=doses, therapies=therapies, rules=rules))
    return tuple(arms)


def _background(value: Any) -> tuple[float, tuple, tuple]:
    """(lead-in h, doses, therapies) of the ongoing treatment, or none."""
    if value is None:
        return 0.0, (), ()
    table = _table(value, "background")
    _known(table, ("lead_in", "dose", "therapy"), "background")
    if "lead_in" not in table:
        raise ScenarioError("background.lead_in", "needed: how long the ongoing treatment has run when the trial "
                                                  "starts (e.g. \"6 w\")")
    lead_in = parse_time(table["lead_in"], "background.lead_in")
    if not lead_in > 0:
        raise ScenarioError("background.lead_in", f"{table['lead_in']!r} must be > 0")
    return lead_in, tuple(table.get("dose", [])), tuple(table.get("therapy", []))


def _shifted(tables: tuple, offset_h: float) -> list[dict[str, Any]]:
    """Dose or therapy tables moved by ``offset_h``, their times written out as explicit hours."""
    out = []
    for table in tables:
        times = parse_times(table, "dose")
        entry = {k: v for k, v in table.items() if k not in ("at", "start", "every", "count")}
        entry["at"] = [f"{t + offset_h!r} h" for t in times]
        out.append(entry)
    return out


def _scenario(parts: list[tuple[tuple, tuple, float]], duration_h: float, where: str) -> Scenario:
    doses, therapies = [], []
    for d, t, offset in parts:
        doses += _shifted(d, offset)
        therapies += _shifted(t, offset)
    try:
        return Scenario.from_dict({"dose": doses, "therapy": therapies,
                                   "simulation": {"duration": f"{duration_h!r} h", "output_every": f"{duration_h!r} h"}})
    except ScenarioError as exc:  # e.g. background and arm infusions that overlap
        raise ScenarioError(where, f"the combined treatment is not valid: {exc}") from None


def _sequences(design: str, arms: tuple[Arm, ...], assessments: tuple[float, ...], n: int,
               background: tuple[float, tuple, tuple], trial: Mapping[str, Any], run_in: Any) -> tuple[Sequence, ...]:
    lead_in, bg_doses, bg_therapies = background
    period = assessments[-1]
    if lead_in:  # entries checked here; their timing against each sequence's length when combined below
        _treatment({"dose": list(bg_doses), "therapy": list(bg_therapies)}, "background", MAX_DURATION_H)
    bg = [(bg_doses, bg_therapies, 0.0)] if lead_in else []

    if design == "crossover":
        if "washout" not in trial:
            raise ScenarioError("trial.washout", "needed for a crossover trial (e.g. \"7 d\")")
        washout = parse_time(trial["washout"], "trial.washout")
        if washout < 0:
            raise ScenarioError("trial.washout", f"{trial['washout']!r} must be >= 0")
        k = len(arms)
        out = []
        for s in range(k):  # rotations of the arm order: a Latin square, AB/BA for two arms
            order = [arms[(s + j) % k] for j in range(k)]
            starts = [lead_in + j * (period + washout) for j in range(k)]
            parts = bg + [(a.doses, a.therapies, t) for a, t in zip(order, starts)]
            scenario = _scenario(parts, starts[-1] + period, f"sequence {s + 1}")
            n_seq = n // k + (1 if s < n % k else 0)  # patients alternate between sequences
            out.append(Sequence(stream=s, name=" -> ".join(a.name for a in order), scenario=scenario,
                                periods=tuple(Period(a.name, t) for a, t in zip(order, starts)), n=n_seq))
        return tuple(s for s in out if s.n > 0)

    selection = None
    start = lead_in
    parts_run_in: list = []
    if design == "randomised-withdrawal":
        if run_in is None:
            raise ScenarioError("run_in", "a randomised-withdrawal trial needs a [run_in] table (duration, doses, select)")
        table = _table(run_in, "run_in")
        _known(table, ("duration", "dose", "therapy", "select"), "run_in")
        if "duration" not in table:
            raise ScenarioError("run_in.duration", "needed: the length of the open-label phase (e.g. \"4 w\")")
        length = parse_time(table["duration"], "run_in.duration")
        if not length > 0:
            raise ScenarioError("run_in.duration", f"{table['duration']!r} must be > 0")
        select = table.get("select", "responders")
        if select not in SELECTIONS:
            raise ScenarioError("run_in.select", f"{select!r} is not allowed; allowed: {', '.join(SELECTIONS)}")
        doses, therapies = _treatment(table, "run_in", length)
        parts_run_in = [(doses, therapies, lead_in)]
        start = lead_in + length
        selection = (start, select)
    out = []
    for i, arm in enumerate(arms):
        parts = bg + parts_run_in + [(arm.doses, arm.therapies, start)]
        scenario = _scenario(parts, start + period, f"arm[{i}]")
        if design == "randomised-withdrawal":  # everyone enters the run-in; assignment alternates
            n_arm = n // len(arms) + (1 if i < n % len(arms) else 0)
        else:
            n_arm = n
        out.append(Sequence(stream=i, name=arm.name, scenario=scenario, periods=(Period(arm.name, start),), n=n_arm,
                            baseline_h=lead_in if selection else None, selection=selection))
    return tuple(s for s in out if s.n > 0)


def session_starts(spec: TrialSpec, period: Period) -> list[float]:
    """Administration times (simulation h) of the period's own arm: the dosing sessions side effects
    are read from (a background or run-in dose never opens a session)."""
    arm = next(a for a in spec.arms if a.name == period.arm)
    return sorted({period.start_h + t for d in arm.doses for t in parse_times(d, "dose")})

