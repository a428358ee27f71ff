"""What a virtual population is: covariate distributions and inter-individual variability.

A ``[population]`` table of a trial file (or a dict) becomes a ``PopulationSpec``. Covariates are
drawn from truncated normal or lognormal distributions (weight, age, baseline MADRS), categorical
fractions (genotypes, inflammatory status) and independent prevalences (co-medications); model
parameters vary between patients lognormally with the CVs of the parameter files. A preset
(``presets.toml``) supplies every field a table leaves out.

>>> spec = PopulationSpec.from_dict({"n": 10, "preset": "treatment-resistant",
...                                  "weight": {"mean": "70 kg", "sd": "10 kg", "min": "50 kg", "max": "100 kg"}})
>>> spec.n, spec.weight.mean, spec.age.mean
(10, 70.0, 46.0)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from ..errors import ScenarioError
from ..scenario import AGE_RANGE_Y, WEIGHT_RANGE_KG, scenario_schema
from ..units import parse_quantity

MAX_PATIENTS = 1_000_000  # per arm (the engine runs in chunks; memory stays flat)
DISTRIBUTIONS = ("normal", "lognormal")
CATEGORICAL_FIELDS = ("cyp2b6", "cyp3a4", "bdnf_val66met", "inflammation", "course")
CONTINUOUS_FIELDS = {"weight": ("mass", "kg", WEIGHT_RANGE_KG), "age": ("age", "y", AGE_RANGE_Y),
                     "baseline_madrs": (None, "points", (0.0, 60.0))}
FIELDS = ("n", "preset", "female_fraction", *CONTINUOUS_FIELDS, *CATEGORICAL_FIELDS, "inclusion_madrs_at_least",
          "comedications", "variability")
VARIABILITY_FIELDS = ("enabled", "scale", "exclude", "correlations")


@dataclass(frozen=True)
class Continuous:
    """A covariate drawn from a normal or lognormal distribution (mean, SD on the natural scale),
    truncated to [low, high] by redrawing; ``sd = 0`` gives the mean to everyone."""

    mean: float
    sd: float
    low: float
    high: float
    distribution: str = "normal"

    def draw_many(self, rng, n: int) -> np.ndarray:
        """``n`` values at once (redrawing those outside the bounds)."""
        if self.sd == 0.0:
            return np.full(n, self.mean)
        if self.distribution == "lognormal":  # moments of the lognormal matched to mean and SD
            sigma = math.sqrt(math.log1p((self.sd / self.mean) ** 2))
            mu = math.log(self.mean) - 0.5 * sigma * sigma

            def sample(k):
                return np.exp(mu + sigma * rng.standard_normal(k))
        else:
            def sample(k):
                return self.mean + self.sd * rng.standard_normal(k)
        x = sample(n)
        for _ in range(1000):
            bad = (x < self.low) | (x > self.high)
            if not bad.any():
                return x
            x[bad] = sample(int(bad.sum()))
        return np.clip(x, self.low, self.high)  # bounds far in a tail: unreachable by redrawing


@dataclass(frozen=True)
class Categorical:
    """A covariate taking each level with a given fraction."""

    levels: tuple[str, ...]
    fractions: tuple[float, ...]

    def draw_many(self, rng, n: int) -> list[str]:
        """``n`` levels at once."""
        index = np.searchsorted(np.cumsum(self.fractions), rng.random(n), side="right")
        return [self.levels[i] for i in np.minimum(index, len(self.levels) - 1)]


@dataclass(frozen=True)
class Variability:
    """Inter-individual variability of model parameters: lognormal with the files' CVs (times
    ``scale``), truncated to each parameter's range; ``exclude`` names parameters or whole layers
    (``"pk.*"``); ``correlations`` lists ``[name_a, name_b, rho]`` on the log scale."""

    enabled: bool = True
    scale: float = 1.0
    exclude: tuple[str, ...] = ()
    correlations: tuple[tuple[str, str, float], ...] = ()

    def excludes(self, name: str) -> bool:
        return any(name == pat or (pat.endswith(".*") and name.startswith(pat[:-1])) for pat in self.exclude)


@dataclass(frozen=True)
class PopulationSpec:
    """A validated population: how many patients per arm and how they are drawn."""

    n: int
    female_fraction: float
    weight: Continuous
    age: Continuous
    baseline_madrs: Continuous
    cyp2b6: Categorical
    cyp3a4: Categorical
    bdnf_val66met: Categorical
    inflammation: Categorical
    course: Categorical = Categorical(("chronic",), (1.0,))
    #: enrolment needs a screening MADRS rating at least this high (0: no threshold); the rating is
    #: the true severity plus the day's fluctuation and the rater's error, so those enrolled regress
    #: towards their true severity afterwards
    inclusion_madrs_at_least: float = 0.0
    comedications: tuple[tuple[str, float], ...] = ()
    variability: Variability = field(default_factory=Variability)
    preset: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "population") -> PopulationSpec:
        if not isinstance(data, Mapping):
            raise ScenarioError(where, "must be a table")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ScenarioError(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(FIELDS)}")
        merged: dict[str, Any] = {}
        preset = data.get("preset")
        if preset is not None:
            if preset not in presets():
                raise ScenarioError(f"{where}.preset", f"{preset!r} is not a preset; allowed: {', '.join(presets())}")
            merged.update({k: v for k, v in presets()[preset].items() if k in FIELDS})
        merged.update({k: v for k, v in data.items() if k != "preset"})
        n = merged.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_PATIENTS:
            raise ScenarioError(f"{where}.n", f"{n!r} must be a whole number of patients per arm, 1..{MAX_PATIENTS}")
        merged.setdefault("course", "chronic")
        for name in (*CONTINUOUS_FIELDS, *CATEGORICAL_FIELDS, "female_fraction"):
            if name not in merged:
                raise ScenarioError(f"{where}.{name}", "needed (or name a preset: " + ", ".join(presets()) + ")")
        return cls(
            n=n,
            female_fraction=_fraction(merged["female_fraction"], f"{where}.female_fraction"),
            **{name: _continuous(merged[name], f"{where}.{name}", *spec) for name, spec in CONTINUOUS_FIELDS.items()},
            **{name: _categorical(merged[name], f"{where}.{name}", _levels(name)) for name in CATEGORICAL_FIELDS},
            inclusion_madrs_at_least=_inclusion(merged.get("inclusion_madrs_at_least", 0.0),
                                                f"{where}.inclusion_madrs_at_least"),
            comedications=_prevalences(merged.get("comedications", {}), f"{where}.comedications"),
            variability=_variability(merged.get("variability", {}), f"{where}.variability"),
            preset=preset,
        )

    def describe(self) -> dict[str, Any]:
        """Plain-data description for manifests and reports (units in the keys)."""
        def cont(c: Continuous):
            return {"distribution": c.distribution, "mean": c.mean, "sd": c.sd, "min": c.low, "max": c.high}

        return {"n_per_arm": self.n, "preset": self.preset, "female_fraction": self.female_fraction,
                "weight [kg]": cont(self.weight), "age [y]": cont(self.age),
                "baseline_madrs [points]": cont(self.baseline_madrs),
                "inclusion_madrs_at_least [points]": self.inclusion_madrs_at_least,
                **{name: dict(zip(getattr(self, name).levels, getattr(self, name).fractions))
                   for name in CATEGORICAL_FIELDS},
                "comedications": dict(self.comedications),
                "variability": {"enabled": self.variability.enabled, "scale": self.variability.scale,
                                "exclude": list(self.variability.exclude),
                                "correlations": [list(c) for c in self.variability.correlations]}}


@lru_cache(maxsize=1)
def presets() -> dict[str, dict[str, Any]]:
    """The shipped clinical populations (``presets.toml``), each with description and source."""
    text = resources.files(__package__).joinpath("presets.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


# ---------------------------------------------------------------------- field parsers
def _levels(name: str) -> tuple[str, ...]:
    return tuple(scenario_schema()["properties"]["patient"]["properties"][name]["enum"])


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(where, f"{value!r} must be a finite number")
    return float(value)


def _fraction(value: Any, where: str) -> float:
    x = _number(value, where)
    if not 0.0 <= x <= 1.0:
        raise ScenarioError(where, f"{value!r} must be a fraction in 0..1")
    return x


def _continuous(value: Any, where: str, dimension: str | None, unit: str, limits: tuple[float, float]) -> Continuous:
    def quantity(v: Any, key: str | None) -> float:
        at = f"{where}.{key}" if key else where
        if dimension is None:
            return _number(v, at)
        return parse_quantity(v, at, {dimension: unit})[1]

    if not isinstance(value, Mapping):  # one value for everyone, e.g. weight = "70 kg"
        x = quantity(value, None)
        if not limits[0] <= x <= limits[1]:
            raise ScenarioError(where, f"{value!r} is outside {limits[0]:g}..{limits[1]:g} {unit}")
        return Continuous(mean=x, sd=0.0, low=x, high=x)
    allowed = ("mean", "sd", "min", "max", "distribution")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ScenarioError(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    for key in ("mean", "sd"):
        if key not in value:
            raise ScenarioError(f"{where}.{key}", f"needed (a {where.rsplit('.', 1)[-1]} distribution has mean and sd)")
    mean, sd = quantity(value["mean"], "mean"), quantity(value["sd"], "sd")
    low = quantity(value["min"], "min") if "min" in value else limits[0]
    high = quantity(value["max"], "max") if "max" in value else limits[1]
    distribution = value.get("distribution", "normal")
    if distribution not in DISTRIBUTIONS:
        raise ScenarioError(f"{where}.distribution", f"{distribution!r} is not allowed; allowed: {', '.join(DISTRIBUTIONS)}")
    if sd < 0:
        raise ScenarioError(f"{where}.sd", f"{value['sd']!r} must be >= 0")
    if not limits[0] <= low <= high <= limits[1]:
        raise ScenarioError(where, f"min and max must satisfy {limits[0]:g} <= min <= max <= {limits[1]:g} {unit}")
    if not low <= mean <= high:
        raise ScenarioError(f"{where}.mean", f"{value['mean']!r} must lie within min..max ({low:g}..{high:g} {unit})")
    if distribution == "lognormal" and mean <= 0:
        raise ScenarioError(f"{where}.mean", "a lognormal distribution needs a mean > 0")
    return Continuous(mean=mean, sd=sd, low=low, high=high, distribution=distribution)


def _inclusion(value: Any, where: str) -> float:
    x = _number(value, where)
    if not 0.0 <= x <= 50.0:
        raise ScenarioError(where, f"{value!r} must be a MADRS score in 0..50 (0: no inclusion threshold)")
    return x


def _categorical(value: Any, where: str, allowed: tuple[str, ...]) -> Categorical:
    if isinstance(value, str):  # one level for everyone
        value = {value: 1.0}
    if not isinstance(value, Mapping) or not value:
        raise ScenarioError(where, f"must be a table of fractions over {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ScenarioError(where, f"unknown level(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    fractions = {k: _fraction(v, f"{where}.{k}") for k, v in value.items()}
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ScenarioError(where, f"fractions sum to {total:g}; they must sum to 1")
    levels = tuple(k for k in allowed if k in fractions)  # schema order: independent of the file's key order
    return Categorical(levels=levels, fractions=tuple(fractions[k] for k in levels))


def _prevalences(value: Any, where: str) -> tuple[tuple[str, float], ...]:
    allowed = _levels_of_array("comedications")
    if not isinstance(value, Mapping):
        raise ScenarioError(where, f"must be a table of prevalences (0..1) over {', '.join(allowed)}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ScenarioError(where, f"unknown drug(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")
    return tuple((k, _fraction(value[k], f"{where}.{k}")) for k in allowed if k in value)


@lru_cache(maxsize=1)
def _parameter_names() -> frozenset[str]:
    from ..params import load_parameters

    return frozenset(load_parameters())


def _levels_of_array(name: str) -> tuple[str, ...]:
    return tuple(scenario_schema()["properties"]["patient"]["properties"][name]["items"]["enum"])


def _variability(value: Any, where: str) -> Variability:
    if isinstance(value, bool):
        return Variability(enabled=value)
    if not isinstance(value, Mapping):
        raise ScenarioError(where, "must be true, false or a table with " + ", ".join(VARIABILITY_FIELDS))
    unknown = sorted(set(value) - set(VARIABILITY_FIELDS))
    if unknown:
        raise ScenarioError(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(VARIABILITY_FIELDS)}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ScenarioError(f"{where}.enabled", f"{enabled!r} must be true or false")
    scale = _number(value.get("scale", 1.0), f"{where}.scale")
    if not 0.0 <= scale <= 5.0:
        raise ScenarioError(f"{where}.scale", f"{scale!r} must be in 0..5 (a multiplier of every CV)")
    exclude = value.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise ScenarioError(f"{where}.exclude", "must be a list of parameter names or layer patterns such as \"pk.*\"")
    correlations = []
    for i, entry in enumerate(value.get("correlations", [])):
        if (not isinstance(entry, list) or len(entry) != 3 or not all(isinstance(e, str) for e in entry[:2])):
            raise ScenarioError(f"{where}.correlations[{i}]", "must be [\"layer.name_a\", \"layer.name_b\", rho]")
        unknown = [name for name in entry[:2] if name not in _parameter_names()]
        if unknown:
            raise ScenarioError(f"{where}.correlations[{i}]", f"unknown parameter(s) {', '.join(unknown)} "
                                                              "(`ketasim cite` lists them)")
        rho = _number(entry[2], f"{where}.correlations[{i}][2]")
        if not -1.0 < rho < 1.0 or entry[0] == entry[1]:
            raise ScenarioError(f"{where}.correlations[{i}]", "needs two different parameters and -1 < rho < 1")
        correlations.append((entry[0], entry[1], rho))
    return Variability(enabled=enabled, scale=scale, exclude=tuple(exclude), correlations=tuple(correlations))
