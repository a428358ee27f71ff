"""Non-compartmental analysis against closed forms (issue 15 part 5): a one-compartment bolus, whose
log-down trapezoid is exact; the terminal phase of a two-compartment and an oral profile; dosing
intervals with their trough and accumulation; tables, units, bad input and the command."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import ketasim
from ketasim import nca
from ketasim.cli import app

K, C0 = 0.2, 100.0  # 1/h, ng/mL
T = np.array([0.25, 0.5, 1, 2, 4, 6, 8, 12, 24])


def test_one_compartment_bolus_is_exact():
    r = nca.profile(T, C0 * np.exp(-K * T), start=0.0)
    assert r["lambda_z"] == pytest.approx(K, rel=1e-12)
    assert r["half_life"] == pytest.approx(math.log(2) / K, rel=1e-12)
    # log-down trapezoids integrate an exponential exactly, from the first sample to the last
    assert r["auc_last"] == pytest.approx(C0 / K * (np.exp(-K * T[0]) - np.exp(-K * T[-1])), rel=1e-12)
    assert r["auc_inf"] == pytest.approx(C0 / K * np.exp(-K * T[0]), rel=1e-12)
    assert (r["cmax"], r["tmax"], r["tlast"]) == (pytest.approx(C0 * np.exp(-K * T[0])), T[0], T[-1])
    assert r["lambda_z_points"] == len(T) - 1  # every point after Tmax lies on the line: all are used


def test_terminal_slope_leaves_out_the_distribution_phase():
    t = np.array([0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 4, 6, 8, 12, 16, 24])
    c = 80 * np.exp(-3.0 * t) + 20 * np.exp(-0.1 * t)  # fast distribution, slow terminal phase
    r = nca.profile(t, c)
    assert r["lambda_z"] == pytest.approx(0.1, rel=0.01)
    assert r["lambda_z_t_first"] >= 1.5  # the fast phase (gone by then to < 1 %) is not in the fit


def test_oral_profile_rises_linearly_and_ends_on_its_elimination_rate():
    ka, ke = 1.5, 0.1
    t = np.array([0, 0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 24, 36, 48])
    c = 50 * ka / (ka - ke) * (np.exp(-ke * t) - np.exp(-ka * t))
    r = nca.profile(t, c)
    # the adjusted-R^2 rule takes points from 3 h on, where absorption still adds ~0.2 %: lambda_z within 0.3 %
    assert r["lambda_z"] == pytest.approx(ke, rel=3e-3)
    exact = 50 * ka / (ka - ke) * (1 / ke - 1 / ka)  # AUC from 0 to infinity of the Bateman function
    assert r["auc_inf"] == pytest.approx(exact, rel=0.02)  # trapezoids over a coarse rise: within 2 %


def test_too_few_terminal_points_or_no_decline_gives_no_lambda_z():
    assert math.isnan(nca.profile([0, 1, 2, 3], [0, 1, 4, 3])["lambda_z"])  # one point after the peak
    rising = nca.profile([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    assert math.isnan(rising["lambda_z"]) and math.isnan(rising["auc_inf"]) and rising["auc_last"] == 8.0


def test_dosing_intervals_trough_and_accumulation():
    """Oral doses every 12 h (continuous at the dose times, as real profiles are): the last trough is
    the superposition's value, and the accumulation ratio is the single-dose AUC over the n-th
    interval's span over the first's (linear kinetics)."""
    from scipy.integrate import quad

    tau, n, ka = 12.0, 4, 1.5

    def single(t):
        return np.where(t > 0, C0 * ka / (ka - K) * (np.exp(-K * t) - np.exp(-ka * t)), 0.0)

    t = np.arange(0, n * tau + 1e-9, 0.05)
    c = sum(single(t - i * tau) for i in range(n))
    df = pd.DataFrame({"time [h]": t, "conc [ng/mL]": c})
    out = nca.table(df, time="time [h]", concentration="conc [ng/mL]", dose_times=[i * tau for i in range(n)], tau=tau)
    assert list(out["interval"]) == [1, 2, 3, 4]
    assert out["ctrough [ng/mL]"].iloc[-1] == pytest.approx(float(sum(single(n * tau - i * tau) for i in range(n))))
    first = quad(lambda x: float(single(x)), 0, tau)[0]
    expected = quad(lambda x: float(single(x)), 0, n * tau, limit=200)[0] / first
    assert out["auc_tau [ng/mL*h]"].iloc[0] == pytest.approx(first, rel=1e-3)  # trapezoids at 3-min steps
    assert out["accumulation_ratio [1]"].iloc[0] == pytest.approx(expected, rel=1e-3)


def test_table_per_patient_with_units():
    df = pd.concat([pd.DataFrame({"patient": p, "time [h]": T, "c [ng/mL]": C0 * np.exp(-k * T)})
                    for p, k in (("a", 0.1), ("b", 0.3))])
    out = nca.table(df, time="time [h]", concentration="c [ng/mL]", id_column="patient")
    assert list(out["id"]) == ["a", "b"]
    assert out["lambda_z [1/h]"].tolist() == pytest.approx([0.1, 0.3], rel=1e-12)
    assert {"auc_inf [ng/mL*h]", "half_life [h]", "cmax [ng/mL]"} <= set(out.columns)


@pytest.mark.parametrize("kwargs, field", [
    ({"concentration": "nope"}, "--concentration"),
    ({"time": "t"}, "--time"),
    ({"id_column": "who"}, "--id"),
])
def test_bad_columns_are_named(kwargs, field):
    df = pd.DataFrame({"time [h]": T, "c [ng/mL]": C0 * np.exp(-K * T)})
    with pytest.raises(nca.NCAError, match=field.replace("-", r"\-")):
        nca.table(df, **{"time": "time [h]", "concentration": "c [ng/mL]", **kwargs})


def test_several_outputs_are_each_their_own_nca():
    """``tables``: each concentration column's NCA, one below the other with its output's name; the
    same numbers as ``table`` on that column alone; columns of different units are refused."""
    df = pd.DataFrame({"time [h]": T, "a [ng/mL]": C0 * np.exp(-0.1 * T), "b [ng/mL]": C0 * np.exp(-0.3 * T),
                       "c [uM]": np.exp(-0.2 * T)})
    assert nca.concentration_columns(df) == ["a [ng/mL]", "b [ng/mL]"] and nca.concentration_columns(df, "uM") == ["c [uM]"]
    both = nca.tables(df, time="time [h]", concentrations=["a [ng/mL]", "b [ng/mL]"])
    assert both["output"].tolist() == ["a", "b"]
    alone = nca.table(df, time="time [h]", concentration="b [ng/mL]")
    pd.testing.assert_frame_equal(both.iloc[[1]].drop(columns="output").reset_index(drop=True), alone)
    with pytest.raises(nca.NCAError, match="different units"):
        nca.tables(df, time="time [h]", concentrations=["a [ng/mL]", "c [uM]"])


def test_negative_or_missing_concentrations_are_refused():
    df = pd.DataFrame({"time [h]": [0, 1, 2], "c [ng/mL]": [1.0, -1.0, 0.5]})
    with pytest.raises(nca.NCAError, match=">= 0"):
        nca.table(df, time="time [h]", concentration="c [ng/mL]")


def test_the_model_half_life_by_nca_matches_the_calibration_metric():
    """NCA of ketasim's own output agrees with the half-life metric the calibration checks use
    (log-linear over the same terminal window), on the label scenario of esketamine."""
    from ketasim.calibrate.targets import simulation_metric

    scenario = ketasim.Scenario.load({"dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg"}],
                                      "simulation": {"duration": "3 d", "output_every": "2 h"}})
    result = ketasim.simulate(scenario)
    t, c = result.times_h, result["pk.s_ketamine_plasma"]
    late = t >= 24
    by_nca = nca.profile(t[late], c[late])["half_life"]
    metric, _ = simulation_metric("half_life", "pk.s_ketamine_plasma", 24.0, scenario, None, result)
    assert by_nca == pytest.approx(metric, rel=0.02)


def test_cli_nca_on_a_simulation_table(tmp_path):
    runner = CliRunner()
    sim = tmp_path / "sim"
    assert runner.invoke(app, ["simulate", "examples/single_infusion.toml", "--out", str(sim), "--quiet"]).exit_code == 0
    out = tmp_path / "nca.csv"
    result = runner.invoke(app, ["nca", str(sim / "timeseries.csv"), "--concentration", "pk.ketamine_plasma [ng/mL]",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith(f"# {ketasim.DISCLAIMER}")
    table = pd.read_csv(out, comment="#")
    assert table["cmax [ng/mL]"].iloc[0] > 100 and table["half_life [h]"].iloc[0] > 1
    every = runner.invoke(app, ["nca", str(sim / "timeseries.csv"), "--concentration", "all", "--out",
                                str(tmp_path / "all.csv")])
    assert every.exit_code == 0, every.output
    outputs = pd.read_csv(tmp_path / "all.csv", comment="#")["output"].tolist()
    assert outputs[0] == "pk.ketamine_plasma" and {"pk.norketamine_plasma", "pk.hnk_plasma"} <= set(outputs)
    bad = runner.invoke(app, ["nca", str(sim / "timeseries.csv"), "--concentration", "pk.nothing", "--out",
                              str(tmp_path / "never.csv")])
    assert bad.exit_code == 2 and "--concentration" in bad.output and not (tmp_path / "never.csv").exists()
