"""Properties of the whole chain: steady state without drug, dose monotonicity, comparators,
psychotherapy, genotype and co-medication effects, healthy reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run
from test_reference_pd import KETAMINE, MIDAZOLAM, scenario

import ketasim


def test_no_drug_is_a_steady_state():
    res = run({"patient": {"baseline_madrs": 28, "inflammation": "high", "bdnf_val66met": "val/met"},
               "simulation": {"duration": "14 d", "output_every": "6 h"}})
    for name, values in res.outputs.items():
        np.testing.assert_allclose(values, values[0], rtol=1e-9, atol=1e-12, err_msg=name)
    assert res["clinical.madrs"][0] == 28


@pytest.mark.parametrize("baseline", [0.0, 4.0, 20.0, 45.0])
def test_starting_state_matches_baseline_madrs(baseline):
    res = run({"patient": {"baseline_madrs": baseline}, "simulation": {"duration": "1 d", "output_every": "6 h"}})
    np.testing.assert_allclose(res["clinical.madrs"], baseline, atol=1e-9)


def test_healthy_reference_has_higher_prefrontal_connectivity():
    healthy = run({"patient": {"baseline_madrs": 4}, "simulation": {"duration": "1 h", "output_every": "1 h"}})
    depressed = run({"patient": {"baseline_madrs": 32}, "simulation": {"duration": "1 h", "output_every": "1 h"}})
    assert healthy["circuit.prefrontal_strength"][0] == pytest.approx(1.0)
    assert depressed["circuit.prefrontal_strength"][0] < 1.0
    assert healthy["circuit.pfc_gbc"][0] > depressed["circuit.pfc_gbc"][0]
    assert abs(healthy["circuit.pfc_amygdala_fc"][0]) > abs(depressed["circuit.pfc_amygdala_fc"][0])


def test_ketamine_restores_prefrontal_connectivity():
    res = run(scenario([KETAMINE], "8 d"))
    assert res.at("circuit.pfc_gbc", 24) > res["circuit.pfc_gbc"][0]


def test_more_dose_never_less_block_surge_or_effect():
    peaks = []
    for amount in ("0.1 mg/kg", "0.25 mg/kg", "0.5 mg/kg", "0.75 mg/kg", "1 mg/kg"):
        res = run(scenario([{**KETAMINE, "amount": amount}], "2 d"))
        peaks.append((res["receptor.nmda_block_interneuron"].max(), res["synapse.glutamate"].max(),
                      32 - res.at("clinical.madrs", 24)))
    for k in range(3):
        assert np.all(np.diff([p[k] for p in peaks]) > 0)


def test_esketamine_56_vs_84_mg_ordered():
    low = run(scenario([{"drug": "esketamine", "route": "intranasal", "amount": "56 mg"}], "2 d"))
    high = run(scenario([{"drug": "esketamine", "route": "intranasal", "amount": "84 mg"}], "2 d"))
    for name in ("receptor.nmda_block_interneuron", "synapse.glutamate", "clinical.cadss", "clinical.sbp"):
        assert high[name].max() > low[name].max(), name
    assert high.at("clinical.madrs", 24) < low.at("clinical.madrs", 24)


def test_cadss_back_near_zero_2h_after_infusion():
    res = run(scenario([KETAMINE], "4 h", "1 min"))
    assert res.at("clinical.cadss", 40 / 60 + 2) < 1.0


def test_ssri_effect_builds_over_weeks():
    daily = {"route": "oral", "start": "0 d", "every": "1 d", "count": 42}
    ssri = run(scenario([{**daily, "drug": "escitalopram", "amount": "10 mg"}], "6 w", "1 d"))
    placebo = run(scenario([{**daily, "drug": "placebo"}], "6 w", "1 d"))

    def effect(t_days):
        return placebo.at("clinical.madrs", 24 * t_days) - ssri.at("clinical.madrs", 24 * t_days)

    assert effect(3) < 0.2 * effect(42)
    assert ssri["comparators.sert_occupancy"].max() > 0.75  # Meyer 2004: ~80 % at the minimum dose


def test_ketamine_opens_a_window_for_psychotherapy():
    cbt = [{"kind": "cbt", "start": "1 d", "every": "7 d", "count": 6}]
    therapy_alone = run(scenario([], "12 w", "6 h", therapy=cbt))
    combined = run(scenario([KETAMINE], "12 w", "6 h", therapy=cbt))
    ketamine_alone = run(scenario([KETAMINE], "12 w", "6 h"))
    assert combined["clinical.therapy_skill"].max() > therapy_alone["clinical.therapy_skill"].max()
    assert combined.at("clinical.madrs", 6 * 7 * 24) < therapy_alone.at("clinical.madrs", 6 * 7 * 24)

    def relapse_time(res):  # first time after 3 d that MADRS is back within 25 % of the baseline fall
        t, madrs = res.times_h, res["clinical.madrs"]
        later = (t > 72) & (madrs > 32 - 0.25 * 32)
        return t[np.argmax(later)] if later.any() else np.inf

    assert relapse_time(combined) > relapse_time(ketamine_alone)


def test_lorazepam_blunts_the_surge_and_midazolam_makes_none():
    plain = run(scenario([KETAMINE], "3 h", "1 min"))
    lorazepam = run(scenario([KETAMINE], "3 h", "1 min", patient={"comedications": ["lorazepam"]}))
    assert lorazepam["synapse.glutamate"].max() - 100 < 0.8 * (plain["synapse.glutamate"].max() - 100)
    midazolam = run(scenario([MIDAZOLAM], "3 h", "1 min"))
    assert midazolam["synapse.glutamate"].max() == pytest.approx(100.0)
    assert midazolam["clinical.sedation"].max() > 0.1 and plain["clinical.sedation"].max() == 0.0


def test_val66met_blunts_bdnf_release():
    val = run(scenario([KETAMINE], "8 d"))
    met = run(scenario([KETAMINE], "8 d", patient={"bdnf_val66met": "met/met"}))
    assert met["plasticity.bdnf"].max() < val["plasticity.bdnf"].max()
    assert met.at("clinical.madrs", 24) > val.at("clinical.madrs", 24)


def test_given_il6_overrides_status():
    res = run({"patient": {"il6": "6 pg/mL"}, "simulation": {"duration": "1 h", "output_every": "1 h"}})
    assert res["inflammation.il6"][0] == pytest.approx(6.0)


def test_jax_and_cpu_agree_on_the_whole_chain():
    sc = scenario([KETAMINE], "3 d", "30 min", therapy=[{"kind": "mindfulness", "at": ["1 d", "2 d"]}])
    cpu, jx = ketasim.simulate(sc), ketasim.simulate(sc, backend="jax")
    for name in cpu.outputs:
        scale = max(np.max(np.abs(cpu[name])), 1e-9)
        assert np.max(np.abs(cpu[name] - jx[name])) / scale < 1e-7, name


def test_summary_reports_no_landmarks_without_drug():
    res = run({"patient": {"baseline_madrs": 0}, "simulation": {"duration": "14 d", "output_every": "6 h"}})
    s = res.summary()
    assert s["synapse.glutamate"]["time_of_peak"]["value"] is None
    assert s["plasticity.mtorc1"]["return_time"]["value"] is None
    assert s["plasticity.spine_density"]["decay_half_life"]["value"] is None
    assert s["clinical.madrs"]["time_to_response"]["value"] is None


def test_summary_landmarks_after_ketamine():
    s = run(scenario([KETAMINE], "28 d", "10 min")).summary()
    assert s["synapse.glutamate"]["peak_rise"]["value"] == pytest.approx(37.8, abs=7.5)
    assert s["plasticity.mtorc1"]["return_time"]["value"] <= 2.5
    assert 12 <= s["plasticity.spine_density"]["time_of_peak"]["value"] <= 7 * 24
    assert s["plasticity.spine_density"]["decay_half_life"]["value"] is not None
    madrs = s["clinical.madrs"]
    assert madrs["time_to_response"]["value"] < 24 < madrs["time_to_loss_of_response"]["value"]
    assert set(madrs) >= {"at 4 h", "at 24 h", "at 3 d", "at 7 d", "at 14 d", "at 28 d"}


def test_each_output_observed_from_only_the_states_it_reads(params):
    """observe_batch asked for some outputs (no readouts) reads only the states the model's own
    equations say they need (traced on sympy symbols); every output alone equals the full pass."""
    from ketasim.engine import build_problem, solve
    from ketasim.model import default_model
    from ketasim.scenario import Scenario
    from ketasim.simulate import observe_batch

    model = default_model()
    problem = build_problem(Scenario.from_dict(scenario([KETAMINE], duration="1 d", every="1 h")),
                            params, model)
    states = solve(problem)[0]
    full = observe_batch(model, states, problem.parameter_names, problem.theta, readouts=False)
    for name in full:
        alone = observe_batch(model, states, problem.parameter_names, problem.theta, (name,), readouts=False)
        np.testing.assert_array_equal(alone[name], full[name], err_msg=name)
    assert model.states_read_by(["clinical.cadss"], problem.parameter_names) == {"clinical.dissociation_site"}
    with pytest.raises(ValueError, match="circuit.pfc_gbc"):
        model.states_read_by(["circuit.pfc_gbc"], problem.parameter_names)
