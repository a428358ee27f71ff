"""Reference tests: one per pharmacokinetic calibration target (ketasim/data/calibration.toml).

Each test names its target id and uses the tolerance the source allows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import auc_inf, dose_scenario, run

MW_K = 237.73


def test_zarate2006_cmax_antidepressant_dose():
    """0.5 mg/kg over 40 min: plasma ketamine at the end of the infusion within 15 % of 185 ng/mL."""
    res = run(dose_scenario(duration="40 min", sim="2 h"))
    assert res.at("pk.ketamine_plasma", 40 / 60) == pytest.approx(185.0, rel=0.15)


def test_kamp2020_racemic_clearance_within_ci():
    """Racemic clearance (dose / AUC of total ketamine) inside Kamp's 95 % CI 69-90 L/h (70 kg)."""
    res = run(dose_scenario(amount="0.5 mg/kg", sim="3 d", every="5 min"))
    dose_ug = 0.5 * 70 * 1000
    cl = dose_ug / auc_inf(res, "pk.ketamine_plasma")  # ug / (ng/mL*h) = L/h
    assert 69.0 <= cl <= 90.0
    assert cl == pytest.approx(79.0, rel=0.05)


def test_kamp2020_volume_within_ci(params):
    """Kamp's pooled V (mostly two-compartment analyses) against V1 + V2: inside 200-304 L."""
    v = params["pk.v_central"].value + params["pk.v_peripheral"].value
    assert 200.0 <= v <= 304.0


def test_clements1981_model_end_of_infusion():
    """The target's reference value: Clements & Nimmo's structure predicts ~177 ng/mL at 40 min.

    Only the end-of-infusion level is compared (within 15 %): the label's Vss of 709 L and 7-12 h
    terminal half-life (grade H) need a deep compartment that Clements' two-compartment model
    (grade M) lacks, so the profile after the infusion falls faster than theirs (see docs/model.md).
    """
    res = run(dose_scenario(duration="40 min", sim="2 h"))
    assert res.at("pk.ketamine_plasma", 40 / 60) == pytest.approx(177.0, rel=0.15)


def test_grant1981_oral_cmax_within_one_sd():
    """0.5 mg/kg oral racemic ketamine: Cmax within one SD of 45 ng/mL (35-55)."""
    res = run(dose_scenario(route="oral", sim="12 h"))
    assert 35.0 <= res["pk.ketamine_plasma"].max() <= 55.0


def _bioavailability(route, drug, amount_mg, enantiomer_output):
    oral = run(dose_scenario(drug=drug, route=route, amount=f"{amount_mg} mg", sim="3 d", every="5 min"))
    iv = run(dose_scenario(drug=drug, route="iv", amount=f"{amount_mg} mg", sim="3 d", every="5 min"))
    return auc_inf(oral, enantiomer_output) / auc_inf(iv, enantiomer_output)


def test_fanta2015_oral_esketamine_bioavailability():
    assert _bioavailability("oral", "esketamine", 17.5, "pk.s_ketamine_plasma") == pytest.approx(0.08, rel=0.15)


def test_fanta2015_esketamine_clearance():
    """S-ketamine IV clearance within Fanta's mean +- 2 CV (95 L/h, CV 13 %)."""
    res = run(dose_scenario(drug="esketamine", amount="8.75 mg", sim="3 d", every="5 min"))
    cl = 8.75 * 1000 / auc_inf(res, "pk.s_ketamine_plasma")
    assert 95.0 * (1 - 2 * 0.13) <= cl <= 95.0 * (1 + 2 * 0.13)


def test_fanta2015_oral_norketamine_ratio():
    """Norketamine/ketamine AUC ratio after oral S-ketamine near 16.5 (within 25 %)."""
    res = run(dose_scenario(drug="esketamine", route="oral", amount="17.5 mg", sim="3 d", every="5 min"))
    ratio = auc_inf(res, "pk.s_norketamine_plasma") / auc_inf(res, "pk.s_ketamine_plasma")
    assert ratio == pytest.approx(16.5, rel=0.25)


def test_spravato_label_intranasal_bioavailability():
    """Nasal esketamine absolute bioavailability within 10 % of 48 %."""
    assert _bioavailability("intranasal", "esketamine", 56, "pk.s_ketamine_plasma") == pytest.approx(0.48, rel=0.10)


def test_spravato_label_intranasal_tmax():
    res = run(dose_scenario(drug="esketamine", route="intranasal", amount="56 mg", sim="6 h", every="1 min"))
    tmax_min = res.times_h[np.argmax(res["pk.s_ketamine_plasma"])] * 60
    assert 20.0 <= tmax_min <= 40.0


def test_spravato_label_terminal_half_life():
    """Terminal half-life of esketamine plasma concentrations (12-36 h after a nasal dose) in 7-12 h."""
    res = run(dose_scenario(drug="esketamine", route="intranasal", amount="56 mg", sim="2 d", every="15 min"))
    t, c = res.times_h, res["pk.s_ketamine_plasma"]
    window = (t >= 12) & (t <= 36)
    slope = -np.polyfit(t[window], np.log(c[window]), 1)[0]
    assert 7.0 <= math.log(2) / slope <= 12.0


def test_spravato_label_clearance_vss_and_binding(params):
    res = run(dose_scenario(drug="esketamine", amount="8.75 mg", sim="3 d", every="5 min"))
    assert 8.75 * 1000 / auc_inf(res, "pk.s_ketamine_plasma") == pytest.approx(89.0, rel=0.10)
    vss = sum(params[f"pk.{v}"].value for v in ("v_central", "v_peripheral", "v_deep"))
    assert vss == pytest.approx(709.0, rel=0.10)
    assert 0.43 <= 1 - params["pk.fu_ketamine"].value <= 0.45


def test_spravato_label_noresketamine_half_life():
    res = run(dose_scenario(drug="esketamine", route="intranasal", amount="56 mg", sim="3 d", every="15 min"))
    t, c = res.times_h, res["pk.s_norketamine_plasma"]
    window = (t >= 36) & (t <= 72)
    slope = -np.polyfit(t[window], np.log(c[window]), 1)[0]
    assert math.log(2) / slope == pytest.approx(8.0, rel=0.25)


def test_perezruixo2021_nasal_fraction(params):
    assert params["pk.f_nasal_deposited"].value == pytest.approx(0.54)


@pytest.mark.xfail(strict=True, reason="known discrepancy: the swallowed part of a nasal dose takes the "
                   "oral first pass calibrated to Fanta 2015 (availability 0.08), not Perez-Ruixo's 0.186")
def test_perezruixo2021_swallowed_fraction_available():
    assert _bioavailability("oral", "esketamine", 56, "pk.s_ketamine_plasma") == pytest.approx(0.186, rel=0.25)


def test_yanagihara2003_oral_racemic_bioavailability():
    """Oral racemic availability (n = 3, grade M): within 25 % of 0.20."""
    assert _bioavailability("oral", "racemic-ketamine", 50, "pk.ketamine_plasma") == pytest.approx(0.20, rel=0.25)


def test_im_bioavailability():
    assert _bioavailability("im", "racemic-ketamine", 35, "pk.ketamine_plasma") == pytest.approx(0.93, rel=0.02)


def test_cohen1973_brain_plasma_ratio_and_speed():
    """Brain:plasma 6.5 at equilibrium (long infusion) and a brain peak within 1 min of an IV bolus."""
    infusion = run(dose_scenario(duration="6 h", sim="6 h", every="5 min"))
    ratio = infusion.at("pk.ketamine_brain", 5.9) / infusion.at("pk.ketamine_plasma", 5.9)
    assert ratio == pytest.approx(6.5, rel=0.02)
    bolus = run(dose_scenario(amount="0.2 mg/kg", sim="10 min", every="0.1 min"))
    assert bolus.times_h[np.argmax(bolus["pk.ketamine_brain"])] * 60 <= 1.0
