"""Sensitivity analysis: Sobol' indices of a known function, autodiff against finite differences on
the real model, Morris ranking, global analyses on the model, the CLI and Dask agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import ketasim
import ketasim.sensitivity as ks
from ketasim.cli import app

SCENARIO = {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}],
            "simulation": {"duration": "1 d", "output_every": "1 h"}}
# parameters in the vector field (autodiff) and one acting through the dose schedule (finite differences)
LOCAL_PARAMETERS = ["pk.cl_s_ketamine", "receptor.ki_s_ketamine", "pk.mw_ketamine"]
OUTPUTS = ["pk.ketamine_plasma@1h", "receptor.nmda_block_interneuron@1h", "plasticity.spine_density@24h"]


# ---------------------------------------------------------------------- known functions
def test_sobol_reproduces_ishigami_indices():
    """Analytic indices of the Ishigami function (a = 7, b = 0.1): S1 = 0.314, 0.442, 0; ST = 0.558, 0.442, 0.244."""
    from SALib.test_functions import Ishigami

    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-np.pi, np.pi]] * 3}
    X = ks.sobol_sample(problem, 2 ** 13, seed=1)
    idx = ks.sobol_indices(problem, Ishigami.evaluate(X), num_resamples=200, seed=1)
    for name, s1, st in zip(problem["names"], (0.314, 0.442, 0.0), (0.558, 0.442, 0.244)):
        # the bootstrap CI of N = 8192 is about 0.02-0.03; allow twice it
        assert abs(idx[name]["S1"] - s1) < max(2 * idx[name]["S1_conf"], 0.02), name
        assert abs(idx[name]["ST"] - st) < max(2 * idx[name]["ST_conf"], 0.02), name


def test_constant_output_gives_zero_indices():
    problem = {"num_vars": 2, "names": ["a", "b"], "bounds": [[0, 1]] * 2}
    X = ks.sobol_sample(problem, 64)
    assert ks.sobol_indices(problem, np.full(len(X), 3.0))["a"]["ST"] == 0.0


def test_morris_ranks_the_influential_input_first():
    from SALib.analyze import morris as morris_analyze
    from SALib.sample import morris as morris_sample

    problem = {"num_vars": 3, "names": ["strong", "weak", "none"], "bounds": [[0, 1]] * 3}
    X = morris_sample.sample(problem, 40, num_levels=4, seed=2)
    Y = 10 * X[:, 0] + X[:, 1] ** 2
    res = morris_analyze.analyze(problem, X, Y, num_levels=4, seed=2)
    assert list(np.argsort(-np.asarray(res["mu_star"]))) == [0, 1, 2]


# ---------------------------------------------------------------------- output specs and parameter space
def test_output_specs():
    s = ks.parse_output_spec("clinical.madrs@7d")
    assert (s.kind, s.name, s.time_h) == ("model", "clinical.madrs", 168.0)
    s = ks.parse_output_spec("midazolam:response_rate@40 min")
    assert (s.kind, s.arm, s.time_h, s.unit) == ("trial", "midazolam", pytest.approx(40 / 60), "fraction")
    assert ks.parse_output_spec("median_time_to_relapse").time_h is None
    for bad, word in [("clinical.madrs", "needs a time"), ("response_rat@24h", "did you mean response_rate"),
                      ("clinical.madrs@soon", "not a time"), ("median_time_to_relapse@24h", "drop")]:
        with pytest.raises(ks.SensitivityError, match=word):
            ks.parse_output_spec(bad)


def test_space_keeps_model_conditions(params):
    from ketasim.model.constraints import violations
    from ketasim.sensitivity.problem import internal_values

    names = ks.select_parameters(params, ["pk"])
    space = ks.parameter_space(params, names)
    assert "pk.cl_r_ketamine" in space.shrunk and "pk.mw_ketamine" not in space.shrunk
    X = space.to_file_units(ks.sobol_sample(space.salib_problem(), 64))
    assert np.all((X >= space.low) & (X <= space.high))
    assert not any(violations(internal_values(params, space, row)) for row in X)
    with pytest.raises(ks.SensitivityError, match="--parameters: unknown parameter or layer 'pk.nope'"):
        ks.select_parameters(params, ["pk.nope"])


# ---------------------------------------------------------------------- local sensitivities on the model
@pytest.fixture(scope="module")
def local_result(params):
    """One autodiff run (compiles a Jacobian over three parameters once; cached on disk afterwards)."""
    return ks.local_sensitivity(SCENARIO, OUTPUTS, params=params, parameters=LOCAL_PARAMETERS)


def test_local_sensitivities_match_finite_differences(local_result, params):
    specs = [ks.parse_output_spec(o) for o in OUTPUTS]
    from ketasim.model.system import default_model
    from ketasim.sensitivity.outputs import check_model_outputs

    specs = check_model_outputs(specs, default_model(), 24.0)
    fd, schemes = ks.finite_difference_sensitivity(SCENARIO, params, LOCAL_PARAMETERS, specs)
    assert set(schemes) == {"central"}
    for i, s in enumerate(specs):
        value = local_result.outputs[i]["value_at_file_parameters"]
        for j, name in enumerate(LOCAL_PARAMETERS):
            got = local_result.indices[s.label][name]["normalised"]
            # relative 0.2 %; near-zero sensitivities within the integrators' tolerance of the output itself
            assert got == pytest.approx(fd[i, j], rel=2e-3, abs=1e-6 * abs(value)), (s.label, name)
    methods = {p["name"]: p["method"] for p in local_result.parameters}
    assert methods["pk.cl_s_ketamine"].startswith("autodiff")
    assert methods["pk.mw_ketamine"].startswith("finite differences")  # the dose in umol depends on it


def test_local_signs_and_ranking(local_result):
    plasma = local_result.indices["pk.ketamine_plasma@1 h [ng/mL]"]
    assert plasma["pk.cl_s_ketamine"]["normalised"] < 0  # more clearance, less ketamine
    block = local_result.indices["receptor.nmda_block_interneuron@1 h [fraction]"]
    assert block["receptor.ki_s_ketamine"]["normalised"] < 0  # weaker affinity, less block
    assert local_result.ranking("pk.ketamine_plasma@1 h [ng/mL]")[0][0] in ("pk.cl_s_ketamine", "pk.mw_ketamine")


# ---------------------------------------------------------------------- global analyses on the model
def test_sobol_on_the_model_gives_finite_indices(params):
    r = ks.sobol(SCENARIO, ["pk.ketamine_plasma@1h", "clinical.madrs@24h"], samples=32, params=params,
                 parameters=["pk.cl_s_ketamine", "pk.v_central", "plasticity.k_spine_formation"], num_resamples=50)
    assert r.settings["model_runs"] == 32 * (3 + 2)
    for out, ix in r.indices.items():
        assert all(np.isfinite(v["S1"]) and np.isfinite(v["ST"]) for v in ix.values()), out
    # plasma at 1 h cannot depend on spine formation; clearance and volume carry it
    plasma = r.indices["pk.ketamine_plasma@1 h [ng/mL]"]
    assert plasma["plasticity.k_spine_formation"]["ST"] == pytest.approx(0.0, abs=1e-6)
    assert r.by_layer("pk.ketamine_plasma@1 h [ng/mL]")[0]["layer"] == "pk"


def test_morris_on_the_model(params):
    r = ks.morris(SCENARIO, ["pk.ketamine_plasma@1h"], samples=6, params=params,
                  parameters=["pk.cl_s_ketamine", "plasticity.k_spine_formation"], num_resamples=50)
    assert r.settings["model_runs"] == 6 * 3
    assert r.ranking("pk.ketamine_plasma@1 h [ng/mL]")[0][0] == "pk.cl_s_ketamine"


def test_trial_endpoint_sobol_runs(params):
    trial = {"trial": {"name": "tiny", "seed": 3, "assessments": ["24 h", "7 d"]},
             "population": {"n": 4, "preset": "treatment-resistant"},
             "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                                    "duration": "40 min"}]}]}
    r = ks.sobol(trial, ["response_rate@24h", "median_time_to_relapse"], samples=2, params=params, n_per_arm=3,
                 parameters=["plasticity.k_spine_formation"], num_resamples=20)
    assert r.settings["model_runs"] == 2 * 3 and r.target["kind"] == "trial"
    assert set(r.indices) == {"ketamine:response_rate@24 h [fraction]", "ketamine:median_time_to_relapse [h]"}
    with pytest.raises(ks.SensitivityError, match="not an assessment"):
        ks.sobol(trial, ["response_rate@3d"], samples=2, params=params, parameters=["pk.v_central"])
    with pytest.raises(ks.SensitivityError, match="--method local"):
        ks.sensitivity(trial, ["response_rate@24h"], method="local")


def test_dask_equals_single_process(params):
    kwargs = dict(samples=16, params=params, parameters=["pk.cl_s_ketamine", "pk.v_central"], num_resamples=20)
    from ketasim.sensitivity import problem

    single = ks.sobol(SCENARIO, ["pk.ketamine_plasma@1h"], **kwargs)
    old = problem.BLOCK_ROWS
    try:  # several blocks, so the Dask run really splits the samples
        problem.ScenarioEvaluator.block_rows = 24
        blocked = ks.sobol(SCENARIO, ["pk.ketamine_plasma@1h"], **kwargs)
        dask = ks.sobol(SCENARIO, ["pk.ketamine_plasma@1h"], workers=2, **kwargs)
    finally:
        problem.ScenarioEvaluator.block_rows = old
    assert dask.indices == blocked.indices == single.indices


# ---------------------------------------------------------------------- command line
runner = CliRunner()


def test_cli_writes_json_and_report(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text('[[dose]]\ndrug = "racemic-ketamine"\nroute = "iv"\namount = "0.5 mg/kg"\nduration = "40 min"\n'
                        '[simulation]\nduration = "1 d"\n')
    out = tmp_path / "sens"
    res = runner.invoke(app, ["sensitivity", str(scenario), "--output", "pk.ketamine_plasma@1h", "--method", "sobol",
                              "--samples", "16", "--parameters", "pk.cl_s_ketamine,pk.v_central", "--out", str(out),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["disclaimer"] == ketasim.DISCLAIMER and data["method"] == "sobol"
    assert set(data["indices"]["pk.ketamine_plasma@1 h [ng/mL]"]) == {"pk.cl_s_ketamine", "pk.v_central"}
    page = (out / "report.html").read_text()
    assert ketasim.DISCLAIMER in page and "<img" in page and "ST [1]" in page
    assert data["failures"]["count"] == 0
    assert not (tmp_path / "sens.checkpoint.npz").exists()  # removed once the results are written


@pytest.mark.parametrize("args, option", [
    (["--output", "clinical.nothing@24h"], "--output"),
    (["--output", "clinical.madrs@24h", "--method", "bayes"], "--method"),
    (["--output", "clinical.madrs@24h", "--method", "sobol", "--samples", "1"], "--samples"),
    (["--output", "clinical.madrs@24h", "--method", "sobol", "--parameters", "pk.nope"], "--parameters"),
    (["--output", "clinical.madrs@24h", "--method", "sobol", "--distribution", "normal"], "--distribution"),
    (["--output", "clinical.madrs@99d", "--method", "sobol"], "past the scenario's end"),
    (["--output", "clinical.madrs@24h", "--method", "sobol", "--resume"], "--resume"),
    (["--output", "clinical.madrs@24h", "--resume"], "--resume"),
])
def test_cli_bad_input_exits_2_naming_the_option(tmp_path, args, option):
    out = tmp_path / "never"
    res = runner.invoke(app, ["sensitivity", "examples/single_infusion.toml", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert option in res.output
    assert not out.exists()


# ---------------------------------------------------------------------- failures and interruptions
class _FailingAbove:
    """An evaluator with no value wherever sampled parameter ``column`` exceeds ``threshold`` (a
    stand-in for a corner of parameter space where the solver fails); otherwise the real one."""

    def __init__(self, evaluator, column: int, threshold: float):
        self.evaluator, self.column, self.threshold = evaluator, column, threshold

    def __getattr__(self, name):
        return getattr(self.evaluator, name)

    def __call__(self, rows):
        values = self.evaluator(rows)
        values[rows[:, self.column] > self.threshold] = np.nan
        return values


def test_failing_runs_are_listed_located_and_excluded_by_whole_base_samples(params, monkeypatch, tmp_path):
    from ketasim.sensitivity import analysis

    names = ["pk.cl_s_ketamine", "pk.v_central", "plasticity.k_spine_formation"]
    threshold = {}
    real = analysis._evaluator

    def wrapped(*args, **kwargs):
        kind, spec, specs, space, evaluator = real(*args, **kwargs)
        low, high = space.low[1], space.high[1]
        threshold["v"] = low + 0.85 * (high - low) if not space.log[1] else low * (high / low) ** 0.85
        return kind, spec, specs, space, _FailingAbove(evaluator, 1, threshold["v"])

    monkeypatch.setattr(analysis, "_evaluator", wrapped)
    r = ks.sobol(SCENARIO, ["pk.ketamine_plasma@1h"], samples=64, params=params, parameters=names, num_resamples=50)
    f = r.failures
    runs = 64 * (3 + 2)
    assert f["runs"] == runs and 0 < f["count"] < runs
    assert all(s["parameters"]["pk.v_central"] > threshold["v"] for s in f["samples"])
    # every failure has V1 in the top 15 % of its range: the report names V1's top end, and only it
    assert f["where"][0]["parameter"] == "pk.v_central" and f["where"][0]["end"] == "top"
    assert {w["parameter"] for w in f["where"]} == {"pk.v_central"}
    # the indices come from the complete base samples only, exactly as SALib computes them on those
    full = real(SCENARIO, ["pk.ketamine_plasma@1h"], params, names, 50)
    space = full[3]
    X = ks.sobol_sample(space.salib_problem(), 64, seed=0)
    Y = full[4](space.to_file_units(X))[:, 0]
    keep = np.repeat(~(space.to_file_units(X)[:, 1] > threshold["v"]).reshape(-1, 5).any(axis=1), 5)
    expected = ks.sobol_indices(space.salib_problem(), Y[keep], num_resamples=50)
    got = r.indices["pk.ketamine_plasma@1 h [ng/mL]"]
    for name in names:
        assert got[name]["ST"] == pytest.approx(expected[name]["ST"], rel=1e-12, abs=1e-15)
    assert any("base samples excluded" in n for n in r.notes)
    r.write(tmp_path / "out")
    data = json.loads((tmp_path / "out" / "sensitivity.json").read_text())
    assert len(data["failures"]["samples"]) == f["count"]
    assert "Runs without a value" in (tmp_path / "out" / "report.html").read_text()


def test_every_run_failing_gives_no_indices_but_a_result(params, monkeypatch):
    from ketasim.sensitivity import analysis

    real = analysis._evaluator

    def wrapped(*args, **kwargs):
        kind, spec, specs, space, evaluator = real(*args, **kwargs)
        return kind, spec, specs, space, _FailingAbove(evaluator, 0, -np.inf)

    monkeypatch.setattr(analysis, "_evaluator", wrapped)
    r = ks.morris(SCENARIO, ["pk.ketamine_plasma@1h"], samples=4, params=params,
                  parameters=["pk.cl_s_ketamine", "pk.v_central"], num_resamples=20)
    assert r.failures["count"] == r.failures["runs"] == 4 * 3
    assert all(v["mu_star"] is None for v in r.indices["pk.ketamine_plasma@1 h [ng/mL]"].values())
    assert any("no indices" in n for n in r.notes)
    json.dumps(r.to_dict())  # still a writable result


def test_an_interrupted_run_resumes_to_the_same_outputs(tmp_path):
    from SALib.test_functions import Ishigami

    from ketasim.sensitivity.failures import Checkpoint
    from ketasim.sensitivity.problem import evaluate

    problem = {"num_vars": 3, "names": ["x1", "x2", "x3"], "bounds": [[-np.pi, np.pi]] * 3}
    X = ks.sobol_sample(problem, 64, seed=2)
    calls = []

    def ishigami(rows):
        calls.append(len(rows))
        if len(calls) == 4 and interrupt:
            raise KeyboardInterrupt
        return Ishigami.evaluate(rows)[:, None]

    path, fingerprint = tmp_path / "run.checkpoint.npz", Checkpoint.fingerprint_of(X, "ishigami")
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        evaluate(ishigami, X, block_rows=50, checkpoint=Checkpoint(path, fingerprint, resume=False))
    assert path.is_file()  # the three finished blocks were kept
    interrupt, calls[:] = False, []
    resumed = evaluate(ishigami, X, block_rows=50, checkpoint=Checkpoint(path, fingerprint, resume=True))
    assert sum(calls) == len(X) - 3 * 50  # only what was not finished ran again
    np.testing.assert_array_equal(resumed[:, 0], Ishigami.evaluate(X))
    with pytest.raises(ks.SensitivityError, match="different analysis"):
        Checkpoint(path, Checkpoint.fingerprint_of(X, "another target"), resume=True)
    with pytest.raises(ks.SensitivityError, match="no checkpoint"):
        Checkpoint(tmp_path / "absent.npz", fingerprint, resume=True)
