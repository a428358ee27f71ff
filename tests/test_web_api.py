"""The web service's JSON API (httpx through Starlette's test client): every endpoint, bad input,
the run registry and recovery after a restart."""

from __future__ import annotations

import io
import json
import sqlite3
import sys
import time
import warnings

import pandas as pd
import pytest

from ketasim.result import DISCLAIMER
from ketasim.store import SCHEMA_VERSION, RunRegistry
from ketasim.web import create_app
from ketasim.web.simulation import DEFAULT_OUTPUTS

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork for its test client; httpx (a declared test dependency) still works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

INFUSION = {"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}
SCENARIO = {"dose": [INFUSION], "simulation": {"duration": "3 d", "output_every": "15 min"}}
SMALL_TRIAL = {
    "trial": {"name": "api test", "seed": 7, "assessments": ["24 h", "3 d"]},
    "population": {"n": 4, "preset": "treatment-resistant"},
    "arm": [{"name": "ketamine", "dose": [INFUSION]},
            {"name": "saline", "dose": [{"drug": "saline", "route": "iv", "duration": "40 min"}]}],
}
SMALL_TRIAL_TOML = """
[trial]
name = "api test (TOML)"
seed = 8
assessments = ["24 h", "3 d"]

[population]
n = 3
preset = "treatment-resistant"

[[arm]]
name = "ketamine"
[[arm.dose]]
drug = "racemic-ketamine"
route = "iv"
amount = "0.5 mg/kg"
duration = "40 min"
"""
MAX_PATIENTS = 50


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("web-data")


@pytest.fixture(scope="module")
def client(data_dir):
    with TestClient(create_app(data_dir, max_patients=MAX_PATIENTS, warm=False)) as c:
        yield c


def wait_for_trial(client, run_id: str, timeout_s: float = 180.0) -> tuple[dict, list[dict]]:
    """Poll until the trial has finished; the final view and every view seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = client.get(f"/api/trials/{run_id}").json()
        seen.append(view)
        if view["status"] not in ("queued", "running"):
            return view, seen
        time.sleep(0.2)
    raise AssertionError(f"trial {run_id} still {seen[-1]['status']} after {timeout_s} s")


def assert_refused(response, status: int, loc: list):
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == loc, detail
    assert detail[0]["msg"]
    return detail[0]


# ---------------------------------------------------------------------- service and reference data
def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and len(body["parameter_hash"]) == 64


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "research and teaching" in page.text.lower()
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/plotly.min.js").status_code == 200


def test_parameters_carry_value_unit_and_source(client):
    body = client.get("/api/parameters").json()
    assert body["count"] == len(body["parameters"]) > 50
    for p in body["parameters"]:
        assert p["unit"] and p["source"] and p["name"].startswith(p["layer"] + ".")
    assert body["disclaimer"] == DISCLAIMER


def test_options_and_examples(client):
    options = client.get("/api/options").json()
    assert options["drugs"]["midazolam"] == ["iv"]
    units = {o["name"]: o["unit"] for o in options["outputs"]}
    assert units["pk.ketamine_plasma"] == "ng/mL" and units["clinical.madrs"] == "points"
    examples = client.get("/api/examples").json()["trials"]
    assert {e["design"] for e in examples} == {"parallel", "crossover", "randomised-withdrawal", "add-on"}


def test_openapi_schema_documents_the_request_bodies(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/simulate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "dose" in body["properties"]
    assert "/api/trials/{run_id}/patients" in schema["paths"]


# ---------------------------------------------------------------------- simulation
def test_simulate_answers_series_with_units_and_records_the_run(client, data_dir):
    response = client.post("/api/simulate", json=SCENARIO)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["time"]["unit"] == "h" and body["time"]["values"][-1] == pytest.approx(72.0)
    series = {s["name"]: s for s in body["series"]}
    assert list(series) == list(DEFAULT_OUTPUTS)
    assert series["pk.ketamine_plasma"]["unit"] == "ng/mL"
    assert all(len(s["values"]) == len(body["time"]["values"]) for s in body["series"])
    assert 150 < max(series["pk.ketamine_plasma"]["values"]) < 215  # the Zarate/Murrough end-of-infusion range
    assert body["summary"]["pk.ketamine_plasma"]["cmax"]["unit"] == "ng/mL"
    assert body["disclaimer"] == DISCLAIMER
    run = client.get(f"/api/runs/{body['run_id']}").json()
    assert run["status"] == "done" and run["kind"] == "simulation" and run["inputs"] == SCENARIO
    assert run["parameter_hash"] == body["parameter_hash"] and run["wall_time"]["unit"] == "s"
    # answered and recorded, but no files: a page simulation is kept only when the service is asked to
    assert run["result_path"] is None and not (data_dir / "runs" / body["run_id"]).exists()


def test_simulation_files_are_kept_when_asked(tmp_path):
    with TestClient(create_app(tmp_path, warm=False, keep_simulations=True)) as c:
        body = c.post("/api/simulate", json=SCENARIO).json()
        run = c.get(f"/api/runs/{body['run_id']}").json()
    table = pd.read_parquet(tmp_path / run["result_path"] / "timeseries.parquet")
    assert "pk.ketamine_plasma [ng/mL]" in table.columns


def test_simulate_selected_outputs(client):
    response = client.post("/api/simulate", params={"output": ["clinical.madrs", "plasticity.bdnf"]}, json=SCENARIO)
    assert [s["name"] for s in response.json()["series"]] == ["clinical.madrs", "plasticity.bdnf"]
    every = client.post("/api/simulate", params={"output": "all"}, json=SCENARIO).json()["series"]
    assert len(every) > len(DEFAULT_OUTPUTS)


@pytest.mark.parametrize("scenario, loc", [
    ({"dose": [{**INFUSION, "amount": "-1 mg/kg"}]}, ["body", "dose", 0, "amount"]),
    ({"dose": [{**INFUSION, "drug": "aspirin"}]}, ["body", "dose", 0, "drug"]),
    ({"dose": [{**INFUSION, "route": "oral"}]}, ["body", "dose", 0, "duration"]),
    ({"dose": [{"drug": "midazolam", "route": "oral", "amount": "1 mg"}]}, ["body", "dose", 0, "route"]),
    ({"patient": {"weight": 70}}, ["body", "patient", "weight"]),
    ({"patient": {"weight": "7 kg"}}, ["body", "patient", "weight"]),
    ({"patient": {"height": "180 cm"}}, ["body", "patient"]),
    ({"simulation": {"duration": "40 w"}}, ["body", "simulation", "duration"]),  # the service's own cap
    ({"simulation": {"duration": "20 w", "output_every": "1 min"}}, ["body", "simulation", "output_every"]),
    ({"dose": [{**INFUSION, "duration": None, "at": ["0 h"], "every": "1 d"}]}, ["body", "dose", 0, "duration"]),
])
def test_simulate_bad_input_is_422_naming_the_field(client, scenario, loc):
    assert_refused(client.post("/api/simulate", json=scenario), 422, loc)


def test_options_offer_the_mechanisms_with_the_calibrated_ones_marked(client):
    options = client.get("/api/options").json()
    marked = {m["name"]: m["calibrated_model"] for m in options["mechanisms"]}
    assert marked["disinhibition"] and not marked["opioid"] and len(marked) == 7
    assert options["gases"] == ["nitrous-oxide"]


def test_simulate_under_a_chosen_mechanism(client):
    """The page's mechanism choice travels as the scenario's model table: with the GluN2B route only,
    the glutamate surge is gone."""
    calibrated = client.post("/api/simulate", params={"output": "synapse.glutamate"}, json=SCENARIO).json()
    chosen = client.post("/api/simulate", params={"output": "synapse.glutamate"},
                         json={**SCENARIO, "model": {"mechanisms": ["glun2b_eef2"]}})
    assert chosen.status_code == 200, chosen.text
    peak = max(chosen.json()["series"][0]["values"])
    assert max(calibrated["series"][0]["values"]) > 1.2 * peak
    assert client.get(f"/api/runs/{chosen.json()['run_id']}").json()["inputs"]["model"] == {"mechanisms": ["glun2b_eef2"]}


@pytest.mark.parametrize("model", [{"mechanisms": ["telepathy"]}, {"mechanisms": []}, {"mechanisms": ["opioid"]}])
def test_simulate_bad_mechanisms_are_422_naming_the_field(client, model):
    response = client.post("/api/simulate", json={**SCENARIO, "model": model})
    assert response.status_code == 422
    assert "mechanisms" in json.dumps(response.json())


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"", b'{"patient": {"baseline_madrs": NaN}}', b"[" * 5000])
def test_simulate_malformed_body_is_422(client, content):
    assert_refused(client.post("/api/simulate", content=content, headers={"content-type": "application/json"}), 422, ["body"])


def test_unknown_output_is_422(client):
    assert_refused(client.post("/api/simulate", params={"output": "pk.nothing"}, json=SCENARIO), 422, ["query", "output"])


def test_oversized_body_is_413(client):
    huge = {"dose": [INFUSION], "padding": "x" * 300_000}
    detail = assert_refused(client.post("/api/simulate", json=huge), 413, ["body"])
    assert detail["type"] == "too_large"


def test_solver_failure_is_422_and_recorded_as_failed(client, monkeypatch):
    module = sys.modules["ketasim.simulate"]
    real = module.simulate

    class Unfinished:
        status = "step size underflow"

    monkeypatch.setattr(module, "simulate", lambda *a, **k: (real(*a, **k), Unfinished())[1])
    detail = assert_refused(client.post("/api/simulate", json=SCENARIO), 422, ["body"])
    assert detail["type"] == "solver_failed"
    failed = client.get("/api/runs", params={"kind": "simulation", "status": "failed"}).json()["runs"]
    assert failed and "step size underflow" in failed[0]["error"]


# ---------------------------------------------------------------------- trials
def test_trial_runs_in_the_background_with_progress_and_results(client):
    started = client.post("/api/trials", json=SMALL_TRIAL)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert started.headers["location"] == f"/api/trials/{run_id}"
    assert started.json()["progress"] == {"done": 0, "total": 8, "unit": "patients", "fraction": 0.0}
    assert client.get("/healthz").status_code == 200  # the API answers while the trial runs
    view, seen = wait_for_trial(client, run_id)
    assert view["status"] == "done", view["error"]
    assert all(0 <= v["progress"]["done"] <= v["progress"]["total"] == 8 for v in seen)
    assert view["progress"]["done"] == 8 and view["wall_time"]["value"] > 0
    assert set(view["summary"]["arms"]) == {"ketamine", "saline"}
    assert view["summary"]["disclaimer"] == DISCLAIMER
    trajectories = {t["arm"]: t for t in view["figures"]["trajectories"]}
    assert trajectories["ketamine"]["time [h]"] == [0.0, 24.0, 72.0]

    parquet = client.get(view["links"]["patients_parquet"])
    assert parquet.status_code == 200 and parquet.headers["content-type"] == "application/vnd.apache.parquet"
    patients = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(patients) == 16 and "madrs [points]" in patients.columns  # 8 patients x 2 assessments
    csv = client.get(view["links"]["patients_csv"])
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == f"# {DISCLAIMER}"  # every download says what ketasim is for
    assert pd.read_csv(io.StringIO(csv.text), comment="#").shape == patients.shape
    report = client.get(view["links"]["report_html"])
    assert report.status_code == 200 and "research and teaching" in report.text.lower()

    listed = client.get("/api/runs", params={"kind": "trial"}).json()["runs"]
    assert run_id in [r["id"] for r in listed]


def test_trial_from_toml(client):
    started = client.post("/api/trials", content=SMALL_TRIAL_TOML.encode(), headers={"content-type": "application/toml"})
    assert started.status_code == 202, started.text
    view, _ = wait_for_trial(client, started.json()["id"])
    assert view["status"] == "done" and view["inputs"]["trial"]["name"] == "api test (TOML)"


@pytest.mark.parametrize("change, loc", [
    (lambda t: t["population"].update(n=MAX_PATIENTS), ["body", "population", "n"]),  # 2 arms: 100 > 50
    (lambda t: t["trial"].update(design="factorial"), ["body", "trial", "design"]),
    (lambda t: t["arm"][0]["dose"][0].update(amount="lots"), ["body", "arm", 0, "dose", 0, "amount"]),
    (lambda t: t.pop("arm"), ["body", "arm"]),
    (lambda t: t["trial"].update(seed="seven"), ["body", "trial", "seed"]),
])
def test_trial_bad_input_is_422_naming_the_field(client, change, loc):
    import copy

    trial = copy.deepcopy(SMALL_TRIAL)
    change(trial)
    assert_refused(client.post("/api/trials", json=trial), 422, loc)


def test_trial_toml_nested_too_deeply_is_422(client):
    response = client.post("/api/trials", content=b"x = " + b"[" * 5000, headers={"content-type": "application/toml"})
    assert response.status_code == 422


def test_trial_malformed_toml_is_422(client):
    response = client.post("/api/trials", content=b"[trial\nname =", headers={"content-type": "application/toml"})
    assert assert_refused(response, 422, ["body"])["type"] == "toml_invalid"


def test_unknown_trial_is_404(client):
    assert_refused(client.get("/api/trials/0123456789abcdef0123456789abcdef"), 404, ["path", "run_id"])
    assert_refused(client.get("/api/trials/nope/patients"), 404, ["path", "run_id"])
    assert_refused(client.get("/api/runs/nope"), 404, ["path", "run_id"])


def test_patients_of_an_unfinished_trial_is_409(client, data_dir):
    run_id = RunRegistry(data_dir).create("trial", SMALL_TRIAL, model_version="test", parameter_hash="0" * 64)
    assert_refused(client.get(f"/api/trials/{run_id}/patients"), 409, ["path", "run_id"])
    assert client.get(f"/api/trials/{run_id}").json()["status"] == "queued"


def test_bad_query_values_are_422(client):
    assert client.get("/api/runs", params={"limit": 0}).status_code == 422
    assert client.get("/api/runs", params={"kind": "bogus"}).status_code == 422
    assert client.get("/api/trials/x/patients", params={"format": "xlsx"}).status_code == 422


# ---------------------------------------------------------------------- registry and restart
def test_restart_marks_unfinished_runs_interrupted(tmp_path):
    registry = RunRegistry(tmp_path)
    running = registry.create("trial", SMALL_TRIAL, model_version="0", parameter_hash="0" * 64, status="running", total=8)
    queued = registry.create("trial", SMALL_TRIAL, model_version="0", parameter_hash="0" * 64)
    registry.set_progress(running, 3, 8)
    done = registry.create("simulation", SCENARIO, model_version="0", parameter_hash="0" * 64, status="running")
    registry.mark_done(done, "runs/x")

    app = create_app(tmp_path, warm=False)  # the "restart"
    assert app.state.interrupted_at_start == 2
    with TestClient(app) as c:
        runs = {r["id"]: r for r in c.get("/api/runs").json()["runs"]}
        assert runs[running]["status"] == runs[queued]["status"] == "interrupted"
        assert runs[running]["progress"]["done"] == 3 and "stopped" in runs[running]["error"]
        assert runs[done]["status"] == "done"
        assert c.get(f"/api/trials/{running}").json()["status"] == "interrupted"


def test_registry_survives_a_restart(tmp_path):
    with TestClient(create_app(tmp_path, warm=False)) as c:
        run_id = c.post("/api/simulate", json=SCENARIO).json()["run_id"]
    with TestClient(create_app(tmp_path, warm=False)) as c:
        assert c.get(f"/api/runs/{run_id}").json()["status"] == "done"


def test_registry_schema_wal_and_transitions(tmp_path):
    registry = RunRegistry(tmp_path)
    with sqlite3.connect(registry.path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    run_id = registry.create("trial", {"x": 1}, model_version="0", parameter_hash="h")
    registry.mark_running(run_id)
    registry.mark_done(run_id, "runs/r")
    registry.mark_failed(run_id, "too late")  # a finished run keeps its outcome
    run = registry.get(run_id)
    assert (run.status, run.error, run.result_path) == ("done", None, "runs/r")
    assert RunRegistry(tmp_path).get(run_id) == run  # reopened
    with pytest.raises(ValueError):
        registry.create("fit", {}, model_version="0", parameter_hash="h")


# ---------------------------------------------------------------------- load
def test_fifty_concurrent_simulations_all_succeed(tmp_path):
    """benchmarks/web_load.py against a real uvicorn server on loopback: all 50 answered 200 (latency
    is recorded in its JSON, not asserted; the benchmark itself writes results/benchmarks/web_load.json)."""
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "web_load.py"), "--requests", "50", "--days", "7",
                           "--out", str(tmp_path / "web_load.json")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "web_load.json").read_text())
    assert record["succeeded"] == record["requests"] == 50 and record["status_codes"] == [200]
