"""Reference tests for the pharmacodynamic and clinical layers on the typical patient (70 kg, 45 y,
baseline MADRS 32): the qualitative targets (order, timing, shape) and the sourced relations the
calibration does not fix by construction. The numeric targets, which need the population and its
observation model, are checked row by row against their published intervals in test_calibrate.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run

PATIENT = {"weight": "70 kg", "age": "45 y", "baseline_madrs": 32}
KETAMINE = {"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}
MIDAZOLAM = {"drug": "midazolam", "route": "iv", "amount": "0.045 mg/kg", "duration": "40 min"}


def scenario(doses, duration="2 d", every="10 min", patient=None, therapy=None):
    sc = {"patient": {**PATIENT, **(patient or {})}, "dose": doses,
          "simulation": {"duration": duration, "output_every": every}}
    if therapy:
        sc["therapy"] = therapy
    return sc


def ketamine(duration="8 d", every="10 min", patient=None):
    return run(scenario([KETAMINE], duration, every, patient))


def test_milak2016_surge_is_transient():
    """The surge (its height and timing are calibration rows) is gone within about an hour."""
    res = run(scenario([KETAMINE], "3 h", "0.5 min"))
    assert res.at("synapse.glutamate", 2.0) < 105


def test_li2010_mtor_timing():
    res = run(scenario([KETAMINE], "4 d", "2 min"))
    t, mtor, proteins = res.times_h, res["plasticity.mtorc1"], res["plasticity.synaptic_proteins"]
    i = int(np.argmax(mtor))
    assert t[i] <= 1.0 and mtor[i] > 1.1  # up within the first hour
    assert res.at("plasticity.mtorc1", 2.0) - 1 < 0.25 * (mtor[i] - 1)  # back by ~2 h
    assert res.at("plasticity.synaptic_proteins", 6.0) > 1.05  # proteins up within hours
    assert res.at("plasticity.synaptic_proteins", 48.0) > 1.05  # and still up after days
    assert t[int(np.argmax(mtor))] < t[int(np.argmax(proteins))] < t[int(np.argmax(res["plasticity.spine_density"]))]


def test_autry2011_eef2_route_is_needed_for_the_effect(params):
    import ketasim

    res = ketamine()
    assert res["synapse.eef2_desuppression"].max() > 0.05
    no_translation = ketasim.simulate(scenario([KETAMINE], "8 d"), params=params.replace(plasticity__bdnf_translation_gain=0.1))
    fall = 32 - res.at("clinical.madrs", 24)
    fall_without = 32 - no_translation.at("clinical.madrs", 24)
    midazolam_fall = 32 - run(scenario([MIDAZOLAM], "8 d")).at("clinical.madrs", 24)
    assert fall_without - midazolam_fall < 0.8 * (fall - midazolam_fall)


def test_modasava2019_effect_starts_before_spines_and_spines_sustain_it():
    res = ketamine()
    t, fall, spines = res.times_h, 32 - res["clinical.madrs"], res["plasticity.spine_density"] - 1

    def quarter_time(values):
        return t[np.argmax(values >= 0.25 * values.max())]

    assert quarter_time(fall) < quarter_time(spines) / 2  # the effect starts well before new spines
    # at 4 h the effect is more than half its peak while spines have barely begun (a quarter of theirs)
    assert 32 - res.at("clinical.madrs", 4) > 0.5 * fall.max()
    assert res.at("plasticity.spine_density", 4) - 1 < 0.25 * spines.max()
    assert res.at("plasticity.spine_density", 24) > 1.03  # spines form over 12-24 h and later


def test_inflammation_lowers_the_response():
    normal = ketamine()
    inflamed = ketamine(patient={"inflammation": "high"})
    assert inflamed["inflammation.il6"][0] > normal["inflammation.il6"][0]
    assert 32 - inflamed.at("clinical.madrs", 24) < 32 - normal.at("clinical.madrs", 24)


def test_kynurenine_after_ketamine_directions():
    res = ketamine()
    start = {k: res[f"inflammation.{k}"][0] for k in ("ido_activity", "kynurenine", "kynurenic_acid", "quinolinic_acid")}
    for t in (230 / 60, 24, 72):
        assert res.at("inflammation.ido_activity", t) < start["ido_activity"]
    for t in (24, 72):
        kyn = res.at("inflammation.kynurenine", t) / start["kynurenine"] - 1
        kyna = res.at("inflammation.kynurenic_acid", t) / start["kynurenic_acid"] - 1
        qa = res.at("inflammation.quinolinic_acid", t) / start["quinolinic_acid"] - 1
        assert kyn > 0.05 and kyna > 0.05
        assert abs(qa) < 0.1  # "unchanged" in n = 39: smaller than a tenth


def test_han2016_effect_decays_over_the_week():
    """Response falls from 52 % at 24 h to 40 % at day 7 (rates: trials layer); the typical
    patient's fall is smaller at day 7 than at 24 h, and still present."""
    res = ketamine()
    assert 0 < 32 - res.at("clinical.madrs", 168) < 32 - res.at("clinical.madrs", 24)


def test_trivedi2006_stard_citalopram_still_improving_after_8_weeks():
    daily = {"drug": "citalopram", "route": "oral", "amount": "40 mg", "start": "0 d", "every": "1 d", "count": 98}
    res = run(scenario([daily], "14 w", "1 d"))
    # a large share of remitters needs 8 weeks or more: still improving between week 8 and 14
    assert res.at("clinical.madrs", 98 * 24) < res.at("clinical.madrs", 56 * 24) - 0.5


def test_cuijpers2018_psychotherapy_effect(params):
    import ketasim

    cbt = [{"kind": "cbt", "start": "0 d", "every": "7 d", "count": 10}]
    with_skill = run(scenario([], "10 w", "1 d", therapy=cbt))
    without = ketasim.simulate(scenario([], "10 w", "1 d", therapy=cbt), params=params.replace(clinical__skill_max_effect=0.0))
    extra = without["clinical.madrs"][-1] - with_skill["clinical.madrs"][-1]
    sd_change = 8.0  # assumed SD of MADRS change that turns g into points
    assert 0.2 * sd_change <= extra <= 0.7 * sd_change


def test_bowdle1998_dissociation_linear_in_concentration():
    """Steady infusions at four levels: CADSS is proportional to plasma ketamine over 50-200 ng/mL."""
    levels, cadss = [], []
    for rate_mg in (30, 55, 80, 105):  # mg over 2 h (a long infusion reaches a plateau-like level)
        res = run(scenario([{"drug": "racemic-ketamine", "route": "iv", "amount": f"{rate_mg} mg",
                             "duration": "2 h"}], "2 h", "5 min"))
        levels.append(res.at("pk.ketamine_plasma", 2.0))
        cadss.append(res.at("clinical.cadss", 2.0))
    assert 40 < levels[0] and levels[-1] < 260
    slope, intercept = np.polyfit(levels, cadss, 1)
    assert abs(intercept) < 0.05 * max(cadss)
    np.testing.assert_allclose(cadss, slope * np.asarray(levels) + intercept, rtol=0.05)


def test_cadss_typical_session_shape():
    """The session mean is a calibration row; the shape: peak at the end of the infusion, near
    baseline by 80-120 min."""
    res = run(scenario([KETAMINE], "4 h", "1 min"))
    cadss = res["clinical.cadss"]
    i = int(np.argmax(cadss))
    assert res.times_h[i] == pytest.approx(40 / 60, abs=10 / 60)
    assert res.at("clinical.cadss", 2.0) < 0.25 * cadss[i]  # near baseline by 80-120 min


def test_dissociation_follows_the_nmda_affinity_of_the_enantiomers(params):
    """Dissociation is an effect of NMDA block, so the enantiomers count by their affinity (Ki 0.3 vs
    1.4 uM, Ebert 1997): at the same dose esketamine dissociates more than the racemate and
    arketamine much less. Equimolar R-ketamine produced no psychotomimetic state (Vollenweider 1997)
    and arketamine 0.5 mg/kg left dissociation "nearly absent" in 7 patients (Leal GC et al. Eur Arch
    Psychiatry Clin Neurosci 2021;271:577): below the
    CADSS > 4 that the esketamine trials count as dissociation (Chen 2022). The weighting is scaled
    so that the racemate counts as its total ketamine, which keeps the racemic calibration (a pin)."""
    from ketasim.model.clinical import Clinical

    p = {name: params.value(name) for name in ("receptor.ki_s_ketamine", "receptor.ki_r_ketamine")}
    w = p["receptor.ki_s_ketamine"] / p["receptor.ki_r_ketamine"]
    weighted = Clinical.dissociating_ketamine
    assert weighted(p, {"pk.s_ketamine_plasma": 60.0, "pk.r_ketamine_plasma": 60.0}) == pytest.approx(120.0, rel=1e-12)
    assert weighted(p, {"pk.s_ketamine_plasma": 100.0, "pk.r_ketamine_plasma": 0.0}) == pytest.approx(200 / (1 + w), rel=1e-12)
    peak = {drug: run(scenario([{**KETAMINE, "drug": drug}], "4 h", "1 min"))["clinical.cadss"].max()
            for drug in ("esketamine", "racemic-ketamine", "arketamine")}
    # the weights 2/(1+w) = 1.65 and 2w/(1+w) = 0.35, blurred a little by the low-level threshold
    assert 1.45 < peak["esketamine"] / peak["racemic-ketamine"] < 1.85
    assert 0.25 < peak["arketamine"] / peak["racemic-ketamine"] < 0.45
    assert peak["arketamine"] < 4.0


def test_spravato_label_bp_lasts_about_4_hours():
    res = run(scenario([{"drug": "esketamine", "route": "intranasal", "amount": "84 mg"}], "10 h", "1 min"))
    sbp = res["clinical.sbp"]
    i = int(np.argmax(sbp))
    rise = sbp[i] - sbp[0]
    assert rise > 5.0
    assert res.at("clinical.sbp", 4.0) - sbp[0] < 0.5 * rise  # lasting about 4 h
    assert res.at("clinical.sbp", 8.0) - sbp[0] < 0.25 * rise


def test_szarmach2020_racemic_bp_back_within_90_min():
    res = run(scenario([KETAMINE], "4 h", "1 min"))
    end = 40 / 60 + 1.5
    assert res.at("clinical.sbp", end) - res["clinical.sbp"][0] < 5.0
    assert res.at("clinical.heart_rate", end) - res["clinical.heart_rate"][0] < 3.0


def _liking_peak(dose, duration="6 h", every="1 min"):
    return float(np.max(run(scenario([dose], duration, every))["clinical.drug_liking"]))


def test_drug_liking_is_neutral_without_ketamine_and_saturates_below_the_scales_end():
    """The bipolar scale (50 neutral, 100 strongest liking): saline leaves it at 50, and a dose four
    times the antidepressant one comes close to the scale's end without passing it."""
    liking = run(scenario([{"drug": "saline", "route": "iv", "duration": "40 min"}], "6 h", "5 min"))[
        "clinical.drug_liking"]
    np.testing.assert_array_equal(liking, 50.0)
    liking = run(scenario([{"drug": "racemic-ketamine", "route": "iv", "amount": "2 mg/kg"}], "6 h", "1 min"))[
        "clinical.drug_liking"]
    assert 95.0 < liking.max() < 100.0


def test_the_shipped_drug_liking_ec50_still_solves_its_calibration():
    """A calibration check, not a reproduced result: the typical patient's peak after 0.5 mg/kg over
    40 min equals the target (50 + 90.0 - 50.9 = 89.1) to the EC50's four digits, so a change to the
    pharmacokinetics or the effect site that moves it fails here until scripts/calibrate_clinical.py
    --scales-only is rerun. (The target's accepted interval, 77-100, reaches the scale's end and so
    can only catch too little liking.)"""
    assert _liking_peak(KETAMINE) == pytest.approx(89.1, abs=0.01)


def test_the_drug_liking_hill_is_the_one_nearest_to_bowdles_straight_line(params):
    """A calibration check: through the same calibration point, the shipped Hill coefficient's curve,
    evaluated by the model's own function, is nearer to a straight line over Bowdle 1998's five
    steady-state steps than those half a unit either side (ketasim.calibrate.liking), so a change to
    the threshold or the calibration that moves the optimum fails here."""
    from ketasim.calibrate import liking

    p = liking.clinical_parameters(params)
    point = liking.calibration_point(p)
    n = p["drug_liking_hill"]
    assert liking.distance_from_linear(p, n, *point) < min(liking.distance_from_linear(p, n - 0.5, *point),
                                                            liking.distance_from_linear(p, n + 0.5, *point))


def test_drug_liking_rises_with_the_dose_and_with_a_faster_infusion():
    """Monotone in dose at a fixed infusion time; at a fixed dose, a faster infusion gives a higher
    effect-site peak and so more liking, a slower one less: the only way the rate of rise acts (there
    is no term of its own)."""
    doses = [_liking_peak({**KETAMINE, "amount": f"{a} mg/kg"}) for a in (0.1, 0.25, 0.5, 1.0)]
    assert np.all(np.diff(doses) > 0)
    by_duration = [_liking_peak({**KETAMINE, "duration": d}) for d in ("5 min", "40 min", "100 min")]
    assert by_duration[0] > by_duration[1] > by_duration[2]


def test_drug_liking_follows_the_nmda_affinity_of_the_enantiomers():
    """Liking reads the level that dissociates, so at equal doses esketamine is liked more than the
    racemate and arketamine least (prediction, not calibrated: the esketamine abuse-potential study,
    NCT02682225, reports only that 84 and 112 mg nasal scored above placebo)."""
    peaks = {drug: _liking_peak({**KETAMINE, "drug": drug, "amount": "0.25 mg/kg"})
             for drug in ("esketamine", "racemic-ketamine", "arketamine")}
    assert peaks["esketamine"] > peaks["racemic-ketamine"] > peaks["arketamine"] > 50.0
    nasal = [_liking_peak({"drug": "esketamine", "route": "intranasal", "amount": a}) for a in ("84 mg", "112 mg")]
    assert 50.0 < nasal[0] < nasal[1]
