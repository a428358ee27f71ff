"""Virtual trials: designs, reproducibility across chunks and workers, agreement with ``simulate``,
endpoint logic, failed patients and bad trial files. The calibration targets that need a population
are rows of the shipped table (test_calibrate.py)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ketasim
from ketasim.engine import SolverSettings, build_problem
from ketasim.errors import ScenarioError
from ketasim.model import default_model
from ketasim.nca import auc_linear_up_log_down
from ketasim.scenario import Scenario
from ketasim.trial import TrialSpec, run_trial
from ketasim.trial.discharge import ready_after
from ketasim.trial.run import TRIAL_SETTINGS, chunk_settings, relapse_course

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "trials").glob("*.toml"))


def example(name: str, n: int) -> dict:
    data = tomllib.loads((ROOT / "examples" / "trials" / f"{name}.toml").read_text())
    data["population"]["n"] = n
    return data


def small_parallel(n: int = 6, seed: int = 3) -> dict:
    data = example("parallel_ketamine_vs_midazolam", n)
    data["trial"]["seed"] = seed
    return data


# ---------------------------------------------------------------------- designs
def test_every_design_has_an_example():
    designs = {tomllib.loads(p.read_text())["trial"].get("design", "parallel") for p in EXAMPLES}
    assert designs == set(ketasim.trial.DESIGNS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_trials_run_with_small_n(path):
    data = tomllib.loads(path.read_text())
    data["population"]["n"] = 4
    result = run_trial(data)
    spec = result.spec
    df = result.patients
    assert (df["status"] == "ok").all()
    periods = len(spec.sequences[0].periods)
    assert len(df) == spec.n_patients * periods * len(spec.assessments_h)
    assert set(result.summary["arms"]) == {a.name for a in spec.arms}
    assert result.summary["disclaimer"] == ketasim.DISCLAIMER
    for column in ("arm", "patient", "assessment [h]", "madrs [points]", "baseline_madrs [points]", "cadss_peak [points]",
                   "sbp_peak_rise [mmHg]", "responder", "remitter", "relapsed", "weight [kg]", "age [y]", "sex", "cyp2b6",
                   "cyp3a4", "bdnf_val66met", "inflammation", "comedications", "nmda_block_interneuron_peak [fraction]",
                   "spine_density [fold baseline]", "pfc_gbc [z]", "il6 [pg/mL]", "status"):
        assert column in df.columns, column


def test_crossover_gives_every_patient_every_arm_in_rotated_order():
    result = run_trial(example("crossover_ketamine_saline", 6))
    df = result.patients
    per_patient = df.groupby("patient")["arm"].unique()
    assert all(sorted(arms) == ["ketamine", "saline"] for arms in per_patient)
    first = df[df["period"] == 1].drop_duplicates("patient")
    assert sorted(first["arm"].value_counts().tolist()) == [3, 3]  # patients alternate between AB and BA
    # the second period's baseline is the MADRS at its start, not the first period's baseline
    p2 = df[df["period"] == 2].drop_duplicates("patient").set_index("patient")["baseline_madrs [points]"]
    p1 = df[df["period"] == 1].drop_duplicates("patient").set_index("patient")["baseline_madrs [points]"]
    assert not np.allclose(p1.sort_index(), p2.sort_index())
    assert result.summary["comparisons"][0]["paired"] is True


def test_randomised_withdrawal_randomises_only_selected_responders():
    data = example("randomised_withdrawal_esketamine", 12)
    result = run_trial(data)
    df = result.patients
    assert set(df["arm"]) == {"esketamine weekly", "placebo spray"}
    assert df.drop_duplicates("patient").shape[0] == 12  # everyone enters the run-in, assignment alternates
    randomised = df[df["randomised"]]
    assert randomised["at_risk_of_relapse"].all()  # randomised responders are at risk of relapse from randomisation
    # weekly visits fall on dosing days: each reports the previous week's session, not the moment of dosing
    weekly = randomised[randomised["arm"] == "esketamine weekly"]
    assert (weekly["nmda_block_interneuron_peak [fraction]"] > 0.05).all()
    assert (weekly["cadss_peak [points]"] > 0.5).all()
    assert result.summary["patients"]["randomised"] == randomised["patient"].nunique()
    # a stricter selection (remitters) randomises no more patients than responders
    data["run_in"]["select"] = "remitters"
    assert run_trial(data).summary["patients"]["randomised"] <= result.summary["patients"]["randomised"]


def test_add_on_baseline_is_taken_on_the_background_treatment():
    result = run_trial(example("add_on_esketamine_escitalopram", 5))
    first = result.patients.drop_duplicates("patient")
    # six weeks of escitalopram lower the true MADRS before the trial starts: the true severity at the
    # trial's baseline is below the drawn one (the rated baseline adds the day's fluctuation and rater error)
    drawn = [v.patient.baseline_madrs for v in _drawn(result, 5)]
    assert (first["baseline_madrs_true [points]"].to_numpy()[:5] < np.array(drawn) - 2).all()


def _drawn(result, n):
    from ketasim.population import PopulationSampler

    sampler = PopulationSampler(result.spec.population, ketasim.load_parameters())
    return sampler.draw_many(result.spec.seed, 0, range(n))


def test_edge_designs_run_and_summarise():
    """An arm with only therapy, an arm left empty by the run-in's alternation, nobody responding."""
    data = small_parallel(3)
    data["arm"][1] = {"name": "cbt only", "therapy": [{"kind": "cbt", "start": "0 d", "every": "1 d", "count": 3}]}
    data["trial"]["control"] = "cbt only"
    result = run_trial(data)
    cbt = result.patients[result.patients["arm"] == "cbt only"]
    assert cbt["cadss_peak [points]"].isna().all()  # no dosing session: no peak, not zero
    json.dumps(result.summary, allow_nan=False)
    withdrawal = example("randomised_withdrawal_esketamine", 1)  # one patient: the second arm has nobody
    summary = run_trial(withdrawal).summary
    assert summary["arms"]["placebo spray"]["n"] == 0
    json.dumps(summary, allow_nan=False)


# ---------------------------------------------------------------------- reproducibility and agreement
def test_same_seed_identical_whatever_the_chunk_size():
    whole = run_trial(small_parallel(7), chunk_size=100).patients
    pieces = run_trial(small_parallel(7), chunk_size=3).patients
    pd.testing.assert_frame_equal(whole, pieces, check_exact=True)
    other = run_trial(small_parallel(7, seed=4)).patients
    assert not np.allclose(whole["weight [kg]"], other["weight [kg]"])


def _daily_pills_and_close_sessions(n: int) -> dict:
    """Eight weeks of daily escitalopram against daily placebo pills, weekly ratings; a third arm's
    nasal doses under 4 h apart and off each other's 5-min points, so that sessions no assessment
    reports put points inside the window of the one that does (before the 170-h assessment and,
    in the whole window the discharge time reads, after it)."""
    daily = {"route": "oral", "start": "0 d", "every": "1 d", "count": 56}
    return {"trial": {"name": "grid", "seed": 11, "assessments": ["1 w", "170 h", "2 w", "4 w", "8 w"]},
            "population": {"n": n, "preset": "mdd-rct"},
            "arm": [{"name": "escitalopram", "dose": [{"drug": "escitalopram", "amount": "10 mg", **daily}]},
                    {"name": "placebo", "dose": [{"drug": "placebo", **daily}]},
                    {"name": "nasal", "dose": [{"drug": "esketamine", "route": "intranasal", "amount": "28 mg",
                                                "at": ["10087 min", "169 h", "10268 min"]}]}]}


def test_the_grid_holds_only_the_sessions_assessments_report_and_reads_them_alike(monkeypatch):
    """Doses as written: post-dose points only for the sessions the assessments report (and any
    whose window overlaps one of those); the patients table is that of a grid with every session's
    points, value for value (output times do not steer the solver)."""
    from ketasim.trial import run

    trial = _daily_pills_and_close_sessions(3)
    spec = TrialSpec.from_dict(copy.deepcopy(trial))
    trimmed = run.timeline(spec, spec.sequences[0]).times.size
    lean = run_trial(copy.deepcopy(trial)).patients
    monkeypatch.setattr(run, "_starts_near", lambda every, reported: every)
    run._trial_context.cache_clear()
    full = run.timeline(spec, spec.sequences[0]).times.size
    everything = run_trial(copy.deepcopy(trial)).patients
    run._trial_context.cache_clear()
    assert trimmed < full / 4  # 56 pills: 5 windows read (the last pill before each rating), not 56
    pd.testing.assert_frame_equal(lean, everything, check_exact=True)


def test_dask_local_cluster_gives_the_single_process_result():
    local = run_trial(small_parallel(5), chunk_size=2)
    distributed = run_trial(small_parallel(5), chunk_size=2, workers=2)
    pd.testing.assert_frame_equal(local.patients, distributed.patients, check_exact=True)
    assert json.dumps(local.summary, sort_keys=True) == json.dumps(distributed.summary, sort_keys=True)


def test_batched_patients_equal_single_patient_simulate(params):
    """Each drawn patient's MADRS equals a single simulation of it; so does its session exposure, for
    plasma ketamine and for an output named in ``[trial] exposure`` (norketamine)."""
    data = small_parallel(3)
    data["trial"]["exposure"] = ["pk.norketamine_plasma"]
    result = run_trial(data)
    spec = result.spec
    for vp in _drawn(result, 3):
        # the drawn patient as a scenario and a parameter set of its own
        changes = {n.replace(".", "__"): params[n].value * vp.parameters[n] / params.value(n)
                   for n in params if vp.parameters[n] != params.value(n)}
        own = params.replace(**changes)
        p = vp.patient
        scenario = {"patient": {"weight": f"{p.weight_kg!r} kg", "age": f"{p.age_y!r} y", "sex": p.sex,
                                "baseline_madrs": p.baseline_madrs, "cyp2b6": p.cyp2b6, "cyp3a4": p.cyp3a4,
                                "bdnf_val66met": p.bdnf_val66met, "inflammation": p.inflammation,
                                "comedications": list(p.comedications), "course": p.course,
                                "plasticity_responsive": bool(p.plasticity_responsive)},
                    "dose": [spec.raw["arm"][0]["dose"][0]], "simulation": {"duration": "7 d", "output_every": "5 min"}}
        # the trial's settings for this patient: its switched-off mechanisms' private states loose, its
        # drug amounts held to atol in the trials' volume
        settings = chunk_settings(build_problem([Scenario.from_dict(scenario)], own, default_model()), TRIAL_SETTINGS)
        single = ketasim.simulate(scenario, params=own, settings=settings)
        rows = result.patients[result.patients["patient"] == f"0-{vp.index}"]
        for _, row in rows.iterrows():
            expected = single.at("clinical.madrs", row["assessment [h]"])
            assert row["madrs_model [points]"] == pytest.approx(expected, rel=1e-6)
        # the session's exposure (4-h assessment: the whole window) against the same profile by ketasim.nca
        window = np.concatenate([np.arange(0.0, 2.0, 5 / 60), np.arange(2.0, 4.0 + 1e-9, 0.25)])
        conc = np.array([single.at("pk.ketamine_plasma", t) for t in window])
        at_4h = rows[np.isclose(rows["assessment [h]"], 4.0)].iloc[0]
        assert at_4h["ketamine_cmax [ng/mL]"] == pytest.approx(conc.max(), rel=1e-6)
        assert at_4h["ketamine_tmax [h]"] == pytest.approx(40 / 60, abs=1e-9)  # the infusion's end
        assert at_4h["ketamine_auc_session [ng/mL*h]"] == pytest.approx(auc_linear_up_log_down(window, conc), rel=1e-6)
        metabolite = np.array([single.at("pk.norketamine_plasma", t) for t in window])
        assert at_4h["norketamine_cmax [ng/mL]"] == pytest.approx(metabolite.max(), rel=1e-6)
        assert at_4h["norketamine_tmax [h]"] == window[np.argmax(metabolite)]
        assert at_4h["norketamine_auc_session [ng/mL*h]"] == pytest.approx(
            auc_linear_up_log_down(window, metabolite), rel=1e-6)
        # discharge is read over the whole window at every assessment of the session
        cadss, sbp = ([single.at(f"clinical.{name}", t) for t in window] for name in ("cadss", "sbp"))
        assert (rows["discharge_ready_after [h]"] == ready_after(window, np.array([cadss]), np.array([sbp]))[0]).all()


# ---------------------------------------------------------------------- endpoint logic
def test_relapse_needs_response_then_consecutive_high_scores():
    times = np.array([24.0, 72.0, 168.0, 336.0, 504.0])
    madrs = np.array([
        [12, 25, 26, 10, 10],  # responds at 24 h, relapses from 72 h (two in a row)
        [12, 25, 10, 25, 10],  # never two in a row: no relapse
        [30, 28, 27, 26, 25],  # never responds: not at risk
        [25, 12, 22, 22, 9],   # responds at 72 h, relapses at 168 h (22 counts: ">= 22")
    ], dtype=float)
    responder = madrs <= 15
    relapsed, when, responded_at, at_risk = relapse_course(madrs, responder, times, 22.0, 2, np.zeros(4, dtype=bool))
    assert at_risk.tolist() == [True, True, False, True]
    np.testing.assert_array_equal(when, [72.0, np.nan, np.nan, 168.0])
    np.testing.assert_array_equal(responded_at, [24.0, 24.0, np.nan, 72.0])
    assert relapsed[0].tolist() == [False, False, True, True, True]
    assert relapsed[3].tolist() == [False, False, False, True, True]
    assert not relapsed[1].any() and not relapsed[2].any()


def test_thresholds_on_the_hamd_scale_are_their_madrs_equivalents_in_every_row():
    """HAM-D-17 <= 7 (remission as many trials define it) is MADRS <= 7 x 1.3 = 9.1 under the
    model's proportional linking (Leucht 2018), and a fractional fall is the same on both scales."""
    k = ketasim.load_parameters().value("clinical.madrs_per_hamd")
    data = small_parallel(30)
    data["trial"].update(remission={"hamd_at_most": 7}, relapse={"hamd_at_least": 16}, response={"hamd_fall": 0.4})
    spec = TrialSpec.from_dict(data)
    assert spec.endpoints.remission_at_most == pytest.approx(7 * k)
    assert spec.endpoints.relapse_at_least == pytest.approx(16 * k)
    assert spec.endpoints.response_fall == 0.4  # not the default 0.5
    described = spec.describe()["endpoints"]
    assert described["remission"].startswith("HAM-D-17 <= 7 (MADRS <= 9.1")
    assert described["relapse"].startswith("HAM-D-17 >= 16 (MADRS >= 20.8")
    rows = run_trial(data).patients
    np.testing.assert_array_equal(rows["remitter"], rows["madrs [points]"] <= 7 * k)
    # some rating lies between the two definitions, so the check can tell them apart
    assert ((rows["madrs [points]"] > 7 * k) & (rows["madrs [points]"] <= 10)).any()


def test_summary_statistics_match_hand_computation():
    result = run_trial(small_parallel(30))
    rows = result.patients
    at = rows[(rows["arm"] == "ketamine") & (rows["assessment [h]"] == 24.0)]
    entry = next(a for a in result.summary["arms"]["ketamine"]["assessments"] if a["assessment [h]"] == 24.0)
    k, n = int(at["responder"].sum()), len(at)
    p = k / n
    z = 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert entry["response_rate"]["estimate"] == pytest.approx(p)
    assert entry["response_rate"]["lower"] == pytest.approx(centre - half)
    assert entry["madrs_change [points]"]["mean"] == pytest.approx(at["madrs_change [points]"].mean())
    assert entry["madrs_change [points]"]["sd"] == pytest.approx(at["madrs_change [points]"].std(ddof=1))
    mid = rows[(rows["arm"] == "midazolam") & (rows["assessment [h]"] == 24.0)]
    cmp = next(a for a in result.summary["comparisons"][0]["assessments"] if a["assessment [h]"] == 24.0)
    diff = at["madrs_change [points]"].mean() - mid["madrs_change [points]"].mean()
    assert cmp["difference_in_madrs_change [points]"]["estimate"] == pytest.approx(diff)


def test_failed_patients_are_flagged_counted_and_not_dropped():
    result = run_trial(small_parallel(3), settings=SolverSettings(rtol=1e-6, atol=1e-8, max_steps=40))
    df = result.patients
    assert len(df) == 2 * 3 * 5
    assert set(df["status"]) == {"too many steps"}
    assert df["madrs [points]"].isna().all()
    assert result.summary["patients"]["failed"] == 6
    assert result.summary["patients"]["failed_reasons"] == {"too many steps": 6}


def test_placebo_vs_placebo_shows_no_difference_beyond_chance():
    data = small_parallel(300, seed=11)
    placebo = {"drug": "placebo", "route": "iv", "duration": "40 min"}
    data["arm"] = [{"name": "placebo A", "dose": [placebo]}, {"name": "placebo B", "dose": [placebo]}]
    data["trial"]["control"] = "placebo B"
    summary = run_trial(data).summary
    for a in summary["comparisons"][0]["assessments"]:
        d = a["difference_in_madrs_change [points]"]
        assert d["p_value"] > 0.001 and abs(d["estimate"]) < 2.0
        o = a["odds_ratio_response"]
        assert o["lower"] is None or o["lower"] < 3.0


# ---------------------------------------------------------------------- bad trial files and the CLI
def _broken(change) -> dict:
    data = copy.deepcopy(small_parallel(2))
    change(data)
    return data


BAD = [
    (lambda d: d.pop("trial"), "trial"),
    (lambda d: d["trial"].pop("seed"), "trial.seed"),
    (lambda d: d["trial"].update(design="factorial"), "trial.design"),
    (lambda d: d["trial"].update(assessments=["1 d", "4 h"]), "trial.assessments"),
    (lambda d: d["trial"].update(assessments=["0 h", "4 h"]), "trial.assessments[0]"),
    (lambda d: d["trial"].update(assessments=["4 parsecs"]), "trial.assessments[0]"),
    (lambda d: d["trial"].update(washout="7 d"), "trial.washout"),
    (lambda d: d["trial"].update(control="nobody"), "trial.control"),
    (lambda d: d["trial"].update(relapse={"madrs_at_least": 22, "consecutive": 0}), "trial.relapse.consecutive"),
    (lambda d: d["trial"].update(colour="blue"), "trial"),
    (lambda d: d["trial"].update(remission={"madrs_at_most": 10, "hamd_at_most": 7}), "trial.remission.hamd_at_most"),
    (lambda d: d["trial"].update(remission={"hamd_at_most": 60}), "trial.remission.hamd_at_most"),
    (lambda d: d["trial"].update(remission={"hdrs_at_most": 7}), "trial.remission"),
    (lambda d: d["trial"].update(response={"madrs_fall": 0.5, "hamd_fall": 0.5}), "trial.response.hamd_fall"),
    (lambda d: d["arm"][1].update(name="ketamine"), "arm[1].name"),
    (lambda d: d["arm"][0]["dose"][0].update(amount="-1 mg/kg"), "arm[0].dose[0].amount"),
    (lambda d: d["arm"][0]["dose"][0].update(route="rectal"), "arm[0].dose[0].route"),
    (lambda d: d["arm"][0]["dose"][0].update(at=["8 d"]), "arm[0].dose[0].at"),
    (lambda d: d.update(run_in={"duration": "1 w"}), "run_in"),
    (lambda d: d["population"].update(n=10 ** 9), "population.n"),
    (lambda d: d["trial"].update(design="add-on"), "background"),
    (lambda d: d["trial"].update(exposure=["pk.norketamine"]), "trial.exposure"),
    (lambda d: d["trial"].update(exposure=["pk.ketamine_plasma"]), "trial.exposure"),
    (lambda d: d["trial"].update(exposure=["clinical.madrs"]), "trial.exposure"),
    (lambda d: d["trial"].update(exposure="pk.hnk_plasma"), "trial.exposure"),
    (lambda d: d["trial"].update(exposure=["pk.hnk_plasma", "pk.hnk_plasma"]), "trial.exposure"),
]


@pytest.mark.parametrize("change, field", BAD)
def test_bad_trial_files_name_the_field(change, field):
    with pytest.raises(ScenarioError) as info:
        TrialSpec.from_dict(_broken(change))
    assert info.value.field == field


def test_cli_trial_writes_every_file(tmp_path):
    path = tmp_path / "trial.toml"
    path.write_text((ROOT / "examples" / "trials" / "crossover_ketamine_saline.toml").read_text().replace("n = 40", "n = 4"))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ketasim", "trial", str(path), "--out", str(out), "--quiet"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "patients.parquet", "report.html", "summary.json"]
    df = pd.read_parquet(out / "patients.parquet")
    assert len(df) == 4 * 2 * 4
    import pyarrow.parquet as pq

    assert b"research and teaching" in pq.read_schema(out / "patients.parquet").metadata[b"ketasim.disclaimer"]
    page = (out / "report.html").read_text()
    assert "research and teaching" in page and "Kaplan-Meier" in page and "<img" in page


def test_cli_bad_trial_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "trial.toml"
    path.write_text((ROOT / "examples" / "trials" / "crossover_ketamine_saline.toml").read_text().replace(
        'washout = "4 d"', 'washout = "soon"'))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ketasim", "trial", str(path), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "trial.washout" in proc.stderr
    assert not out.exists()


def _close(a, b, path=""):
    """Nested summaries equal, numbers to 1e-9 relative (moments merged chunk by chunk)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


@pytest.mark.parametrize("name", ["parallel_ketamine_vs_midazolam", "crossover_ketamine_saline"])
def test_streamed_trial_writes_what_the_in_memory_trial_writes(name, tmp_path):
    from ketasim.trial import stream_trial

    data = example(name, 9)
    data["trial"]["success"] = {"endpoint": "madrs_change", "at": data["trial"]["assessments"][-1]}
    whole = run_trial(data, chunk_size=4)
    whole.write(tmp_path / "whole")
    streamed = stream_trial(data, tmp_path / "streamed", chunk_size=4)
    assert streamed.patients is None
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / "patients.parquet"),
                                  pd.read_parquet(tmp_path / "streamed" / "patients.parquet"), check_exact=True)
    _close(json.loads((tmp_path / "whole" / "summary.json").read_text()),
           json.loads((tmp_path / "streamed" / "summary.json").read_text()))
    assert streamed.summary["primary"]["estimate"] == pytest.approx(whole.summary["primary"]["estimate"], rel=1e-12)
    assert "Kaplan-Meier" in (tmp_path / "streamed" / "report.html").read_text()
    import pyarrow.parquet as pq

    assert b"research and teaching" in pq.read_schema(tmp_path / "streamed" / "patients.parquet").metadata[
        b"ketasim.disclaimer"]


def test_streamed_on_dask_with_more_chunks_than_in_flight(tmp_path):
    """Twelve one-patient chunks on two workers (eight in flight at a time): the window refills in
    order and the file equals the single-process run's."""
    from ketasim.trial import stream_trial

    data = small_parallel(6)
    local = run_trial(data, chunk_size=1)
    stream_trial(data, tmp_path / "dask", chunk_size=1, workers=2)
    pd.testing.assert_frame_equal(local.patients, pd.read_parquet(tmp_path / "dask" / "patients.parquet"),
                                  check_exact=True)
