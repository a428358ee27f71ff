"""Readiness for discharge after a session (trial/discharge.py): the rule, its place in the patients
table, summary and caps, and the model's prediction against the esketamine trials' discharge data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ketasim import run_trial
from ketasim.trial.discharge import CADSS_READY_AT_MOST, SBP_CRISIS_MMHG, ready_after

T = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
FLAT_SBP = np.full(T.size, 125.0)


def test_ready_from_the_last_time_the_criteria_fail():
    """A dip below the CADSS cut that rises again is not readiness; the time counts from the dose."""
    cadss = np.array([[0.0, 8.0, 3.0, 5.0, 4.0, 2.0, 1.0]])
    assert ready_after(T, cadss, FLAT_SBP[None]).tolist() == [1.0]  # 4.0 itself meets "at most 4"
    assert ready_after(T + 100.0, cadss, FLAT_SBP[None]).tolist() == [1.0]


def test_blood_pressure_must_be_past_its_peak_and_below_a_crisis():
    calm = np.zeros((1, T.size))
    rising = np.array([[120.0, 125.0, 130.0, 138.0, 140.0, 139.0, 131.0]])
    assert ready_after(T, calm, rising).tolist() == [1.0]  # the peak at 1 h
    crisis = np.array([[150.0, 195.0, 190.0, SBP_CRISIS_MMHG + 0.5, SBP_CRISIS_MMHG, 175.0, 160.0]])
    assert ready_after(T, calm, crisis).tolist() == [1.0]  # a crisis is above 180 mmHg


def test_not_ready_within_the_window_is_infinite_and_a_missing_value_nan():
    still = np.full((1, T.size), CADSS_READY_AT_MOST + 1.0)
    assert ready_after(T, still, FLAT_SBP[None]).tolist() == [math.inf]
    broken = np.zeros((1, T.size))
    broken[0, 3] = np.nan
    assert np.isnan(ready_after(T, broken, FLAT_SBP[None])).all()


def _one_session(n: int) -> dict:
    arms = [{"name": f"esketamine {mg} mg", "dose": [{"drug": "esketamine", "route": "intranasal", "amount": f"{mg} mg"}]}
            for mg in (56, 84)]
    arms.append({"name": "placebo spray", "dose": [{"drug": "placebo", "route": "intranasal"}]})
    return {"trial": {"name": "one session", "seed": 7, "assessments": ["1 h", "1 d"], "control": "placebo spray"},
            "population": {"n": n, "preset": "treatment-resistant"}, "arm": arms}


@pytest.fixture(scope="module")
def one_session():
    return run_trial(_one_session(120))


def test_discharge_is_read_over_the_whole_session_whatever_the_assessment(one_session):
    """The 1-h assessment falls inside the session's window; readiness is still read to 4 h, so both
    assessments of a patient report the same session and the same time."""
    df = one_session.patients
    per_patient = df.groupby("patient")["discharge_ready_after [h]"].nunique(dropna=False)
    assert (per_patient == 1).all()
    assert (df.loc[df["arm"] == "placebo spray", "discharge_ready_after [h]"] == 0.0).all()


def test_a_higher_dose_takes_longer_to_discharge(one_session):
    arms = one_session.summary["arms"]
    low, high = (arms[f"esketamine {mg} mg"]["side_effects"]["discharge"] for mg in (56, 84))
    assert high["ready_by_1.5_h"]["estimate"] < low["ready_by_1.5_h"]["estimate"]
    assert high["not_ready_at_2_h"]["estimate"] > low["not_ready_at_2_h"]["estimate"]
    df = one_session.patients
    median = {mg: df[df["arm"] == f"esketamine {mg} mg"].groupby("patient")["discharge_ready_after [h]"].max().median()
              for mg in (56, 84)}
    assert median[84] > median[56]


def test_summary_counts_are_the_patients_tables(one_session, tmp_path):
    df = one_session.patients
    df = df[(df["status"] == "ok") & df["randomised"]]  # the rows the summary counts
    for arm, summary in one_session.summary["arms"].items():
        slowest = df[df["arm"] == arm].groupby("patient")["discharge_ready_after [h]"].max()
        d = summary["side_effects"]["discharge"]
        assert d["patients_with_a_session"] == len(slowest)
        assert d["ready_by_1.5_h"]["k"] == int((slowest <= 1.5).sum())
        assert d["not_ready_at_2_h"]["k"] == int((slowest > 2.0).sum())
        assert d["ready_after [h]"]["not_ready_within_window"] == int(np.isinf(slowest).sum())
    one_session.write(tmp_path)
    assert "Model discharge criteria" in (tmp_path / "report.html").read_text()


#: TRANSFORM-1 and -2 (349 patients on 56 or 84 mg twice weekly, eight sessions; Psych Congress 2019
#: poster): at least 90 % ready for discharge at 90 min, at most 3.5 % not ready at 2 h. The bounds
#: widened by 1.96 binomial SE for 349 patients (the unit that was sampled).
TRANSFORM_N = 349
TRANSFORM_READY_90_MIN = 0.90 - 1.96 * math.sqrt(0.90 * 0.10 / TRANSFORM_N)
TRANSFORM_NOT_READY_2_H = 0.035 + 1.96 * math.sqrt(0.035 * 0.965 / TRANSFORM_N)


@pytest.mark.xfail(strict=True, reason="the model's dissociation follows plasma esketamine, which after a nasal "
                   "dose is still two thirds of its peak at 90 min, so half the sessions have CADSS > 4 then; in "
                   "the trials it resolved by 1.5 h (the effect fades faster than the drug: acute tolerance or an "
                   "antagonistic metabolite, not modelled) and fell across sessions (Chen 2022); README, "
                   "'Discharge after a session'")
def test_sessions_meet_the_esketamine_trials_discharge_rates():
    """Every session of a twice-weekly course of 56 mg, or of 84 mg after 56 mg on day 1 (the label's
    start), pooled as in TRANSFORM-1 and -2."""
    sessions = [f"{3.5 * 24 * k + 4:g} h" for k in range(8)]
    nasal = {"drug": "esketamine", "route": "intranasal"}
    arms = [{"name": "56 mg", "dose": [{**nasal, "amount": "56 mg", "start": "0 d", "every": "3.5 d", "count": 8}]},
            {"name": "84 mg", "dose": [{**nasal, "amount": "56 mg"},
                                       {**nasal, "amount": "84 mg", "start": "3.5 d", "every": "3.5 d", "count": 7}]}]
    df = run_trial({"trial": {"name": "TRANSFORM-like", "seed": 5, "assessments": sessions, "control": "56 mg"},
                    "population": {"n": 100, "preset": "treatment-resistant"}, "arm": arms}).patients
    ready = df["discharge_ready_after [h]"].to_numpy()  # one row per session
    assert np.mean(ready <= 1.5) >= TRANSFORM_READY_90_MIN
    assert np.mean(ready > 2.0) <= TRANSFORM_NOT_READY_2_H
