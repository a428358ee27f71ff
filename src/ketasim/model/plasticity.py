"""Plasticity: BDNF, TrkB, mTORC1, synaptic proteins, functional potentiation and spine density.

BDNF rises with activity-dependent release (driven by AMPA activation; blunted in BDNF Val66Met
carriers, Egan 2003) and with rapid, mTORC1-independent translation when eEF2 kinase is
de-suppressed (Autry 2011); inflammation (IL-6) lowers it. TrkB activation follows BDNF. Two arms
leave TrkB:

* mTORC1 signalling (peaks within the first hour and is back by ~2 h, Li 2010) drives synaptic
  protein synthesis (hours, lasting days) and, through it, new dendritic spines (12-24 h and later,
  decaying over one to two weeks; Moda-Sava 2019). A rapamycin-like inhibitor blocks this arm.
* functional potentiation of existing synapses (AMPA insertion), fast and mTORC1-independent,
  decaying over days: it starts the antidepressant effect before spines form (Moda-Sava 2019).

All states are folds of the patient's own baseline (1 before any drug).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable


class Plasticity(Layer):
    """Prefrontal neurotrophic signalling and synaptogenesis."""

    name: ClassVar[str] = "plasticity"

    def states(self) -> tuple[Variable, ...]:
        return (
            Variable("bdnf", "fold baseline", "prefrontal BDNF"),
            Variable("mtorc1", "fold baseline", "mTORC1 signalling (p-mTOR, p-p70S6K)"),
            Variable("synaptic_proteins", "fold baseline", "synaptic proteins (PSD95, GluA1, synapsin I)"),
            Variable("spine_density", "fold baseline", "prefrontal dendritic spine density"),
            Variable("synaptic_potentiation", "fraction", "functional potentiation of existing synapses"),
        )

    def outputs(self) -> tuple[Variable, ...]:
        bdnf, *rest = self.states()  # every state is reported as it is, TrkB beside BDNF
        return (bdnf, Variable("trkb_activation", "fold baseline", "TrkB receptor activation"), *rest)

    @staticmethod
    def _inflammation_factor(p, il6):
        # IL-6 above the healthy reference lowers BDNF (mind and body)
        return 1.0 / (1.0 + p["il6_bdnf_suppression"] * (il6 / p["inflammation.il6_healthy"] - 1.0))

    @staticmethod
    def _positive(z, m):
        """Smooth positive part (z + sqrt(z^2 + d^2)) / 2 with d = 0.05: BDNF cannot fall below zero
        however deep an AMPA undershoot a large release gain turns into a negative drive; within 0.06 %
        of z for the drives of the calibrated model (z near or above 1), and normalised so that the
        baseline stays exactly 1."""
        return 0.5 * (z + m.sqrt(z * z + 0.0025))

    @staticmethod
    def _trkb(p, bdnf):
        return bdnf * (1.0 + p["trkb_k"]) / (bdnf + p["trkb_k"])

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        # activity-dependent release needs burst firing: steeply nonlinear in AMPA activation, so the
        # surge counts and the small undershoot after it hardly does
        ampa = inp["synapse.ampa_activation"] / p["synapse.ampa_activation_baseline"]
        release = p["bdnf_release_gain"] * c["bdnf_release"] * (ampa ** p["bdnf_release_hill"] - 1.0)
        translation = p["bdnf_translation_gain"] * inp["synapse.eef2_desuppression"]
        il6 = inp["inflammation.il6"] / 1000.0  # pg/mL output -> internal ng/mL
        # inflammation lowers BDNF relative to the patient's own baseline, and scales the capacity to
        # respond relative to the healthy reference (inflamed patients respond less, below-reference
        # IL-6 a little more)
        relative_inflammation = (self._inflammation_factor(p, il6)
                                 / self._inflammation_factor(p, c["il6_baseline"]))
        capacity = self._inflammation_factor(p, c["il6_baseline"])
        drive = 1.0 + capacity * (release + translation)
        bdnf_target = relative_inflammation * self._positive(drive, m) / self._positive(1.0, m)
        trkb_rise = self._trkb(p, x["bdnf"]) - 1.0
        mtor_gain = p["mtorc1_gain"] * (1.0 - c["rapamycin"] * p["rapamycin_inhibition"])
        return {
            "bdnf": p["k_bdnf"] * (bdnf_target - x["bdnf"]),
            "mtorc1": p["k_mtorc1"] * (1.0 + mtor_gain * trkb_rise - x["mtorc1"]),
            "synaptic_proteins": p["k_protein_synthesis"] * (x["mtorc1"] - 1.0)
            - p["k_protein_turnover"] * (x["synaptic_proteins"] - 1.0),
            "spine_density": p["k_spine_formation"] * (x["synaptic_proteins"] - 1.0)
            - p["k_spine_loss"] * (x["spine_density"] - 1.0),
            "synaptic_potentiation": p["potentiation_gain"] * trkb_rise
            - p["k_potentiation_decay"] * x["synaptic_potentiation"],
        }

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        return {**{v.name: x[v.name] for v in self.states()}, "trkb_activation": self._trkb(p, x["bdnf"])}

    def initial_state(self, p, c) -> dict[str, Any]:
        return {"bdnf": 1.0, "mtorc1": 1.0, "synaptic_proteins": 1.0, "spine_density": 1.0,
                "synaptic_potentiation": 0.0}
