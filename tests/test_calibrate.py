"""Calibration: the shipped targets as tables, `ketasim calibrate`, and fits that recover known
parameters from synthetic data (maximum likelihood with profile CIs; NUTS in the slow tier)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ketasim
from ketasim.calibrate import DataError, load_observations, shipped_targets
from ketasim.calibrate.fit import bayes, build_problem, maximise_likelihood, profile_likelihood
from ketasim.engine.differentiable import OutputFunction
from ketasim.model.pk import PK
from ketasim.model.system import Model

ROOT = Path(__file__).resolve().parents[1]
# the brain entry of HNK (pk.keo_hnk) leaves plasma ketamine alone: the data cannot determine it
NAMES = ["pk.cl_r_ketamine", "pk.v_central", "pk.keo_hnk"]
TRUE_SHIFT = {"pk.cl_r_ketamine": 1.25, "pk.v_central": 0.85, "pk.keo_hnk": 1.0}  # truth = file value x shift
BOLUS = ('[[dose]]\ndrug = "racemic-ketamine"\nroute = "iv"\namount = "35 mg"\n'
         '[simulation]\nduration = "8 h"\noutput_every = "5 min"\n')


def test_shipped_targets_are_a_cited_observation_table():
    table = load_observations(shipped_targets())
    ids = {t["id"] for t in tomllib.loads((ROOT / "src/ketasim/data/calibration.toml").read_text())["target"]}
    assert set(table["target"]) <= ids
    assert table["source"].str.len().min() > 10
    assert len(table) >= 25


def test_calibrate_command_prints_the_table_and_the_count(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ketasim", "calibrate", "--out", str(tmp_path / "cal")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    k, n = map(int, re.fullmatch(r"(\d+)/(\d+) targets within tolerance", last).groups())
    table = pd.read_csv(tmp_path / "cal" / "calibration.csv")
    assert n == len(table) == len(load_observations(shipped_targets()))
    outside = table[~table["within"]]
    # the known tension (docs/model.md): the typical MADRS keeps falling from 24 h to 72 h, so Han's
    # 72-h rates are the only ones allowed outside their tolerance
    assert set(outside["target"]) <= {"han2016_response_decay"}
    assert k >= n - 2


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Plasma ketamine after a 35 mg bolus from known parameters, 5 % Gaussian noise, with SDs."""
    folder = tmp_path_factory.mktemp("fit")
    (folder / "bolus.toml").write_text(BOLUS)
    params = ketasim.load_parameters()
    truth = params.replace(**{n.replace(".", "__"): params[n].value * s for n, s in TRUE_SHIFT.items()})
    res = ketasim.simulate(folder / "bolus.toml", params=truth)
    rng = np.random.default_rng(7)
    rows = []
    for t in (0.1, 0.25, 0.5, 1, 2, 3, 4, 6, 8):
        value = res.at("pk.ketamine_plasma", t)
        rows.append({"scenario": "bolus.toml", "quantity": "pk.ketamine_plasma", "time": f"{t} h",
                     "value": value * (1 + 0.05 * rng.standard_normal()), "unit": "ng/mL", "sd": 0.05 * value})
    pd.DataFrame(rows).to_csv(folder / "data.csv", index=False)
    return folder


def test_gradient_through_the_model_matches_finite_differences(synthetic):
    f = OutputFunction(synthetic / "bolus.toml", ketasim.load_parameters(), NAMES, ["pk.ketamine_plasma"],
                       [0.25, 1.0, 4.0], model=Model([PK()]))
    x = np.array([0.1, -0.05, 0.0])
    _, jac = f.value_and_jacobian(x)
    for k in range(3):
        step = np.zeros(3)
        step[k] = 1e-4
        fd = (f(x + step) - f(x - step)) / 2e-4
        np.testing.assert_allclose(jac[:, :, k], fd, rtol=1e-4, atol=1e-6 * np.abs(jac).max())


@pytest.fixture(scope="module")
def ml_fit(synthetic):
    params = ketasim.load_parameters()
    problem = build_problem(load_observations(synthetic / "data.csv"), NAMES, params)
    result = maximise_likelihood(problem, starts=2, seed=1)
    result.profiles = profile_likelihood(problem, result, points=4)
    return problem, result


def test_maximum_likelihood_recovers_the_truth_within_profile_cis(ml_fit):
    _, result = ml_fit
    assert result.converged
    for k, name in enumerate(NAMES[:2]):
        truth = np.log(TRUE_SHIFT[name])
        prof = result.profiles[name]
        assert prof["identifiable"]
        assert prof["lower_x"] < truth < prof["upper_x"], name
        assert abs(result.x[k] - truth) < 3 * result.standard_error[k]


def test_a_parameter_the_data_cannot_see_is_flagged(ml_fit):
    _, result = ml_fit
    assert not result.profiles["pk.keo_hnk"]["identifiable"]


def test_fit_command_writes_results_and_a_usable_parameter_file(synthetic, tmp_path):
    out = tmp_path / "fit"
    proc = subprocess.run([sys.executable, "-m", "ketasim", "fit", str(synthetic / "data.csv"), "--params", ",".join(NAMES),
                           "--out", str(out), "--starts", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "fit.json").read_text())
    assert set(summary["estimates"]) == set(NAMES) and summary["converged"]
    assert "research and teaching" in (out / "report.html").read_text()
    fitted = ketasim.load_parameters(out / "params.toml")
    value = fitted["pk.cl_r_ketamine"].value
    assert value == pytest.approx(summary["estimates"]["pk.cl_r_ketamine"]["value"])
    assert fitted["pk.cl_r_ketamine"].source.startswith("calibrated:")
    assert ketasim.simulate(synthetic / "bolus.toml", params=fitted).status == "ok"


@pytest.mark.parametrize("args, words", [
    (["--params", "pk.nonsense"], "pk.nonsense"),
    (["--params", ""], "--params"),
    (["--params", "pk.cl_r_ketamine", "--starts", "0"], "--starts"),
])
def test_fit_bad_input_exits_2(synthetic, tmp_path, args, words):
    proc = subprocess.run([sys.executable, "-m", "ketasim", "fit", str(synthetic / "data.csv"), "--out", str(tmp_path / "o"),
                           *args], capture_output=True, text=True)
    assert proc.returncode == 2 and words in proc.stderr
    assert not (tmp_path / "o").exists()


def test_bad_observation_tables_are_named(tmp_path):
    (tmp_path / "a.csv").write_text("scenario,quantity,value\nx.toml,pk.ketamine_plasma,1\n")
    with pytest.raises(DataError, match="unit"):
        load_observations(tmp_path / "a.csv")
    (tmp_path / "s.toml").write_text(BOLUS)
    (tmp_path / "b.csv").write_text("scenario,quantity,time,value,unit,metric\ns.toml,pk.ketamine_plasma,1 h,1,ng/mL,median\n")
    with pytest.raises(DataError, match="row 2: metric"):
        load_observations(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("scenario,quantity,time,value,unit\nmissing.toml,pk.ketamine_plasma,1 h,1,ng/mL\n")
    with pytest.raises(DataError, match="scenario"):
        load_observations(tmp_path / "c.csv")


@pytest.mark.slow
def test_nuts_recovers_the_truth_with_converged_chains(ml_fit):
    problem, result = ml_fit
    posterior = bayes(problem, result, warmup=150, samples=150, chains=2, seed=3)
    for name in NAMES[:2]:
        p = posterior["parameters"][name]
        assert p["r_hat"] < 1.05 and p["ess"] > 50
        assert p["lower_x"] < np.log(TRUE_SHIFT[name]) < p["upper_x"]
