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
from ketasim.calibrate import DataError, load_observations, shipped_targets, shipped_validation
from ketasim.calibrate.fit import bayes, build_problem, maximise_likelihood, profile_likelihood
from ketasim.calibrate.outputs import draws_table, fit_summary
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


#: rows of the shipped table the model misses, each with the reason (docs/model.md, "What the model
#: does not reproduce"); every other row must fall in its published interval
KNOWN_MISSES: dict[tuple[str, str, str], str] = {
    ("murrough2013b_repeated_infusions", "mean_change", "ketamine@2 h"):
        "open-label fall 2 h after the first infusion: the model has no open-label or perceptible-effect expectancy",
    ("murrough2013b_repeated_infusions", "response_rate", "ketamine@4 h"):
        "open-label response 4 h after the first infusion (0.75, derived from the reported sensitivity and "
        "specificity; model 0.37): the same, and the model's share responding more than doubles over the course "
        "(about a third of it the sessions' sustained expectancy) where the data's does not (docs/model.md)",
    ("murrough2013_madrs_24h", "sd_change", "midazolam@24 h"):
        "SD of the midazolam arm's change 7.39 points against the lower bound 7.42 (n = 25): the joint fit's "
        "compromise with Han 2016's remission at 24 h, which a wider spread raises",
    ("han2016_response_decay", "remission_rate", "ketamine@7 d"):
        "pooled remission rising from 24 h to day 7 while response falls: the pooled trials differ by time point",
}
TABLE = load_observations(shipped_targets())


def _key(row) -> tuple[str, str, str]:
    return (row["target"], row["metric"], f"{row['quantity']}@{row['time'] if isinstance(row['time'], str) else ''}")


ROW_IDS = [":".join(_key(r)) for _, r in TABLE.iterrows()]


def _run_command(command: str, folder, count_text: str, *args: str) -> tuple[int, int]:
    """Run `ketasim <command> --out <folder> [args]`; (K, N) from its last line, 'K/N <count_text>'."""
    proc = subprocess.run([sys.executable, "-m", "ketasim", command, "--out", str(folder), *args], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    return tuple(map(int, re.fullmatch(rf"(\d+)/(\d+) {count_text}", last).groups()))


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """`ketasim calibrate --out` run once: its count, its folder and its calibration.csv (row per target)."""
    folder = tmp_path_factory.mktemp("calibrate") / "cal"
    k, n = _run_command("calibrate", folder, "targets within tolerance")
    return {"k": k, "n": n, "folder": folder, "table": pd.read_csv(folder / "calibration.csv")}


@pytest.mark.parametrize("index", range(len(TABLE)), ids=ROW_IDS)
def test_each_target_within_its_published_interval(calibration, index):
    """Each row against the interval its source's own uncertainty gives (the basis column says how)."""
    row = calibration["table"].iloc[index]
    key = _key(TABLE.iloc[index])
    if key in KNOWN_MISSES:
        assert not row["within"], f"{key} is now within its interval: remove it from KNOWN_MISSES"
        pytest.xfail(KNOWN_MISSES[key])
    assert row["within"], (f"{row['target']} {row['metric']}: model {row['model']:.4g} outside "
                           f"{row['low']:.4g}..{row['high']:.4g} ({row['tolerance_basis']})")


def test_calibrate_command_prints_the_table_the_count_and_the_report(calibration):
    k, n, table = calibration["k"], calibration["n"], calibration["table"]
    assert n == len(table) == len(TABLE)
    assert k == n - len(KNOWN_MISSES)
    assert table["tolerance_basis"].str.len().min() > 10  # every interval says where it comes from
    page = (calibration["folder"] / "report.html").read_text()
    assert "research and teaching" in page and "<img" in page and "Posternak" in page


def test_validate_command_predicts_the_cases_named_with_only(tmp_path):
    """`ketasim validate --only`: the default tier's representative subset of the validation results,
    each case's rows and their count pinned so a regression fails (the slow tier adds the rest)."""
    k, n = _run_command("validate", tmp_path / "val", "validation results within range", "--only", ",".join(QUICK_CASES))
    table = pd.read_csv(tmp_path / "val" / "validation.csv")
    shipped = load_observations(shipped_validation())
    assert list(table["case"]) == [c for c in shipped["case"] if c in QUICK_CASES]
    assert (k, n) == QUICK_PINNED and n == len(table)
    assert json.loads((tmp_path / "val" / "manifest.json").read_text())["only"] == list(QUICK_CASES)


def test_calibrate_command_checks_the_targets_named_with_only(tmp_path, calibration):
    """`ketasim calibrate --only`: those targets' rows, the same as in the whole check, and their report."""
    some = ["kamp2020_racemic_cl_v", "hasan2021_iv_hnk"]
    k, n = _run_command("calibrate", tmp_path / "cal", "targets within tolerance", "--only", ",".join(some))
    table = pd.read_csv(tmp_path / "cal" / "calibration.csv")
    whole = calibration["table"][calibration["table"]["target"].isin(some)]
    assert (k, n) == (int(whole["within"].sum()), len(whole)) == (3, 3)
    np.testing.assert_allclose(table["model"], whole["model"], rtol=1e-9)
    assert (tmp_path / "cal" / "report.html").exists()
    assert json.loads((tmp_path / "cal" / "manifest.json").read_text())["only"] == some  # a partial check says so


@pytest.mark.parametrize("command", [["calibrate"], ["validate"],
                                     ["calibrate", "--mechanisms", "glun2b_eef2", "--fit-gains"]])
def test_only_an_unknown_id_exits_2_naming_the_ids_and_writes_nothing(tmp_path, command):
    """Refused by name before anything runs (with --fit-gains, before the variant's fit)."""
    proc = subprocess.run([sys.executable, "-m", "ketasim", *command, "--only", "kamp2020_racemic_cl_v,nope", "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--only: unknown" in proc.stderr and "nope" in proc.stderr, proc.stderr
    assert "allowed: " in proc.stderr and not (tmp_path / "o").exists()


@pytest.mark.slow  # Singh 2016 and Wade 2002 simulate weeks of daily pills: about 85 of the command's 105 s
def test_validate_command_prints_every_case_and_the_count(tmp_path):
    """`ketasim validate`: the published results never fitted; the count is pinned so a regression fails."""
    k, n = _run_command("validate", tmp_path / "val", "validation results within range")
    table = pd.read_csv(tmp_path / "val" / "validation.csv")
    assert n == len(table) == len(load_observations(shipped_validation()))
    assert (k, n) == VALIDATION_PINNED  # README shows the same count
    assert set(table["case"]) >= {"lapidus2014_intranasal_racemic", "zarate2006_single_infusion_vs_saline"}
    readme = (ROOT / "README.md").read_text()
    assert f"{k}/{n} validation results within range" in readme


#: `ketasim validate` today: a regression (or an improvement) must be seen and the README updated
VALIDATION_PINNED = (12, 16)
#: the default tier's validation cases: every one but the two trials of weeks of daily pills (Singh
#: 2016 with its six-week antidepressant lead-in, Wade 2002), three of the four misses among them
QUICK_CASES = ("lapidus2014_intranasal_racemic", "zarate2006_single_infusion_vs_saline",
               "abdallah2020_rapamycin_pretreatment", "zheng2018_six_infusions", "phillips2019_repeated_infusions")
QUICK_PINNED = (8, 11)


def test_a_check_of_some_targets_equals_those_rows_of_the_whole_table(calibration):
    """``check(only=...)`` runs the named targets alone and gives their rows of the whole check; an
    unknown id is refused by name with the allowed ones."""
    from ketasim.calibrate import check

    some = ["kamp2020_racemic_cl_v", "hasan2021_oral_ketamine"]
    table = check(only=some)
    whole = calibration["table"]
    expected = whole[whole["target"].isin(some)]
    assert list(table["target"]) == list(expected["target"]) and len(table) == 3
    np.testing.assert_allclose(table["model"], expected["model"], rtol=1e-9)
    for bad in (["kamp2020_racemic_cl_v", "no_such_target"], []):
        with pytest.raises(DataError, match="only.*allowed: .*kamp2020_racemic_cl_v"):
            check(only=bad)


def test_validation_cases_are_never_calibration_targets():
    validation = {t["id"] for t in tomllib.loads((ROOT / "src/ketasim/data/validation.toml").read_text())["case"]}
    targets = {t["id"] for t in tomllib.loads((ROOT / "src/ketasim/data/calibration.toml").read_text())["target"]}
    assert not validation & targets
    params = ketasim.load_parameters()
    for name, p in params.items():
        assert not any(case in p.source for case in validation), name


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


def test_fit_command_writes_results_and_a_usable_parameter_file(synthetic, tmp_path, ml_fit):
    """In this process (after ml_fit, whose compiled model it reuses); the entry point itself is run
    by test_install."""
    from typer.testing import CliRunner

    from ketasim.cli import app

    out = tmp_path / "fit"
    proc = CliRunner().invoke(app, ["fit", str(synthetic / "data.csv"), "--params", ",".join(NAMES), "--out", str(out),
                                    "--starts", "1"])
    assert proc.exit_code == 0, proc.output
    summary = json.loads((out / "fit.json").read_text())
    assert set(summary["estimates"]) == set(NAMES) and summary["converged"]
    report = (out / "report.html").read_text()
    assert "research and teaching" in report and "not an event data set" in report
    assert not (out / "vpc.csv").exists()
    fitted = ketasim.load_parameters(out / "params.toml")
    value = fitted["pk.cl_r_ketamine"].value
    assert value == pytest.approx(summary["estimates"]["pk.cl_r_ketamine"]["value"])
    assert fitted["pk.cl_r_ketamine"].source.startswith("calibrated:")
    assert ketasim.simulate(synthetic / "bolus.toml", params=fitted).status == "ok"


@pytest.mark.parametrize("args, words", [
    (["--params", "pk.nonsense"], "pk.nonsense"),
    (["--params", ""], "--params"),
    (["--params", "pk.cl_r_ketamine", "--starts", "0"], "--starts"),
    (["--params", "pk.cl_r_ketamine", "--vpc-replicates", "20"], "--vpc-replicates: only with --dataset"),
])
def test_fit_bad_input_exits_2(synthetic, tmp_path, args, words):
    from typer.testing import CliRunner

    from ketasim.cli import app

    proc = CliRunner().invoke(app, ["fit", str(synthetic / "data.csv"), "--out", str(tmp_path / "o"), *args])
    assert proc.exit_code == 2 and words in proc.output, proc.output
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
    # every draw as a table in the parameters' file units (draws.parquet of `ketasim fit --bayes`)
    params = ketasim.load_parameters()
    draws = draws_table(posterior, problem, params)
    assert list(draws.columns[:2]) == ["chain", "draw"] and len(draws) == 2 * 150
    column = f"pk.v_central [{params['pk.v_central'].unit}]"
    shifts = np.log(draws[column] / params.value("pk.v_central"))
    assert shifts.mean() == pytest.approx(posterior["parameters"]["pk.v_central"]["mean_x"], abs=1e-12)
    # the draws carry into a trial end to end: one draw per block of patients
    from ketasim.params.draws import ParameterDraws

    trial = {"trial": {"name": "posterior", "seed": 2, "assessments": ["1 h", "24 h"]},
             "population": {"n": 40, "preset": "treatment-resistant"},
             "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "35 mg"}]}]}
    run = ketasim.run_trial(trial, params_draws=ParameterDraws.from_table(draws, params, "draws.parquet"), draw_block=10)
    assert run.summary["parameter_uncertainty"]["blocks"] == 4 and run.summary["patients"]["failed"] == 0


def test_the_fit_reports_its_covariance(ml_fit):
    """fit.json's covariance of the log-shifts: symmetric, its diagonal the squared standard errors,
    and null for the parameter the profile finds not identifiable (never a near-zero variance)."""
    problem, result = ml_fit
    cov = result.covariance
    seen = [NAMES.index(n) for n in NAMES[:2]]
    block = cov[np.ix_(seen, seen)]
    np.testing.assert_allclose(block, block.T, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(block)), result.standard_error[seen], rtol=1e-12)
    summary = fit_summary(problem, result, ketasim.load_parameters(), ["data.csv"])
    matrix = summary["covariance_log_shift"]["matrix"]
    assert summary["covariance_log_shift"]["parameters"] == list(result.names)
    assert matrix[NAMES.index("pk.keo_hnk")][0] is None and json.dumps(summary)


def test_trials_sample_the_fit_covariance(ml_fit):
    """`--params-draws fit.json`: log-shifts drawn around the estimate with the fit's covariance (mean
    and SD within their Monte Carlo errors for 2,000 draws); the parameter the profile cannot see is
    held at its estimate."""
    from ketasim.params.draws import ParameterDraws

    problem, result = ml_fit
    params = ketasim.load_parameters()
    summary = json.loads(json.dumps(fit_summary(problem, result, params, ["data.csv"])))  # as fit.json holds it
    draws = ParameterDraws.from_fit(summary, params, source="fit.json")
    assert draws.fixed == ("pk.keo_hnk",)
    sets = draws.parameter_sets(params, count=2000, seed=4)
    for k, name in enumerate(NAMES[:2]):
        shifts = np.log(np.array([s[name].value for s in sets]) / params[name].value)
        se = result.standard_error[k]
        assert shifts.mean() == pytest.approx(result.x[k], abs=4 * se / np.sqrt(2000))
        assert shifts.std(ddof=1) == pytest.approx(se, rel=4 / np.sqrt(2 * 2000))
    assert len({s["pk.keo_hnk"].value for s in sets}) == 1
    assert sets[0]["pk.keo_hnk"].value == pytest.approx(summary["estimates"]["pk.keo_hnk"]["value"], rel=1e-12)


# ---------------------------------------------------------------------- bioavailability and between-study variance
AVAILABILITY_ROW = "scenario,quantity,metric,value,unit,sd,n,group\n"


def _availability_problem(tmp_path, rows: list[str]):
    (tmp_path / "oral.toml").write_text('[[dose]]\ndrug = "esketamine"\nroute = "oral"\namount = "17.5 mg"\n'
                                        '[simulation]\nduration = "3 d"\noutput_every = "5 min"\n')
    (tmp_path / "a.csv").write_text(AVAILABILITY_ROW + "".join(rows))
    return build_problem(load_observations(tmp_path / "a.csv"), ["pk.q_hepatic"], ketasim.load_parameters())


def test_bioavailability_is_fitted_with_its_exact_gradient(tmp_path):
    problem = _availability_problem(tmp_path, ["oral.toml,pk.s_ketamine_plasma,bioavailability,0.12,fraction,0.01,1,\n"])
    group = problem.groups[0]
    x = np.array([0.02])
    value, d = group.predict(x, with_jacobian=True)
    fd = (group.predict(x + 1e-5)[0] - group.predict(x - 1e-5)[0]) / 2e-5
    np.testing.assert_allclose(d[:, 0], fd, rtol=1e-4)
    # the AUC ratio equals the model's own F_gut x F_hepatic (a linear model), to the grid's accuracy
    from ketasim.calibrate import check

    reference = check(tmp_path / "a.csv")["model"].iloc[0]  # AUCs of the simulated 5-min grid
    assert group.predict(np.zeros(1))[0][0] == pytest.approx(reference, rel=0.01)
    assert value[0] > 0
    result = maximise_likelihood(problem, starts=1)
    assert group.predict(result.x)[0][0] == pytest.approx(0.12, abs=1e-4)


def test_between_study_variance_reconciles_disagreeing_studies(tmp_path):
    """Two studies that disagree far beyond their errors: without a between-study variance the more
    precise one dictates the estimate; with it (Paule-Mandel) both weigh about equally and the
    scatter is explained (sum e^2 / (s^2 + tau^2) = k - 1)."""
    from ketasim.calibrate.fit import between_study_variances

    rows = ["oral.toml,pk.s_ketamine_plasma,bioavailability,0.08,fraction,0.002,1,oral\n",
            "oral.toml,pk.s_ketamine_plasma,bioavailability,0.18,fraction,0.01,1,oral\n"]
    problem = _availability_problem(tmp_path, rows)
    fixed = maximise_likelihood(problem, starts=1)
    assert problem.tau2 == {}
    pooled = maximise_likelihood(problem, starts=1, between_study=True)
    tau2 = problem.tau2["oral"]
    g = problem.groups[0]
    pred = g.predict(pooled.x)[0]
    assert 0.11 < pred[0] < 0.14
    assert np.sum((g.observed - pred) ** 2 / (g.sigma ** 2 + tau2)) == pytest.approx(1.0, rel=1e-3)
    assert between_study_variances(problem, pooled.x)["oral"] == pytest.approx(tau2, rel=1e-6)
    assert g.predict(fixed.x)[0][0] < 0.09  # without it the precise study wins
    agree = _availability_problem(tmp_path, ["oral.toml,pk.s_ketamine_plasma,bioavailability,0.12,fraction,0.01,1,oral\n",
                                             "oral.toml,pk.s_ketamine_plasma,bioavailability,0.121,fraction,0.01,1,oral\n"])
    maximise_likelihood(agree, starts=1, between_study=True)
    assert agree.tau2["oral"] == 0.0  # studies that agree within their errors add no variance


def test_the_spread_of_an_arms_change_is_a_target_like_its_mean(tmp_path):
    """``sd_change`` reads the between-patient SD of the rated MADRS change (n - 1 denominator) where
    ``mean_change`` reads its mean, and converts to HAM-D points like the mean."""
    (tmp_path / "trial.toml").write_text(
        '[trial]\nname = "spread"\nseed = 5\nassessments = ["24 h"]\ncontrol = "saline"\n'
        '[population]\nn = 60\npreset = "treatment-resistant"\n'
        '[[arm]]\nname = "ketamine"\n[[arm.dose]]\ndrug = "racemic-ketamine"\nroute = "iv"\namount = "0.5 mg/kg"\n'
        'duration = "40 min"\n[[arm]]\nname = "saline"\n[[arm.dose]]\ndrug = "saline"\nroute = "iv"\n'
        'duration = "40 min"\n')
    (tmp_path / "t.csv").write_text(
        "target,scenario,quantity,metric,time,value,unit,low,high\n"
        "s,trial.toml,ketamine,sd_change,24 h,11,MADRS points,9,14\n"
        "s,trial.toml,saline,sd_change,24 h,8,HAM-D points,6,11\n"
        "s,trial.toml,saline,mean_change,24 h,-5,MADRS points,-9,-1\n")
    table = ketasim.calibrate.check(tmp_path / "t.csv")
    patients = ketasim.run_trial(tmp_path / "trial.toml").patients
    change = patients.groupby("arm")["madrs_change [points]"]
    assert table["model"].tolist() == pytest.approx(
        [change.std(ddof=1)["ketamine"], change.std(ddof=1)["saline"] / 1.3, change.mean()["saline"]], rel=1e-9)


@pytest.mark.parametrize("row, field", [
    ("oral.toml,pk.s_ketamine_plasma,fraction_of_change,0.6,fraction,2 w,,,,\n", "reference_time"),
    ("oral.toml,pk.s_ketamine_plasma,difference_in_change,-2,MADRS points,8 w,,,,\n", "control"),
    ("oral.toml,pk.s_ketamine_plasma,at,0.6,ng/mL,2 h,,,0.7,\n", "low"),
    ("oral.toml,pk.s_ketamine_plasma,at,0.6,ng/mL,2 h,,,0.7,0.9\n", "low"),
    ("oral.toml,pk.s_hnk_plasma,auc_ratio,1.7,fraction,,,,,\n", "quantity"),
    ("oral.toml,clinical.hamd,at,20,HAM-D-24 points,2 h,,,,\n", "unit"),
])
def test_comparisons_and_intervals_are_checked(tmp_path, row, field):
    (tmp_path / "oral.toml").write_text(BOLUS)
    (tmp_path / "t.csv").write_text("scenario,quantity,metric,value,unit,time,reference_time,control,low,high\n" + row)
    with pytest.raises(DataError, match=field):
        load_observations(tmp_path / "t.csv")


@pytest.mark.slow  # a fit with profiles in a fresh process (minutes); the conversion is tested in the default tier
def test_fit_on_an_event_data_set_recovers_the_truth(tmp_path):
    """`ketasim fit --dataset`: six IDs of a study written as events (a 35 mg bolus, plasma ketamine at
    the synthetic fixture's nine times, 5 % noise) from known parameters at six weights; the pooled
    fit recovers them within its profile intervals, each ID simulated as its rows dose it (the same
    design as the fixture's, so the compiled model is shared)."""
    params = ketasim.load_parameters()
    truth = params.replace(**{n.replace(".", "__"): params[n].value * s for n, s in TRUE_SHIFT.items()})
    rng = np.random.default_rng(11)
    lines = ["ID,TIME,EVID,AMT,CMT,DV,DVID,WT"]
    for i, weight in enumerate((55, 62, 70, 78, 85, 95)):
        scenario = {"patient": {"weight": f"{weight} kg"}, "simulation": {"duration": "8 h", "output_every": "5 min"},
                    "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "35 mg"}]}
        res = ketasim.simulate(scenario, params=truth)
        lines.append(f"{i + 1},0,1,35,2,.,.,{weight}")
        for t in (0.1, 0.25, 0.5, 1, 2, 3, 4, 6, 8):
            dv = res.at("pk.ketamine_plasma", t) * (1 + 0.05 * rng.standard_normal())
            lines.append(f"{i + 1},{t},0,.,.,{dv!r},1,{weight}")
    (tmp_path / "study.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "fit"
    proc = subprocess.run([sys.executable, "-m", "ketasim", "fit", "--dataset", str(tmp_path / "study.csv"),
                           "--params", ",".join(NAMES), "--out", str(out), "--starts", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "fit.json").read_text())
    for name in NAMES[:2]:
        e = summary["estimates"][name]
        truth_value = params[name].value * TRUE_SHIFT[name]
        low, high = e["profile_ci95"]
        assert e["identifiable"] and low < truth_value < high, (name, e, truth_value)
    bad = subprocess.run([sys.executable, "-m", "ketasim", "fit", "--params", NAMES[0], "--out", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--dataset" in bad.stderr and not (tmp_path / "x").exists()


def test_an_event_data_set_becomes_an_observation_table(tmp_path):
    """What `fit --dataset` fits: each DV row an `at` row of its ID's own scenario, with the mapping's
    residual error at the observed value as its SD; rows without a DV are left out."""
    import io

    from ketasim.calibrate.data import observations_from_dataset
    from ketasim.dataset import read_dataset

    text = ("ID,TIME,EVID,AMT,CMT,DV,DVID,WT\n1,0,1,35,2,.,.,60\n1,1,0,.,.,40,1,60\n1,2,0,.,.,.,1,60\n"
            "2,0,1,50,1,.,.,90\n2,1,0,.,.,12,2,90\n")
    data = read_dataset(io.StringIO(text))
    table = load_observations(observations_from_dataset(data, tmp_path))
    assert list(table["quantity"]) == ["pk.ketamine_plasma", "pk.norketamine_plasma"]
    assert list(table["time [h]"]) == [1.0, 1.0] and list(table["patient"]) == [1, 2]
    assert table["sd"].tolist() == pytest.approx([np.hypot(0.15 * 40, 0.5), np.hypot(0.15 * 12, 0.5)])
    for path, patient in zip(table["scenario_path"], data.patients):
        assert ketasim.Scenario.from_toml(path) == ketasim.Scenario.from_dict(patient.scenario)
