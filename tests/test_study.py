"""Simulated studies of an event data set: ``ketasim trial --dataset`` (issue 15 part 1)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from test_dataset import DATA, ROOT_TRIALS
from typer.testing import CliRunner

from ketasim.cli import app
from ketasim.dataset import predict, read_dataset
from ketasim.study import simulate_study


@pytest.fixture(scope="module")
def study():
    return simulate_study(read_dataset(io.StringIO(DATA)), replicates=40, seed=3, typical=True)


def test_rows_keep_their_ids_times_and_typical_predictions(study):
    """Each observation row of the file is one column, in the file's order; the typical patient's
    prediction at it equals the data set's IPRED (``simulate --dataset``) to 1e-9."""
    ipred = predict(study.dataset)
    assert study.observed["row"].tolist() == ipred["row"].tolist()
    np.testing.assert_allclose(study.pred, ipred["IPRED"].to_numpy(dtype=float), rtol=1e-9)
    assert study.dv.shape == study.ipred.shape == (40, len(ipred))
    assert study.failed_studies == 0 and np.isfinite(study.dv).all()


def test_residual_errors_follow_the_mappings_model(study):
    """(DV - IPRED) / sqrt((p IPRED)^2 + a^2) over every replicate and row has mean 0 and SD 1
    within three standard errors of their estimates (n = 280)."""
    errors = study.dataset.mapping["error"]
    p = np.array([errors[o]["proportional"] for o in study.observed["output"]])
    a = np.array([errors[o]["additive"] for o in study.observed["output"]])
    z = ((study.dv - study.ipred) / np.hypot(p * study.ipred, a)).ravel()
    n = z.size
    assert abs(z.mean()) < 3 / np.sqrt(n)
    assert abs(z.std(ddof=1) - 1) < 3 / np.sqrt(2 * (n - 1))


def test_patients_vary_between_replicates_and_a_seed_repeats_them(study):
    assert np.all(study.ipred.std(axis=0) > 0)
    again = simulate_study(study.dataset, replicates=40, seed=3)
    np.testing.assert_array_equal(again.dv, study.dv)
    other = simulate_study(study.dataset, replicates=40, seed=4)
    assert not np.allclose(other.dv, study.dv)


def test_event_tables_repeat_the_study_per_replicate(study):
    """dataset.csv: the file's rows once per replicate (REP first), the simulated DV on the rows that
    had one, IPRED on every observation row, dose rows as they were."""
    events = study.events()
    table = study.dataset.table
    assert len(events) == 40 * len(table) and list(events.columns[:2]) == ["REP", "ID"]
    second = events[events["REP"] == 2].reset_index(drop=True)
    at = study.observed["row"].to_numpy() - 2
    np.testing.assert_allclose(second.loc[at, "DV"].astype(float), study.dv[1], rtol=1e-15)
    np.testing.assert_allclose(second.loc[at, "IPRED"].astype(float), study.ipred[1], rtol=1e-15)
    doses = table["EVID"] == "1"
    pd.testing.assert_frame_equal(second.loc[doses, table.columns].drop(columns=["DV"]),
                                  table.loc[doses].drop(columns=["DV"]))


def test_summary_counts_every_simulated_value(study):
    summary = study.summary()
    assert summary["simulated"].sum() == study.dv.size
    assert summary["observed"].sum() == int(np.isfinite(study.observed["dv"].to_numpy(dtype=float)).sum())
    assert (summary["simulated_p5"] <= summary["simulated_p50"]).all()
    assert (summary["simulated_p50"] <= summary["simulated_p95"]).all()


def test_cli_trial_from_a_dataset_writes_the_studies(tmp_path):
    (tmp_path / "study.csv").write_text(DATA)
    out = tmp_path / "sim"
    result = CliRunner().invoke(app, ["trial", "--dataset", str(tmp_path / "study.csv"), "--replicates", "5",
                                      "--out", str(out), "--format", "nonmem", "--stratify", "SEX", "--quiet"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"simulated.parquet", "summary.csv", "summary.json", "manifest.json",
                                              "report.html", "dataset.csv"}
    simulated = pd.read_parquet(out / "simulated.parquet")
    assert len(simulated) == 5 * 7 and set(simulated["stratum"]) == {"0", "1"}
    assert "unit" in simulated.columns and "time [h]" in simulated.columns
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replicates"] == 5 and summary["ids"] == 3 and "research and teaching" in summary["disclaimer"]
    assert "research and teaching" in (out / "report.html").read_text()
    events = pd.read_csv(out / "dataset.csv", comment="#")
    assert sorted(events["REP"].unique()) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("args, words", [
    (["trial", "{trial}", "--dataset", "{data}"], "not both"),
    (["trial"], "--dataset"),
    (["trial", "--dataset", "{data}", "--workers", "2"], "--workers apply to trial files only"),
    (["trial", "--dataset", "{data}", "--stratify", "ARMX"], "--stratify"),
    (["trial", "--dataset", "{data}", "--replicates", "0"], "--replicates"),
    (["trial", "{trial}", "--replicates", "5"], "only with --dataset"),
])
def test_cli_bad_dataset_trials_exit_2_and_write_nothing(tmp_path, args, words):
    (tmp_path / "study.csv").write_text(DATA)
    out = tmp_path / "o"
    trial = str(ROOT_TRIALS / "parallel_ketamine_vs_midazolam.toml")
    argv = [a.replace("{data}", str(tmp_path / "study.csv")).replace("{trial}", trial) for a in args] + ["--out", str(out)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and words in result.output, result.output
    assert not out.exists()


EXAMPLE = ROOT_TRIALS.parent / "datasets" / "study30.csv"


def test_the_example_data_set_reads_and_simulates_as_dosed():
    """examples/datasets/study30.csv: 30 IDs, an infusion by RATE, repeats by ADDL, a steady-state
    row; every ID simulates (simulate --dataset) with a finite prediction on each observation row."""
    data = read_dataset(EXAMPLE)
    assert len(data.patients) == 30
    routes = {(d["drug"], d["route"]) for p in data.patients for d in p.scenario["dose"]}
    assert routes == {("racemic-ketamine", "iv"), ("esketamine", "intranasal"), ("racemic-ketamine", "oral"),
                      ("escitalopram", "oral")}
    assert any(d.get("steady_state") for p in data.patients for d in p.scenario["dose"])
    assert any(len(d.get("at", [])) == 4 for p in data.patients for d in p.scenario["dose"])  # ADDL 3
    assert any("duration" in d for p in data.patients for d in p.scenario["dose"])  # RATE
    table = predict(data)
    assert (table["status"] == "ok").all() and np.isfinite(table["IPRED"].astype(float)).all()
    assert set(table["output"]) == {"pk.ketamine_plasma", "pk.norketamine_plasma", "clinical.madrs",
                                    "comparators.ssri_plasma"}


@pytest.mark.slow  # a hierarchical fit and a VPC of the 30-ID example (minutes)
def test_the_example_data_set_runs_through_trial_vpc_and_a_hierarchical_fit(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["trial", "--dataset", str(EXAMPLE), "--replicates", "5", "--out", str(tmp_path / "t"),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["failed_studies"] == 0
    result = runner.invoke(app, ["vpc", str(EXAMPLE), "--replicates", "40", "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["fit", "--dataset", str(EXAMPLE), "--params", "pk.cl_s_ketamine,pk.v_central",
                                 "--outputs", "pk.ketamine_plasma", "--hierarchical", "--vpc-replicates", "40",
                                 "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "f" / "fit.json").read_text())
    assert summary["converged"] and summary["n_patients"] == 30
    individual = pd.read_csv(tmp_path / "f" / "individual.csv")
    assert len(individual) == 60 and np.isfinite(individual[["value", "lower95", "upper95"]]).all(axis=None)
    bins = pd.read_csv(tmp_path / "f" / "vpc.csv", comment="#")
    assert set(bins["output"]) == {"pk.ketamine_plasma"}  # only what was fitted
