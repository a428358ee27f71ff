"""Probes: drugs that tell the mechanisms apart, with their own kinetics and receptor effects.

* memantine (oral) and lanicemine (IV): NMDA channel blockers with faster unblocking and less
  trapping than ketamine (receptor layer); memantine one compartment with first-order absorption
  (label PK: F ~ 1, t1/2 60-80 h, V ~ 10 L/kg), lanicemine one compartment (population PK:
  CL 9.4 L/h, Vss 153 L);
* traxoprodil (CP-101,606, IV): a GluN2B-selective negative allosteric modulator, not a channel
  blocker (Lord 2013): its inhibition of GluN2B-containing receptors follows the plasma level
  through an Emax model and adds to channel block only where the ``glun2b_eef2`` mechanism reads
  it;
* nitrous oxide (inhaled): the brain partial pressure follows the inspired fraction within minutes
  (blood/gas partition 0.47) and inhibits NMDA receptors outside the pore (Mennerick 1998);
* naltrexone (oral): mu-opioid receptor occupancy from the lumped antagonist level (naltrexone and
  6-beta-naltrexol), whose half-life makes the occupancy last days as PET shows (Lee 1988). The
  ``opioid`` mechanism turns it into ``opioid_permission``, the share of the drug-driven
  antidepressant drive that survives.

Concentrations are unbound brain levels (uM) where a receptor layer reads them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable
from .pk import REFERENCE_WEIGHT_KG


class Probes(Layer):
    """Memantine, lanicemine, traxoprodil, nitrous oxide and naltrexone."""

    name: ClassVar[str] = "probes"

    def states(self) -> tuple[Variable, ...]:
        return (
            Variable("memantine_gut", "umol", "memantine in the gut depot"),
            Variable("memantine_central", "umol", "memantine in the body (one compartment)"),
            Variable("lanicemine_central", "umol", "lanicemine in the body (one compartment)"),
            Variable("traxoprodil_central", "umol", "traxoprodil in the body (one compartment)"),
            Variable("nitrous_oxide_brain", "fraction", "nitrous oxide partial pressure in the brain (fraction of 1 atm)"),
            Variable("naltrexone_gut", "umol", "naltrexone in the gut depot"),
            Variable("naltrexone_central", "umol",
                     "naltrexone and 6-beta-naltrexol in the body, as naltrexone (one compartment)"),
        )

    def outputs(self) -> tuple[Variable, ...]:
        return (
            Variable("memantine_plasma", "ng/mL", "memantine in plasma"),
            Variable("lanicemine_plasma", "ng/mL", "lanicemine in plasma"),
            Variable("traxoprodil_plasma", "ng/mL", "traxoprodil in plasma"),
            Variable("memantine_brain_unbound", "uM", "unbound memantine at the brain NMDA receptor"),
            Variable("lanicemine_brain_unbound", "uM", "unbound lanicemine at the brain NMDA receptor"),
            Variable("glun2b_inhibition", "fraction", "allosteric inhibition of GluN2B-containing receptors"),
            Variable("nitrous_oxide_nmda_inhibition", "fraction", "NMDA receptor inhibition by nitrous oxide"),
            Variable("naltrexone_plasma", "ng/mL", "naltrexone and 6-beta-naltrexol in plasma, as naltrexone"),
            Variable("mu_opioid_occupancy", "fraction", "mu-opioid receptor occupancy by naltrexone"),
            Variable("opioid_permission", "fraction",
                     "share of the drug-driven antidepressant drive that opioid signalling lets through"),
        )

    @staticmethod
    def _plasma(x, p, c, drug):
        """Plasma level (ng/mL) of ``drug`` from its central amount (umol) and weight-scaled volume."""
        return x[f"{drug}_central"] / (p[f"v_{drug}"] * c["weight"] / REFERENCE_WEIGHT_KG) * p[f"mw_{drug}"]

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        size = c["weight"] / REFERENCE_WEIGHT_KG
        flow = size ** 0.75

        def cleared(drug):
            return p[f"cl_{drug}"] * flow * x[f"{drug}_central"] / (p[f"v_{drug}"] * size)

        memantine_absorbed = p["ka_memantine"] * x["memantine_gut"]
        naltrexone_absorbed = p["ka_naltrexone"] * x["naltrexone_gut"]
        return {
            "memantine_gut": -memantine_absorbed,
            "memantine_central": p["f_memantine"] * memantine_absorbed - cleared("memantine"),
            "lanicemine_central": inp["dosing.lanicemine_iv_rate"] - cleared("lanicemine"),
            "traxoprodil_central": inp["dosing.traxoprodil_iv_rate"] - cleared("traxoprodil"),
            "nitrous_oxide_brain": p["k_nitrous_oxide_brain"]
            * (inp["dosing.nitrous_oxide_inspired"] - x["nitrous_oxide_brain"]),
            "naltrexone_gut": -naltrexone_absorbed,
            "naltrexone_central": p["f_naltrexone"] * naltrexone_absorbed - cleared("naltrexone"),
        }

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        memantine = self._plasma(x, p, c, "memantine")
        lanicemine = self._plasma(x, p, c, "lanicemine")
        traxoprodil = self._plasma(x, p, c, "traxoprodil")
        naltrexone = self._plasma(x, p, c, "naltrexone")
        n2o = x["nitrous_oxide_brain"]
        occupancy = naltrexone / (naltrexone + p["naltrexone_mu_ec50"])
        return {
            "memantine_plasma": memantine,
            "lanicemine_plasma": lanicemine,
            "traxoprodil_plasma": traxoprodil,
            # unbound brain = Kp,uu x fu x plasma, ng/mL -> uM by the molar mass
            "memantine_brain_unbound": p["kpuu_memantine"] * p["fu_memantine"] * memantine / p["mw_memantine"],
            "lanicemine_brain_unbound": p["kpuu_lanicemine"] * p["fu_lanicemine"] * lanicemine / p["mw_lanicemine"],
            "glun2b_inhibition": traxoprodil / (traxoprodil + p["traxoprodil_glun2b_ec50"]),
            "nitrous_oxide_nmda_inhibition": p["nitrous_oxide_nmda_imax"] * n2o / (n2o + p["nitrous_oxide_nmda_ec50"]),
            "naltrexone_plasma": naltrexone,
            "mu_opioid_occupancy": occupancy,
            "opioid_permission": 1.0 - p["mechanism.opioid"] * occupancy,
        }
