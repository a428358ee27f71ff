"""NMDA receptor channel block on GABAergic interneurons and on pyramidal cells.

Each blocking species j (S/R-ketamine, S/R-norketamine, (2S,6S)/(2R,6R)-HNK) binds the open
channel pore with kinetics whose ratio is its Ki (Ebert 1997; Abbott & Popescu 2020 for HNK):
``kon_j = koff_j / Ki_j``. Block is use-dependent (binding only to open channels, open probability
``p_open`` per cell type) and trapping (a blocker in a closed channel leaves only with the escape
fraction ``1 - trapping_fraction``; Mealing 1999), so block builds with channel use and can outlast
the concentration that caused it. For population x:

    d B_xj/dt = P_x * kon_j * C_j * (1 - sum_k B_xk) - koff_j * B_xj * (P_x + (1 - P_x) * (1 - theta))

Interneurons fire tonically at rest, so their receptors are open more often than those of
pyramidal cells (Homayoun & Moghaddam 2007) and are blocked more at the same concentration.
Quinolinic acid (an NMDA agonist) raises and kynurenic acid (a glycine-site antagonist) lowers the
open probability; both are inputs the inflammation layer drives, held at their baselines when that
layer is absent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable

SPECIES = ("s_ketamine", "r_ketamine", "s_norketamine", "r_norketamine", "s_hnk", "r_hnk")
POPULATIONS = ("interneuron", "pyramidal")

#: the Ki and koff parameter names per species (the HNK enantiomers share Abbott's IC50)
_KI = {"s_ketamine": "ki_s_ketamine", "r_ketamine": "ki_r_ketamine",
       "s_norketamine": "ki_s_norketamine", "r_norketamine": "ki_r_norketamine",
       "s_hnk": "ki_hnk", "r_hnk": "ki_hnk"}
_KOFF = {"s_ketamine": "koff_ketamine", "r_ketamine": "koff_ketamine",
         "s_norketamine": "koff_norketamine", "r_norketamine": "koff_norketamine",
         "s_hnk": "koff_hnk", "r_hnk": "koff_hnk"}


class Receptor(Layer):
    """Use-dependent, trapping NMDA channel block by every ketamine species."""

    name: ClassVar[str] = "receptor"
    optional_inputs: ClassVar[dict[str, str]] = {
        "inflammation.quinolinic_acid": "quinolinic_acid_baseline",
        "inflammation.kynurenic_acid": "kynurenic_acid_baseline",
    }

    def states(self) -> tuple[Variable, ...]:
        return tuple(Variable(f"block_{pop}_{sp}", "fraction",
                              f"fraction of {pop} NMDA receptors blocked by {sp.replace('_', '-')}")
                     for pop in POPULATIONS for sp in SPECIES)

    def outputs(self) -> tuple[Variable, ...]:
        return (
            Variable("nmda_block_interneuron", "fraction", "fraction of interneuron NMDA receptors blocked"),
            Variable("nmda_block_pyramidal", "fraction", "fraction of pyramidal-cell NMDA receptors blocked"),
            Variable("nmda_open_probability_interneuron", "fraction",
                     "open probability of interneuron NMDA channels (agonist/antagonist tone)"),
        )

    @staticmethod
    def open_probability(p, inp, population: str, m: Any) -> Any:
        """Open probability, scaled by quinolinic acid (agonist) and kynurenic acid (antagonist)."""
        qa, kyna = inp["inflammation.quinolinic_acid"], inp["inflammation.kynurenic_acid"]
        qa0, kyna0 = p["quinolinic_acid_baseline"], p["kynurenic_acid_baseline"]

        def agonism(q):
            return 1.0 + p["quinolinic_acid_emax"] * q / (q + p["quinolinic_acid_ec50"])

        def antagonism(k):
            return 1.0 / (1.0 + k / p["kynurenic_acid_ki"])

        tone = agonism(qa) / agonism(qa0) * antagonism(kyna) / antagonism(kyna0)
        return p[f"p_open_{population}"] * tone

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        dx = {}
        escape = 1.0 - p["trapping_fraction"]
        for pop in POPULATIONS:
            p_open = self.open_probability(p, inp, pop, m)
            free = 1.0 - sum(x[f"block_{pop}_{sp}"] for sp in SPECIES)
            for sp in SPECIES:
                koff = p[_KOFF[sp]]
                kon = koff / p[_KI[sp]]
                conc = inp[f"pk.{sp}_brain_unbound"]
                blocked = x[f"block_{pop}_{sp}"]
                dx[f"block_{pop}_{sp}"] = (p_open * kon * conc * free
                                           - koff * blocked * (p_open + (1.0 - p_open) * escape))
        return dx

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        return {
            "nmda_block_interneuron": sum(x[f"block_interneuron_{sp}"] for sp in SPECIES),
            "nmda_block_pyramidal": sum(x[f"block_pyramidal_{sp}"] for sp in SPECIES),
            "nmda_open_probability_interneuron": self.open_probability(p, inp, "interneuron", m),
        }
