"""Reference tests for the receptor layer: Ebert 1997 Ki values and Abbott & Popescu 2020 HNK."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from ketasim.model.receptor import SPECIES, Receptor, concentration_input


def steady_block(params, species, conc_um, p_open=1.0, population="interneuron"):
    """Steady-state block by one species at a constant unbound concentration (uM).

    ``p_open = 1`` means every channel is open all the time: channels then never close and reopen
    (opening rate 0), the condition under which Ki is the half-blocking concentration."""
    layer = Receptor()
    p = {k.split(".", 1)[1]: v for k, v in params.internal_values().items() if k.startswith("receptor.")}
    p.update({k: v for k, v in params.internal_values().items() if k.startswith("mechanism.")})
    p[f"p_open_{population}"] = p_open
    if p_open == 1.0:
        p[f"opening_rate_{population}"] = 0.0
    inp = {concentration_input(s): (conc_um if s == species else 0.0) for s in SPECIES}
    inp["inflammation.quinolinic_acid"] = p["quinolinic_acid_baseline"]
    inp["inflammation.kynurenic_acid"] = p["kynurenic_acid_baseline"]
    inp["probes.nitrous_oxide_nmda_inhibition"] = 0.0
    state = f"block_{population}_{species}"

    def rate(b):
        x = {v.name: 0.0 for v in layer.states()}
        x[state] = b
        return layer.derivatives(x, p, {}, inp, np)[state]

    return brentq(rate, 0.0, 1.0 - 1e-15)


@pytest.mark.parametrize("species,ki", [("s_ketamine", 0.3), ("r_ketamine", 1.4),
                                        ("s_norketamine", 1.7), ("r_norketamine", 13.0)])
def test_ebert1997_half_block_at_ki_with_open_channels(params, species, ki):
    """With every channel open, half the receptors are blocked at the concentration Ki."""
    assert steady_block(params, species, ki) == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("species", ["s_hnk", "r_hnk"])
def test_abbott2020_hnk_half_block_at_46_um(params, species):
    assert steady_block(params, species, 46.0) == pytest.approx(0.5, rel=1e-9)
    # about 100-fold weaker than S-ketamine
    assert 46.0 / params["receptor.ki_s_ketamine"].value > 100


def test_s_ketamine_blocks_more_than_r_at_equal_concentration(params):
    for conc in (0.05, 0.3, 1.0, 5.0):
        assert steady_block(params, "s_ketamine", conc, 0.3) > steady_block(params, "r_ketamine", conc, 0.3)


def test_interneurons_more_blocked_than_pyramidal_cells(params):
    """At rest interneuron channels open more often (use dependence), so they block more."""
    p_in, p_py = params["receptor.p_open_interneuron"].value, params["receptor.p_open_pyramidal"].value
    assert p_in > p_py
    block_in = steady_block(params, "s_ketamine", 0.2, p_in, "interneuron")
    block_py = steady_block(params, "s_ketamine", 0.2, p_py, "pyramidal")
    assert 0 < block_py < block_in < 1


def test_block_monotone_and_bounded_in_concentration(params):
    conc = np.geomspace(1e-3, 1e3, 25)
    blocks = [steady_block(params, "s_ketamine", c, 0.3) for c in conc]
    assert all(0.0 <= b <= 1.0 for b in blocks)
    assert np.all(np.diff(blocks) > 0)
