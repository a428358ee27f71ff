"""Conditions on combinations of parameters that single ranges cannot express.

Each is needed for the equations to stay physical: e.g. the well-stirred liver needs hepatic
clearance below hepatic blood flow, and enzyme fractions cannot exceed one.
"""

from __future__ import annotations

from collections.abc import Mapping


def violations(p: Mapping[str, float]) -> list[str]:
    """Messages for every violated condition among the parameters present in ``p``."""
    out = []
    if {"pk.q_hepatic", "pk.fraction_extrahepatic"} <= p.keys():
        for e in ("s", "r"):
            name = f"pk.cl_{e}_ketamine"
            if name in p:
                hepatic = p[name] * (1.0 - p["pk.fraction_extrahepatic"])
                if hepatic >= p["pk.q_hepatic"]:
                    out.append(f"{name} x (1 - pk.fraction_extrahepatic) = {hepatic:g} L/h must stay below "
                               f"pk.q_hepatic = {p['pk.q_hepatic']:g} L/h (well-stirred liver)")
    if {"pk.fm_cyp2b6", "pk.fm_cyp3a4"} <= p.keys() and p["pk.fm_cyp2b6"] + p["pk.fm_cyp3a4"] > 1.0:
        out.append("pk.fm_cyp2b6 + pk.fm_cyp3a4 must be at most 1")
    if {"pk.f_norketamine_to_dhnk", "pk.f_norketamine_to_hnk"} <= p.keys() and \
            p["pk.f_norketamine_to_dhnk"] + p["pk.f_norketamine_to_hnk"] > 1.0:
        out.append("pk.f_norketamine_to_dhnk + pk.f_norketamine_to_hnk must be at most 1")
    if {"inflammation.fraction_kmo", "inflammation.fraction_kat"} <= p.keys() and \
            p["inflammation.fraction_kmo"] + p["inflammation.fraction_kat"] > 1.0:
        out.append("inflammation.fraction_kmo + inflammation.fraction_kat must be at most 1")
    return out
