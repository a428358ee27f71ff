"""Model variants (a set of hypotheses each) and their fair calibration.

A variant is a named set of mechanisms (``ketasim mechanisms``). Before variants are compared, each
is calibrated the same way: its routes' own gains (``Mechanism.gain``; never a gain shared by every
route, such as the clinical strength-to-symptom gain) are scaled by one common factor until the
variant reproduces the fitting target, Murrough 2013's mean MADRS change 24 h after one
0.5 mg/kg/40 min infusion (``murrough2013_madrs_24h``, ketamine arm). One factor per variant keeps
the relative weight of its routes as the calibrated model has them and gives every variant the same
number of fitted parameters. Where no factor within the gains' declared ranges reaches the target,
the variant keeps the factor that comes closest and says so (``GainFit.note``); ``GainFit.reached``
tells whether its value is within the target's accepted interval (its published uncertainty).

>>> from ketasim.compare.variants import Variant, route_gains
>>> Variant.parse("glun2b_eef2+opioid").mechanisms
('glun2b_eef2', 'opioid')
>>> route_gains(("disinhibition", "habenula_trapping", "opioid"))
('plasticity.bdnf_release_gain', 'clinical.habenula_symptom_gain')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from scipy.optimize import brentq

from ..errors import ScenarioError
from ..model.mechanisms import DEFAULT_MECHANISMS, MECHANISMS, check_mechanisms, with_mechanisms
from ..params import ParameterSet

#: the target each variant's gain is fitted to (a row of the shipped calibration table)
FIT_TARGET = "murrough2013_madrs_24h"
FIT_ARM = "ketamine"
#: virtual patients in the fitting trial: the Monte Carlo SE of its mean change (SD about 8.4
#: points) is then 0.38 points, a tenth of the target's accepted half-width (3.23)
FIT_PATIENTS = 500
#: the root is found to about this many MADRS points (as a relative step in the factor's log)
FIT_TOLERANCE = 0.05


@dataclass(frozen=True)
class Variant:
    """A named set of hypotheses."""

    name: str
    mechanisms: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, field_name: str = "--variants", name: str | None = None) -> Variant:
        """``"a+b"`` checked against the registry (``calibrated`` stands for the calibrated set); the
        name defaults to the text."""
        names = [n.strip() for n in text.split("+") if n.strip()]
        expanded = [m for n in names for m in (DEFAULT_MECHANISMS if n == "calibrated" else (n,))]
        return cls(name or "+".join(names), check_mechanisms(expanded, field_name))


def default_variants() -> tuple[Variant, ...]:
    """The calibrated model, each route on its own, and the calibrated model with each modulator
    and each route it leaves out added; named as ``--variants`` names them (``calibrated+opioid``)."""
    names = ["calibrated", *(m.name for m in MECHANISMS.values() if m.kind == "route"),
             *(f"calibrated+{m.name}" for m in MECHANISMS.values() if m.name not in DEFAULT_MECHANISMS)]
    return parse_variants(names, "variant")


def parse_variants(text: str | Sequence[str], field_name: str = "--variants") -> tuple[Variant, ...]:
    """``"calibrated,disinhibition,calibrated+opioid"``: each comma-separated item a ``+``-joined set
    of mechanisms, where ``calibrated`` stands for the calibrated set; names must be distinct."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ScenarioError(field_name, "name at least one variant (e.g. calibrated,disinhibition+opioid)")
    variants = []
    for i, item in enumerate(items):
        where = f"{field_name}[{i}]"
        variants.append(Variant.parse(item, where))
    names = [v.name for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ScenarioError(field_name, f"variant {', '.join(repeated)} named twice")
    return tuple(variants)


def route_gains(mechanisms: Iterable[str]) -> tuple[str, ...]:
    """The own gains of the named mechanisms (modulators have none), in registry order."""
    chosen = set(mechanisms)
    return tuple(m.gain for m in MECHANISMS.values() if m.name in chosen and m.gain is not None)


@dataclass(frozen=True)
class GainFit:
    """How a variant was calibrated: the common factor on its own gains and whether it reached
    the fitting target."""

    variant: Variant
    factor: float
    gains: dict[str, float]
    target: float
    model: float
    reached: bool | None  # None: not fitted
    factor_range: tuple[float, float]
    evaluations: int
    note: str = ""
    params: ParameterSet | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"variant": self.variant.name, "mechanisms": list(self.variant.mechanisms),
                "fitted_factor": self.factor, "fitted_gains": self.gains, "factor_range": list(self.factor_range),
                "fit_target": FIT_TARGET, "target [MADRS points]": self.target,
                "model [MADRS points]": self.model, "reached": self.reached, "evaluations": self.evaluations,
                "note": self.note}


def factor_range(params: ParameterSet, gains: Sequence[str]) -> tuple[float, float]:
    """The factors that keep every gain within its declared range."""
    low, high = 0.0, math.inf
    for name in gains:
        p = params[name]
        if p.value <= 0.0:
            raise ScenarioError(name, f"a gain of {p.value:g} cannot be scaled; give it a positive value")
        low, high = max(low, p.range[0] / p.value), min(high, p.range[1] / p.value)
    return low, high


def scaled(params: ParameterSet, gains: Sequence[str], factor: float) -> ParameterSet:
    """``params`` with each named gain multiplied by ``factor`` (clipped onto its range against
    rounding)."""
    values = {}
    for name in gains:
        p = params[name]
        values[name.replace(".", "__")] = min(max(p.value * factor, p.range[0]), p.range[1])
    return params.replace(**values)


@lru_cache(maxsize=1)
def _fitting_row():
    """The fitting target's row of the shipped calibration table (read once; callers only read it)."""
    from ..calibrate.data import load_observations, shipped_targets

    table = load_observations(shipped_targets())
    return table[(table["target"] == FIT_TARGET) & (table["quantity"] == FIT_ARM)].iloc[0]


def fitting_target() -> tuple[float, float]:
    """(published value, accepted half-width) of the fitting target, in MADRS points."""
    from ..calibrate.data import convert
    from ..calibrate.targets import accepted_interval

    row = _fitting_row()
    low, high = accepted_interval(row)
    value = convert(float(row["value"]), str(row["unit"]), "MADRS points")
    return value, convert((high - low) / 2, str(row["unit"]), "MADRS points")


def fitting_trial(patients: int = FIT_PATIENTS):
    """The target's trial cut to its ketamine arm, ``patients`` patients and the 24-h assessment."""
    from ..trial import TrialSpec

    row = _fitting_row()
    raw = dict(TrialSpec.load(row["scenario_path"]).raw)
    raw["trial"] = {k: v for k, v in raw["trial"].items() if k != "control"} | {"assessments": [str(row["time"])]}
    raw["population"] = dict(raw["population"], n=patients)
    raw["arm"] = [a for a in raw["arm"] if a["name"] == FIT_ARM]
    raw.pop("model", None)
    return TrialSpec.load(raw)


def fit_variant(variant: Variant, params: ParameterSet, *, patients: int = FIT_PATIENTS,
                progress: Callable[[str], None] | None = None) -> GainFit:
    """Calibrate ``variant``: the factor on its own gains that brings its mean MADRS change at 24 h
    to the fitting target (Brent's method; the change is monotone in the factor), within the gains'
    ranges and within a factor of 100 either way. Returns the fit with ``params`` set to the
    variant's calibrated parameter set."""
    from ..trial import run_trial

    base = with_mechanisms(params, variant.mechanisms)
    gains = route_gains(variant.mechanisms)
    target, half_width = fitting_target()
    trial = fitting_trial(patients)
    evaluations = 0

    def mean_change(factor: float) -> float:
        nonlocal evaluations
        evaluations += 1
        result = run_trial(trial, params=scaled(base, gains, factor))
        value = result.summary["arms"][FIT_ARM]["assessments"][0]["madrs_change [points]"]["mean"]
        if progress is not None:
            progress(f"{variant.name}: factor {factor:.4g} -> {value:.2f} MADRS points")
        return float(value)

    low, high = factor_range(base, gains)
    if not gains:
        value = mean_change(1.0)
        return GainFit(variant=variant, factor=1.0, gains={}, target=target, model=value,
                       reached=abs(value - target) <= half_width, factor_range=(1.0, 1.0), evaluations=evaluations,
                       note="no own gain to fit", params=base)
    # the ends of the search: the declared range, but within a factor of 100 either way
    low, high = max(low, 0.01), min(high, 100.0)
    cache: dict[float, float] = {}

    def cached(factor: float) -> float:
        if factor not in cache:
            cache[factor] = mean_change(factor)
        return cache[factor]

    at_low, at_high = cached(low), cached(high)
    if (at_low - target) * (at_high - target) > 0:
        factor, value = (low, at_low) if abs(at_low - target) < abs(at_high - target) else (high, at_high)
        side = "lower" if factor == low else "upper"
        note = (f"cannot reach {FIT_TARGET}: {value:.2f} points at the {side} end of its gains' ranges "
                f"(factor {factor:.3g}), target {target:.2f}")
    else:
        # the ends are exp(log(end)), which need not equal end to the last bit: answer them from the cache
        ends = {math.log(low): low, math.log(high): high}
        log_factor = brentq(lambda x: cached(ends.get(x, math.exp(x))) - target, math.log(low), math.log(high),
                            xtol=FIT_TOLERANCE / abs(target), rtol=1e-6)
        factor = ends.get(log_factor, math.exp(log_factor))
        value = cached(factor)
        note = ""
    fitted = scaled(base, gains, factor)
    # reached: within the target's own accepted interval (its published uncertainty)
    return GainFit(variant=variant, factor=factor, gains={g: fitted[g].value for g in gains}, target=target,
                   model=value, reached=abs(value - target) <= half_width, factor_range=(low, high),
                   evaluations=evaluations, note=note, params=fitted)
