"""Regimen optimisation (``ketasim optimise``): the answer lies within the bounds, meets every cap
and does at least as well as the label regimen on the same virtual patients; caps bind; both
search methods keep to the budget; bad specs name the field and write nothing."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import ketasim
from ketasim.errors import ScenarioError
from ketasim.trial.optimise import CAP_COLUMNS, OptimiseSpec, evaluate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "optimise" / "esketamine_induction.toml"


def small(budget: int = 5, n: int = 8, **changes) -> dict:
    data = tomllib.loads(EXAMPLE.read_text())
    data["population"]["n"] = n
    data["optimise"]["budget"] = budget
    for table, values in changes.items():
        data[table].update(values)
    return data


@pytest.fixture(scope="module")
def result():
    return ketasim.optimise(small())


def test_best_regimen_is_within_bounds_meets_the_caps_and_matches_or_beats_the_label(result):
    spec, best, label = result.spec, result.summary["best"], result.summary["label"]
    assert result.summary["evaluated"] == 5 == len(result.candidates)
    assert 28.0 <= best["amount [mg]"] <= 84.0 and best["amount [mg]"] % 28.0 == 0.0
    assert 48.0 <= best["every [h]"] <= 168.0 and 4 <= best["count"] <= 12
    assert (best["count"] - 1) * best["every [h]"] < spec.at_h  # every dose before the endpoint
    for cap, limit in spec.caps.items():
        assert best[CAP_COLUMNS[cap]] <= limit
    assert label["label"] and label["feasible"]  # the label lies in the space and was a candidate
    assert best["objective"] >= label["objective"]
    assert result.summary["best_minus_label"]["objective"] >= 0.0


def test_regimens_run_on_the_same_patients(result):
    spec = result.spec
    # the label re-evaluated alone gives its candidate row: same seed, same population, same patients
    again = evaluate(spec, *spec.label, ketasim.load_parameters())
    row = result.candidates[result.candidates["label"]].iloc[0]
    assert again["response_rate"] == row["response_rate"]
    assert again["madrs_change [points]"] == pytest.approx(row["madrs_change [points]"], abs=1e-12)


def test_a_tight_cap_binds():
    out = ketasim.optimise(small(budget=6, caps={"clinic_visits": 5}))
    table = out.candidates
    assert (table.loc[table["feasible"], "clinic_visits [count]"] <= 5).all()
    assert (table.loc[~table["feasible"], "clinic_visits [count]"] > 5).all()
    assert out.summary["best"]["clinic_visits [count]"] <= 5


def test_a_discharge_cap_binds():
    """The share of patients not ready to leave 2 h after a session (trial/discharge.py) as a cap."""
    out = ketasim.optimise(small(n=40, budget=6, caps={"not_ready_at_2_h_fraction": 0.0}))
    table, column = out.candidates, CAP_COLUMNS["not_ready_at_2_h_fraction"]
    assert table[column].between(0.0, 1.0).all() and table["feasible"].any()
    assert (table.loc[table["feasible"], column] == 0.0).all()
    assert (table.loc[~table["feasible"], column] > 0.0).any()  # 84 mg keeps some patients past 2 h


def test_no_regimen_within_an_impossible_cap_says_so():
    out = ketasim.optimise(small(budget=3, caps={"cadss_peak": 0.0}))
    assert out.summary["best"] is None and out.summary["feasible"] == 0 and "no regimen" in out.summary["why_none"]


def test_differential_evolution_keeps_to_the_budget_and_starts_from_the_label():
    out = ketasim.optimise(small(budget=7, optimise={"method": "differential-evolution", "budget": 7}))
    assert len(out.candidates) <= 7
    assert out.candidates["label"].any()
    assert out.summary["best"]["objective"] >= out.summary["label"]["objective"]


def test_label_outside_the_space_is_still_compared():
    data = small(budget=3)
    data["label"]["dose"][0]["amount"] = "1 mg/kg"
    out = ketasim.optimise(data)
    assert not out.candidates["label"].any() and out.summary["label_in_space"] is False
    assert out.summary["label"]["cumulative_amount [mg]"] > 0


BAD = [
    (lambda d: d["optimise"].update(endpoint="happiness"), "optimise.endpoint"),
    (lambda d: d["optimise"].update(method="guess"), "optimise.method"),
    (lambda d: d["optimise"].update(budget=1), "optimise.budget"),
    (lambda d: d["optimise"].pop("at"), "optimise.at"),
    (lambda d: d["regimen"].update(drug="placebo"), "regimen.drug"),
    (lambda d: d["regimen"].update(amount="lots"), "regimen.amount"),
    (lambda d: d["regimen"].update(amount=["84 mg", "28 mg"]), "regimen.amount"),
    (lambda d: d["regimen"].update(amount=["0.5 mg/kg", "84 mg"]), "regimen.amount[1]"),
    (lambda d: d["regimen"].update(every=["1 h", "7 d"]), "regimen.every"),
    (lambda d: d["regimen"].update(count=[40, 50]), "regimen.count"),
    (lambda d: d["regimen"].update(duration="40 min"), "regimen.duration"),
    (lambda d: d["caps"].update(cadss_peak=-1), "caps.cadss_peak"),
    (lambda d: d["caps"].update(boredom=1), "caps"),
    (lambda d: d["caps"].update(cumulative_amount="7 mg/kg"), "caps.cumulative_amount"),
    (lambda d: d["label"]["dose"][0].update(route="rectal"), "label.dose[0].route"),
    (lambda d: d.update(colour="blue"), "optimisation spec"),
]


@pytest.mark.parametrize("change, field", BAD)
def test_bad_specs_name_the_field(change, field):
    data = copy.deepcopy(small())
    change(data)
    with pytest.raises(ScenarioError) as info:
        OptimiseSpec.from_dict(data)
    assert info.value.field == field


def test_cli_writes_every_file_and_refuses_bad_specs(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(EXAMPLE.read_text().replace("n = 120", "n = 4").replace("budget = 24", "budget = 2"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ketasim", "optimise", str(spec), "--out", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["candidates.parquet", "manifest.json", "optimise.json",
                                                     "report.html"]
    assert len(pd.read_parquet(out / "candidates.parquet")) == 2
    page = (out / "report.html").read_text()
    assert "research and teaching" in page and "trade-off" in page
    bad = tmp_path / "bad.toml"
    bad.write_text(spec.read_text().replace('endpoint = "response"', 'endpoint = "joy"'))
    other = tmp_path / "other"
    proc = subprocess.run([sys.executable, "-m", "ketasim", "optimise", str(bad), "--out", str(other)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "optimise.endpoint" in proc.stderr and not other.exists()


def test_therapy_courses_and_labels_are_checked_against_the_space():
    data = small()
    data["regimen"]["therapy"] = {"kind": "cbt", "every": "1 w", "count": 4, "start": ["0 d", "1 w"]}
    with pytest.raises(ScenarioError) as info:
        OptimiseSpec.from_dict(data)  # four weekly sessions from day 7 do not end before week 4
    assert info.value.field == "regimen.therapy"
    data["regimen"]["therapy"]["count"] = 2
    data["label"]["therapy"] = [{"kind": "mindfulness", "at": ["0 d", "1 w"]}]
    spec = OptimiseSpec.from_dict(data)
    assert spec.label_regimen is None  # another kind of therapy is not a point of the space
    data["label"]["therapy"] = [{"kind": "cbt", "at": ["0 d", "1 w"]}]
    assert OptimiseSpec.from_dict(data).label_regimen.therapy_start_h == 0.0


def test_single_doses_are_one_regimen_whatever_the_interval():
    space = OptimiseSpec.from_dict(small(regimen={"count": [1, 4]})).space
    one = {space.regimen({"count": 1, "every": e, "amount": 56.0}) for e in (48.0, 100.0, 168.0)}
    assert len(one) == 1
