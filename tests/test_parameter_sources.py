"""The parameter files match their sources.

These are pins, not reproduced results: each checks that a parameter (or a quantity the equations
make equal to a parameter) carries the published value its source field cites. A model that
"meets" these meets them by construction; the tests guard against a file drifting from its source.
The model's predictions are tested elsewhere (test_calibrate.py, test_predictions.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import dose_scenario, run

from ketasim.calibrate.data import HAMD24_PER_HAMD17, convert
from ketasim.dosing import HEALTHY_MADRS, il6_baseline
from ketasim.scenario import Patient, PatientColumns

PINS = [
    # (parameter, published value, relative tolerance of the pin, source)
    ("receptor.ki_s_ketamine", 0.3, 0.0, "Ebert 1997 (S-ketamine Ki 0.3 uM)"),
    ("receptor.ki_r_ketamine", 1.4, 0.0, "Ebert 1997 (R-ketamine Ki 1.4 uM)"),
    ("receptor.ki_s_norketamine", 1.7, 0.0, "Ebert 1997"),
    ("receptor.ki_r_norketamine", 13.0, 0.0, "Ebert 1997"),
    ("receptor.ki_hnk", 46.0, 0.0, "Abbott & Popescu 2020 ((2R,6R)-HNK IC50 46 uM)"),
    ("receptor.trapping_fraction", 0.86, 0.0, "Mealing 1999"),
    ("pk.kp_brain_ketamine", 6.5, 0.0, "Cohen 1973 (brain:plasma 6.5)"),
    ("pk.f_im", 0.93, 0.0, "Clements 1982 (IM availability 93 %)"),
    ("pk.f_nasal_deposited", 0.54, 0.0, "Perez-Ruixo 2021 (54 % absorbed nasally)"),
    ("pk.nasal_later_device_ratio", 0.62, 0.0, "Perez-Ruixo 2021 Table 3 (0.62 x FRn for each later 28-mg device)"),
    ("pk.f_nasal_mucosal", 1.0, 0.0, "Perez-Ruixo 2021 (the nasally absorbed fraction is absorbed completely)"),
    ("pk.cl_s_ketamine", 89.0, 0.0, "SPRAVATO label (IV clearance 89 L/h)"),
    ("pk.v_hnk", 4.4 + 87.5, 0.001, "Simons 2022 Table 4 (S-HNK volumes 4.4 + 87.5 L at 70 kg)"),
    ("pk.f_norketamine_to_hnk", 0.7, 0.0, "Simons 2022 (70 % of metabolised S-norketamine forms S-HNK, fixed there)"),
    ("clinical.madrs_per_hamd", 1.3, 0.0, "Leucht 2018 (MADRS ~ 1.3 x HAM-D)"),
    ("comparators.f_rapamycin", 0.14, 0.0, "RAPAMUNE label (oral availability 14 %)"),
    ("population.madrs_rater_sd", 1.6, 0.0, "Sapko 2025 (inter-rater difference 1.78 points -> 1.6 per rating)"),
]


@pytest.mark.parametrize("name,value,rel,source", PINS, ids=[p[0] for p in PINS])
def test_parameter_carries_its_published_value(params, name, value, rel, source):
    assert params[name].value == pytest.approx(value, rel=rel, abs=1e-12), source


def test_label_vss_and_protein_binding(params):
    """SPRAVATO label: Vss 709 L (the three volumes sum to it) and protein binding 43-45 %."""
    vss = sum(params[f"pk.{v}"].value for v in ("v_central", "v_peripheral", "v_deep"))
    assert vss == pytest.approx(709.0, rel=1e-3)
    assert 0.43 <= 1 - params["pk.fu_ketamine"].value <= 0.45


def test_kamp2020_volume_is_v1_plus_v2(params):
    """Kamp's pooled V (mostly two-compartment analyses) within its 95 % CI 200-304 L."""
    assert 200.0 <= params["pk.v_central"].value + params["pk.v_peripheral"].value <= 304.0


def test_osimo2020_il6_gap_in_depression(params):
    """IL-6 of a depressed patient with 'normal' status exceeds the healthy reference by Osimo's
    g = 0.61 population SDs (the covariate is built that way)."""
    il6 = il6_baseline(PatientColumns.of([Patient(baseline_madrs=32.0), Patient(baseline_madrs=HEALTHY_MADRS)]), params)
    gap = (il6[0] - il6[1]) / params.value("inflammation.il6_population_sd")  # both in internal units
    assert gap == pytest.approx(0.61, rel=1e-9)


def test_cohen1973_brain_plasma_ratio_at_equilibrium():
    """Total brain / plasma ketamine at equilibrium equals the Kp parameter (6.5)."""
    infusion = run(dose_scenario(duration="6 h", sim="6 h", every="5 min"))
    ratio = infusion.at("pk.ketamine_brain", 5.9) / infusion.at("pk.ketamine_plasma", 5.9)
    assert ratio == pytest.approx(6.5, rel=0.02)


def test_hamd_unit_of_the_observation_tables_uses_the_models_linking(params):
    assert convert(1.3, "MADRS points", "HAM-D points") == pytest.approx(1.3 / params["clinical.madrs_per_hamd"].value)


#: HRSD-17 total -> HRSD-24 total (midpoint of the range given) in the IRT score correspondence of
#: Rush 2003 and Trivedi 2004 as tabulated at ids-qids.org ("Interpretation", Table 3), HRSD-17 7-29
HRSD17_TO_HRSD24 = ((7, 8.5), (8, 10.5), (9.5, 12), (11, 13.5), (12, 15.5), (13, 17.5), (14.5, 19), (16, 20.5),
                    (17, 22.5), (18.5, 24.5), (18.5, 26), (20, 27.5), (21.5, 29.5), (23, 31.5), (24, 33), (25, 34),
                    (26.5, 36.5), (28, 39), (29, 40.5))


def test_hamd24_unit_of_a_change_follows_the_published_correspondence_slope(params):
    """A change of one HAM-D-17 point is the least-squares slope of the published correspondence in
    HAM-D-24 points (1.45 to its two digits), and the unit goes through the model's MADRS linking."""
    hrsd17, hrsd24 = np.array(HRSD17_TO_HRSD24).T
    slope = np.polyfit(hrsd17, hrsd24, 1)[0]
    assert slope == pytest.approx(HAMD24_PER_HAMD17, abs=0.005)
    madrs_change = -13.0
    hamd17 = convert(madrs_change, "MADRS points", "HAM-D points")
    assert convert(madrs_change, "MADRS points", "HAM-D-24 points") == pytest.approx(hamd17 * slope, rel=0.005)
    assert hamd17 == pytest.approx(madrs_change / params["clinical.madrs_per_hamd"].value)
