"""Comparator and co-administered drugs: midazolam (active placebo) and daily oral SSRIs.

Midazolam: one compartment, cleared by CYP3A4 (so interacting drugs act on it too), read by the
synapse layer as GABA-A potentiation and by the clinical layer as sedation. SSRIs (citalopram,
escitalopram, sertraline): oral depot and one compartment each; the serotonin transporter (SERT)
occupancy they produce drives the slow adaptation of the clinical layer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable
from .pk import REFERENCE_WEIGHT_KG

SSRIS = ("citalopram", "escitalopram", "sertraline")


class Comparators(Layer):
    """Midazolam and SSRI pharmacokinetics, GABA-A potentiation and SERT occupancy."""

    name: ClassVar[str] = "comparators"

    def states(self) -> tuple[Variable, ...]:
        out = [Variable("midazolam_central", "umol", "midazolam in plasma and tissues (one compartment)")]
        for d in SSRIS:
            out.append(Variable(f"{d}_gut", "umol", f"{d} in the gut depot"))
            out.append(Variable(f"{d}_central", "umol", f"{d} in the body (one compartment)"))
        return tuple(out)

    def outputs(self) -> tuple[Variable, ...]:
        return (
            Variable("midazolam_plasma", "ng/mL", "midazolam in plasma"),
            Variable("gabaa_potentiation", "fraction", "GABA-A receptor potentiation by benzodiazepines"),
            Variable("ssri_plasma", "ng/mL", "SSRI in plasma (sum over the SSRIs given)"),
            Variable("sert_occupancy", "fraction", "serotonin transporter occupancy"),
        )

    @staticmethod
    def _size(c):
        return c["weight"] / REFERENCE_WEIGHT_KG

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        size = self._size(c)
        flow = size ** 0.75
        cl_mdz = p["cl_midazolam"] * flow * c["cyp3a4_hepatic_activity"]
        dx = {"midazolam_central": inp["dosing.midazolam_iv_rate"]
              - cl_mdz * x["midazolam_central"] / (p["v_midazolam"] * size)}
        for d in SSRIS:
            absorbed = p[f"ka_{d}"] * x[f"{d}_gut"]
            dx[f"{d}_gut"] = -absorbed
            dx[f"{d}_central"] = (p[f"f_{d}"] * absorbed
                                  - p[f"cl_{d}"] * flow * x[f"{d}_central"] / (p[f"v_{d}"] * size))
        return dx

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        size = self._size(c)
        mdz = x["midazolam_central"] / (p["v_midazolam"] * size) * p["mw_midazolam"]
        drive = 0.0
        total = 0.0
        for d in SSRIS:
            conc = x[f"{d}_central"] / (p[f"v_{d}"] * size) * p[f"mw_{d}"]
            total = total + conc
            drive = drive + conc / p[f"sert_ec50_{d}"]
        # benzodiazepine GABA-A potentiation: midazolam (Emax model) plus chronic lorazepam
        potentiation = (p["gabaa_emax_midazolam"] * mdz / (mdz + p["gabaa_ec50_midazolam"])
                        + c["lorazepam"] * p["gabaa_potentiation_lorazepam"])
        return {"midazolam_plasma": mdz, "gabaa_potentiation": potentiation, "ssri_plasma": total,
                # competitive occupancy of one transporter pool by every SSRI present
                "sert_occupancy": drive / (1.0 + drive)}
