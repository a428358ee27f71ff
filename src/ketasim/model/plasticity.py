"""Plasticity: BDNF, TrkB, mTORC1, synaptic proteins, functional potentiation and spine density.

BDNF rises with activity-dependent release (driven by AMPA activation; blunted in BDNF Val66Met
carriers, Egan 2003) and with rapid, mTORC1-independent translation when eEF2 kinase is
de-suppressed (Autry 2011); inflammation (IL-6) lowers it. TrkB activation follows BDNF. Two arms
leave TrkB:

* functional potentiation of existing synapses (AMPA insertion, early LTP): fast,
  mTORC1-independent and decaying over about a day; it starts the antidepressant effect before any
  new spine forms (Moda-Sava 2019). It is a fraction of its ceiling (0 to 1).
* mTORC1 signalling (peaks within the first hour and is back by ~2 h, Li 2010) drives synaptic
  protein synthesis (hours, lasting days). Potentiated synapses that find these proteins are
  stabilised as new spines (synaptic tagging and capture, Frey & Morris 1997; new spines sustain
  rather than start the remission, Moda-Sava 2019): spine formation needs both. A captured synapse
  leaves the potentiated pool, taking with it as much potentiation as keeps prefrontal strength
  unchanged at that moment, so the sustained effect takes over from the fast one (outlasting its
  decay) instead of adding a second one on top. An mTORC1 inhibitor in the brain (rapamycin, from
  the comparators layer) lowers mTORC1 and with it this consolidation.

Spines are restored towards the healthy density and never beyond it: formation is proportional to
the patient's deficit (the ceiling is ``1 / c0`` in folds of the patient's own baseline, where
``c0`` is the baseline density as a fraction of healthy), and the illness process pulls them back
to the patient's depressed set point. So repeated doses plateau, and every state stays bounded
(docs/model.md, "Well posed everywhere").

All states except potentiation are folds of the patient's own baseline (1 before any drug).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable

#: width (in the units of the argument) over which the smooth positive parts below bend
SMOOTHING = 0.02


def smooth_positive(z, m, d: float = SMOOTHING):
    """A smooth, non-negative ramp: 0 at z = 0, within d of z above, within d of 0 below.

    ``(z + sqrt(z^2 + d^2)) / 2`` times ``z^2 / (z^2 + d^2)``; the second factor makes the value
    exactly 0 at z = 0 (no drive at rest) while keeping it non-negative and differentiable, as the
    Rosenbrock integrator needs.
    """
    z2 = z * z
    return 0.5 * (z + m.sqrt(z2 + d * d)) * z2 / (z2 + d * d)


class Plasticity(Layer):
    """Prefrontal neurotrophic signalling and synaptogenesis."""

    name: ClassVar[str] = "plasticity"
    optional_inputs: ClassVar[dict[str, str]] = {"comparators.mtorc1_inhibition": "no_mtorc1_inhibition",
                                                 "probes.opioid_permission": "full_opioid_permission"}

    def states(self) -> tuple[Variable, ...]:
        return (
            Variable("bdnf", "fold baseline", "prefrontal BDNF"),
            Variable("mtorc1", "fold baseline", "mTORC1 signalling (p-mTOR, p-p70S6K)"),
            Variable("synaptic_proteins", "fold baseline", "synaptic proteins (PSD95, GluA1, synapsin I)"),
            Variable("spine_density", "fold baseline", "prefrontal dendritic spine density"),
            Variable("synaptic_potentiation", "fraction",
                     "functional potentiation of existing synapses, as a fraction of its ceiling"),
        )

    def outputs(self) -> tuple[Variable, ...]:
        bdnf, *rest = self.states()  # every state is reported as it is, TrkB beside BDNF
        return (bdnf, Variable("trkb_activation", "fold baseline", "TrkB receptor activation"), *rest)

    @staticmethod
    def _inflammation_factor(p, il6):
        # IL-6 above the healthy reference lowers BDNF (mind and body)
        return 1.0 / (1.0 + p["il6_bdnf_suppression"] * (il6 / p["inflammation.il6_healthy"] - 1.0))

    @staticmethod
    def il6_seen(p, il6):
        """IL-6 as the plasticity route sees it: itself with the inflammation mechanism on, the
        healthy reference with it off."""
        on = p["mechanism.inflammation"]
        return on * il6 + (1.0 - on) * p["inflammation.il6_healthy"]

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

    @staticmethod
    def spine_ceiling(c):
        """Healthy spine density in folds of the patient's baseline (1 for the healthy reference)."""
        return 1.0 / c["synaptic_density_baseline"]

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        # activity-dependent release needs burst firing: steeply nonlinear in AMPA activation, so the
        # surge counts and the small undershoot after it hardly does
        ampa = inp["synapse.ampa_activation"] / p["synapse.ampa_activation_baseline"]
        release = p["bdnf_release_gain"] * c["bdnf_release"] * (ampa ** p["bdnf_release_hill"] - 1.0)
        translation = p["bdnf_translation_gain"] * inp["synapse.eef2_desuppression"]
        # the inflammation mechanism off: IL-6 held at the healthy reference, so it changes nothing
        il6 = self.il6_seen(p, inp["inflammation.il6"] / 1000.0)  # pg/mL output -> internal ng/mL
        il6_baseline = self.il6_seen(p, c["il6_baseline"])
        # inflammation lowers BDNF relative to the patient's own baseline, and scales the capacity to
        # respond relative to the healthy reference (inflamed patients respond less, below-reference
        # IL-6 a little more)
        relative_inflammation = (self._inflammation_factor(p, il6)
                                 / self._inflammation_factor(p, il6_baseline))
        capacity = self._inflammation_factor(p, il6_baseline)
        # under the opioid mechanism, mu-opioid blockade (naltrexone) withholds the drug-driven drive
        drive = 1.0 + capacity * inp["probes.opioid_permission"] * (release + translation)
        bdnf_target = relative_inflammation * self._positive(drive, m) / self._positive(1.0, m)
        trkb_rise = self._trkb(p, x["bdnf"]) - 1.0
        # an mTORC1 inhibitor lowers mTORC1 activity as a whole (resting and stimulated)
        mtor_target = (1.0 - inp["comparators.mtorc1_inhibition"]) * (1.0 + p["mtorc1_gain"] * trkb_rise)
        potentiation = x["synaptic_potentiation"]
        # tagged (potentiated) synapses capture new proteins and become spines, up to the healthy density
        consolidation = (p["k_spine_formation"] * potentiation * smooth_positive(x["synaptic_proteins"], m)
                         * (self.spine_ceiling(c) - x["spine_density"]))
        # capture converts potentiation into structure: the synapse that becomes a spine leaves the
        # potentiated pool, by as much potentiation as keeps prefrontal strength (circuit layer,
        # c0 s (1 + a P)) unchanged at the moment of conversion, so new spines take over the fast
        # effect rather than add a second one (Moda-Sava 2019: spines sustain, not start, it)
        taken_over = self.potentiation_taken_over(p, x, consolidation)
        return {
            "bdnf": p["k_bdnf"] * (bdnf_target - x["bdnf"]),
            "mtorc1": p["k_mtorc1"] * (mtor_target - x["mtorc1"]),
            "synaptic_proteins": p["k_protein_synthesis"] * (x["mtorc1"] - 1.0)
            - p["k_protein_turnover"] * (x["synaptic_proteins"] - 1.0),
            # the illness process returns spines to the patient's depressed set point (1 = own baseline)
            "spine_density": consolidation - p["k_spine_loss"] * (x["spine_density"] - 1.0),
            "synaptic_potentiation": p["potentiation_gain"] * smooth_positive(trkb_rise, m) * (1.0 - potentiation)
            - p["k_potentiation_decay"] * potentiation - taken_over,
        }

    @staticmethod
    def potentiation_taken_over(p, x, consolidation):
        """Rate at which consolidation removes potentiation (fraction of the ceiling per hour).

        With strength c0 s (1 + a P), a spine gain ds at constant strength costs
        dP = -(1 + a P) ds / (a s); proportional to P through ``consolidation``, so P stays >= 0.
        """
        a = p["potentiation_strength_max"]
        return (1.0 + a * x["synaptic_potentiation"]) * consolidation / (a * x["spine_density"])

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        return {**{v.name: x[v.name] for v in self.states()}, "trkb_activation": self._trkb(p, x["bdnf"])}

    def initial_state(self, p, c) -> dict[str, Any]:
        return {"bdnf": 1.0, "mtorc1": 1.0, "synaptic_proteins": 1.0, "spine_density": 1.0,
                "synaptic_potentiation": 0.0}
