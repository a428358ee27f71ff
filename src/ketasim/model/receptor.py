"""NMDA receptor block on GABAergic interneurons, pyramidal cells and lateral-habenula neurons.

Channel blockers (S/R-ketamine, S/R-norketamine, (2S,6S)/(2R,6R)-HNK, memantine, lanicemine) bind
the open pore with kinetics whose ratio is their Ki (Ebert 1997; Abbott & Popescu 2020 for HNK;
Gilling 2009 for memantine): ``kon_j = koff_j / Ki_j``. Block is use-dependent and trapping: a
channel opens ``r`` times an hour and stays open a short while, a fraction ``P`` of the time;
a blocker that entered it is trapped when it closes with probability ``theta_j`` (its trapping
fraction, Mealing 1999) and otherwise leaves with the closing; a trapped blocker stays until the
channel reopens, when it may unbind (``koff_j`` while open) or fail to be trapped again. So the
fraction ``B_xj`` of population x's channels holding blocker j obeys

    d B_xj/dt = theta_j P_x kon_j C_j (1 - sum_k B_xk) - B_xj (r_x (1 - theta_j) + theta_j P_x koff_j)

and a blocked channel that does not open keeps its blocker however low the concentration falls:
block can outlast the drug, the more so the more trapping the blocker and the rarer the openings.

Interneurons fire tonically at rest, so their receptors are open more often than those of
pyramidal cells (Homayoun & Moghaddam 2007) and are blocked more at the same concentration; the
cortical opening rates are set so that S-ketamine's equilibrium block equals that of the calibrated
model. Lateral-habenula neurons open their NMDA channels in bursts, and bursting needs those
channels (Yang 2018): the habenula's opening rate and open fraction fall steeply with its own
block, so a trapped blocker silences the bursts that would release it (Ma 2023) - the
``habenula_trapping`` mechanism reads the burst blockade.

Nitrous oxide inhibits NMDA receptors without entering the pore (Mennerick 1998): its inhibition
combines independently with channel block in every population's reported block. Quinolinic acid
(an agonist) raises and kynurenic acid (a glycine-site antagonist) lowers the open probability
when the ``inflammation`` mechanism is on.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable

KETAMINE_SPECIES = ("s_ketamine", "r_ketamine", "s_norketamine", "r_norketamine", "s_hnk", "r_hnk")
OTHER_BLOCKERS = ("memantine", "lanicemine")
SPECIES = KETAMINE_SPECIES + OTHER_BLOCKERS
POPULATIONS = ("interneuron", "pyramidal", "habenula")
#: steepness of the loss of habenula bursting with block; an integer, so that the analytic Jacobian
#: stays finite at zero block (assumption: bursts stop at partial block, Yang 2018; Ma 2023)
HABENULA_BURST_HILL = 4

#: the Ki, koff and trapping-fraction parameter names per species
_KI = {"s_ketamine": "ki_s_ketamine", "r_ketamine": "ki_r_ketamine",
       "s_norketamine": "ki_s_norketamine", "r_norketamine": "ki_r_norketamine",
       "s_hnk": "ki_hnk", "r_hnk": "ki_hnk", "memantine": "ki_memantine", "lanicemine": "ki_lanicemine"}
_KOFF = {"s_ketamine": "koff_ketamine", "r_ketamine": "koff_ketamine",
         "s_norketamine": "koff_norketamine", "r_norketamine": "koff_norketamine",
         "s_hnk": "koff_hnk", "r_hnk": "koff_hnk", "memantine": "koff_memantine", "lanicemine": "koff_lanicemine"}
_TRAPPING = {s: "trapping_fraction" for s in KETAMINE_SPECIES} | {
    "memantine": "trapping_fraction_memantine", "lanicemine": "trapping_fraction_lanicemine"}


def concentration_input(species: str) -> str:
    """The input carrying a species' unbound brain concentration (uM)."""
    layer = "pk" if species in KETAMINE_SPECIES else "probes"
    return f"{layer}.{species}_brain_unbound"


class Receptor(Layer):
    """Use-dependent, trapping NMDA channel block by every blocker, in three neuron populations."""

    name: ClassVar[str] = "receptor"
    optional_inputs: ClassVar[dict[str, str]] = {
        "inflammation.quinolinic_acid": "quinolinic_acid_baseline",
        "inflammation.kynurenic_acid": "kynurenic_acid_baseline",
        **{concentration_input(s): "no_drug" for s in OTHER_BLOCKERS},
        "probes.nitrous_oxide_nmda_inhibition": "no_drug",
    }

    def states(self) -> tuple[Variable, ...]:
        return tuple(Variable(f"block_{pop}_{sp}", "fraction",
                              f"fraction of {pop} NMDA channels holding {sp.replace('_', '-')}")
                     for pop in POPULATIONS for sp in SPECIES)

    def outputs(self) -> tuple[Variable, ...]:
        return (
            Variable("nmda_block_interneuron", "fraction", "fraction of interneuron NMDA receptors blocked"),
            Variable("nmda_block_pyramidal", "fraction", "fraction of pyramidal-cell NMDA receptors blocked"),
            Variable("nmda_block_habenula", "fraction", "fraction of lateral-habenula NMDA receptors blocked"),
            Variable("habenula_burst_blockade", "fraction",
                     "fall of lateral-habenula burst firing below its depressed baseline"),
            Variable("nmda_open_probability_interneuron", "fraction",
                     "open probability of interneuron NMDA channels (agonist/antagonist tone)"),
        )

    @staticmethod
    def tone(p, inp) -> Any:
        """Open-probability factor from quinolinic acid (agonist) and kynurenic acid (antagonist),
        relative to their baselines; 1 when the inflammation mechanism is off."""
        qa0, kyna0 = p["quinolinic_acid_baseline"], p["kynurenic_acid_baseline"]
        on = p["mechanism.inflammation"]
        qa = qa0 + on * (inp["inflammation.quinolinic_acid"] - qa0)
        kyna = kyna0 + on * (inp["inflammation.kynurenic_acid"] - kyna0)

        def agonism(q):
            return 1.0 + p["quinolinic_acid_emax"] * q / (q + p["quinolinic_acid_ec50"])

        def antagonism(k):
            return 1.0 / (1.0 + k / p["kynurenic_acid_ki"])

        return agonism(qa) / agonism(qa0) * antagonism(kyna) / antagonism(kyna0)

    @staticmethod
    def habenula_activity(p, x) -> Any:
        """Burst firing as a fraction of the depressed baseline: bursts need NMDA receptors (Yang
        2018), so they fall steeply with the habenula's own channel block."""
        blocked = sum(x[f"block_habenula_{sp}"] for sp in SPECIES)
        z = blocked / p["habenula_burst_block50"]
        return 1.0 / (1.0 + z ** HABENULA_BURST_HILL)

    def gating(self, p, x, inp, population: str) -> tuple[Any, Any]:
        """(open fraction P, opening rate r in 1/h) of a population's channels."""
        tone = self.tone(p, inp)
        p_open, rate = p[f"p_open_{population}"] * tone, p[f"opening_rate_{population}"] * tone
        if population == "habenula":
            activity = self.habenula_activity(p, x)
            p_open, rate = p_open * activity, rate * activity
        return p_open, rate

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        dx = {}
        for pop in POPULATIONS:
            p_open, rate = self.gating(p, x, inp, pop)
            free = 1.0 - sum(x[f"block_{pop}_{sp}"] for sp in SPECIES)
            for sp in SPECIES:
                koff, theta = p[_KOFF[sp]], p[_TRAPPING[sp]]
                kon = koff / p[_KI[sp]]
                blocked = x[f"block_{pop}_{sp}"]
                dx[f"block_{pop}_{sp}"] = (theta * p_open * kon * inp[concentration_input(sp)] * free
                                           - blocked * (rate * (1.0 - theta) + theta * p_open * koff))
        return dx

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        unaffected = 1.0 - inp["probes.nitrous_oxide_nmda_inhibition"]

        def block(pop):
            return 1.0 - (1.0 - sum(x[f"block_{pop}_{sp}"] for sp in SPECIES)) * unaffected

        return {
            "nmda_block_interneuron": block("interneuron"),
            "nmda_block_pyramidal": block("pyramidal"),
            "nmda_block_habenula": block("habenula"),
            "habenula_burst_blockade": 1.0 - self.habenula_activity(p, x) * unaffected,
            "nmda_open_probability_interneuron": p["p_open_interneuron"] * self.tone(p, inp),
        }
