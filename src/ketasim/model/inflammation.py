"""Inflammation and the kynurenine pathway: IL-6, TNF-alpha, IDO, kynurenine, QA and KYNA.

IL-6 relaxes to the patient's baseline (raised in part of the depressed population, Osimo 2020)
and rises transiently after ketamine: the human direction (Park 2017, n = 80: IL-6 up at 230 min;
Kiraly 2017: transient changes only), not the fall some rodent work suggests. IDO activity follows
IL-6 with a lag. Kynurenine is made by IDO and leaves by kynurenine 3-monooxygenase (KMO, towards
quinolinic acid), kynurenine aminotransferase (KAT, towards kynurenic acid) and other routes. After
ketamine, a slowly recovering pathway shift lowers IDO activity and diverts kynurenine away from
the KMO branch (a modelling assumption chosen to reproduce the reported directions: IDO down at
230 min, day 1 and day 3 although IL-6 rises, kynurenine and kynurenic acid up, quinolinic acid
about unchanged). Quinolinic acid (an NMDA agonist) and kynurenic acid (an
antagonist) feed the receptor layer; IL-6 lowers BDNF and adds to the symptom load downstream.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable


class Inflammation(Layer):
    """Cytokines and the kynurenine pathway (plasma concentrations)."""

    name: ClassVar[str] = "inflammation"

    def states(self) -> tuple[Variable, ...]:
        return (
            Variable("interleukin6", "ng/mL", "plasma interleukin-6 (internal mass-concentration unit)"),
            Variable("ido_activity", "fold healthy", "IDO activity relative to the healthy reference"),
            Variable("kmo_shift", "fraction", "ketamine-induced shift of kynurenine away from KMO"),
            Variable("kynurenine", "uM", "plasma kynurenine"),
            Variable("quinolinic_acid", "uM", "plasma quinolinic acid"),
            Variable("kynurenic_acid", "uM", "plasma kynurenic acid"),
        )

    #: states reported as they are
    REPORTED_STATES = ("ido_activity", "kynurenine", "quinolinic_acid", "kynurenic_acid")

    def outputs(self) -> tuple[Variable, ...]:
        return (Variable("il6", "pg/mL", "plasma interleukin-6"),
                Variable("tnf_alpha", "pg/mL", "plasma TNF-alpha (follows IL-6)"),
                *(v for v in self.states() if v.name in self.REPORTED_STATES))

    @staticmethod
    def _ido_target(p, il6, shift=0.0):
        """IDO induced by IL-6, lowered by ketamine's pathway shift (the shift is at most 0.9 and the
        gain at most 1.1, so IDO stays positive)."""
        return (il6 / p["il6_healthy"]) ** p["ido_il6_exponent"] * (1.0 - p["ido_shift_gain"] * shift)

    @staticmethod
    def _clearance(p, shift):
        """Kynurenine outflow rates (1/h): KMO (reduced by the shift), KAT, other."""
        kmo = p["kynurenine_turnover"] * p["fraction_kmo"] * (1.0 - shift)
        kat = p["kynurenine_turnover"] * p["fraction_kat"]
        other = p["kynurenine_turnover"] * (1.0 - p["fraction_kmo"] - p["fraction_kat"])
        return kmo, kat, other

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        ketamine = inp["pk.ketamine_plasma"]
        exposure = ketamine / (ketamine + p["ketamine_ec50_inflammation"])
        il6_target = c["il6_baseline"] * (1.0 + p["ketamine_il6_rise"] * exposure)
        kmo, kat, other = self._clearance(p, x["kmo_shift"])
        k0 = p["kynurenine_healthy"]
        # production scaled so that the healthy reference sits at its baseline concentrations
        production = k0 * p["kynurenine_turnover"]
        return {
            "interleukin6": p["k_il6"] * (il6_target - x["interleukin6"]),
            "ido_activity": p["k_ido"] * (self._ido_target(p, x["interleukin6"], x["kmo_shift"]) - x["ido_activity"]),
            "kmo_shift": p["k_kmo_shift_on"] * exposure * (p["kmo_shift_max"] - x["kmo_shift"])
            - p["k_kmo_shift_off"] * x["kmo_shift"],
            "kynurenine": production * x["ido_activity"] - (kmo + kat + other) * x["kynurenine"],
            "quinolinic_acid": p["k_quinolinic_acid"] * (
                kmo * x["kynurenine"] / (p["kynurenine_turnover"] * p["fraction_kmo"] * k0)
                * p["quinolinic_acid_healthy"] - x["quinolinic_acid"]),
            "kynurenic_acid": p["k_kynurenic_acid"] * (
                kat * x["kynurenine"] / (p["kynurenine_turnover"] * p["fraction_kat"] * k0)
                * p["kynurenic_acid_healthy"] - x["kynurenic_acid"]),
        }

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        pg_per_ng = 1000.0  # cytokines are reported in pg/mL
        return {
            "il6": x["interleukin6"] * pg_per_ng,
            "tnf_alpha": p["tnf_alpha_healthy"] * (x["interleukin6"] / p["il6_healthy"]) ** p["tnf_il6_exponent"] * pg_per_ng,
            **{name: x[name] for name in self.REPORTED_STATES},
        }

    def initial_state(self, p, c) -> dict[str, Any]:
        """Steady state at the patient's baseline IL-6 (no drug)."""
        ido = self._ido_target(p, c["il6_baseline"])
        k0 = p["kynurenine_healthy"]
        kyn = k0 * ido  # production k0*turnover*ido over outflow turnover (no shift)
        return {"interleukin6": c["il6_baseline"], "ido_activity": ido, "kmo_shift": 0.0, "kynurenine": kyn,
                "quinolinic_acid": p["quinolinic_acid_healthy"] * kyn / k0,
                "kynurenic_acid": p["kynurenic_acid_healthy"] * kyn / k0}
