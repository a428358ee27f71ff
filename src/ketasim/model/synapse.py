"""Synapse: disinhibition, the glutamate surge, AMPA activation and eEF2 de-suppression.

NMDA block on GABAergic interneurons lowers their drive onto pyramidal cells (disinhibition), so
pyramidal firing and glutamate release rise (Homayoun & Moghaddam 2007). The surge is transient:
an adaptation state (homeostatic recovery of inhibition) follows the disinhibition drive, so
glutamate peaks during the infusion and returns within about an hour even while block persists
(calibrated to Milak 2016: Glx +37.8 % at 26 min). Benzodiazepines (midazolam given, lorazepam as
co-medication) potentiate GABA-A receptors and blunt the drive. AMPA receptor activation follows
glutamate, and HNK adds an NMDA-independent AMPA effect (Zanos 2016 showed it for (2R,6R)-HNK; both
enantiomers are summed here, an assumption). Inhibition of resting GluN2B-containing receptors on
pyramidal cells - by channel block or by a GluN2B-selective antagonist - de-suppresses protein
translation through eEF2 kinase (Autry 2011; Miller 2014).

Three mechanisms live here, each behind its switch (``model/mechanisms.py``): ``disinhibition``
(the surge drive), ``glun2b_eef2`` (the eEF2 drive) and ``hnk_ampa`` (HNK's AMPA term).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable


class Synapse(Layer):
    """Prefrontal disinhibition and glutamate surge."""

    name: ClassVar[str] = "synapse"
    optional_inputs: ClassVar[dict[str, str]] = {"probes.glun2b_inhibition": "receptor.no_drug"}

    def states(self) -> tuple[Variable, ...]:
        return (
            Variable("inhibition_recovery", "fraction", "adaptation of inhibition that ends the surge"),
            Variable("glutamate_release", "fold baseline", "pyramidal glutamate release"),
            Variable("eef2_desuppression", "fraction", "eEF2 kinase deactivation (translation de-suppressed)"),
        )

    def outputs(self) -> tuple[Variable, ...]:
        return (
            Variable("glutamate", "% baseline", "extracellular prefrontal glutamate (as MRS Glx sees it)"),
            Variable("ampa_activation", "fraction", "fraction of AMPA receptors activated"),
            Variable("disinhibition", "fraction", "loss of interneuron drive onto pyramidal cells"),
            Variable("eef2_desuppression", "fraction", "eEF2 kinase deactivation (translation de-suppressed)"),
        )

    @staticmethod
    def disinhibition(p, inp):
        """Surge drive: interneuron NMDA block, damped by GABA-A potentiation (benzodiazepines)."""
        block = inp["receptor.nmda_block_interneuron"]
        return p["mechanism.disinhibition"] * p["surge_gain"] * block / (1.0 + inp["comparators.gabaa_potentiation"])

    @staticmethod
    def glun2b_inhibition(p, inp):
        """Resting GluN2B receptors on pyramidal cells inhibited: channel block (every subunit alike)
        combined independently with GluN2B-selective allosteric inhibition (traxoprodil)."""
        return 1.0 - (1.0 - inp["receptor.nmda_block_pyramidal"]) * (1.0 - inp["probes.glun2b_inhibition"])

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        drive = self.disinhibition(p, inp)
        return {
            "inhibition_recovery": p["k_inhibition_recovery"] * (drive - x["inhibition_recovery"]),
            "glutamate_release": p["k_glutamate"] * (1.0 + drive - x["inhibition_recovery"] - x["glutamate_release"]),
            "eef2_desuppression": p["k_eef2"] * (p["mechanism.glun2b_eef2"] * self.glun2b_inhibition(p, inp)
                                                 - x["eef2_desuppression"]),
        }

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        release = x["glutamate_release"]
        k_half = (1.0 - p["ampa_activation_baseline"]) / p["ampa_activation_baseline"]
        by_glutamate = release / (release + k_half)
        hnk = inp["pk.s_hnk_brain_unbound"] + inp["pk.r_hnk_brain_unbound"]
        by_hnk = p["mechanism.hnk_ampa"] * p["hnk_ampa_emax"] * hnk / (hnk + p["hnk_ampa_ec50"])
        return {
            "glutamate": 100.0 * release,
            "ampa_activation": by_glutamate + (1.0 - by_glutamate) * by_hnk,
            "disinhibition": self.disinhibition(p, inp),
            "eef2_desuppression": x["eef2_desuppression"],
        }

    def initial_state(self, p, c) -> dict[str, Any]:
        return {"inhibition_recovery": 0.0, "glutamate_release": 1.0, "eef2_desuppression": 0.0}
