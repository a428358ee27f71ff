"""Conditions on combinations of parameters that single ranges cannot express.

Each is needed for the equations to stay physical: e.g. the well-stirred liver needs hepatic
clearance below hepatic blood flow, and enzyme fractions cannot exceed one. Every condition works on
single values (``violations``, for a parameter set) and on columns (``satisfied``, for a block of
virtual patients).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Condition:
    names: tuple[str, ...]  # the parameters it reads; it applies only where all are present
    holds: Callable  # p -> bool (or bool array for columns)
    message: Callable[[Mapping[str, float]], str]


def _hepatic_clearance(e: str) -> Condition:
    cl = f"pk.cl_{e}_ketamine"
    return Condition(
        (cl, "pk.fraction_extrahepatic", "pk.q_hepatic"),
        lambda p: p[cl] * (1.0 - p["pk.fraction_extrahepatic"]) < p["pk.q_hepatic"],
        lambda p: (f"{cl} x (1 - pk.fraction_extrahepatic) = {p[cl] * (1.0 - p['pk.fraction_extrahepatic']):g} L/h "
                   f"must stay below pk.q_hepatic = {p['pk.q_hepatic']:g} L/h (well-stirred liver)"))


def _at_most_one(a: str, b: str) -> Condition:
    return Condition((a, b), lambda p: p[a] + p[b] <= 1.0, lambda p: f"{a} + {b} must be at most 1")


CONDITIONS = (
    _hepatic_clearance("s"),
    _hepatic_clearance("r"),
    _at_most_one("pk.fm_cyp2b6", "pk.fm_cyp3a4"),
    _at_most_one("pk.f_norketamine_to_dhnk", "pk.f_norketamine_to_hnk"),
    _at_most_one("inflammation.fraction_kmo", "inflammation.fraction_kat"),
)
#: every parameter some condition reads
CONSTRAINED_PARAMETERS = tuple(dict.fromkeys(n for c in CONDITIONS for n in c.names))


def violations(p: Mapping[str, float]) -> list[str]:
    """Messages for every violated condition among the parameters present in ``p``."""
    return [c.message(p) for c in CONDITIONS if set(c.names) <= p.keys() and not c.holds(p)]


def satisfied(columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """(n,) whether each row of the parameter ``columns`` meets every condition whose parameters are present."""
    ok = np.ones(n, dtype=bool)
    for c in CONDITIONS:
        if set(c.names) <= columns.keys():
            ok &= c.holds(columns)
    return ok
