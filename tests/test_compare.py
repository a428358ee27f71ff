"""ketasim compare: the experiments table, the scoring, the fair calibration of each variant, the CLI."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from ketasim.calibrate.data import DataError
from ketasim.cli import app
from ketasim.compare import Variant, compare, fit_variant, load_experiments, parse_variants, shipped_experiments
from ketasim.compare.experiments import log_likelihood
from ketasim.compare.run import score
from ketasim.compare.variants import default_variants, route_gains
from ketasim.errors import ScenarioError
from ketasim.params import load_parameters
from ketasim.result import DISCLAIMER

runner = CliRunner()

SMALL_TRIAL = """
[trial]
name = "small naltrexone crossover"
seed = 7
design = "crossover"
washout = "28 d"
assessments = ["24.75 h"]
control = "placebo + ketamine"
[population]
n = 40
preset = "treatment-resistant"
[[arm]]
name = "naltrexone + ketamine"
[[arm.dose]]
drug = "naltrexone"
route = "oral"
amount = "50 mg"
[[arm.dose]]
drug = "racemic-ketamine"
route = "iv"
amount = "0.5 mg/kg"
duration = "40 min"
at = ["45 min"]
[[arm]]
name = "placebo + ketamine"
[[arm.dose]]
drug = "placebo"
route = "oral"
[[arm.dose]]
drug = "racemic-ketamine"
route = "iv"
amount = "0.5 mg/kg"
duration = "40 min"
at = ["45 min"]
"""

HEADER = "experiment,scenario,quantity,metric,time,control,value,unit,n,low,high,likelihood,grade,interval_basis,finding,source"
ROWS = [
    "small,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.5833,fraction,12,,,binomial,H,7 of 12,responds,Williams 2018",
    "small,trial.toml,naltrexone + ketamine,response_rate,24.75 h,,0.0,fraction,12,,,binomial,M,0 of 12,blocked,Williams 2018",
    "small,trial.toml,naltrexone + ketamine,difference_in_change,24.75 h,placebo + ketamine,5.0,MADRS points,,1.0,9.0,"
    "normal,Q,assumed,smaller,Williams 2018",
]


@pytest.fixture()
def small_table(tmp_path):
    (tmp_path / "trial.toml").write_text(SMALL_TRIAL)
    path = tmp_path / "experiments.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return path


def _table_with(tmp_path, row: str, trial: str = SMALL_TRIAL):
    (tmp_path / "trial.toml").write_text(trial)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, row]) + "\n")
    return path


def test_shipped_experiments_cover_the_issue_and_are_sourced():
    table = load_experiments(shipped_experiments())
    studies = set(table["experiment"])
    for study in ("williams2018_naltrexone", "yoon2019_naltrexone_aud", "abdallah2020_rapamycin", "zarate2006_memantine",
                  "sanacora2017_lanicemine", "nagele2015_nitrous_oxide", "preskorn2008_traxoprodil"):
        assert study in studies
    assert table["source"].str.len().min() > 10
    assert set(table["grade"]) <= {"H", "M", "Q"}
    assert (table["interval_basis"].str.len() > 0).all()
    normal = table[table["likelihood"] == "normal"]
    assert (normal["low"] <= normal["value"]).all() and (normal["value"] <= normal["high"]).all()
    binomial = table[table["likelihood"] == "binomial"]
    counts = binomial["value"] * binomial["n"]
    assert ((counts - counts.round()).abs() < 0.01).all()  # every rate is a whole count of its patients


def test_binomial_rows_get_the_published_wilson_interval(tmp_path):
    # reference: the shipped target murrough2013b_repeated_infusions, "Wilson 95 % interval of 17/24": 0.5083..0.8509
    row = "s,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.708333,fraction,24,,,binomial,H,b,f,src"
    table = load_experiments(_table_with(tmp_path, row))
    assert table["low"].iloc[0] == pytest.approx(0.5083, abs=5e-5) and table["high"].iloc[0] == pytest.approx(0.8509, abs=5e-5)


def test_log_likelihoods_are_the_textbook_ones():
    binomial = pd.Series({"likelihood": "binomial", "n": 12.0, "value": 7 / 12})
    assert log_likelihood(binomial, 0.4) == pytest.approx(stats.binom.logpmf(7, 12, 0.4))
    normal = pd.Series({"likelihood": "normal", "value": -5.5, "se": 1.53})
    assert log_likelihood(normal, -3.0) == pytest.approx(stats.norm.logpdf(-5.5, -3.0, 1.53))
    # an impossible outcome under the model costs a finite amount
    assert math.isfinite(log_likelihood(pd.Series({"likelihood": "binomial", "n": 12.0, "value": 0.0}), 1.0))


@pytest.mark.parametrize("row, field", [
    ("s,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.5,fraction,12,,,poisson,H,b,f,src", "likelihood"),
    ("s,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.5,fraction,,,,binomial,H,b,f,src", "n"),
    ("s,trial.toml,placebo + ketamine,difference_in_change,24.75 h,naltrexone + ketamine,1,MADRS points,,,,normal,"
     "H,b,f,src", "low"),
    ("s,trial.toml,ketamine,response_rate,24.75 h,,0.5,fraction,12,,,binomial,H,b,f,src", "quantity"),
    ("s,trial.toml,placebo + ketamine,response_rate,24 h,,0.5,fraction,12,,,binomial,H,b,f,src", "time"),
    ("s,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.5,fraction,12,,,binomial,X,b,f,src", "grade"),
    ("s,trial.toml,placebo + ketamine,peak,,,0.5,fraction,12,,,binomial,H,b,f,src", "metric"),
    ("s,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.41,fraction,20,,,binomial,H,b,f,src", "value"),
    ("s,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.5,fraction,2.5,,,binomial,H,b,f,src", "n"),
])
def test_bad_experiment_rows_name_their_field(tmp_path, row, field):
    with pytest.raises(DataError) as info:
        load_experiments(_table_with(tmp_path, row))
    assert f": {field}" in str(info.value)


def test_a_trial_that_fixes_its_mechanisms_is_refused(tmp_path):
    trial = SMALL_TRIAL + '\n[model]\nmechanisms = ["disinhibition"]\n'
    row = "s,trial.toml,placebo + ketamine,response_rate,24.75 h,,0.5,fraction,12,,,binomial,H,b,f,src"
    with pytest.raises(DataError, match="scenario.*variant chooses"):
        load_experiments(_table_with(tmp_path, row, trial))


def test_variants_parse_and_refuse_by_position():
    assert [v.mechanisms for v in parse_variants("glun2b_eef2+opioid")] == [("glun2b_eef2", "opioid")]
    with pytest.raises(ScenarioError, match=r"--variants\[1\].*unknown mechanism 'telepathy'"):
        parse_variants("calibrated,telepathy")
    with pytest.raises(ScenarioError, match="named twice"):
        parse_variants("calibrated,calibrated")
    with pytest.raises(ScenarioError, match="only modulate"):
        parse_variants("opioid")
    names = [v.name for v in default_variants()]
    assert names[0] == "calibrated" and "habenula_trapping" in names and "calibrated+opioid" in names
    # a default variant is chosen on the command line by the name it is printed with
    assert [v.mechanisms for v in parse_variants(",".join(names))] == [v.mechanisms for v in default_variants()]
    assert route_gains(("opioid",)) == ()


def test_compare_scores_and_writes(small_table, tmp_path):
    variants = parse_variants("calibrated,calibrated+opioid")
    result = compare(variants, small_table, fit=False)
    rows = result.rows
    assert len(rows) == 2 * 3
    # the discriminating prediction: only the opioid hypothesis lets naltrexone remove the response
    nal = rows[(rows["arm"] == "naltrexone + ketamine") & (rows["metric"] == "response_rate")].set_index("variant")["model"]
    assert nal["calibrated+opioid"] < 0.5 * nal["calibrated"]
    v = result.variants.set_index("variant")
    for name in v.index:
        assert v.loc[name, "log_likelihood"] == pytest.approx(rows[rows["variant"] == name]["log_likelihood"].sum())
        assert v.loc[name, "aic"] == pytest.approx(2 * v.loc[name, "k"] - 2 * v.loc[name, "log_likelihood"])
        assert v.loc[name, "bic"] == pytest.approx(v.loc[name, "k"] * math.log(3) - 2 * v.loc[name, "log_likelihood"])
    assert v["akaike_weight"].sum() == pytest.approx(1.0)
    # k counts the own gains: the calibrated set's four; the opioid modulator brings none
    assert v.loc["calibrated", "k"] == 4 and v.loc["calibrated+opioid", "k"] == 4
    assert set(v["reaches_fit_target"]) == {None}  # --no-fit: nothing was fitted, and nothing says otherwise
    explained = result.experiments().iloc[0]["explained_by"]
    assert explained == [n for n, r in rows.groupby("variant", sort=False) if r["within"].all()]
    out = result.write(tmp_path / "out")
    data = json.loads((out / "compare.json").read_text())
    assert data["disclaimer"] == DISCLAIMER and len(data["rows"]) == 6
    assert DISCLAIMER.split(".")[0] in (out / "report.html").read_text()
    assert {"compare.csv", "variants.csv", "manifest.json", "report.html"} <= {p.name for p in out.iterdir()}
    # the folder is a ketasim result, so the same command may write it again
    assert result.write(out) == out and json.loads((out / "manifest.json").read_text())["command"] == "ketasim compare"


def test_one_experiment_may_observe_the_same_arm_in_several_trials(tmp_path):
    """Subgroups published as separate results (Diekamp 2021: users and non-users of benzodiazepines)
    are rows of one experiment in two trial files: each is predicted, scored and drawn on its own."""
    (tmp_path / "trial.toml").write_text(SMALL_TRIAL)
    (tmp_path / "subgroup.toml").write_text(SMALL_TRIAL.replace("seed = 7", "seed = 8").replace(
        'preset = "treatment-resistant"', 'preset = "treatment-resistant"\ncomedications = { lorazepam = 1.0 }'))
    row = ("small,{trial},naltrexone + ketamine,difference_in_change,24.75 h,placebo + ketamine,5.0,MADRS points,,"
           "1.0,9.0,normal,Q,assumed,smaller,Williams 2018")
    path = tmp_path / "experiments.csv"
    path.write_text("\n".join([HEADER, row.format(trial="trial.toml"), row.format(trial="subgroup.toml")]) + "\n")
    result = compare(parse_variants("calibrated"), path, fit=False)
    assert result.rows["trial"].tolist() == ["trial.toml", "subgroup.toml"]
    assert result.rows["model"].nunique() == 2  # a different population, a different prediction
    assert len(result.experiments()) == 1
    page = (result.write(tmp_path / "out") / "report.html").read_text()
    assert "subgroup.toml" in page


def test_score_penalises_more_hypotheses_at_equal_fit():
    rows = pd.DataFrame({"variant": ["a", "b"], "log_likelihood": [-10.0, -10.0], "within": [True, True]})

    class Fit:
        def __init__(self, v):
            self.variant, self.reached, self.factor = v, True, 1.0

    table = score(rows, [Fit(Variant("a", ("disinhibition",))), Fit(Variant("b", ("disinhibition", "glun2b_eef2")))])
    assert list(table["variant"]) == ["a", "b"] and list(table["k"]) == [1, 2]
    assert table["akaike_weight"].iloc[0] == pytest.approx(1 / (1 + math.exp(-1)))


def test_each_variant_is_calibrated_by_its_own_gains_or_says_it_cannot():
    params = load_parameters()
    reached = fit_variant(Variant("glun2b", ("glun2b_eef2",)), params, patients=200)
    assert reached.reached and reached.note == ""
    assert abs(reached.model - reached.target) < 1.0
    assert set(reached.gains) == {"plasticity.bdnf_translation_gain"}
    # the shared downstream gain is never touched
    assert reached.params.value("clinical.strength_symptom_gain") == params.value("clinical.strength_symptom_gain")
    weak = fit_variant(Variant("habenula", ("habenula_trapping",)), params, patients=200)
    assert not weak.reached and "cannot reach" in weak.note
    assert weak.factor == pytest.approx(weak.factor_range[1]) and weak.evaluations == 2


def test_cli_compare_small_table(small_table, tmp_path):
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", "--variants", "calibrated,calibrated+opioid", "--experiments",
                                 str(small_table), "--no-fit", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "explained by" in result.output and DISCLAIMER in result.output
    assert (out / "compare.json").is_file()


@pytest.mark.parametrize("args, text", [
    (["--variants", "calibrated,telepathy"], "--variants[1]"),
    (["--experiments", "missing.csv"], "missing.csv"),
])
def test_cli_compare_bad_input_exits_2_and_writes_nothing(tmp_path, args, text):
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", *args, "--out", str(out)])
    assert result.exit_code == 2 and text in result.output
    assert not out.exists()


@pytest.mark.slow
def test_shipped_comparison_tells_the_opioid_hypothesis_apart():
    """The whole shipped table under two variants (about 75 s on 2 cores): Williams 2018 is explained with
    the opioid modulator and not without it; Yoon 2019's contrary finding the other way round."""
    result = compare(parse_variants("calibrated,calibrated+opioid"))
    table = result.experiments().set_index("experiment")
    assert table.loc["williams2018_naltrexone", "explained_by"] == ["calibrated+opioid"]
    assert "calibrated+opioid" not in table.loc["yoon2019_naltrexone_aud", "explained_by"]
    assert all(f.reached for f in result.fits)


# ---------------------------------------------------------------------- --design
def _design(**overrides):
    spec = {"design": {"hypotheses": ["calibrated", "glun2b_eef2"], "assessments": ["24 h"], "patients": 30},
            "candidate": [
                {"name": "HNK vs saline", "arm": [
                    {"name": "HNK", "dose": [{"drug": "2r6r-hnk", "route": "iv", "amount": "1 mg/kg", "duration": "40 min"}]},
                    {"name": "saline", "dose": [{"drug": "saline", "route": "iv", "duration": "40 min"}]}]}]}
    for key, value in overrides.items():
        table, field = key.split("__")
        if table == "design":
            spec["design"][field] = value
        else:
            spec["candidate"][0][field] = value
    return spec


def test_patients_per_arm_is_the_textbook_formula():
    from ketasim.compare.design import patients_per_arm

    assert patients_per_arm(5.0, 10.0) == pytest.approx(62.79, abs=0.01)  # d = 0.5: 63 per arm
    assert patients_per_arm(0.0, 10.0) == math.inf


@pytest.mark.parametrize("overrides, field", [
    ({"design__hypotheses": ["calibrated"]}, "design.hypotheses"),
    ({"design__hypotheses": ["calibrated", "disinhibition+glun2b_eef2+hnk_ampa+inflammation"]}, "design.hypotheses"),
    ({"design__hypotheses": ["calibrated", "telepathy"]}, "design.hypotheses[1]"),
    ({"design__colour": "blue"}, "design.colour"),
    ({"design__patients": 1}, "design.patients"),
    ({"design__power": 1.5}, "design.power"),
    ({"design__assessments": ["soon"]}, "design.assessments[0]"),
    ({"candidate__arm": []}, "candidate[0].arm"),
    ({"candidate__dose": []}, "candidate[0].dose"),
    ({"candidate__arm": ["HNK", "saline"]}, "candidate[0].arm"),
    ({"candidate__population": "lorazepam"}, "candidate[0].population"),
    ({"candidate__population": {"n": 5}}, "candidate[0].population.n"),
    ({"design__presets": ["mdd-rct", "mdd-rct"]}, "design.presets"),
])
def test_bad_design_files_name_their_field(overrides, field):
    from ketasim.compare.design import DesignSpec

    with pytest.raises(ScenarioError) as info:
        DesignSpec.load(_design(**overrides))
    assert str(info.value).startswith(field)


def test_a_candidate_drug_on_a_wrong_route_is_refused_before_running():
    from ketasim.compare.design import DesignSpec

    spec = _design()
    spec["candidate"][0]["arm"][0]["dose"][0]["route"] = "oral"
    with pytest.raises(ScenarioError, match=r"candidate\[0\] \(treatment-resistant\).*route"):
        DesignSpec.load(spec)


def test_design_ranks_and_is_symmetric_in_the_hypotheses(tmp_path):
    from ketasim.compare.design import design

    forward = design(_design(), fit=False).table.iloc[0]
    swapped = _design(design__hypotheses=["glun2b_eef2", "calibrated"])
    backward = design(swapped, fit=False).table.iloc[0]
    assert forward["difference [MADRS points]"] == pytest.approx(-backward["difference [MADRS points]"])
    assert forward["patients per arm"] == pytest.approx(backward["patients per arm"])
    # HNK's AMPA action is a route of the calibrated model only; glun2b_eef2 sees just its weak NMDA block
    assert forward["effect under calibrated [MADRS points]"] < forward["effect under glun2b_eef2 [MADRS points]"] - 1.0
    assert 0 < forward["patients per arm"] < math.inf


def test_once_both_are_calibrated_to_ketamine_ketamine_separates_them_least():
    """The point of --design: two hypotheses fitted to the same ketamine result predict nearly the
    same ketamine effect, so a ketamine trial needs far more patients to tell them apart than a
    drug only one of them acts through (dosed HNK)."""
    from ketasim.compare.design import design

    spec = _design(design__patients=60)
    spec["candidate"].append({"name": "ketamine vs saline", "arm": [
        {"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                       "duration": "40 min"}]},
        {"name": "saline", "dose": [{"drug": "saline", "route": "iv", "duration": "40 min"}]}]})
    table = design(spec).table.set_index("candidate")
    assert list(table.index) == ["HNK vs saline", "ketamine vs saline"]  # ranked: HNK first
    assert table.loc["ketamine vs saline", "patients per arm"] > 10 * table.loc["HNK vs saline", "patients per arm"]


SMALL_DESIGN = """
[design]
hypotheses = ["calibrated", "glun2b_eef2"]
assessments = ["24 h"]
patients = 30
[[candidate]]
name = "HNK vs saline"
[[candidate.arm]]
name = "HNK"
dose = [{drug = "2r6r-hnk", route = "iv", amount = "1 mg/kg", duration = "40 min"}]
[[candidate.arm]]
name = "saline"
dose = [{drug = "saline", route = "iv", duration = "40 min"}]
"""


def test_calibrate_fit_gains_needs_a_variant(tmp_path):
    result = runner.invoke(app, ["calibrate", "--fit-gains", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--mechanisms" in result.output and not (tmp_path / "c").exists()


def test_cli_design_writes_and_refuses(tmp_path):
    good = tmp_path / "design.toml"
    good.write_text(SMALL_DESIGN)
    out = tmp_path / "d"
    result = runner.invoke(app, ["compare", "--design", str(good), "--no-fit", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "patients per arm" in result.output and (out / "design.csv").is_file()
    again = runner.invoke(app, ["compare", "--design", str(good), "--no-fit", "--out", str(out)])
    assert again.exit_code == 0, again.output  # its own earlier result may be replaced
    assert DISCLAIMER.split(".")[0] in (out / "report.html").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL_DESIGN.replace('"calibrated", "glun2b_eef2"', '"calibrated"'))
    result = runner.invoke(app, ["compare", "--design", str(bad), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "design.hypotheses" in result.output and not (tmp_path / "e").exists()
    result = runner.invoke(app, ["compare", "--design", str(good), "--variants", "calibrated", "--out", str(tmp_path / "f")])
    assert result.exit_code == 2 and not (tmp_path / "f").exists()
