"""Comparator and co-administered drugs: midazolam (active placebo), daily oral SSRIs and rapamycin.

Midazolam: one compartment, cleared by CYP3A4 (so interacting drugs act on it too), read by the
synapse layer as GABA-A potentiation and by the clinical layer as sedation. SSRIs (citalopram,
escitalopram, sertraline): oral depot and one compartment each; the serotonin transporter (SERT)
occupancy they produce drives the slow adaptation of the clinical layer. Rapamycin (sirolimus):
oral depot and one compartment in whole blood (Brattstrom 2000); the brain sees a small fraction
of the blood level (a P-glycoprotein substrate), and mTORC1 inhibition in the brain follows that
level through an Emax model. With the human default a single 6 mg dose barely reaches the brain,
as the human trial (Abdallah 2020) implies; rodent doses do.
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
        out = [Variable("midazolam_central", "umol", "midazolam in plasma and tissues (one compartment)"),
               Variable("rapamycin_gut", "umol", "rapamycin in the gut depot"),
               Variable("rapamycin_central", "umol", "rapamycin in the body (one compartment, whole blood)")]
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
            Variable("rapamycin_blood", "ng/mL", "rapamycin (sirolimus) in whole blood"),
            Variable("mtorc1_inhibition", "fraction", "inhibition of prefrontal mTORC1 by rapamycin"),
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
        absorbed_rapamycin = p["ka_rapamycin"] * x["rapamycin_gut"]
        dx["rapamycin_gut"] = -absorbed_rapamycin
        dx["rapamycin_central"] = (p["f_rapamycin"] * absorbed_rapamycin
                                   - p["cl_rapamycin"] * flow * x["rapamycin_central"] / (p["v_rapamycin"] * size))
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
        rapamycin = x["rapamycin_central"] / (p["v_rapamycin"] * size) * p["mw_rapamycin"]
        brain = p["rapamycin_brain_to_blood"] * rapamycin  # blood-equivalent level at brain mTORC1
        return {"midazolam_plasma": mdz, "gabaa_potentiation": potentiation, "ssri_plasma": total,
                # competitive occupancy of one transporter pool by every SSRI present
                "sert_occupancy": drive / (1.0 + drive),
                "rapamycin_blood": rapamycin,
                "mtorc1_inhibition": p["rapamycin_mtorc1_imax"] * brain / (brain + p["rapamycin_mtorc1_ec50"])}
