"""Visual predictive check: a study simulated from the model population itself passes its VPC, the
same study with concentrations tripled fails it, and the command writes its files."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ketasim
from ketasim.cli import app
from ketasim.dataset import read_dataset
from ketasim.vpc import vpc

TIMES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _population_study(n: int = 40, seed: int = 99, scale: float = 1.0, amount_mg: float = 35.0, first_id: int = 1,
                      header: bool = True) -> str:
    """An event table of ``n`` patients (35 mg IV bolus, plasma ketamine at six times) whose
    parameters are drawn from the model population and whose DVs carry the mapping's residual
    error: data the model population should explain."""
    from ketasim.engine import build_batch_problem, solve
    from ketasim.model.system import default_model
    from ketasim.population import PopulationSampler, PopulationSpec
    from ketasim.scenario import PatientColumns, Scenario
    from ketasim.simulate import observe_batch

    params = ketasim.load_parameters()
    sampler = PopulationSampler(PopulationSpec.from_dict({"n": 1, "preset": "healthy-volunteers"}), params)
    rng = np.random.default_rng(seed)
    scenario = Scenario.from_dict({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": f"{amount_mg} mg"}],
                                   "simulation": {"duration": "8 h", "output_every": "8 h"}})
    problem = build_batch_problem(scenario, PatientColumns.of([scenario.patient] * n), sampler.parameter_columns(rng, n),
                                  default_model(), t_out=np.array(TIMES))
    states, status, _ = solve(problem)
    assert (status == 0).all()
    conc = observe_batch(default_model(), states, problem.parameter_names, problem.theta,
                         wanted=("pk.ketamine_plasma",))["pk.ketamine_plasma"]
    dv = scale * (conc * (1 + 0.15 * rng.standard_normal(conc.shape)) + 0.5 * rng.standard_normal(conc.shape))
    lines = ["ID,TIME,EVID,AMT,CMT,DV,DVID"] if header else []
    for i in range(first_id, first_id + n):
        lines.append(f"{i},0,1,{amount_mg},2,.,.")
        lines += [f"{i},{t},0,.,.,{float(dv[i - first_id, j])!r},1" for j, t in enumerate(TIMES)]
    return "\n".join(lines) + "\n"


def _inside(result) -> pd.Series:
    return result.bins[[c for c in result.bins.columns if c.endswith("_inside")]].stack()


def test_a_study_from_the_model_population_passes_and_a_misfit_fails():
    """18 checks (3 percentiles x 6 times): data drawn from the model population itself fall inside
    the simulated 95 % intervals in nearly all (16 when written; at least 14 of 18, about the
    binomial 99 % bound for 95 % coverage); the same data tripled in almost none (0 when written)."""
    good = vpc(read_dataset(io.StringIO(_population_study())), replicates=100, seed=1)
    assert len(good.bins) == len(TIMES) and (good.bins["observations"] == 40).all()
    assert _inside(good).sum() >= 14, good.bins
    bad = vpc(read_dataset(io.StringIO(_population_study(scale=3.0))), replicates=100, seed=1)
    assert _inside(bad).sum() <= 3, bad.bins


def test_bins_are_equal_count_when_times_are_many():
    from ketasim.vpc import _bin_edges

    times = np.linspace(0.1, 24.0, 200)
    bins = _bin_edges(times, 8)
    assert np.unique(bins).size == 8 and np.bincount(bins).min() >= 20
    assert (np.diff(bins) >= 0).all()  # bins follow time


def test_cli_vpc_writes_its_files_and_refuses_bad_input(tmp_path):
    (tmp_path / "study.csv").write_text(_population_study(n=10))
    out = tmp_path / "vpc"
    result = CliRunner().invoke(app, ["vpc", str(tmp_path / "study.csv"), "--replicates", "30", "--out", str(out),
                                      "--pred-corrected"])
    assert result.exit_code == 0, result.output
    assert "observed percentiles inside" in result.output
    assert json.loads((out / "vpc.json").read_text())["prediction_corrected"] is True
    assert "Prediction-corrected VPC" in (out / "report.html").read_text()
    assert (out / "vpc.csv").read_text().startswith("# ketasim is a research and teaching tool")
    assert "research and teaching" in (out / "report.html").read_text()
    bad = CliRunner().invoke(app, ["vpc", str(tmp_path / "study.csv"), "--replicates", "5", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "replicates" in bad.output and not (tmp_path / "x").exists()


@pytest.mark.parametrize("replicates", [True, 19, 10_001])
def test_replicates_outside_the_range_are_refused(replicates):
    with pytest.raises(ketasim.ScenarioError):
        vpc(read_dataset(io.StringIO(_population_study(n=2))), replicates=replicates)


def test_a_stratified_vpc_finds_the_group_the_model_misses():
    """Two groups in one data set (a GROUP column): the group drawn from the model population passes
    its own bins, the group whose concentrations are tripled fails them, which the pooled VPC would
    blur."""
    good = _population_study(n=30, seed=5).splitlines()
    bad = _population_study(n=30, seed=6, scale=3.0).splitlines()
    lines = [good[0] + ",GROUP"] + [f"{line},A" for line in good[1:]]
    lines += [f"{int(line.split(',', 1)[0]) + 100},{line.split(',', 1)[1]},B" for line in bad[1:]]
    data = read_dataset(io.StringIO("\n".join(lines) + "\n"))
    result = vpc(data, replicates=60, seed=2, stratify="group")
    inside = result.bins.set_index("stratum")[[c for c in result.bins.columns if c.endswith("_inside")]]
    assert set(result.bins["stratum"]) == {"A", "B"}
    assert inside.loc["A"].to_numpy().sum() >= 14 and inside.loc["B"].to_numpy().sum() <= 3
    with pytest.raises(ketasim.ScenarioError, match="--stratify"):
        vpc(data, replicates=20, stratify="ARM")


def _mixed_doses(scale: float = 1.0) -> str:
    """Half the patients at 35 mg, half at 140 mg: designs that differ within every time bin."""
    return (_population_study(n=20, seed=5, scale=scale) +
            _population_study(n=20, seed=6, scale=scale, amount_mg=140.0, first_id=21, header=False))


def test_prediction_correction_changes_nothing_when_every_design_is_the_same():
    data = read_dataset(io.StringIO(_population_study(n=12)))
    plain = vpc(data, replicates=30, seed=2)
    corrected = vpc(data, replicates=30, seed=2, prediction_corrected=True)
    numbers = [c for c in plain.bins.columns if c.startswith(("observed_p", "simulated_")) and not c.endswith("_inside")]
    np.testing.assert_allclose(corrected.bins[numbers].to_numpy(float), plain.bins[numbers].to_numpy(float), rtol=1e-12)
    assert corrected.prediction_corrected and not plain.prediction_corrected


def test_prediction_correction_removes_the_spread_of_mixed_doses_and_still_finds_a_misfit():
    """Doses fourfold apart in the same bins: the plain VPC's 5-95 % band is wide because of the
    designs; corrected, it is the model's variability alone (narrower in every bin), data from the
    model population pass (at least 14 of 18, as above) and the same data tripled fail."""
    data = read_dataset(io.StringIO(_mixed_doses()))
    plain = vpc(data, replicates=50, seed=1)
    corrected = vpc(data, replicates=50, seed=1, prediction_corrected=True)

    def band(r):
        return (r.bins["simulated_p95_median"] - r.bins["simulated_p5_median"]) / r.bins["simulated_p50_median"]

    assert (band(corrected) < band(plain)).all()
    assert _inside(corrected).sum() >= 14, corrected.bins
    bad = vpc(read_dataset(io.StringIO(_mixed_doses(scale=3.0))), replicates=50, seed=1, prediction_corrected=True)
    assert _inside(bad).sum() <= 3, bad.bins
