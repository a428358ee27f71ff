"""Abuse liability as a trial output and a cap (issue 14 part 5): drug liking on the bipolar scale of
abuse-potential studies (model/clinical.py; its calibration row, shram2023_ketamine_drug_liking, is
checked against its published interval in test_calibrate.py and its invariants in
test_reference_pd.py). Here: the patients table holds each session's peak, the summary and the
report are that table's, and ``ketasim optimise`` caps it."""

from __future__ import annotations

import numpy as np
import pytest
from test_optimise import small

import ketasim
from ketasim.errors import ScenarioError
from ketasim.trial import run_trial, stream_trial
from ketasim.trial.optimise import CAP_COLUMNS, OptimiseSpec
from ketasim.trial.report import _side_effect_table, write_trial_report
from ketasim.trial.summary import trial_summary
from ketasim.trial.tally import LIKING

NASAL = {"drug": "esketamine", "route": "intranasal", "start": "0 d", "every": "3.5 d", "count": 2}


@pytest.fixture(scope="module")
def trial():
    return run_trial({
        "trial": {"name": "liking", "seed": 5, "assessments": ["4 h", "3.5 d", "3.6 d"], "control": "midazolam"},
        "population": {"n": 10, "preset": "treatment-resistant"},
        "arm": [{"name": "esketamine 28 mg", "dose": [{**NASAL, "amount": "28 mg"}]},
                {"name": "esketamine 84 mg", "dose": [{**NASAL, "amount": "84 mg"}]},
                {"name": "midazolam", "dose": [{"drug": "midazolam", "route": "iv", "amount": "0.045 mg/kg",
                                                "duration": "40 min", "at": ["0 h"]}]}]})


def test_the_patients_table_holds_each_sessions_liking_peak(trial):
    df = trial.patients
    peaks = df.groupby("arm")[LIKING]
    assert np.all(df.loc[df["arm"] == "midazolam", LIKING].dropna() == 50.0)  # midazolam's own liking: not modelled
    assert 50.0 < peaks.mean()["esketamine 28 mg"] < peaks.mean()["esketamine 84 mg"] < 100.0
    # each assessment reads the last session before it: the 3.5-d one the first dose's (as at 4 h), the
    # 3.6-d one the second dose's (84 h), a session of its own
    at = df[df["arm"] == "esketamine 84 mg"].pivot(index="patient", columns="assessment [h]", values=LIKING)
    assert (at[84.0] == at[4.0]).all() and (at[4.0] > 50.0).all()
    assert (at[86.4] > 50.0).all() and (at[86.4] != at[4.0]).all()


def test_the_summary_and_report_are_the_patients_tables(trial, tmp_path):
    df = trial.patients
    for arm, s in trial.summary["arms"].items():
        per_patient = df[df["arm"] == arm].groupby("patient")[LIKING].max()
        assert s["side_effects"][LIKING]["mean"] == pytest.approx(per_patient.mean(), rel=1e-12)
        assert s["side_effects"][LIKING]["max"] == pytest.approx(per_patient.max(), rel=1e-12)
    write_trial_report(trial, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "mean peak drug liking [points, 50 neutral]" in html and "not a prediction of misuse" in html


def test_a_patients_table_without_liking_is_summarised_without_it(trial):
    summary = trial_summary(trial.spec, trial.patients.drop(columns=[LIKING]))
    assert all(LIKING not in arm["side_effects"] for arm in summary["arms"].values())
    assert "drug liking" not in _side_effect_table(summary)


def test_a_drug_liking_cap_binds():
    """A cap between the 28- and 84-mg sessions' liking keeps only regimens below it feasible."""
    out = ketasim.optimise(small(n=8, budget=6, caps={"drug_liking_peak": 80.0}))
    table, column = out.candidates, CAP_COLUMNS["drug_liking_peak"]
    assert table[column].between(50.0, 100.0).all()
    assert (table.loc[table["feasible"], column] <= 80.0).all()
    assert (table.loc[~table["feasible"], column] > 80.0).any()
    assert table["feasible"].any()


@pytest.mark.parametrize("value", [-1, 49.9, 101, "high", True])
def test_a_bad_liking_cap_names_the_field(value):
    """Below the scale's neutral 50 no regimen could meet the cap, so it is refused, not left to fail."""
    data = small()
    data["caps"]["drug_liking_peak"] = value
    with pytest.raises(ScenarioError, match=r"caps\.drug_liking_peak.*50\.\.100"):
        OptimiseSpec.from_dict(data)
    data["caps"]["drug_liking_peak"] = 50
    assert OptimiseSpec.from_dict(data).caps["drug_liking_peak"] == 50.0


def test_the_streamed_summary_has_the_in_memory_liking(trial, tmp_path):
    """``ketasim trial`` reduces chunk by chunk (here one or two patients each): the per-arm liking
    merges to the in-memory value."""
    streamed = stream_trial(trial.spec, tmp_path / "streamed", chunk_size=2)
    for arm, s in trial.summary["arms"].items():
        got = streamed.summary["arms"][arm]["side_effects"][LIKING]
        assert got["mean"] == pytest.approx(s["side_effects"][LIKING]["mean"], rel=1e-12)
        assert got["max"] == s["side_effects"][LIKING]["max"]
