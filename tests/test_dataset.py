"""Event data sets (NONMEM style) in: patients as dosed, predictions at their own observation times,
the mapping, and bad rows named by row and column."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ketasim
from ketasim.cli import app
from ketasim.dataset import DatasetError, load_mapping, predict, read_dataset

ROOT_TRIALS = Path(__file__).resolve().parents[1] / "examples" / "trials"

HEADER = "ID,TIME,EVID,AMT,CMT,RATE,II,ADDL,DV,MDV,DVID,WT,AGE,SEX\n"
#: three patients: an IV infusion (RATE), oral doses repeated with ADDL, an IM dose with a MADRS observation
DATA = HEADER + (
    "1,0,1,35,2,52.5,.,.,.,1,.,70,40,1\n"
    "1,0.5,0,.,.,.,.,.,120,0,1,70,40,1\n"
    "1,2,0,.,.,.,.,.,60,0,1,70,40,1\n"
    "1,6,0,.,.,.,.,.,20,0,2,70,40,1\n"
    "2,0,1,50,1,.,12,2,.,1,.,90,55,0\n"
    "2,1,0,.,.,.,.,.,10,0,1,90,55,0\n"
    "2,25,0,.,.,.,.,.,12,0,1,90,55,0\n"
    "3,0,1,40,4,.,.,.,.,1,.,60,30,1\n"
    "3,0.25,0,.,.,.,.,.,150,0,1,60,30,1\n"
    "3,24,0,.,.,.,.,.,18,0,3,60,30,1\n")


def _read(text: str = DATA):
    return read_dataset(io.StringIO(text))


def test_patients_are_dosed_as_the_rows_say():
    data = _read()
    assert [p.id for p in data.patients] == [1, 2, 3]
    one, two, three = (p.scenario for p in data.patients)
    assert one["dose"] == [{"drug": "racemic-ketamine", "route": "iv", "amount": "35.0 mg", "at": ["0.0 h"],
                            "duration": f"{35 / 52.5!r} h"}]
    assert one["patient"] == {"weight": "70.0 kg", "age": "40.0 y", "sex": "female"}
    assert two["dose"][0]["route"] == "oral" and two["dose"][0]["at"] == ["0.0 h", "12.0 h", "24.0 h"]  # ADDL 2, II 12
    assert three["dose"][0]["route"] == "im"
    assert data.patients[2].observations["output"].tolist() == ["pk.ketamine_plasma", "clinical.madrs"]
    assert float(one["simulation"]["duration"].split()[0]) == 6.0  # to the last row


def test_predictions_equal_the_same_scenarios_simulated_directly():
    """IPRED at each observation time equals ketasim.simulate of the hand-written scenario on a grid
    through those times."""
    table = predict(_read())
    assert (table["status"] == "ok").all() and len(table) == 7
    by_hand = {1: {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "35 mg", "duration": "40 min"}],
                   "patient": {"weight": "70 kg", "age": "40 y", "sex": "female"}},
               2: {"dose": [{"drug": "racemic-ketamine", "route": "oral", "amount": "50 mg", "at": ["0 h", "12 h", "24 h"]}],
                   "patient": {"weight": "90 kg", "age": "55 y", "sex": "male"}},
               3: {"dose": [{"drug": "racemic-ketamine", "route": "im", "amount": "40 mg"}],
                   "patient": {"weight": "60 kg", "age": "30 y", "sex": "female"}}}
    for pid, scenario in by_hand.items():
        rows = table[table["ID"] == pid]
        end = rows["TIME [h]"].max()
        res = ketasim.simulate({**scenario, "simulation": {"duration": f"{end} h", "output_every": "15 min"}})
        for _, r in rows.iterrows():
            assert r["IPRED"] == pytest.approx(res.at(r["output"], r["TIME [h]"]), rel=1e-6), (pid, r["TIME [h]"])


@pytest.mark.parametrize("change, row, column", [
    (("1,0,1,35,2,52.5", "1,0,1,35,9,52.5"), 2, "CMT"),  # an unknown compartment
    (("1,0.5,0,", "1,-0.5,0,"), 3, "TIME"),  # a negative time
    (("2,0,1,50,1", "2,0,1,.,1"), 6, "AMT"),  # a dose without an amount
    (("1,2,0,", "1,0.25,0,"), 4, "TIME"),  # time going back within an ID
    ((",60,30,1\n", ",600,30,1\n", -1), 9, "WT"),  # a covariate outside its range (every row of ID 3)
    (("3,0,1,40,4,.,", "3,0,1,40,4,10,"), 9, "RATE"),  # an infusion rate on an IM dose
    (("2,1,0,.,.,.,.,.,10,0,1,90,55,0", "2,1,0,.,.,.,.,.,10,0,1,90,55,7"), 6, "SEX"),  # a sex code the mapping lacks
    (("2,1,0,.,.,.,.,.,10,0,1,90", "2,1,0,.,.,.,.,.,10,0,1,95"), 6, "WT"),  # weight changing within an ID
    (("2,1,0,.,.,.,.,.,10,0,1,90", "2,1,5,.,.,.,.,.,10,0,1,90"), 7, "EVID"),  # no such event
])
def test_bad_rows_are_named_by_row_and_column(change, row, column):
    old, new, *count = change
    with pytest.raises(DatasetError) as info:
        _read(DATA.replace(old, new, *(count or [1])))
    assert info.value.field == f"row {row}, column {column}", str(info.value)


def test_evid_2_rows_are_predictions_without_an_observation():
    """An EVID 2 row asks for the model's value there: IPRED at its time, no DV (even if one is written)."""
    base = predict(_read())
    text = DATA.replace("2,1,0,.,.,.,.,.,10,0,1,90,55,0", "2,1,2,.,.,.,.,.,10,0,1,90,55,0")
    table = predict(_read(text))
    row = table[(table["ID"] == 2) & (table["TIME [h]"] == 1.0)].iloc[0]
    same = base[(base["ID"] == 2) & (base["TIME [h]"] == 1.0)].iloc[0]
    assert np.isnan(row["DV"]) and row["IPRED"] == pytest.approx(same["IPRED"], rel=1e-12)


RESETS = ("ID,TIME,EVID,AMT,CMT,DV,DVID,WT\n1,0,1,35,2,.,.,70\n1,1,0,.,.,.,1,70\n"
          "1,48,3,.,.,.,.,70\n1,48,1,35,2,.,.,70\n1,49,0,.,.,.,1,70\n"
          "1,100,4,70,2,.,.,70\n1,101,0,.,.,.,1,70\n1,124,0,.,.,.,3,70\n")


def test_resets_start_each_occasion_from_the_untreated_state():
    """EVID 3 resets and the next dose repeats the first occasion exactly (the 48 h of the first
    dose's washout are forgotten); EVID 4 resets and doses: twice the amount, twice the
    concentration (linear kinetics at these levels), and the MADRS back to where it began."""
    data = _read(RESETS)
    assert [(p.occasion, p.start_h) for p in data.patients] == [(1, 0.0), (2, 48.0), (3, 100.0)]
    table = predict(data)
    plasma = table[table["output"] == "pk.ketamine_plasma"]["IPRED"].to_numpy()
    assert plasma[1] == pytest.approx(plasma[0], rel=1e-9)
    assert plasma[2] == pytest.approx(2 * plasma[0], rel=0.02)
    alone = ketasim.simulate({"patient": {"weight": "70 kg"}, "simulation": {"duration": "24 h", "output_every": "1 h"},
                              "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "70 mg"}]})
    madrs = table[table["output"] == "clinical.madrs"]["IPRED"].iloc[0]
    assert madrs == pytest.approx(alone.at("clinical.madrs", 24.0), rel=1e-9)


SS_DATA = ("ID,TIME,EVID,AMT,CMT,II,ADDL,SS,DVID,DV,WT\n"
           "1,0,1,10,7,24,6,1,.,.,70\n1,1,0,.,.,.,.,.,4,.,70\n1,150,0,.,.,.,.,.,4,.,70\n"
           "2,0,1,10,7,24,6,0,.,.,70\n2,1,0,.,.,.,.,.,4,.,70\n")


def test_steady_state_rows_start_the_drug_at_its_steady_state():
    predicted = predict(_read(SS_DATA))
    direct = ketasim.simulate({"patient": {"weight": "70 kg"}, "simulation": {"duration": "150 h", "output_every": "1 h"},
                               "dose": [{"drug": "escitalopram", "route": "oral", "amount": "10 mg", "start": "0 h",
                                         "every": "24 h", "count": 7, "steady_state": True}]})
    first = predicted[predicted["ID"] == 1]["IPRED"].to_numpy()
    np.testing.assert_allclose(first, direct.outputs["comparators.ssri_plasma"][[1, 150]], rtol=1e-9)
    fresh = predicted[predicted["ID"] == 2]["IPRED"].to_numpy()
    assert fresh[0] < 0.5 * first[0]  # the same first dose without the months before it


def _midazolam_mapping():
    mapping = load_mapping()
    mapping["dvid"]["5"] = "comparators.midazolam_plasma"
    mapping["error"]["comparators.midazolam_plasma"] = {"proportional": 0.1, "additive": 0.1}
    mapping["cmt"]["8"] = {"drug": "lanicemine", "route": "iv"}
    mapping["dvid"]["6"] = "probes.lanicemine_plasma"
    mapping["error"]["probes.lanicemine_plasma"] = {"proportional": 0.1, "additive": 1.0}
    return mapping


SS_MORE = ("ID,TIME,EVID,AMT,CMT,RATE,II,ADDL,SS,DVID,DV,WT\n"
           # escitalopram 10 mg at 0 h and 5 mg at 12 h, each every 24 h since long before (SS=2 adds)
           "1,0,1,10,7,0,24,2,1,.,.,70\n1,1,0,.,.,.,.,.,.,4,.,70\n1,12,1,5,7,0,24,2,2,.,.,70\n"
           "1,13,0,.,.,.,.,.,.,4,.,70\n1,59,0,.,.,.,.,.,.,4,.,70\n"
           # midazolam infused over 2 h every 8 h since long before
           "2,0,1,2,6,1,8,5,1,.,.,70\n2,0.5,0,.,.,.,.,.,.,5,.,70\n2,20,0,.,.,.,.,.,.,5,.,70\n"
           # a constant midazolam infusion at steady state: AMT 0 at RATE 0.05 mg/h to the last row
           "3,0,1,0,6,0.05,0,0,1,.,.,70\n3,1,0,.,.,.,.,.,.,5,.,70\n3,24,0,.,.,.,.,.,.,5,.,70\n")


def test_ss2_rows_add_their_steady_state_and_infusions_reach_theirs():
    """SS=2 on top of SS=1 equals both regimens run for eight weeks (superposition); SS=1 infusions
    (RATE and II) and a constant infusion at steady state (AMT 0, RATE, no II) are the scenarios'
    steady-state infusions, the constant one flat at rate / clearance."""
    predicted = predict(read_dataset(io.StringIO(SS_MORE), _midazolam_mapping()))
    ssri = {"drug": "escitalopram", "route": "oral", "every": "24 h"}
    weeks = ketasim.simulate({"patient": {"weight": "70 kg"}, "simulation": {"duration": "60 d", "output_every": "1 h"},
                              "dose": [dict(ssri, amount="10 mg", start="0 h", count=60),
                                       dict(ssri, amount="5 mg", start="12 h", count=60)]})
    at = 57 * 24 + np.array([1, 13, 59])
    np.testing.assert_allclose(predicted[predicted["ID"] == 1]["IPRED"],
                               weeks.outputs["comparators.ssri_plasma"][at], rtol=1e-6)
    infused = ketasim.simulate({"patient": {"weight": "70 kg"}, "simulation": {"duration": "42 h", "output_every": "30 min"},
                                "dose": [{"drug": "midazolam", "route": "iv", "amount": "2 mg", "duration": "2 h",
                                          "start": "0 h", "every": "8 h", "count": 6, "steady_state": True}]})
    np.testing.assert_allclose(predicted[predicted["ID"] == 2]["IPRED"],
                               infused.outputs["comparators.midazolam_plasma"][[1, 40]], rtol=1e-6)
    constant = predicted[predicted["ID"] == 3]["IPRED"].to_numpy()
    clearance_l_h = ketasim.load_parameters()["comparators.cl_midazolam"].value
    np.testing.assert_allclose(constant, 0.05e6 / (clearance_l_h * 1e3), rtol=1e-6)  # ng/mL = (ng/h) / (mL/h)


@pytest.mark.parametrize("row, cell, why", [
    ("3,0,1,0,6,0.05,0,0,1", "3,0,1,2,6,0.05,0,0,1", "row 10, column AMT: a constant infusion"),
    ("2,0,1,2,6,1,8,5,1", "2,0.5,1,2,6,0.25,8,5,1", "row 7, column SS: ID 2: the infusion before the first"),
    ("3,0,1,0,6,0.05,0,0,1", "3,24,1,0,6,0.05,0,0,1", "row 11, column RATE: a constant infusion"),
    ("3,0,1,0,6,0.05,0,0,1", "3,0,1,0,6,500,0,0,1", "row 10, column RATE: the constant infusion gives 12000 mg"),
])
def test_bad_steady_state_infusion_rows_are_named(row, cell, why):
    """A constant infusion with an amount; an infusion regimen whose previous infusion would still run at
    the start; a constant infusion with nothing after it."""
    text = SS_MORE.replace(row, cell)
    if "3,24,1" in cell:  # the dose moved after the ID's observations
        text = text.replace("3,24,1,0,6,0.05,0,0,1,.,.,70\n3,1,0,.,.,.,.,.,.,5,.,70\n3,24,0,.,.,.,.,.,.,5,.,70\n",
                            "3,1,0,.,.,.,.,.,.,5,.,70\n3,24,1,0,6,0.05,0,0,1,.,.,70\n")
    with pytest.raises(DatasetError) as info:
        read_dataset(io.StringIO(text), _midazolam_mapping())
    assert str(info.value).startswith(why), str(info.value)


def test_steady_states_round_trip_through_an_event_table(tmp_path):
    """--format nonmem writes a regimen at steady state as one row (SS, II, ADDL; a constant infusion as
    AMT 0 at RATE): SS=1 on the ID's first dose row (it resets every compartment, as NONMEM reads
    it), SS=2 on the others; read back, the same predictions."""
    from ketasim.dataset import simulation_events, write_events

    scenario = {"patient": {"weight": "70 kg"}, "simulation": {"duration": "3 d", "output_every": "3 h"},
                "dose": [{"drug": "escitalopram", "route": "oral", "amount": "10 mg", "start": "0 h", "every": "24 h",
                          "count": 3, "steady_state": True},
                         {"drug": "escitalopram", "route": "oral", "amount": "5 mg", "start": "12 h", "every": "24 h",
                          "count": 3, "steady_state": True},
                         {"drug": "midazolam", "route": "iv", "amount": "2 mg", "duration": "2 h", "start": "2 h",
                          "every": "8 h", "count": 9, "steady_state": True},
                         {"drug": "lanicemine", "route": "iv", "amount": "300 mg", "duration": "3 d", "at": ["0 h"],
                          "steady_state": True}]}
    mapping = _midazolam_mapping()
    events = simulation_events(scenario, ketasim.simulate(scenario), mapping)
    doses = events[events["EVID"] == 1]
    assert doses[["CMT", "SS", "II", "ADDL", "AMT"]].values.tolist() == [
        ["7", 1, 24.0, 2, 10.0], ["8", 2, 0.0, 0, 0.0], ["6", 2, 8.0, 8, 2.0], ["7", 2, 24.0, 2, 5.0]]
    write_events(events, tmp_path / "study.csv")
    back = predict(read_dataset(tmp_path / "study.csv", mapping))
    written = events[events["EVID"] == 0].reset_index(drop=True)
    np.testing.assert_allclose(back["IPRED"].to_numpy(), written["IPRED"].to_numpy(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("row, why", [
    ("1,30,1,10,7,24,6,1,.,.,70\n1,31,0", "within one interval"),
    ("1,0,1,10,7,.,6,1,.,.,70\n", "II"),
    ("1,0,1,10,7,24,6,3,.,.,70\n", "allowed are 0, 1"),
    ("1,0,1,10,7,.,.,0,.,.,70\n1,0.5,1,10,7,24,6,1,.,.,70\n", "SS=1 resets"),
    ("1,0,1,10,1,.,.,0,.,.,70\n1,0.5,1,10,7,24,6,1,.,.,70\n", "SS=1 resets"),  # any earlier dose row
    ("1,0,1,10,7,.,.,0,.,.,70\n1,0.5,1,10,7,24,6,2,.,.,70\n", "SS=2 adds"),
])
def test_bad_steady_state_rows_are_named(row, why):
    text = SS_DATA.replace("1,0,1,10,7,24,6,1,.,.,70\n1,1,0", row) if "1,31,0" in row else \
        SS_DATA.replace("1,0,1,10,7,24,6,1,.,.,70\n", row)
    with pytest.raises(DatasetError, match=why):
        _read(text)


def test_duplicate_doses_and_steady_state_rows_are_refused():
    doubled = DATA.replace("2,0,1,50,1,.,12,2,.,1,.,90,55,0\n", "2,0,1,50,1,.,12,2,.,1,.,90,55,0\n" * 2)
    with pytest.raises(DatasetError, match="duplicate dose"):
        _read(doubled)
    with_ss = DATA.replace(HEADER, HEADER.replace("\n", ",SS\n")).replace("\n1,", ",0\n1,")
    lines = with_ss.splitlines()
    lines = [lines[0]] + [line + ("" if line.count(",") == lines[0].count(",") else ",0") for line in lines[1:]]
    lines[5] = lines[5][:-1] + "1"  # patient 2's dose at steady state
    with pytest.raises(DatasetError) as info:
        _read("\n".join(lines) + "\n")
    assert info.value.field == "row 6, column SS"


def test_a_mapping_overrides_the_default(tmp_path):
    (tmp_path / "map.toml").write_text('[cmt]\n2 = { drug = "esketamine", route = "iv" }\n')
    mapping = load_mapping(tmp_path / "map.toml")
    assert mapping["cmt"]["2"]["drug"] == "esketamine" and mapping["cmt"]["1"]["route"] == "oral"
    assert read_dataset(io.StringIO(DATA), mapping).patients[0].scenario["dose"][0]["drug"] == "esketamine"
    (tmp_path / "bad.toml").write_text("[compartments]\n")
    with pytest.raises(ketasim.ScenarioError, match="--mapping"):
        load_mapping(tmp_path / "bad.toml")


def test_cli_simulates_a_dataset_and_checks_one(tmp_path):
    (tmp_path / "data.csv").write_text(DATA)
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["simulate", "--dataset", str(tmp_path / "data.csv"), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    text = (out / "predictions.csv").read_text()
    assert text.startswith("# ketasim is a research and teaching tool")
    table = pd.read_csv(out / "predictions.csv", comment="#")
    assert len(table) == 7 and np.isfinite(table["IPRED"]).all()
    assert json.loads((out / "manifest.json").read_text())["patients"][1]["doses"] == {"racemic-ketamine oral": 3}
    check = CliRunner().invoke(app, ["dataset", "check", str(tmp_path / "data.csv")])
    assert check.exit_code == 0 and "ID 2: 3 x racemic-ketamine oral" in check.output, check.output


def test_cli_bad_dataset_exits_2_naming_row_and_column_and_writes_nothing(tmp_path):
    (tmp_path / "data.csv").write_text(DATA.replace("1,0,1,35,2,52.5", "1,0,1,35,9,52.5", 1))
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["simulate", "--dataset", str(tmp_path / "data.csv"), "--out", str(out)])
    assert result.exit_code == 2 and "row 2, column CMT" in result.output, result.output
    assert not out.exists()
    check = CliRunner().invoke(app, ["dataset", "check", str(tmp_path / "data.csv")])
    assert check.exit_code == 2 and "row 2, column CMT" in check.output


# ---------------------------------------------------------------------- out, and back in
ROUND_TRIP = {"patient": {"weight": "82 kg", "age": "51 y", "sex": "male", "baseline_madrs": 30, "cyp2b6": "poor"},
              "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"},
                       {"drug": "racemic-ketamine", "route": "oral", "amount": "50 mg", "start": "1 d", "every": "12 h",
                        "count": 3},
                       {"drug": "esketamine", "route": "intranasal", "amount": "56 mg", "at": ["3 d"]}],
              "simulation": {"duration": "4 d", "output_every": "2 h"}}


def test_a_study_written_as_events_reads_back_to_the_same_concentrations(tmp_path):
    """Round trip: a simulated patient written as an event table (--format nonmem) and read back with
    --dataset has the same doses, covariates and predictions (IPRED) at every observation time."""
    from ketasim.dataset import simulation_events, write_events

    result = ketasim.simulate(ROUND_TRIP)
    events = simulation_events(ROUND_TRIP, result, seed=3)
    assert (events["EVID"] == 1).sum() == 5 and set(events.loc[events["EVID"] == 0, "DVID"]) == {"1", "2", "3"}
    write_events(events, tmp_path / "study.csv")
    data = read_dataset(tmp_path / "study.csv")
    assert data.patients[0].scenario["patient"] == {"weight": "82.0 kg", "age": "51.0 y", "sex": "male",
                                                    "baseline_madrs": 30.0, "cyp2b6": "poor", "cyp3a4": "normal",
                                                    "bdnf_val66met": "val/val", "inflammation": "normal"}
    back = predict(data)
    written = events[events["EVID"] == 0].reset_index(drop=True)
    assert len(back) == len(written)
    np.testing.assert_allclose(back["IPRED"].to_numpy(), written["IPRED"].to_numpy(), rtol=1e-6, atol=1e-9)
    # the residual error is the declared one: MADRS DV - IPRED has SD 3 points (additive), within its
    # chi-square 99 % interval for this many rows
    madrs = written[written["DVID"] == "3"]
    resid = madrs["DV"] - madrs["IPRED"]
    n = resid.size
    from scipy.stats import chi2

    low, high = 3.0 * np.sqrt(chi2.ppf([0.005, 0.995], n - 1) / (n - 1))
    assert low < resid.std(ddof=1) < high


def test_what_an_event_table_cannot_hold_is_refused():
    from ketasim.dataset import simulation_events

    therapy = {**ROUND_TRIP, "therapy": [{"kind": "cbt", "at": ["1 d"]}]}
    with pytest.raises(ketasim.ScenarioError) as info:
        simulation_events(therapy, ketasim.simulate(therapy))
    assert info.value.field == "therapy"
    episodic = {**ROUND_TRIP, "patient": {**ROUND_TRIP["patient"], "course": "episodic"}}
    with pytest.raises(ketasim.ScenarioError) as info:
        simulation_events(episodic, ketasim.simulate(episodic))
    assert info.value.field == "patient.course"


@pytest.mark.parametrize("extra", [
    {"comedications": ["clarithromycin", "lorazepam"], "bdnf_val66met": "val/met", "inflammation": "high"},
    {"bdnf_val66met": "met/met", "il6": "8.0 pg/mL"},
])
def test_comedications_genotype_and_inflammation_round_trip(tmp_path, extra):
    """Co-medications (COMED, joined by ';'), the BDNF genotype (BDNF, coded by its Met alleles) and
    the inflammation status (INFL) or an IL-6 level (IL6) are written and read back: the same
    patient, the same predictions."""
    from ketasim.dataset import simulation_events, write_events

    scenario = {**ROUND_TRIP, "patient": {**ROUND_TRIP["patient"], **extra}}
    result = ketasim.simulate(scenario)
    events = simulation_events(scenario, result, seed=1)
    write_events(events, tmp_path / "study.csv")
    data = read_dataset(tmp_path / "study.csv")
    back = data.patients[0].scenario["patient"]
    assert {k: back[k] for k in extra} == extra
    predicted = predict(data)
    written = events[events["EVID"] == 0].reset_index(drop=True)
    np.testing.assert_allclose(predicted["IPRED"].to_numpy(), written["IPRED"].to_numpy(), rtol=1e-6, atol=1e-9)


def test_a_name_column_names_the_output():
    """Observation rows may name their output (NAME, ketasim's `layer.quantity`) instead of a DVID:
    the same predictions as by DVID; an unknown name, or one that contradicts the DVID, is named."""
    by_name = _read("ID,TIME,EVID,AMT,CMT,DV,NAME\n1,0,1,35,2,.,.\n1,1,0,.,.,40,pk.norketamine_plasma\n"
                    "1,2,0,.,.,30,pk.hnk_plasma\n")
    by_dvid = _read("ID,TIME,EVID,AMT,CMT,DV,DVID\n1,0,1,35,2,.,.\n1,1,0,.,.,40,2\n")
    assert by_name.patients[0].observations["output"].tolist() == ["pk.norketamine_plasma", "pk.hnk_plasma"]
    assert predict(by_name)["IPRED"].iloc[0] == pytest.approx(predict(by_dvid)["IPRED"].iloc[0], rel=1e-6)
    with pytest.raises(DatasetError) as info:
        _read("ID,TIME,EVID,AMT,CMT,DV,NAME\n1,0,1,35,2,.,.\n1,1,0,.,.,40,pk.nonsense\n")
    assert info.value.field == "row 3, column NAME"
    with pytest.raises(DatasetError) as info:
        _read("ID,TIME,EVID,AMT,CMT,DV,DVID,NAME\n1,0,1,35,2,.,.,.\n1,1,0,.,.,40,1,pk.hnk_plasma\n")
    assert info.value.field == "row 3, column NAME"
    mixed = _read("ID,TIME,EVID,AMT,CMT,DV,DVID,NAME\n1,0,1,35,2,.,.,.\n1,1,0,.,.,40,1,.\n1,2,0,.,.,30,.,pk.hnk_plasma\n")
    assert mixed.patients[0].observations["output"].tolist() == ["pk.ketamine_plasma", "pk.hnk_plasma"]


def test_unknown_comedications_and_genotypes_are_named():
    base = "ID,TIME,EVID,AMT,CMT,DV,COMED,BDNF\n1,0,1,35,2,.,{c},{b}\n1,1,0,.,.,40,{c},{b}\n"
    with pytest.raises(DatasetError) as info:
        _read(base.format(c="clarithromycin;aspirin", b="0"))
    assert info.value.field == "row 2, column COMED" and "aspirin" in str(info.value)
    with pytest.raises(DatasetError) as info:
        _read(base.format(c=".", b="3"))
    assert info.value.field == "row 2, column BDNF"


def test_cli_simulate_format_nonmem_writes_the_event_table(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[dose]]\ndrug = "racemic-ketamine"\nroute = "iv"\namount = "35 mg"\n'
                        '[simulation]\nduration = "6 h"\noutput_every = "30 min"\n')
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["simulate", str(scenario), "--format", "nonmem", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "dataset.csv").read_text().startswith("# ketasim is a research and teaching tool")
    back = predict(read_dataset(out / "dataset.csv"))
    assert len(back) == 3 * 13 and np.isfinite(back["IPRED"]).all()
    bad = CliRunner().invoke(app, ["simulate", str(scenario), "--format", "sas", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--format" in bad.output


def test_a_trial_background_at_steady_state_is_written_as_one_ss_row(tmp_path):
    """The add-on example's sertraline, taken daily since long before: one dose row per patient with
    SS=1, II 24 h and ADDL for the rest of its days, which reads back as the same regimen."""
    import tomllib

    from ketasim.dataset import trial_events, write_events

    data = tomllib.loads((ROOT_TRIALS / "add_on_ssri_at_steady_state.toml").read_text())
    data["population"]["n"] = 2
    result = ketasim.run_trial(data)
    mapping = load_mapping()
    mapping["cmt"]["9"] = {"drug": "sertraline", "route": "oral"}
    events = trial_events(result.spec, result.patients, mapping)
    sertraline = events[events["CMT"] == "9"]
    assert sertraline[["TIME", "AMT", "SS", "II", "ADDL"]].values.tolist() == [[0.0, 100.0, 1, 24.0, 13]] * \
        events["ID"].nunique()
    assert (events.loc[events["CMT"] != "9", "SS"] == 0).all()
    write_events(events, tmp_path / "trial.csv")
    back = read_dataset(tmp_path / "trial.csv", mapping).patients[0].scenario["dose"]
    assert back[0] == {"drug": "sertraline", "route": "oral", "amount": "100.0 mg", "start": "0.0 h",
                       "every": "24.0 h", "count": 14, "steady_state": True}


def test_a_trial_written_as_events(tmp_path):
    """`trial --format nonmem`: per patient the doses of its whole sequence and MADRS rows (rated as DV,
    the model's as IPRED) at each period's baseline and assessments on the simulation's clock."""
    from ketasim.dataset import trial_events

    trial = ROOT_TRIALS / "crossover_ketamine_saline.toml"
    result = ketasim.run_trial(trial)
    spec = result.spec
    events = trial_events(spec, result.patients)
    n = result.patients["patient"].nunique()
    assert events["ID"].nunique() == n
    per_patient = events.groupby("ID")
    # ketamine once per patient (saline carries no amount); 2 periods x (baseline + 4 assessments) MADRS rows
    assert (per_patient["EVID"].sum() == 1).all()
    assert (per_patient.apply(lambda g: (g["EVID"] == 0).sum()) == 2 * (1 + len(spec.assessments_h))).all()
    rows = result.patients.iloc[0]
    period = next(s for s in spec.sequences if s.name == rows["sequence"]).periods[int(rows["period"]) - 1]
    mine = events[(events["PATIENT"] == rows["patient"]) & (events["EVID"] == 0)]
    at = mine[np.isclose(mine["TIME"], period.start_h + rows["assessment [h]"])]
    assert at["DV"].iloc[0] == pytest.approx(rows["madrs [points]"]) and at["IPRED"].iloc[0] == pytest.approx(
        rows["madrs_model [points]"])
    out = tmp_path / "t"
    cli = CliRunner().invoke(app, ["trial", str(trial), "--format", "nonmem", "--out", str(out), "--quiet"])
    assert cli.exit_code == 0, cli.output
    assert pd.read_csv(out / "dataset.csv", comment="#", na_values=".")["ID"].nunique() == n
