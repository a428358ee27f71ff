"""Units at the boundary: parse "0.5 mg/kg", "40 min", "70 kg" into the internal unit system.

Inside the model everything is in one system (see ``INTERNAL_UNITS``): time in h, volume in L,
amount in umol, concentration in uM (umol/L), flow and clearance in L/h. Text with units is parsed
once, here, and checked against the dimension the field needs.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import pint

from .errors import ScenarioError

#: the one internal unit per dimension; the parameter loader converts every value to these.
INTERNAL_UNITS: dict[str, str] = {
    "[time]": "h",
    "1 / [time]": "1/h",
    "[length] ** 3": "L",
    "[length] ** 3 / [time]": "L/h",
    "[substance]": "umol",
    "[substance] / [length] ** 3": "uM",
    "[mass]": "kg",
    "[mass] / [substance]": "g/mol",
    "[mass] / [length] ** 3": "ng/mL",
    "[length] ** 3 / [mass]": "mL/ng",
    "[mass] / [length] / [time] ** 2": "mmHg",
    "[time] ** -1 / [length] ** 3 * [length] ** 3": "1/h",
    "dimensionless": "dimensionless",
}

_NUMBER_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\s].*)?$")

#: time units accepted in scenario files and their value in hours
TIME_UNITS_H = {"min": 1.0 / 60.0, "h": 1.0, "d": 24.0, "w": 168.0}


@lru_cache(maxsize=1)
def registry() -> pint.UnitRegistry:
    ureg = pint.UnitRegistry()
    ureg.define("w = week")
    ureg.define("y = year")
    ureg.define("fraction = [] = frac")
    ureg.define("points = []")
    return ureg


def unit_dimension(unit: str) -> str:
    """The pint dimensionality of a unit string, as text ('[time]', 'dimensionless', ...)."""
    ureg = registry()
    dim = ureg.parse_units(unit).dimensionality
    return str(dim) if dim else "dimensionless"


def to_internal(value: float, unit: str) -> tuple[float, str]:
    """Convert a value in ``unit`` to the internal unit of its dimension."""
    ureg = registry()
    q = ureg.Quantity(value, ureg.parse_units(unit))
    dim = str(q.dimensionality) if q.dimensionality else "dimensionless"
    target = INTERNAL_UNITS.get(dim)
    if target is None:
        raise KeyError(f"no internal unit for dimension {dim} (unit '{unit}')")
    return float(q.to(target).magnitude), target


def parse_time(text: object, field: str) -> float:
    """Parse a time or duration such as "40 min", "3.5 d", "2 w" into hours."""
    if not isinstance(text, str):
        raise ScenarioError(field, f"{text!r} is not a time; write a number and one of "
                                   f"{', '.join(TIME_UNITS_H)} (e.g. \"40 min\")")
    m = _NUMBER_UNIT.match(text)
    if not m or m.group(2) is None or m.group(2).strip() not in TIME_UNITS_H:
        raise ScenarioError(field, f"'{text}' is not a time; write a number and one of "
                                   f"{', '.join(TIME_UNITS_H)} (e.g. \"40 min\")")
    value = float(m.group(1)) * TIME_UNITS_H[m.group(2).strip()]
    if not math.isfinite(value):
        raise ScenarioError(field, f"'{text}' is not a finite time")
    return value


def parse_quantity(text: object, field: str, allowed: dict[str, str]) -> tuple[str, float]:
    """Parse "number unit" and return (kind, value) for the first allowed kind that fits.

    ``allowed`` maps a kind name to its target unit, e.g. ``{"per_weight": "mg/kg", "absolute": "mg"}``.
    A per-weight unit (mass over body mass) is told apart from a plain ratio by its denominator.
    """
    choices = " or ".join(f'"{u}"' for u in allowed.values())
    if not isinstance(text, str):
        raise ScenarioError(field, f"{text!r} needs a unit: write it as text in {choices}")
    m = _NUMBER_UNIT.match(text)
    if not m or m.group(2) is None:
        raise ScenarioError(field, f"'{text}' needs a number and a unit in {choices}")
    ureg = registry()
    try:
        units = ureg.parse_units(m.group(2).strip())
    except Exception:  # pint raises several types for unknown or malformed units
        raise ScenarioError(field, f"'{text}': unknown unit '{m.group(2).strip()}'; use {choices}") from None
    value = float(m.group(1))
    if not math.isfinite(value):
        raise ScenarioError(field, f"'{text}' is not a finite number")
    for kind, target in allowed.items():
        target_units = ureg.parse_units(target)
        if units.dimensionality != target_units.dimensionality:
            continue
        # "mg/kg" and "mg/mg" share a dimension (none); require the same shape of unit
        if _has_mass_denominator(units) != _has_mass_denominator(target_units):
            continue
        converted = float(ureg.Quantity(value, units).to(target_units).magnitude)
        if not math.isfinite(converted):
            raise ScenarioError(field, f"'{text}' is not a finite quantity")
        return kind, converted
    raise ScenarioError(field, f"'{text}' has a unit that does not fit; use {choices}")


def _has_mass_denominator(units: pint.Unit) -> bool:
    ureg = registry()
    return any(exp < 0 and ureg.parse_units(name).dimensionality == ureg.kg.dimensionality
               for name, exp in units._units.items())
