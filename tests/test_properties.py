"""Invariants: mass balance, non-negativity, zero dose, dose linearity, monotone block, DDI direction."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import auc, body_amount_umol, dose_scenario, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ketasim

ROUTES = ("iv", "im", "intranasal", "oral", "sublingual")


@pytest.mark.parametrize("route", ROUTES)
def test_mass_balance_every_route(route):
    """Dose in = drug in depots and body + drug eliminated, at every output time after dosing."""
    res = run(dose_scenario(route=route, amount="35 mg", sim="2 d", every="10 min", at=("0 h", "1 d")))
    total = body_amount_umol(res)
    dose_umol = 35.0 * 1000 / 237.73
    expected = np.where(res.times_h >= 24.0, 2 * dose_umol, dose_umol)
    np.testing.assert_allclose(total, expected, rtol=1e-7)


def test_mass_balance_infusion():
    res = run(dose_scenario(duration="40 min", sim="1 d", every="5 min"))
    dose_umol = 0.5 * 70 * 1000 / 237.73
    given_so_far = dose_umol * np.minimum(res.times_h / (40 / 60), 1.0)
    np.testing.assert_allclose(body_amount_umol(res), given_so_far, rtol=1e-7, atol=1e-9)


CONCENTRATIONS = ("pk.", "inflammation.", "comparators.")


def concentration_outputs(res):
    return {n: v for n, v in res.outputs.items() if n.startswith(CONCENTRATIONS) or "block" in n}


def test_untreated_course_has_no_drug():
    res = ketasim.simulate({"simulation": {"duration": "2 d", "output_every": "1 h"}})
    assert res.status == "ok"
    for name, values in res.outputs.items():
        if name.startswith("pk.") or "block" in name:
            assert np.all(values == 0.0), name


@pytest.mark.parametrize("route", ROUTES)
def test_concentrations_non_negative(route):
    res = run(dose_scenario(drug="esketamine", route=route, amount="56 mg", sim="3 d", every="5 min"))
    for name, values in concentration_outputs(res).items():
        assert values.min() >= -1e-9 * max(1.0, values.max()), name


def test_iv_exposure_linear_in_dose():
    low = run(dose_scenario(amount="0.25 mg/kg", duration="40 min", sim="1 d", every="5 min"))
    high = run(dose_scenario(amount="0.5 mg/kg", duration="40 min", sim="1 d", every="5 min"))
    for name in ("pk.ketamine_plasma", "pk.norketamine_plasma", "pk.hnk_plasma", "pk.ketamine_brain"):
        assert auc(high, name) == pytest.approx(2 * auc(low, name), rel=1e-6), name


def test_block_monotone_in_dose_and_bounded():
    peaks = []
    for amount in ("0.1 mg/kg", "0.25 mg/kg", "0.5 mg/kg", "1 mg/kg", "2 mg/kg"):
        res = run(dose_scenario(amount=amount, duration="40 min", sim="6 h", every="2 min"))
        for pop in ("interneuron", "pyramidal"):
            values = res[f"receptor.nmda_block_{pop}"]
            assert 0.0 <= values.min() and values.max() <= 1.0
        peaks.append(res["receptor.nmda_block_interneuron"].max())
    assert np.all(np.diff(peaks) > 0)


def test_esketamine_blocks_more_than_arketamine():
    s = run(dose_scenario(drug="esketamine", amount="0.25 mg/kg", duration="40 min", sim="6 h", every="2 min"))
    r = run(dose_scenario(drug="arketamine", amount="0.25 mg/kg", duration="40 min", sim="6 h", every="2 min"))
    assert s["receptor.nmda_block_interneuron"].max() > 1.5 * r["receptor.nmda_block_interneuron"].max()


def test_block_outlasts_plasma_peak():
    """Use dependence and trapping: the block peaks no earlier than plasma and decays more slowly."""
    res = run(dose_scenario(duration="40 min", sim="6 h", every="1 min"))
    t = res.times_h
    c, b = res["pk.ketamine_plasma"], res["receptor.nmda_block_pyramidal"]
    assert t[np.argmax(b)] >= t[np.argmax(c)]
    assert b[t.searchsorted(3.0)] / b.max() > c[t.searchsorted(3.0)] / c.max()


@pytest.mark.parametrize("comed,direction", [("clarithromycin", +1), ("itraconazole", +1), ("grapefruit", +1),
                                             ("ticlopidine", +1), ("rifampicin", -1)])
def test_interacting_drugs_move_oral_exposure_the_right_way(comed, direction):
    base = run(dose_scenario(route="oral", sim="1 d", every="5 min"))
    with_drug = run(dose_scenario(route="oral", sim="1 d", every="5 min", patient={"comedications": [comed]}))
    ratio = auc(with_drug, "pk.ketamine_plasma") / auc(base, "pk.ketamine_plasma")
    assert (ratio - 1.0) * direction > 0.05


def test_oral_interactions_larger_than_iv():
    """Inhibition acts on first pass too, so it changes oral exposure more than IV exposure."""
    def ratio(route):
        base = run(dose_scenario(route=route, sim="1 d", every="5 min"))
        inhibited = run(dose_scenario(route=route, sim="1 d", every="5 min",
                                      patient={"comedications": ["clarithromycin"]}))
        return auc(inhibited, "pk.ketamine_plasma") / auc(base, "pk.ketamine_plasma")
    assert ratio("oral") > ratio("iv") > 1.0


def test_cyp2b6_poor_metabolisers_have_higher_exposure():
    normal = run(dose_scenario(duration="40 min", sim="1 d", every="5 min"))
    poor = run(dose_scenario(duration="40 min", sim="1 d", every="5 min", patient={"cyp2b6": "poor"}))
    assert auc(poor, "pk.ketamine_plasma") > 1.05 * auc(normal, "pk.ketamine_plasma")


def test_first_pass_raises_metabolite_exposure():
    """Oral dosing gives a higher norketamine/ketamine ratio than IV (first-pass N-demethylation)."""
    iv = run(dose_scenario(sim="1 d", every="5 min"))
    oral = run(dose_scenario(route="oral", sim="1 d", every="5 min"))

    def ratio(res):
        return auc(res, "pk.norketamine_plasma") / auc(res, "pk.ketamine_plasma")
    assert ratio(oral) > 3 * ratio(iv)


def test_weight_scales_clearance_allometrically():
    """Per-kg dosing: a heavier patient has lower exposure (clearance ~ weight^0.75)."""
    light = run(dose_scenario(duration="40 min", sim="1 d", every="5 min", patient={"weight": "50 kg"}))
    heavy = run(dose_scenario(duration="40 min", sim="1 d", every="5 min", patient={"weight": "100 kg"}))
    ratio = auc(heavy, "pk.ketamine_plasma") / auc(light, "pk.ketamine_plasma")
    assert ratio == pytest.approx(2.0 ** 0.25, rel=0.05)


SCENARIO_STRATEGY = dict(weight=st.floats(20, 250), amount=st.floats(0.05, 2.0), route=st.sampled_from(ROUTES),
                         drug=st.sampled_from(["racemic-ketamine", "esketamine", "arketamine"]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SCENARIO_STRATEGY)
def test_random_scenarios_conserve_mass_and_stay_non_negative(weight, amount, route, drug):
    check_random_scenario(weight, amount, route, drug)


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SCENARIO_STRATEGY)
def test_many_random_scenarios_conserve_mass_and_stay_non_negative(weight, amount, route, drug):
    check_random_scenario(weight, amount, route, drug)


def check_random_scenario(weight, amount, route, drug):
    res = ketasim.simulate(dose_scenario(drug=drug, route=route, amount=f"{amount} mg/kg", sim="1 d",
                                         every="15 min", patient={"weight": f"{weight} kg"}))
    assert res.status == "ok"
    dose_umol = amount * weight * 1000 / 237.73
    np.testing.assert_allclose(body_amount_umol(res), dose_umol, rtol=1e-7)
    for name, values in concentration_outputs(res).items():
        assert values.min() >= -1e-9 * max(1.0, values.max()), name
