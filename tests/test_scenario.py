"""Scenario files: valid shapes parse; every invalid one is refused naming field, value and choices."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from ketasim import ScenarioError
from ketasim.scenario import Scenario, scenario_schema

BASE = {
    "patient": {"weight": "70 kg", "age": "45 y", "sex": "female", "baseline_madrs": 32, "cyp2b6": "normal",
                "cyp3a4": "normal", "comedications": []},
    "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min",
              "at": ["0 h"]}],
    "simulation": {"duration": "7 d", "output_every": "5 min"},
}


def with_change(path, value):
    data = copy.deepcopy(BASE)
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def test_issue_example_parses():
    sc = Scenario.from_dict(BASE)
    assert sc.patient.weight_kg == 70 and sc.patient.age_y == 45
    assert sc.doses[0].amount == 0.5 and sc.doses[0].amount_unit == "mg/kg"
    assert sc.doses[0].duration_h == pytest.approx(40 / 60)
    assert sc.duration_h == 168 and sc.output_every_h == pytest.approx(5 / 60)
    assert sc.output_times()[-1] == 168 and len(sc.output_times()) == 7 * 24 * 12 + 1


def test_repeated_dosing_and_time_units():
    sc = Scenario.from_dict({"dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg",
                                       "start": "0 d", "every": "3.5 d", "count": 8}],
                             "simulation": {"duration": "4 w", "output_every": "1 h"}})
    assert sc.doses[0].times_h == tuple(84.0 * i for i in range(8))
    assert sc.duration_h == 672.0


def test_no_dose_is_valid():
    assert Scenario.from_dict({"simulation": {"duration": "2 d"}}).doses == ()


def test_all_example_scenarios_valid_against_schema():
    import tomllib

    schema = scenario_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    examples = sorted(Path(__file__).parent.parent.joinpath("examples").glob("*.toml"))
    assert examples
    for path in examples:
        data = tomllib.loads(path.read_text())
        if "trial" in data:
            continue
        jsonschema.validate(data, schema)
        Scenario.from_toml(path)


def test_schema_ships_with_package():
    text = resources.files("ketasim").joinpath("schemas/scenario.schema.json").read_text()
    assert json.loads(text)["title"] == "ketasim scenario"


BAD = [
    (("surprise",), "yes", "scenario", "unknown key"),
    (("patient", "hair"), "brown", "patient", "unknown key"),
    (("dose", 0, "drug"), "cocaine", "dose[0].drug", "allowed: racemic-ketamine"),
    (("dose", 0, "route"), "rectal", "dose[0].route", "allowed: iv, im, intranasal"),
    (("dose", 0, "amount"), "-0.5 mg/kg", "dose[0].amount", "greater than 0"),
    (("dose", 0, "amount"), "0 mg", "dose[0].amount", "greater than 0"),
    (("dose", 0, "amount"), "40 min", "dose[0].amount", "does not fit"),
    (("dose", 0, "amount"), "0.5", "dose[0].amount", "unit"),
    (("dose", 0, "amount"), "5 zorgs/kg", "dose[0].amount", "unknown unit"),
    (("dose", 0, "duration"), "40 mg", "dose[0].duration", "not a time"),
    (("dose", 0, "at"), ["-1 h"], "dose[0].at[0]", "before the start"),
    (("dose", 0, "at"), ["8 d"], "dose[0].at", "not before the end"),
    (("dose", 0, "drug"), KeyError, "dose[0]", "drug"),
    (("patient", "weight"), "10 kg", "patient.weight", "20..250 kg"),
    (("patient", "weight"), "300 kg", "patient.weight", "20..250 kg"),
    (("patient", "weight"), "0 kg", "patient.weight", "20..250 kg"),
    (("patient", "weight"), "70 min", "patient.weight", "does not fit"),
    (("patient", "sex"), "other", "patient.sex", "allowed: female, male"),
    (("patient", "cyp2b6"), "ultra", "patient.cyp2b6", "allowed: poor"),
    (("patient", "comedications"), ["aspirin"], "patient.comedications[0]", "allowed: clarithromycin"),
    (("simulation", "duration"), "0 h", "simulation.duration", "must be > 0"),
    (("simulation", "duration"), "7 parsecs", "simulation.duration", "not a time"),
    (("simulation", "output_every"), "8 d", "simulation.output_every", "at most the duration"),
]


@pytest.mark.parametrize("path,value,field,words", BAD, ids=[f"{b[2]}={b[1]}" for b in BAD])
def test_bad_scenarios_are_refused_naming_the_field(path, value, field, words):
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(with_change(path, value))
    assert info.value.field == field
    assert words in str(info.value)


def test_duration_on_non_iv_route_refused():
    data = with_change(("dose", 0, "route"), "oral")
    with pytest.raises(ScenarioError, match=r"dose\[0\].duration: an infusion length is only allowed for route 'iv'"):
        Scenario.from_dict(data)


def test_infusion_running_past_next_dose_refused():
    data = with_change(("dose", 0, "at"), ["0 h", "30 min"])
    with pytest.raises(ScenarioError, match=r"dose\[0\].duration: .* runs 0.666667 h, past the next iv dose at 0.5 h"):
        Scenario.from_dict(data)


def test_both_at_and_every_refused():
    data = with_change(("dose", 0, "every"), "1 d")
    with pytest.raises(ScenarioError, match="either 'at' or 'start'/'every'/'count'"):
        Scenario.from_dict(data)


def test_malformed_toml_refused(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[patient\nweight = 70 kg\n")
    with pytest.raises(ScenarioError, match="malformed TOML"):
        Scenario.from_toml(path)


NEW_BAD = [
    ({"dose": [{"drug": "placebo", "route": "oral", "amount": "1 mg"}]}, "dose[0].amount", "inert"),
    ({"dose": [{"drug": "midazolam", "route": "oral", "amount": "1 mg"}]}, "dose[0].route", "allowed: iv"),
    ({"dose": [{"drug": "saline", "route": "oral"}]}, "dose[0].route", "allowed: iv, intranasal"),
    ({"dose": [{"drug": "citalopram", "route": "oral"}]}, "dose[0].amount", "needed for citalopram"),
    ({"dose": [{"drug": "esketamine", "route": "iv", "amount": "1e400 mg"}]}, "dose[0].amount", "finite"),
    ({"dose": [{"drug": "esketamine", "route": "iv", "amount": "20000 mg"}]}, "dose[0].amount", "largest allowed"),
    ({"dose": [{"drug": "esketamine", "route": "iv", "amount": "10 mg", "duration": "1e400 h"}]},
     "dose[0].duration", "finite"),
    ({"dose": [{"drug": "esketamine", "route": "iv", "amount": "10 mg", "duration": "0.5 min"}]},
     "dose[0].duration", "at least 1 min"),
    ({"dose": [{"drug": "esketamine", "route": "iv", "amount": "10 mg", "every": "1 d"}]}, "dose[0].count",
     "needed with 'every'"),
    ({"patient": {"baseline_madrs": float("nan")}}, "patient.baseline_madrs", "must be a number"),
    ({"patient": {"inflammation": "normal", "il6": "3 pg/mL"}}, "patient.il6", "not both"),
    ({"patient": {"il6": "500 pg/mL"}}, "patient.il6", "0.1..100 pg/mL"),
    ({"patient": {"bdnf_val66met": "met"}}, "patient.bdnf_val66met", "allowed: val/val"),
    ({"therapy": [{"kind": "hypnosis"}]}, "therapy[0].kind", "allowed: cbt"),
    ({"therapy": [{"kind": "cbt", "at": ["9 d"]}]}, "therapy[0].at", "not before the end"),
    ({"dose": [{"drug": "rapamycin", "route": "iv", "amount": "6 mg"}]}, "dose[0].route", "allowed: oral"),
    ({"patient": {"comedications": ["rapamycin"]}}, "patient.comedications[0]", "allowed: clarithromycin"),
    ({"patient": {"course": "relapsing"}}, "patient.course", "allowed: chronic, episodic"),
    ({"patient": {"plasticity_responsive": "no"}}, "patient.plasticity_responsive", "boolean"),
]


@pytest.mark.parametrize("data,field,words", NEW_BAD, ids=[b[1] + ":" + b[2] for b in NEW_BAD])
def test_comparators_therapy_and_limits_refused(data, field, words):
    data = {**data, "simulation": {"duration": "7 d"}}
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data)
    assert info.value.field == field
    assert words in str(info.value)


def test_comparators_and_therapy_parse():
    sc = Scenario.from_dict({
        "patient": {"bdnf_val66met": "val/met", "il6": "3 pg/mL", "comedications": ["lorazepam"],
                    "course": "episodic", "plasticity_responsive": False},
        "dose": [{"drug": "saline", "route": "iv", "duration": "40 min"},
                 {"drug": "sertraline", "route": "oral", "amount": "50 mg", "start": "0 d", "every": "1 d", "count": 14}],
        "therapy": [{"kind": "mindfulness", "start": "1 d", "every": "7 d", "count": 2}],
        "simulation": {"duration": "3 w"}})
    assert sc.doses[0].amount == 0 and sc.patient.il6_pg_ml == 3.0
    assert sc.patient.course == "episodic" and sc.patient.plasticity_responsive is False
    assert sc.therapies[0].times_h == (24.0, 192.0)
