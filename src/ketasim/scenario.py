"""Scenarios: one patient and what they receive, read from TOML, a dict or CLI flags, and validated.

>>> from ketasim.scenario import Scenario
>>> s = Scenario.from_dict({"dose": [{"drug": "esketamine", "route": "intranasal",
...                                   "amount": "56 mg", "at": ["0 h"]}],
...                         "simulation": {"duration": "1 d", "output_every": "10 min"}})
>>> s.doses[0].times_h, s.duration_h
((0.0,), 24.0)

Every invalid entry raises ``ScenarioError`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from .errors import ScenarioError
from .units import parse_quantity, parse_time

ROUTES = ("iv", "im", "intranasal", "oral", "sublingual", "inhaled")
#: the routes ketamine itself takes (inhalation is for gases)
KETAMINE_ROUTES = ("iv", "im", "intranasal", "oral", "sublingual")
#: mole fraction of each enantiomer in a ketamine drug
DRUG_ENANTIOMERS: dict[str, dict[str, float]] = {
    "racemic-ketamine": {"s": 0.5, "r": 0.5},
    "esketamine": {"s": 1.0},
    "arketamine": {"r": 1.0},
}
#: every drug with the routes it may take; inert ones (placebo, saline) take no amount
DRUG_ROUTES: dict[str, tuple[str, ...]] = {
    "racemic-ketamine": KETAMINE_ROUTES, "esketamine": KETAMINE_ROUTES, "arketamine": KETAMINE_ROUTES,
    "midazolam": ("iv",),
    "placebo": ROUTES, "saline": ("iv", "intranasal"),
    "citalopram": ("oral",), "escitalopram": ("oral",), "sertraline": ("oral",),
    "rapamycin": ("oral",),
    # drugs that tell the mechanisms apart (probes layer); 2r6r-hnk is (2R,6R)-hydroxynorketamine
    "memantine": ("oral",), "lanicemine": ("iv",), "traxoprodil": ("iv",), "naltrexone": ("oral",),
    "nitrous-oxide": ("inhaled",), "2r6r-hnk": ("iv",),
}
#: gases, dosed as an inspired concentration for a duration
GASES = ("nitrous-oxide",)
#: the largest inspired concentration of a gas (the rest must be oxygen)
MAX_INSPIRED_FRACTION = 0.8
DRUGS = tuple(DRUG_ROUTES)
INERT_DRUGS = ("placebo", "saline")
THERAPIES = ("cbt", "mindfulness", "supportive")
COURSES = ("chronic", "episodic")
IL6_RANGE_PG_ML = (0.1, 100.0)
WEIGHT_RANGE_KG = (20.0, 250.0)
AGE_RANGE_Y = (12.0, 100.0)
MAX_DURATION_H = 2 * 365.25 * 24.0
MAX_OUTPUT_POINTS = 1_000_000
MAX_EVENTS = 20_000  # dose administrations and therapy sessions in one scenario
MAX_AMOUNT = {"mg/kg": 100.0, "mg": 10_000.0}
MIN_INFUSION_H = 1.0 / 60.0


def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario, as shipped with the package."""
    text = resources.files("ketasim").joinpath("schemas/scenario.schema.json").read_text()
    return json.loads(text)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A TOML file's content; unreadable, non-UTF-8 or malformed files raise ``ScenarioError``."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot read the {what} file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), f"the {what} file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), f"malformed TOML: {exc}") from None


@dataclass(frozen=True)
class Patient:
    """A patient's covariates, in reporting units (kg, years)."""

    weight_kg: float = 70.0
    age_y: float = 45.0
    sex: str = "female"
    baseline_madrs: float = 32.0
    cyp2b6: str = "normal"
    cyp3a4: str = "normal"
    comedications: tuple[str, ...] = ()
    bdnf_val66met: str = "val/val"
    inflammation: str = "normal"  # low | normal | high; ignored when il6_pg_ml is given
    il6_pg_ml: float | None = None
    course: str = "chronic"  # chronic | episodic (natural recovery over months)
    plasticity_responsive: bool = True  # False: the illness does not respond to the plasticity route


@dataclass(frozen=True)
class PatientColumns:
    """The covariates of many patients as columns (row r is one patient), so that what depends on
    them (enzyme activities, baselines, dose amounts) is computed for a whole batch at once.

    >>> cols = PatientColumns.of([Patient(weight_kg=60.0), Patient(comedications=("clarithromycin",))])
    >>> cols.weight_kg.tolist(), cols.takes("clarithromycin").tolist(), cols.patient(1).comedications
    ([60.0, 70.0], [False, True], ('clarithromycin',))
    """

    weight_kg: np.ndarray  # (n,) kg
    age_y: np.ndarray  # (n,) y
    sex: np.ndarray  # (n,) "female" | "male"
    baseline_madrs: np.ndarray  # (n,) points
    cyp2b6: np.ndarray  # (n,) phenotype
    cyp3a4: np.ndarray  # (n,) phenotype
    bdnf_val66met: np.ndarray  # (n,) genotype
    inflammation: np.ndarray  # (n,) low | normal | high
    comedication_names: tuple[str, ...]
    taking: np.ndarray  # (n, len(comedication_names)) bool: who takes which co-medication
    il6_pg_ml: np.ndarray  # (n,) pg/mL, NaN where not given (the inflammation status decides)
    course: np.ndarray  # (n,) chronic | episodic
    plasticity_responsive: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return self.weight_kg.shape[0]

    @classmethod
    def of(cls, patients: Sequence[Patient]) -> PatientColumns:
        drugs = tuple(dict.fromkeys(d for p in patients for d in p.comedications))
        return cls(weight_kg=np.array([p.weight_kg for p in patients], dtype=float),
                   age_y=np.array([p.age_y for p in patients], dtype=float),
                   sex=np.array([p.sex for p in patients], dtype=object),
                   baseline_madrs=np.array([p.baseline_madrs for p in patients], dtype=float),
                   cyp2b6=np.array([p.cyp2b6 for p in patients], dtype=object),
                   cyp3a4=np.array([p.cyp3a4 for p in patients], dtype=object),
                   bdnf_val66met=np.array([p.bdnf_val66met for p in patients], dtype=object),
                   inflammation=np.array([p.inflammation for p in patients], dtype=object),
                   comedication_names=drugs,
                   taking=np.array([[d in p.comedications for d in drugs] for p in patients], dtype=bool
                                   ).reshape(len(patients), len(drugs)),
                   il6_pg_ml=np.array([np.nan if p.il6_pg_ml is None else p.il6_pg_ml for p in patients], dtype=float),
                   course=np.array([p.course for p in patients], dtype=object),
                   plasticity_responsive=np.array([p.plasticity_responsive for p in patients], dtype=bool))

    def takes(self, drug: str) -> np.ndarray:
        """(n,) bool: who takes ``drug``."""
        if drug not in self.comedication_names:
            return np.zeros(len(self), dtype=bool)
        return self.taking[:, self.comedication_names.index(drug)]

    def comedication_lists(self) -> list[str]:
        """Each patient's co-medications, comma-separated (as the patients table shows them)."""
        names = np.array(self.comedication_names, dtype=object)
        return [",".join(names[row]) for row in self.taking]

    def take(self, rows) -> PatientColumns:
        """The patients at ``rows`` (indices or a slice)."""
        return PatientColumns(**{f: (getattr(self, f) if f == "comedication_names" else getattr(self, f)[rows])
                                 for f in self.__dataclass_fields__})

    @classmethod
    def concatenate(cls, parts: Sequence[PatientColumns]) -> PatientColumns:
        """The patients of ``parts`` one after another (all with the same co-medication columns)."""
        names = parts[0].comedication_names
        if any(p.comedication_names != names for p in parts):
            raise ValueError("patients with different co-medication columns cannot be concatenated")
        return cls(**{f: (names if f == "comedication_names" else np.concatenate([getattr(p, f) for p in parts]))
                      for f in cls.__dataclass_fields__})

    def patient(self, r: int) -> Patient:
        il6 = float(self.il6_pg_ml[r])
        return Patient(weight_kg=float(self.weight_kg[r]), age_y=float(self.age_y[r]), sex=str(self.sex[r]),
                       baseline_madrs=float(self.baseline_madrs[r]), cyp2b6=str(self.cyp2b6[r]),
                       cyp3a4=str(self.cyp3a4[r]),
                       comedications=tuple(d for d, t in zip(self.comedication_names, self.taking[r]) if t),
                       bdnf_val66met=str(self.bdnf_val66met[r]), inflammation=str(self.inflammation[r]),
                       il6_pg_ml=None if math.isnan(il6) else il6, course=str(self.course[r]),
                       plasticity_responsive=bool(self.plasticity_responsive[r]))


@dataclass(frozen=True)
class Dose:
    """One dosing line: a drug by a route, given at one or more times (hours from the start)."""

    drug: str
    route: str
    amount: float  # 0 for inert drugs; the inspired fraction for a gas
    amount_unit: str  # "mg/kg", "mg", or "fraction" (a gas)
    times_h: tuple[float, ...]
    duration_h: float | None = None  # IV infusion length; None = bolus
    #: taken at this regimen since long before the start: the drug's compartments start at steady state
    steady_state: bool = False
    every_h: float | None = None  # the interval given as ``every`` (None: ``at`` times)

    @property
    def interval_h(self) -> float:
        """The regular dosing interval (h): ``every``, else the spacing of the administrations."""
        return self.every_h if self.every_h else self.times_h[1] - self.times_h[0]

    @property
    def constant_infusion(self) -> bool:
        """A steady-state line of one infusion without ``every``: an infusion running since long
        before the start, at amount / duration."""
        return self.steady_state and self.duration_h is not None and len(self.times_h) == 1 and not self.every_h

    def amount_mg(self, weight_kg: float) -> float:
        if self.amount_unit == "fraction":
            raise ValueError(f"{self.drug} is a gas dosed as an inspired fraction, not in mg")
        return self.amount * weight_kg if self.amount_unit == "mg/kg" else self.amount


@dataclass(frozen=True)
class Therapy:
    """Psychotherapy sessions of one kind at given times (hours from the start)."""

    kind: str
    times_h: tuple[float, ...]


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Build it with ``from_dict``, ``from_toml`` or ``load``."""

    patient: Patient = field(default_factory=Patient)
    doses: tuple[Dose, ...] = ()
    therapies: tuple[Therapy, ...] = ()
    duration_h: float = 7 * 24.0
    output_every_h: float = 5.0 / 60.0
    #: the mechanisms the model includes (``[model] mechanisms``); None: the calibrated set
    mechanisms: tuple[str, ...] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: adaptive dosing (``[[rule]]``, as a trial arm's: ``ketasim.trial.rules``); None: doses as written
    rules: Any = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any] | Scenario) -> Scenario:
        """A scenario from a path to a TOML file, a dict, or a Scenario (returned as is)."""
        if isinstance(source, Scenario):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        return cls.from_toml(source)

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        return cls.from_dict(read_toml(path, "scenario"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        _check_schema(data)
        sim = data.get("simulation", {})
        duration = parse_time(sim.get("duration", "7 d"), "simulation.duration")
        if not 0 < duration <= MAX_DURATION_H:
            raise ScenarioError("simulation.duration",
                                f"{sim.get('duration')!r} must be > 0 and at most 104 w")
        every = parse_time(sim.get("output_every", "5 min"), "simulation.output_every")
        if not 0 < every <= duration:
            raise ScenarioError("simulation.output_every",
                                f"{sim.get('output_every')!r} must be > 0 and at most the duration")
        if duration / every > MAX_OUTPUT_POINTS:
            raise ScenarioError("simulation.output_every",
                                f"{sim.get('output_every')!r} gives more than {MAX_OUTPUT_POINTS} output times")
        patient = _parse_patient(data.get("patient", {}))
        doses = tuple(_parse_dose(d, f"dose[{i}]", duration) for i, d in enumerate(data.get("dose", [])))
        _check_overlapping_infusions(doses)
        therapies = tuple(_parse_therapy(t, f"therapy[{i}]", duration) for i, t in enumerate(data.get("therapy", [])))
        n_events = sum(len(d.times_h) for d in doses) + sum(len(t.times_h) for t in therapies)
        if n_events > MAX_EVENTS:
            raise ScenarioError("dose", f"{n_events} administrations and sessions; at most {MAX_EVENTS} are allowed")
        rules = None
        if "rule" in data:
            from .trial.rules import parse_rules  # the trial package imports this module

            rules = parse_rules(data["rule"], "rule", tuple(data.get("dose", [])), duration, doses_field="dose")
        return cls(patient=patient, doses=doses, therapies=therapies, duration_h=duration, output_every_h=every,
                   mechanisms=parse_mechanisms(data.get("model", {}), "model.mechanisms"),
                   raw=json.loads(json.dumps(data)), rules=rules)

    def output_times(self):
        import numpy as np

        n = int(round(self.duration_h / self.output_every_h))
        times = np.arange(n + 1) * self.output_every_h
        if times[-1] < self.duration_h - 1e-9:
            times = np.append(times, self.duration_h)
        return np.minimum(times, self.duration_h)

    def to_dict(self) -> dict[str, Any]:
        """The validated content (normalised numbers and units) for manifests."""
        return {"patient": asdict(self.patient), "doses": [asdict(d) for d in self.doses],
                "therapies": [asdict(t) for t in self.therapies],
                "mechanisms": list(self.mechanisms) if self.mechanisms is not None else None,
                "duration_h": self.duration_h, "output_every_h": self.output_every_h}


def scenario_toml(data: Mapping[str, Any]) -> str:
    """A scenario given as data (tables of scalars and lists, ``[[dose]]`` and ``[[therapy]]`` lists of
    tables) written as TOML text that ``Scenario.from_toml`` reads back to the same scenario.

    >>> text = scenario_toml({"patient": {"weight": "70 kg"}, "dose": [{"drug": "esketamine",
    ...                       "route": "intranasal", "amount": "56 mg", "at": ["0 h", "84 h"]}]})
    >>> Scenario.from_dict(tomllib.loads(text)).doses[0].times_h
    (0.0, 84.0)
    """
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            if not math.isfinite(v):
                raise ValueError(f"{v!r} cannot be written to TOML")
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a TOML basic string
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise ValueError(f"{v!r} cannot be written to TOML")

    lines = []
    for key, table in data.items():
        if isinstance(table, Mapping):
            lines += [f"[{key}]", *(f"{k} = {value(v)}" for k, v in table.items()), ""]
    for key, tables in data.items():
        if isinstance(tables, list):
            for table in tables:
                lines += [f"[[{key}]]", *(f"{k} = {value(v)}" for k, v in table.items()), ""]
    return "\n".join(lines)


def parse_mechanisms(model: Mapping[str, Any], field: str) -> tuple[str, ...] | None:
    """The ``mechanisms`` list of a ``[model]`` table, checked against the registry; None if absent."""
    from .model.mechanisms import check_mechanisms

    if "mechanisms" not in model:
        return None
    names = model["mechanisms"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ScenarioError(field, f"must be a list of mechanism names, got {names!r}")
    return check_mechanisms(names, field)


# ---------------------------------------------------------------------- validation helpers
def _path(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "scenario"


def _check_schema(data: Mapping[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(scenario_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    err = errors[0]
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        raise ScenarioError(_path(err), f"unknown key(s) {', '.join(map(repr, extra))}; "
                                        f"allowed: {', '.join(allowed)}")
    if err.validator == "enum":
        raise ScenarioError(_path(err), f"{err.instance!r} is not allowed; allowed: "
                                        f"{', '.join(map(str, err.validator_value))}")
    raise ScenarioError(_path(err), f"{err.instance!r}: {err.message}")


def _parse_patient(data: Mapping[str, Any]) -> Patient:
    defaults = Patient()
    weight = defaults.weight_kg
    if "weight" in data:
        _, weight = parse_quantity(data["weight"], "patient.weight", {"mass": "kg"})
    if not WEIGHT_RANGE_KG[0] <= weight <= WEIGHT_RANGE_KG[1]:
        raise ScenarioError("patient.weight", f"{data.get('weight')!r} is outside "
                                              f"{WEIGHT_RANGE_KG[0]:g}..{WEIGHT_RANGE_KG[1]:g} kg")
    age = defaults.age_y
    if "age" in data:
        _, age = parse_quantity(data["age"], "patient.age", {"age": "y"})
    if not AGE_RANGE_Y[0] <= age <= AGE_RANGE_Y[1]:
        raise ScenarioError("patient.age", f"{data.get('age')!r} is outside "
                                           f"{AGE_RANGE_Y[0]:g}..{AGE_RANGE_Y[1]:g} y")
    baseline = data.get("baseline_madrs", defaults.baseline_madrs)
    if not math.isfinite(baseline):
        raise ScenarioError("patient.baseline_madrs", f"{baseline!r} must be a number in 0..60")
    il6 = None
    if "il6" in data:
        if "inflammation" in data:
            raise ScenarioError("patient.il6", "give either 'inflammation' or 'il6', not both")
        _, il6 = parse_quantity(data["il6"], "patient.il6", {"concentration": "pg/mL"})
        if not IL6_RANGE_PG_ML[0] <= il6 <= IL6_RANGE_PG_ML[1]:
            raise ScenarioError("patient.il6", f"{data['il6']!r} is outside "
                                               f"{IL6_RANGE_PG_ML[0]:g}..{IL6_RANGE_PG_ML[1]:g} pg/mL")
    return Patient(weight_kg=weight, age_y=age, sex=data.get("sex", defaults.sex),
                   baseline_madrs=float(baseline),
                   cyp2b6=data.get("cyp2b6", defaults.cyp2b6), cyp3a4=data.get("cyp3a4", defaults.cyp3a4),
                   comedications=tuple(data.get("comedications", ())),
                   bdnf_val66met=data.get("bdnf_val66met", defaults.bdnf_val66met),
                   inflammation=data.get("inflammation", defaults.inflammation), il6_pg_ml=il6,
                   course=data.get("course", defaults.course),
                   plasticity_responsive=bool(data.get("plasticity_responsive", defaults.plasticity_responsive)))


def _parse_dose(data: Mapping[str, Any], where: str, duration_h: float) -> Dose:
    drug, route = data["drug"], data["route"]
    if route not in DRUG_ROUTES[drug]:
        raise ScenarioError(f"{where}.route", f"'{route}' is not a route for {drug}; allowed: "
                                              f"{', '.join(DRUG_ROUTES[drug])}")
    if drug in GASES:
        return _parse_gas(data, where, duration_h)
    if drug in INERT_DRUGS:
        if "amount" in data:
            raise ScenarioError(f"{where}.amount", f"{drug} is inert and takes no amount; remove it")
        kind, amount = "absolute", 0.0
    else:
        if "amount" not in data:
            raise ScenarioError(f"{where}.amount", f"needed for {drug} (e.g. \"0.5 mg/kg\" or \"20 mg\")")
        kind, amount = parse_quantity(data["amount"], f"{where}.amount", {"per_weight": "mg/kg", "absolute": "mg"})
        if amount <= 0:
            raise ScenarioError(f"{where}.amount", f"{data['amount']!r} must be greater than 0")
        limit = MAX_AMOUNT["mg/kg" if kind == "per_weight" else "mg"]
        if amount > limit:
            unit = "mg/kg" if kind == "per_weight" else "mg"
            raise ScenarioError(f"{where}.amount", f"{data['amount']!r} is above the largest allowed {limit:g} {unit}")
    infusion = None
    if "duration" in data:
        if data["route"] != "iv":
            raise ScenarioError(f"{where}.duration", f"an infusion length is only allowed for route 'iv' "
                                                     f"(and for an inhaled gas), "
                                                     f"not '{data['route']}'; remove it for a bolus")
        infusion = _length(data, where, duration_h)
    times = _dose_times(data, where, duration_h)
    every = parse_time(data["every"], f"{where}.every") if "every" in data else None
    steady = data.get("steady_state", False)
    if steady:
        _check_steady_state(data, where, times, every, infusion)
    return Dose(drug=data["drug"], route=data["route"], amount=amount,
                amount_unit="mg/kg" if kind == "per_weight" else "mg",
                times_h=times, duration_h=infusion, steady_state=bool(steady), every_h=every)


#: drugs a steady-state start takes: those with linear kinetics of their own compartments (the
#: comparators and probes layers), oral or IV; ketamine's enantiomers and metabolites are not among
#: them, since what ketamine leaves downstream (receptors, plasticity, mood) is no linear sum of doses
STEADY_STATE_DRUGS = ("citalopram", "escitalopram", "sertraline", "rapamycin", "memantine", "naltrexone",
                      "midazolam", "lanicemine", "traxoprodil")


def _check_steady_state(data: Mapping[str, Any], where: str, times: tuple[float, ...], every: float | None,
                        infusion: float | None) -> None:
    """A steady-state start needs a drug with linear kinetics of its own given at a regular interval
    (``every``, or the spacing of two or more doses) from within one interval of the start (the doses
    before the start are that regimen continued backwards); an infusion regimen's previous infusion
    must have ended by time 0. A single infusion without ``every`` is a constant infusion that has
    run since long before the start (at amount / duration) and stops at the end of its duration."""
    if data["drug"] not in STEADY_STATE_DRUGS:
        raise ScenarioError(f"{where}.steady_state", f"only for a drug with linear kinetics of its own "
                                                     f"({', '.join(STEADY_STATE_DRUGS)}), not {data['drug']}")
    if infusion is not None and len(times) == 1 and not every:
        if times[0] != 0.0:
            raise ScenarioError(f"{where}.steady_state", "a constant infusion at steady state (one infusion, no "
                                                         f"'every') runs from the start: at 0 h, not {times[0]:g} h")
        return
    gaps = np.diff(times)
    if (len(times) < 2 and not every) or (len(times) > 1 and np.ptp(gaps) > 1e-9 * max(1.0, times[-1])):
        raise ScenarioError(f"{where}.steady_state", "needs a regular interval: at least two doses at equal "
                                                     "spacing, or every")
    interval = every or gaps[0]
    if times[0] >= interval:
        raise ScenarioError(f"{where}.steady_state", f"the first dose ({times[0]:g} h) must come within one "
                                                     f"interval ({interval:g} h) of the start")
    if infusion is not None and times[0] + infusion > interval + 1e-9 * interval:
        raise ScenarioError(f"{where}.steady_state", f"the infusion before the first ({times[0]:g} h) would still "
                                                     f"run at 0 h: with infusions of {infusion:g} h every "
                                                     f"{interval:g} h the first may start at most "
                                                     f"{interval - infusion:g} h after the start")


def _parse_gas(data: Mapping[str, Any], where: str, duration_h: float) -> Dose:
    """An inhaled gas: an inspired concentration ("50 %") breathed for a duration."""
    drug = data["drug"]
    text = data.get("amount")
    if not isinstance(text, str) or not text.strip().endswith("%"):
        raise ScenarioError(f"{where}.amount", f"{drug} is dosed as an inspired concentration such as \"50 %\", "
                                               f"got {text!r}")
    try:
        fraction = float(text.strip()[:-1]) / 100.0
    except ValueError:
        raise ScenarioError(f"{where}.amount", f"{text!r} is not a percentage such as \"50 %\"") from None
    if not 0.0 < fraction <= MAX_INSPIRED_FRACTION:
        raise ScenarioError(f"{where}.amount", f"{text!r} must be above 0 % and at most "
                                               f"{100 * MAX_INSPIRED_FRACTION:g} % (the rest is oxygen)")
    if "duration" not in data:
        raise ScenarioError(f"{where}.duration", f"how long {drug} is breathed, e.g. \"1 h\"")
    return Dose(drug=drug, route="inhaled", amount=fraction, amount_unit="fraction",
                times_h=_dose_times(data, where, duration_h), duration_h=_length(data, where, duration_h))


def _length(data: Mapping[str, Any], where: str, duration_h: float) -> float:
    """An infusion's or inhalation's ``duration``: at least 1 min and within the simulation."""
    length = parse_time(data["duration"], f"{where}.duration")
    if not MIN_INFUSION_H <= length <= duration_h:
        raise ScenarioError(f"{where}.duration", f"{data['duration']!r} must be at least 1 min and at most "
                                                 f"the simulated duration ({duration_h:g} h)")
    return length


def _dose_times(data: Mapping[str, Any], where: str, duration_h: float) -> tuple[float, ...]:
    """A dosing line's times, each before the end of the simulation."""
    times = parse_times(data, where)
    for t in times:
        if t >= duration_h:
            raise ScenarioError(f"{where}.at", f"a dose at {t:g} h is not before the end of the "
                                               f"simulation ({duration_h:g} h)")
    return times


def _parse_therapy(data: Mapping[str, Any], where: str, duration_h: float) -> Therapy:
    times = parse_times(data, where)
    for t in times:
        if t >= duration_h:
            raise ScenarioError(f"{where}.at", f"a session at {t:g} h is not before the end of the "
                                               f"simulation ({duration_h:g} h)")
    return Therapy(kind=data["kind"], times_h=times)


def parse_times(data: Mapping[str, Any], where: str) -> tuple[float, ...]:
    """Administration or session times (h) of a dose/therapy table: `at`, or `start`/`every`/`count`."""
    repeat_keys = [k for k in ("start", "every", "count") if k in data]
    if "at" in data and repeat_keys:
        raise ScenarioError(where, "give either 'at' or 'start'/'every'/'count', not both")
    if "at" in data:
        times = [parse_time(t, f"{where}.at[{i}]") for i, t in enumerate(data["at"])]
    elif repeat_keys:
        start = parse_time(data.get("start", "0 h"), f"{where}.start")
        if "every" in data and "count" not in data:
            raise ScenarioError(f"{where}.count", "needed with 'every' (how many doses or sessions)")
        count = int(data.get("count", 1))
        if count > 1 and "every" not in data:
            raise ScenarioError(f"{where}.every", "needed when count > 1 (e.g. every = \"3.5 d\")")
        every = parse_time(data["every"], f"{where}.every") if "every" in data else 0.0
        if count > 1 and every <= 0:
            raise ScenarioError(f"{where}.every", f"{data['every']!r} must be greater than 0")
        times = [start + i * every for i in range(count)]
    else:
        times = [0.0]
    for i, t in enumerate(times):
        if t < 0:
            raise ScenarioError(f"{where}.at[{i}]", f"{t:g} h is before the start (times are >= 0)")
    if len(set(times)) != len(times):
        raise ScenarioError(f"{where}.at", "the same time is given twice")
    return tuple(sorted(times))


def _check_overlapping_infusions(doses: tuple[Dose, ...]) -> None:
    by_line: dict[tuple[str, str], list[tuple[float, float | None, int]]] = {}
    for i, d in enumerate(doses):
        for t in d.times_h:
            by_line.setdefault((d.drug, d.route), []).append((t, d.duration_h, i))
    for (drug, route), entries in by_line.items():
        entries.sort()
        for (t0, dur, i), (t1, _, j) in zip(entries, entries[1:]):
            if t0 == t1:
                raise ScenarioError(f"dose[{j}].at", f"two {drug} {route} doses at {t1:g} h")
            if dur is not None and t0 + dur > t1 + 1e-12:
                raise ScenarioError(f"dose[{i}].duration",
                                    f"the {drug} {route} infusion at {t0:g} h runs {dur:g} h, past the "
                                    f"next {route} dose at {t1:g} h; shorten it or space the doses")
