"""Power over replicate virtual trials: the success rule, its null behaviour, agreement with the normal
approximation, the single trial's primary analysis, the CLI and bad input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

import ketasim
from ketasim.cli import app
from ketasim.errors import ScenarioError
from ketasim.trial import TrialSpec
from ketasim.trial import statistics as st

INFUSION = {"route": "iv", "duration": "40 min"}


def _trial(arms, success, n=10, design="parallel", assessments=("24 h",), **extra):
    trial = {"trial": {"name": "power test", "seed": 11, "design": design, "assessments": list(assessments),
                       "success": success, **extra},
             "population": {"n": n, "preset": "treatment-resistant"},
             "arm": [{"name": name, "dose": [dict(INFUSION, **dose)]} for name, dose in arms]}
    return trial


KETAMINE = {"drug": "racemic-ketamine", "amount": "0.5 mg/kg"}
MIDAZOLAM = {"drug": "midazolam", "amount": "0.045 mg/kg"}
SALINE = {"drug": "saline"}
CHANGE_24H = {"endpoint": "madrs_change", "at": "24 h", "alpha": 0.05}


# ---------------------------------------------------------------------- the success rule
@pytest.mark.parametrize("success, field", [
    ({"endpoint": "auc"}, "trial.success.endpoint"),
    ({"endpoint": "madrs_change"}, "trial.success.at"),
    ({"endpoint": "madrs_change", "at": "2 d"}, "trial.success.at"),
    ({"endpoint": "madrs_change", "at": "24 h", "arm": "saline"}, "trial.success.arm"),
    ({"endpoint": "madrs_change", "at": "24 h", "alpha": 0.7}, "trial.success.alpha"),
    ({"endpoint": "madrs_change", "at": "24 h", "sided": "left"}, "trial.success.sided"),
    ({"endpoint": "relapse", "margin": 0.1}, "trial.success.margin"),
    ({"endpoint": "relapse", "at": "24 h"}, "trial.success.at"),
    ({"endpoint": "response", "at": "24 h", "margin": 1.5}, "trial.success.margin"),
    ({"endpoint": "madrs_change", "at": "24 h", "power": 0.8}, "trial.success"),
])
def test_bad_success_rules_are_refused_naming_the_field(success, field):
    with pytest.raises(ScenarioError) as info:
        TrialSpec.from_dict(_trial([("ketamine", KETAMINE), ("saline", SALINE)], success))
    assert info.value.field == field


def test_a_crossover_is_analysed_within_patients_only():
    trial = _trial([("ketamine", KETAMINE), ("saline", SALINE)], {"endpoint": "response", "at": "24 h"},
                   design="crossover", washout="7 d")
    with pytest.raises(ScenarioError, match="within patients"):
        TrialSpec.from_dict(trial)


def test_the_success_rule_on_known_numbers():
    """Welch's t and the pooled two-proportion z test against scipy on fixed samples."""
    from ketasim.trial.success import SuccessRule, analyse_continuous, analyse_proportions

    rng = np.random.default_rng(3)
    a, c = rng.normal(-12, 8, 30), rng.normal(-6, 9, 25)
    rule = SuccessRule("madrs_change", 24.0, "k", alpha=0.05, sided="two")
    out = analyse_continuous(rule, a, c)
    ref = stats.ttest_ind(a, c, equal_var=False)
    assert out["p_value"][0] == pytest.approx(ref.pvalue, rel=1e-10)
    assert out["estimate"][0] == pytest.approx(a.mean() - c.mean(), rel=1e-12)
    one = analyse_continuous(SuccessRule("madrs_change", 24.0, "k", alpha=0.05, sided="one"), a, c)
    assert one["p_value"][0] == pytest.approx(stats.ttest_ind(a, c, equal_var=False, alternative="less").pvalue, rel=1e-10)
    x1, x0 = np.r_[np.ones(18), np.zeros(22)], np.r_[np.ones(9), np.zeros(31)]
    prop = analyse_proportions(SuccessRule("response", 24.0, "k", alpha=0.05, sided="two"), x1, x0)
    pooled = 27 / 80
    z = (18 / 40 - 9 / 40) / np.sqrt(pooled * (1 - pooled) * (2 / 40))
    assert prop["p_value"][0] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-10)
    assert bool(prop["success"][0]) is True
    # non-inferiority: the arm is no worse than the control by 3 points: upper one-sided bound < 3
    ni = analyse_continuous(SuccessRule("madrs_change", 24.0, "k", alpha=0.025, sided="one", margin=3.0), c, a)
    assert ni["upper"][0] > 3.0 and not ni["success"][0]  # the control is 6 points worse: not non-inferior


# ---------------------------------------------------------------------- power on the model
def test_placebo_against_placebo_succeeds_with_probability_alpha():
    """Two saline arms: the null hypothesis is true, so a one-sided test at alpha succeeds in a fraction
    alpha of replicates and a two-sided one (significant and favourable) in alpha / 2, within the
    Monte Carlo interval."""
    for sided, expected in (("one", 0.05), ("two", 0.025)):
        trial = _trial([("saline A", SALINE), ("saline B", SALINE)], dict(CHANGE_24H, sided=sided))
        result = ketasim.power(trial, n=[20], replicates=400)
        row = result.summary["sample_sizes"][0]
        assert row["power"]["lower"] <= expected <= row["power"]["upper"], (sided, row["power"])
        # the p-values of a true null are uniform: Kolmogorov-Smirnov at the 1 % level
        p = result.replicates["p_value"].to_numpy()
        assert stats.kstest(p, "uniform").pvalue > 0.01


@pytest.fixture(scope="module")
def ketamine_power():
    trial = _trial([("ketamine", KETAMINE), ("midazolam", MIDAZOLAM)], dict(CHANGE_24H, sided="two"))
    return ketasim.power(trial, n=[6, 12, 24, 48], replicates=200)


def test_power_rises_with_n_and_agrees_with_the_normal_approximation(ketamine_power):
    summary = ketamine_power.summary
    rows = summary["sample_sizes"]
    est = [r["power"]["estimate"] for r in rows]
    assert all(b >= a for a, b in zip(est, est[1:])) and est[-1] > est[0]
    approx = summary["normal_approximation"]
    assert approx["available"]
    for r in rows:
        if r["n"] < 12:
            continue  # Welch's t with few degrees of freedom is not the z test of the approximation
        lo, hi = st.proportion_ci(r["successes"], r["replicates"], level=0.99)[1:]
        assert lo <= approx["power"][str(r["n"])] <= hi, (r["n"], r["power"], approx["power"])
    # the reported smallest n is the first size whose simulated power reaches 0.8; the normal
    # approximation's sample size lies between it and the size before, unless the size before missed
    # 0.8 by no more than its Monte Carlo error (then either side of it is the same answer)
    smallest = summary["smallest_n_reaching_target"]
    sizes = [r["n"] for r in rows]
    at = sizes.index(smallest)
    assert at > 0 and rows[at]["power"]["estimate"] >= 0.8
    before = sizes[at - 1]
    assert approx["n_for_target"] <= smallest, (approx["n_for_target"], smallest)
    if approx["n_for_target"] <= before:
        assert at < 2 or approx["n_for_target"] > sizes[at - 2], (approx["n_for_target"], sizes)
        row = rows[at - 1]
        lo, hi = st.proportion_ci(row["successes"], row["replicates"], level=0.99)[1:]
        assert lo <= 0.8 <= hi, (approx["n_for_target"], before, row["power"])


def test_replicates_are_blocks_of_patients_and_sizes_nest(ketamine_power):
    """Replicate r of size n is the first n patients of block r of the largest size: the estimate of
    replicate 0 at n = 6 equals Welch's difference on those patients of the trial run directly."""
    table = ketamine_power.replicates
    assert len(table) == 4 * 200 and set(table["n"]) == {6, 12, 24, 48}
    assert table.groupby("n")["replicate"].nunique().eq(200).all()
    spec = ketamine_power.spec
    raw = copy.deepcopy(dict(spec.raw))
    raw["population"]["n"] = 48  # block 0 of the whole run holds patients 0..47 of each arm
    trial = ketasim.run_trial(raw)
    rows = trial.patients[(trial.patients["assessment [h]"] == 24.0) & (trial.patients["status"] == "ok")]
    first6 = rows[rows["patient"].str.split("-").str[1].astype(int) < 6]
    diff = (first6.loc[first6["arm"] == "ketamine", "madrs_change [points]"].mean()
            - first6.loc[first6["arm"] == "midazolam", "madrs_change [points]"].mean())
    got = table[(table["n"] == 6) & (table["replicate"] == 0)]["estimate"].iloc[0]
    assert got == pytest.approx(diff, rel=1e-12)


def test_a_trial_reports_its_primary_analysis():
    """The single trial's summary holds the declared primary analysis; its estimate is the same Welch
    difference as the between-arm comparison."""
    trial = _trial([("ketamine", KETAMINE), ("midazolam", MIDAZOLAM)], dict(CHANGE_24H, sided="two"), n=30)
    result = ketasim.run_trial(trial)
    primary = result.summary["primary"]
    comparison = result.summary["comparisons"][0]["assessments"][0]["difference_in_madrs_change [points]"]
    assert primary["estimate"] == pytest.approx(comparison["estimate"], rel=1e-12)
    assert primary["p_value"] == pytest.approx(comparison["p_value"], rel=1e-9)
    assert primary["success"] == (primary["p_value"] < 0.05 and primary["estimate"] < 0)
    assert ketasim.run_trial({k: v for k, v in trial.items()} | {"trial": {
        k: v for k, v in trial["trial"].items() if k != "success"}}).summary["primary"] is None


def test_crossover_and_relapse_designs_run():
    cross = _trial([("ketamine", KETAMINE), ("saline", SALINE)], dict(CHANGE_24H, sided="one"),
                   design="crossover", washout="7 d")
    result = ketasim.power(cross, n=[8], replicates=5)
    assert result.summary["sample_sizes"][0]["analysed_per_replicate"]["arm"] == 8  # every patient, paired
    with pytest.raises(ScenarioError) as info:
        ketasim.power(cross, n=[7], replicates=5)
    assert info.value.field == "n"
    relapse = _trial([("ketamine", KETAMINE), ("saline", SALINE)], {"endpoint": "relapse", "sided": "one"},
                     assessments=("1 d", "3 d", "7 d", "14 d"))
    result = ketasim.power(relapse, n=[20], replicates=3)
    assert len(result.replicates) == 3 and result.summary["normal_approximation"]["available"] is False


# ---------------------------------------------------------------------- the command line
TRIAL_TOML = """
[trial]
name = "power test"
seed = 11
assessments = ["24 h"]
{success}
[population]
n = 10
preset = "treatment-resistant"

[[arm]]
name = "ketamine"
[[arm.dose]]
drug = "racemic-ketamine"
route = "iv"
amount = "0.5 mg/kg"
duration = "40 min"

[[arm]]
name = "midazolam"
[[arm.dose]]
drug = "midazolam"
route = "iv"
amount = "0.045 mg/kg"
duration = "40 min"
"""
SUCCESS_TOML = """[trial.success]
endpoint = "madrs_change"
at = "24 h"
sided = "two"
"""


def _write(tmp_path, success: str = SUCCESS_TOML) -> str:
    path = tmp_path / "trial.toml"
    path.write_text(TRIAL_TOML.format(success=success))
    return str(path)


def test_cli_power_writes_every_file(tmp_path):
    path = _write(tmp_path)
    out = tmp_path / "power"
    result = CliRunner().invoke(app, ["power", path, "--n", "4,8", "--replicates", "5", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "power.json").read_text())
    assert [r["n"] for r in summary["sample_sizes"]] == [4, 8]
    table = pd.read_parquet(out / "power.parquet")
    assert len(table) == 10 and {"n", "replicate", "estimate", "p_value", "success"} <= set(table.columns)
    assert "research and teaching" in (out / "report.html").read_text()


@pytest.mark.parametrize("args, words", [
    (["--n", "4,x", "--replicates", "5"], "--n"),
    (["--n", "1", "--replicates", "5"], "n:"),
    (["--n", "4", "--replicates", "0"], "replicates"),
    (["--n", "4", "--replicates", "5", "--target", "1.5"], "target"),
])
def test_cli_power_bad_input_exits_2_and_writes_nothing(tmp_path, args, words):
    path = _write(tmp_path)
    out = tmp_path / "power"
    result = CliRunner().invoke(app, ["power", path, *args, "--out", str(out)])
    assert result.exit_code == 2 and words in result.output, result.output
    assert not out.exists()


def test_cli_power_needs_a_success_rule(tmp_path):
    out = tmp_path / "power"
    result = CliRunner().invoke(app, ["power", _write(tmp_path, success=""), "--n", "4", "--replicates", "2",
                                      "--out", str(out)])
    assert result.exit_code == 2 and "trial.success" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_power_on_dask_equals_one_process():
    trial = _trial([("ketamine", KETAMINE), ("midazolam", MIDAZOLAM)], dict(CHANGE_24H, sided="two"))
    one = ketasim.power(trial, n=[4, 8], replicates=6, chunk_size=16)
    two = ketasim.power(trial, n=[4, 8], replicates=6, chunk_size=16, workers=2)
    pd.testing.assert_frame_equal(one.replicates, two.replicates)


# ---------------------------------------------------------------------- parameter uncertainty
def _gain_draws(params, spread=0.3, n=300):
    from ketasim.params.draws import ParameterDraws

    gain = params["clinical.strength_symptom_gain"]
    values = gain.value * np.exp(spread * np.random.default_rng(0).standard_normal(n))
    table = pd.DataFrame({"chain": 0, "draw": np.arange(n), f"clinical.strength_symptom_gain [{gain.unit}]": values})
    return ParameterDraws.from_table(table, params, source="synthetic posterior")


def test_parameter_draws_widen_the_trial_intervals_and_are_attributed_to_parameters():
    """A trial run with draws of the symptom gain (log-SD 0.4, one per block of 20 patients, 20 blocks): the 95 % interval of
    the ketamine arm's mean change that carries parameter uncertainty is wider than the same trial's
    interval with the point estimate, and most of the mean's variance is attributed to parameters.
    The result does not depend on the chunk size."""
    params = ketasim.load_parameters()
    trial = _trial([("ketamine", KETAMINE), ("saline", SALINE)], dict(CHANGE_24H, sided="two"), n=400)
    plain = ketasim.run_trial(trial)
    drawn = ketasim.run_trial(trial, params_draws=_gain_draws(params, spread=0.4), draw_block=20)
    u = drawn.summary["parameter_uncertainty"]
    assert u["blocks"] == 20 and u["kind"] == "posterior draws"
    entry = u["arms"]["ketamine"][0]
    with_params = entry["interval95_with_parameter_uncertainty [points]"]
    point = plain.summary["arms"]["ketamine"]["assessments"][0]["madrs_change [points]"]
    assert with_params[1] - with_params[0] > point["upper"] - point["lower"]
    assert entry["share_of_mean_variance_from_parameters"] > 0.5
    assert entry["f_test_p_value_of_no_parameter_variance"] < 0.01  # distinguishable from patient noise
    again = ketasim.run_trial(trial, params_draws=_gain_draws(params, spread=0.4), draw_block=20, chunk_size=7)
    pd.testing.assert_frame_equal(drawn.patients, again.patients)


def test_power_with_parameter_draws_runs_one_draw_per_replicate():
    params = ketasim.load_parameters()
    trial = _trial([("ketamine", KETAMINE), ("midazolam", MIDAZOLAM)], dict(CHANGE_24H, sided="two"))
    result = ketasim.power(trial, n=[6], replicates=8, params_draws=_gain_draws(params))
    assert result.summary["parameter_uncertainty"]["kind"] == "posterior draws"
    plain = ketasim.power(trial, n=[6], replicates=8)
    # the same patients under other parameters: every replicate's estimate moves
    assert not np.allclose(result.replicates["estimate"], plain.replicates["estimate"])


@pytest.mark.parametrize("table, words", [
    ("pk.nonsense [L/h]\n1\n", "unknown parameter"),
    ("pk.cl_s_ketamine [mL/min]\n1\n", "file unit"),
    ("pk.cl_s_ketamine\n1\n", "layer.name [unit]"),
    ("pk.cl_s_ketamine [L/h]\nx\n", "non-numeric"),
])
def test_cli_bad_parameter_draws_exit_2_naming_the_option(tmp_path, table, words):
    (tmp_path / "draws.csv").write_text(table)
    out = tmp_path / "trial"
    result = CliRunner().invoke(app, ["trial", _write(tmp_path), "--params-draws", str(tmp_path / "draws.csv"),
                                      "--out", str(out)])
    assert result.exit_code == 2 and "--params-draws" in result.output and words in result.output, result.output
    assert not out.exists()


def test_cli_trial_with_parameter_draws_reports_them(tmp_path):
    gain = ketasim.load_parameters()["clinical.strength_symptom_gain"]
    (tmp_path / "draws.csv").write_text(f"chain,draw,clinical.strength_symptom_gain [{gain.unit}]\n"
                                        + "".join(f"0,{i},{gain.value * f}\n" for i, f in enumerate((0.7, 1.0, 1.4))))
    out = tmp_path / "trial"
    result = CliRunner().invoke(app, ["trial", _write(tmp_path), "--params-draws", str(tmp_path / "draws.csv"),
                                      "--draw-block", "5", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameter_uncertainty"]["blocks"] == 2
    assert json.loads((out / "manifest.json").read_text())["parameter_draws"]["draw_block"] == 5
    assert "Parameter uncertainty" in (out / "report.html").read_text()
