"""Hierarchical (mixed-effects) fits, ``ketasim fit --hierarchical`` (issue 15 part 3).

On a linear model the linearisation is exact, so the Lindstrom-Bates estimates must be the exact
maximum-likelihood estimates and the Laplace objective the exact -2 log L: both are checked against
an independent likelihood written with scipy's multivariate normal. On ketasim's own model, data
simulated from a known truth (typical values, between-patient variances and each patient's values)
must be recovered within the fit's intervals.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

import ketasim
from ketasim.calibrate.data import load_observations, observations_from_dataset
from ketasim.calibrate.fit import FitError, build_problem
from ketasim.calibrate.hierarchical import Z95, estimate, patients_of
from ketasim.dataset import read_dataset


class LinearPatient:
    """y = D phi + noise: the linearised model is the model."""

    def __init__(self, pid, design, y):
        self.id, self.design, self.y, self.n_observations = pid, design, y, len(y)

    def residuals(self, phi, with_jacobian=False):
        return self.design @ phi - self.y, (self.design if with_jacobian else None)


def _linear_study(rng, n=20, mu=(0.3, -0.2, 0.1), omega=(0.3, 0.2), s=0.5):
    patients, etas = [], []
    t = np.linspace(0.0, 1.0, 6)
    design = np.column_stack([np.ones(6), t, t ** 2])
    for i in range(n):
        eta = np.asarray(omega) * rng.standard_normal(2)
        y = design @ (np.asarray(mu) + np.r_[eta, 0.0]) + s * rng.standard_normal(6)
        patients.append(LinearPatient(i, design, y))
        etas.append(eta)
    return patients, np.array(etas)


def _exact_minus2_log_likelihood(patients, mu, omega2, s2):
    total = 0.0
    for p in patients:
        z = p.design[:, :2]
        cov = (z * omega2) @ z.T + s2 * np.eye(p.n_observations)
        total -= 2 * multivariate_normal(p.design @ mu, cov).logpdf(p.y)
    return total


LINEAR_NAMES = ["a", "b", "c"]
WIDE = dict(lower=np.full(3, -5.0), upper=np.full(3, 5.0))


@pytest.fixture(scope="module")
def linear_fit():
    patients, etas = _linear_study(np.random.default_rng(1))
    return patients, etas, estimate(patients, LINEAR_NAMES, ["a", "b"], **WIDE)


def test_linear_model_gives_the_exact_maximum_likelihood(linear_fit):
    patients, _, fit = linear_fit
    assert fit.converged

    def objective(v):
        return _exact_minus2_log_likelihood(patients, v[:3], np.exp(v[3:5]), np.exp(v[5]))

    start = np.r_[fit.mu + 0.05, np.log(fit.omega2) + 0.2, 2 * np.log(fit.residual_scale) - 0.2]
    exact = minimize(objective, start, method="BFGS", options={"gtol": 1e-9})
    np.testing.assert_allclose(fit.mu, exact.x[:3], atol=1e-5)
    np.testing.assert_allclose(np.log(fit.omega2), exact.x[3:5], atol=1e-3)
    assert 2 * np.log(fit.residual_scale) == pytest.approx(exact.x[5], abs=1e-4)
    # the Laplace objective is exact for a linear-Gaussian model
    assert fit.objective == pytest.approx(exact.fun, abs=1e-5)


def test_linear_model_standard_errors_and_posteriors_are_the_gaussian_ones(linear_fit):
    patients, _, fit = linear_fit
    v_inv = [np.linalg.inv((p.design[:, :2] * fit.omega2) @ p.design[:, :2].T
                           + fit.residual_scale ** 2 * np.eye(p.n_observations)) for p in patients]
    info = sum(p.design.T @ w @ p.design for p, w in zip(patients, v_inv))
    np.testing.assert_allclose(fit.mu_se, np.sqrt(np.diag(np.linalg.inv(info))), rtol=1e-8)
    # each patient's posterior of its random effects given the population estimates (conjugate normal)
    z = patients[0].design[:, :2]
    post = np.linalg.inv(z.T @ z / fit.residual_scale ** 2 + np.diag(1 / fit.omega2))
    mean = post @ z.T @ (patients[0].y - patients[0].design @ fit.mu) / fit.residual_scale ** 2
    np.testing.assert_allclose(fit.eta[0], mean, atol=1e-7)
    np.testing.assert_allclose(fit.eta_sd[0], np.sqrt(np.diag(post)), rtol=1e-8)


class ScaledLinearPatient(LinearPatient):
    """The same, each observation with its own SD: the objective must carry 2 sum log(sigma)."""

    def __init__(self, pid, design, y, sigma):
        super().__init__(pid, design, y)
        self.sigma = sigma

    def residuals(self, phi, with_jacobian=False):
        return (self.design @ phi - self.y) / self.sigma, (self.design / self.sigma[:, None] if with_jacobian else None)


def test_the_objective_carries_each_rows_sd():
    rng = np.random.default_rng(2)
    patients, _ = _linear_study(rng, n=15)
    sigma = np.array([0.5, 1.0, 2.0, 1.0, 0.5, 1.5])
    scaled = [ScaledLinearPatient(p.id, p.design, p.y, sigma) for p in patients]
    fit = estimate(scaled, LINEAR_NAMES, ["a", "b"], **WIDE)
    exact = 0.0
    for p in scaled:
        z = p.design[:, :2]
        cov = (z * fit.omega2) @ z.T + fit.residual_scale ** 2 * np.diag(sigma ** 2)
        exact -= 2 * multivariate_normal(p.design @ fit.mu, cov).logpdf(p.y)
    assert fit.objective == pytest.approx(exact, abs=1e-6)


def test_a_variance_at_zero_is_reported_and_written_without_overflow(tmp_path):
    """A random effect with no spread in the data (its variance near the floor, its SE ordinary):
    the summary gives its interval as [0, unbounded) instead of overflowing (the values of the
    review's case, 2.2e-7 with SE 0.07); the parameter file carries each CV so that the population
    sampler draws the fitted variance back, and a parameter without a random effect gets CV 0."""
    from ketasim.calibrate.outputs import _log_scale_interval, hierarchical_summary, parameter_file
    from ketasim.population import PopulationSampler, PopulationSpec

    assert _log_scale_interval(2.2e-7, 0.07) == [0.0, None]
    patients, _ = _linear_study(np.random.default_rng(4), n=30, omega=(0.3, 0.0))
    names = ["pk.cl_s_ketamine", "pk.v_central", "pk.q_peripheral"]
    fit = estimate(patients, names, names[:2], **WIDE)
    fit.omega2[1] = 2.2e-7
    fit.omega2_se[1] = 0.07
    params = ketasim.load_parameters()
    summary = hierarchical_summary(fit, params, ["linear.csv"])
    json.dumps(summary)
    assert summary["estimates"]["pk.v_central"]["between_patient"]["omega2_log_ci95"] == [0.0, None]
    (tmp_path / "p.toml").write_text(parameter_file(summary, params, ["linear.csv"]))
    fitted = ketasim.load_parameters(tmp_path / "p.toml")
    assert fitted["pk.q_peripheral"].cv == 0.0
    sampler = PopulationSampler(PopulationSpec.from_dict({"n": 1, "preset": "healthy-volunteers"}), fitted)
    k = sampler.varied.index("pk.cl_s_ketamine")
    assert sampler.omega[k] ** 2 == pytest.approx(fit.omega2[0], rel=1e-12)


@pytest.mark.slow  # 200 replicate fits, about a minute
def test_linear_model_intervals_cover_at_their_level():
    """Over 200 replicate studies the 95 % Wald intervals of the typical values and of the
    between-patient variances (log scale) cover the truth at 95 % within the binomial 99 % band."""
    rng = np.random.default_rng(5)
    mu, omega2 = np.array([0.3, -0.2, 0.1]), np.array([0.09, 0.04])
    hits = np.zeros(5)
    replicates = 200
    for _ in range(replicates):
        patients, _ = _linear_study(rng, n=40)
        fit = estimate(patients, LINEAR_NAMES, ["a", "b"], **WIDE)
        hits[:3] += np.abs(fit.mu - mu) <= Z95 * fit.mu_se
        hits[3:] += np.abs(np.log(fit.omega2 / omega2)) <= Z95 * fit.omega2_se / fit.omega2
    low = 0.95 - 2.576 * np.sqrt(0.95 * 0.05 / replicates)
    assert np.all(hits / replicates >= low), hits / replicates


def test_a_parameter_without_variance_is_the_same_in_every_patient(linear_fit):
    _, _, fit = linear_fit
    phi = fit.phi()
    assert np.all(phi[:, 2] == fit.mu[2])
    table = fit.individual_table([1.0, 2.0, 3.0], ["u", "u", "u"])
    fixed = table[table["parameter"] == "c"]
    assert np.allclose(fixed["value"], 3.0 * np.exp(fit.mu[2])) and not fixed["random"].any()
    assert (fixed["lower95"] == fixed["upper95"]).all()
    assert len(table) == 3 * len(fit.patient_ids)


@pytest.mark.parametrize("random, words", [(["z"], "z not among"), ([], "at least one"), (["a", "a"], "twice")])
def test_bad_random_effects_are_refused(linear_fit, random, words):
    patients, _, _ = linear_fit
    with pytest.raises(FitError, match=words):
        estimate(patients, LINEAR_NAMES, random, **WIDE)


# --- ketasim's own model ----------------------------------------------------------------------------

NAMES = ["pk.cl_s_ketamine", "pk.v_central"]
TIMES = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _pk_study(n, mu, omega, seed, random_index=(0, 1)):
    """An event data set: 20 mg esketamine IV (CMT 5), plasma ketamine at TIMES with the default
    mapping's error model (15 % proportional, 0.5 ng/mL additive), each patient's log-shifts drawn
    from the truth; returns the CSV text and the true log-shifts per ID."""
    from ketasim.engine.differentiable import OutputFunction
    from ketasim.model.pk import PK
    from ketasim.model.system import Model

    rng = np.random.default_rng(seed)
    scenario = {"simulation": {"duration": "8 h", "output_every": "5 min"},
                "dose": [{"drug": "esketamine", "route": "iv", "amount": "20 mg"}]}
    f = OutputFunction(scenario, ketasim.load_parameters(), NAMES, ["pk.ketamine_plasma"], TIMES, model=Model([PK()]))
    lines, truth = ["ID,TIME,EVID,AMT,CMT,DV,DVID"], {}
    for i in range(1, n + 1):
        phi = np.array(mu, dtype=float)
        phi[list(random_index)] += np.asarray(omega) * rng.standard_normal(len(random_index))
        truth[i] = phi
        lines.append(f"{i},0,1,20,5,.,.")
        for t, c in zip(TIMES, f(phi)[0]):
            dv = float(c) * (1 + 0.15 * rng.standard_normal()) + 0.5 * rng.standard_normal()
            lines.append(f"{i},{t},0,.,.,{dv!r},1")
    return "\n".join(lines) + "\n", truth


def _problem(text, folder):
    table = load_observations(observations_from_dataset(read_dataset(io.StringIO(text)), folder))
    return build_problem(table, NAMES, ketasim.load_parameters())


def test_patients_are_gathered_by_id_and_weighted_at_their_own_prediction(tmp_path):
    """Ten IDs (so that id_10 sorts before id_2 by file name): the patients come in id order, and
    after the fit each row's SD is the mapping's error model at the patient's own prediction (one
    iteration: the plumbing, not the estimates, is tested here)."""
    text, _ = _pk_study(10, [0.0, 0.0], [0.2], seed=2, random_index=(0,))
    problem = _problem(text, tmp_path)
    patients = patients_of(problem)
    assert [p.id for p in patients] == list(range(1, 11))
    fit = estimate(patients, NAMES, NAMES[:1], lower=problem.lower, upper=problem.upper, max_iterations=1)
    phi = fit.phi()
    for i in (0, 9):
        g = patients[i].groups[0]
        pred, _ = g.predict(phi[i])
        np.testing.assert_allclose(g.sigma, np.hypot(0.15 * pred, 0.5), rtol=1e-12)
    assert fit.history and fit.objective > 0 and np.all(fit.eta_sd > 0)


def test_ids_of_two_tables_are_two_patients_and_rows_without_an_error_model_keep_their_sd(tmp_path):
    """Patient 1 of a data set and patient 1 of another table are different patients; rows of a
    table without error-model columns, fitted next to a data set's, keep the SD they were given."""
    text, _ = _pk_study(2, [0.0, 0.0], [0.2], seed=5, random_index=(0,))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_observations(observations_from_dataset(read_dataset(io.StringIO(text)), tmp_path / "a"))
    second = load_observations(observations_from_dataset(read_dataset(io.StringIO(text)), tmp_path / "b"))
    second = second.drop(columns=["error_proportional", "error_additive"])
    table = pd.concat([first.assign(source_table="a/study.csv"), second.assign(source_table="b/rows.csv")],
                      ignore_index=True)
    patients = patients_of(build_problem(table, NAMES, ketasim.load_parameters()))
    assert [p.id for p in patients] == ["study.csv:1", "study.csv:2", "rows.csv:1", "rows.csv:2"]
    plain = next(p for p in patients if p.id == "rows.csv:1")
    assert plain.error_models == [None]
    before = plain.sigma.copy()
    assert np.all(plain.reweight(np.zeros(2)) == 1.0) and np.array_equal(plain.sigma, before)


def test_summary_rows_and_occasion_free_tables_are_refused(tmp_path):
    text, _ = _pk_study(2, [0.0, 0.0], [0.2], seed=3, random_index=(0,))
    table = load_observations(observations_from_dataset(read_dataset(io.StringIO(text)), tmp_path))
    with pytest.raises(FitError, match="'patient' id"):
        patients_of(build_problem(table.drop(columns="patient"), NAMES, ketasim.load_parameters()))
    with pytest.raises(FitError, match="1 patient"):
        patients_of(build_problem(table[table["patient"] == 1], NAMES, ketasim.load_parameters()))


@pytest.mark.slow  # 30 patients through the command line, about two minutes
def test_fit_hierarchical_recovers_a_known_population(tmp_path):
    """30 patients with between-patient SDs 0.25 (clearance) and 0.3 (volume) on the log scale: the
    typical values and both variances lie within their 95 % intervals of the population truth, each
    patient's own values within its interval in at least 52 of 60 cases (the binomial 1 % quantile
    at 95 % coverage), the residual scale within its interval of 1, and params.toml carries the
    typical values and the fitted between-patient CVs."""
    mu, omega = np.log([0.95, 0.9]), np.array([0.25, 0.3])
    text, truth = _pk_study(30, mu, omega, seed=3)
    (tmp_path / "study.csv").write_text(text)
    out = tmp_path / "fit"
    proc = subprocess.run([sys.executable, "-m", "ketasim", "fit", "--dataset", str(tmp_path / "study.csv"),
                           "--params", ",".join(NAMES), "--hierarchical", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "fit.json").read_text())
    assert summary["converged"] and summary["n_patients"] == 30
    params = ketasim.load_parameters()
    for k, name in enumerate(NAMES):
        e = summary["estimates"][name]
        low, high = e["wald_ci95"]
        assert low < params[name].value * np.exp(mu[k]) < high, (name, e)
        w_low, w_high = e["between_patient"]["omega2_log_ci95"]
        assert w_low < omega[k] ** 2 < w_high, (name, e["between_patient"])
    s_low, s_high = summary["residual_scale"]["wald_ci95"]
    assert s_low < 1.0 < s_high
    individual = pd.read_csv(out / "individual.csv")
    hits = 0
    for _, r in individual.iterrows():
        value = params[r["parameter"]].value * np.exp(truth[r["patient"]][NAMES.index(r["parameter"])])
        hits += r["lower95"] <= value <= r["upper95"]
    assert hits >= 52, hits
    fitted = ketasim.load_parameters(out / "params.toml")
    for name in NAMES:
        assert fitted[name].value == pytest.approx(summary["estimates"][name]["value"])
        assert fitted[name].cv == pytest.approx(summary["estimates"][name]["between_patient"]["cv"])
        assert "hierarchical" in fitted[name].source
    assert "research and teaching" in (out / "report.html").read_text()


def test_the_fit_report_checks_the_fit_with_a_vpc(tmp_path):
    """`fit --dataset --hierarchical`: vpc.csv (and the report's figure) is the data set simulated with
    what params.toml says, fitted values and between-patient CVs: the same bins as `ketasim vpc` with
    that file and seed. ``fitted_parameters`` gives the set the file gives."""
    from typer.testing import CliRunner

    from ketasim.calibrate.outputs import fitted_parameters
    from ketasim.cli import app
    from ketasim.vpc import vpc

    text, _ = _pk_study(4, [0.0, 0.0], [0.2, 0.2], seed=6)
    (tmp_path / "study.csv").write_text(text)
    out = tmp_path / "fit"
    result = CliRunner().invoke(app, ["fit", "--dataset", str(tmp_path / "study.csv"), "--params", ",".join(NAMES),
                                      "--hierarchical", "--vpc-replicates", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = ketasim.load_parameters(out / "params.toml")
    summary = json.loads((out / "fit.json").read_text())
    rebuilt = fitted_parameters(summary, ketasim.load_parameters())
    for name in NAMES:
        assert rebuilt[name].value == pytest.approx(written[name].value, rel=1e-12)
        assert rebuilt[name].cv == pytest.approx(written[name].cv, rel=1e-12) and written[name].cv > 0
    bins = pd.read_csv(out / "vpc.csv", comment="#")
    again = vpc(read_dataset(tmp_path / "study.csv"), written, replicates=20, seed=0).bins
    assert list(bins["output"].unique()) == ["pk.ketamine_plasma"] and len(bins) == len(TIMES)
    numbers = [c for c in again.columns if again[c].dtype.kind == "f"]
    np.testing.assert_allclose(bins[numbers].to_numpy(), again[numbers].to_numpy(), rtol=1e-12)
    report = (out / "report.html").read_text()
    assert "Visual predictive check" in report and "inside the simulated 95 % intervals" in report


@pytest.mark.parametrize("args, words", [
    (["--vpc-replicates", "5"], "--vpc-replicates: 5 must be 0 (no check) or in 20..10000"),
    (["--random", "pk.v_central"], "--random: only with --hierarchical"),
    (["--hierarchical", "--bayes"], "cannot be combined with --bayes"),
    (["--hierarchical", "--random", "pk.keo_hnk"], "pk.keo_hnk not among --params"),
    (["--hierarchical", "--random", ","], "at least one"),
    (["--hierarchical", "--random", "pk.v_central,pk.v_central"], "named twice"),
])
def test_fit_hierarchical_bad_input_exits_2(tmp_path, args, words):
    from typer.testing import CliRunner

    from ketasim.cli import app

    text, _ = _pk_study(2, [0.0, 0.0], [0.2], seed=4, random_index=(0,))
    (tmp_path / "study.csv").write_text(text)
    result = CliRunner().invoke(app, ["fit", "--dataset", str(tmp_path / "study.csv"), "--params", ",".join(NAMES),
                                      "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and words in result.output, result.output
    assert not (tmp_path / "o").exists()
