"""Failures of the service tested, not assumed (issue 16 part 4): a trial worker killed mid-trial,
the service restarted while a trial runs, the data folder at its quota or the disk full, and a
trial on a real Dask scheduler started here."""

from __future__ import annotations

import errno
import io
import os
import signal
import sqlite3
import time
import warnings

import pandas as pd

from ketasim.store import RunRegistry
from ketasim.web import create_app
from ketasim.web import simulation as web_simulation

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

INFUSION = {"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}
SCENARIO = {"dose": [INFUSION], "simulation": {"duration": "3 d", "output_every": "15 min"}}
# long enough that a worker is reliably caught while it runs: many patients over 12 weeks
LONG_TRIAL = {"trial": {"name": "long", "seed": 5, "assessments": ["24 h", "12 w"]},
              "population": {"n": 600, "preset": "treatment-resistant"},
              "arm": [{"name": "ketamine", "dose": [{**INFUSION, "every": "3.5 d", "count": 24}]}]}
SMALL_TRIAL = {"trial": {"name": "small", "seed": 6, "assessments": ["24 h", "3 d"]},
               "population": {"n": 6, "preset": "treatment-resistant"},
               "arm": [{"name": "ketamine", "dose": [INFUSION]},
                       {"name": "saline", "dose": [{"drug": "saline", "route": "iv", "duration": "40 min"}]}]}


def wait_for(client, run_id: str, until, timeout_s: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = client.get(f"/api/trials/{run_id}").json()
        if until(view):
            return view
        time.sleep(0.1)
    raise AssertionError(f"trial {run_id}: still {view['status']} after {timeout_s} s")


def registry_intact(folder) -> bool:
    with sqlite3.connect(RunRegistry(folder).path) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_worker_killed_mid_trial_fails_the_run_and_the_service_goes_on(tmp_path):
    with TestClient(create_app(tmp_path, warm=False, max_patients=1000)) as client:
        run_id = client.post("/api/trials", json=LONG_TRIAL).json()["id"]
        wait_for(client, run_id, lambda v: v["status"] == "running")
        process = client.app.state.service.runner._processes[run_id]
        os.kill(process.pid, signal.SIGKILL)  # as the out-of-memory killer would
        view = wait_for(client, run_id, lambda v: v["status"] not in ("queued", "running"))
        assert view["status"] == "failed" and "exit code -9" in view["error"], view
        assert client.get(f"/api/trials/{run_id}/patients").status_code == 409  # no result served
        assert client.get("/healthz").json()["status"] == "ok"
        retry = client.post("/api/trials", json=SMALL_TRIAL).json()["id"]
        assert wait_for(client, retry, lambda v: v["status"] not in ("queued", "running"))["status"] == "done"
    assert registry_intact(tmp_path)


def test_a_restart_while_a_trial_runs_leaves_it_interrupted_and_serves_nothing_of_it(tmp_path):
    with TestClient(create_app(tmp_path, warm=False, max_patients=1000)) as client:
        run_id = client.post("/api/trials", json=LONG_TRIAL).json()["id"]
        wait_for(client, run_id, lambda v: v["status"] == "running")
    # the service stopped (its lifespan ends the workers); a new one opens the same folder
    with TestClient(create_app(tmp_path, warm=False, max_patients=1000)) as client:
        view = client.get(f"/api/trials/{run_id}").json()
        assert view["status"] == "interrupted" and "stopped" in view["error"]
        assert client.get(f"/api/trials/{run_id}/patients").status_code == 409
        assert client.get(f"/api/trials/{run_id}/report").status_code == 409
        assert not (tmp_path / "runs" / run_id / "patients.parquet").exists()  # results are written whole or not at all
        assert client.post("/api/simulate", json=SCENARIO).status_code == 200
    assert registry_intact(tmp_path)


def test_the_data_quota_refuses_runs_that_would_write_with_507(tmp_path):
    with TestClient(create_app(tmp_path, warm=False, keep_simulations=True, max_patients=50)) as client:
        assert client.post("/api/simulate", json=SCENARIO).status_code == 200
    size = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    with TestClient(create_app(tmp_path, warm=False, keep_simulations=True, max_patients=50,
                               data_quota_mb=size / 2 / 1e6)) as client:
        for refused in (client.post("/api/simulate", json=SCENARIO), client.post("/api/trials", json=SMALL_TRIAL)):
            assert refused.status_code == 507, refused.text
            detail = refused.json()["detail"][0]
            assert detail["type"] == "insufficient_storage" and "quota" in detail["msg"]
        assert client.get("/api/runs").json()["count"] == 1  # nothing half-recorded
        assert client.get("/healthz").status_code == 200
    assert registry_intact(tmp_path)


def test_a_full_disk_is_a_507_and_a_failed_run_not_a_500(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(web_simulation, "_keep", no_space)
    with TestClient(create_app(tmp_path, warm=False, keep_simulations=True), raise_server_exceptions=False) as client:
        answer = client.post("/api/simulate", json=SCENARIO)
        assert answer.status_code == 507 and answer.json()["detail"][0]["type"] == "insufficient_storage"
        runs = client.get("/api/runs").json()["runs"]
        assert runs[0]["status"] == "failed" and "No space left" in runs[0]["error"]
    assert registry_intact(tmp_path)


def test_a_trial_on_a_real_dask_scheduler_gives_the_same_patients(tmp_path):
    import distributed

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with TestClient(create_app(tmp_path / "dask", warm=False, scheduler=cluster.scheduler_address)) as client:
            run_id = client.post("/api/trials", json=SMALL_TRIAL).json()["id"]
            view = wait_for(client, run_id, lambda v: v["status"] not in ("queued", "running"))
            assert view["status"] == "done", view
            on_dask = pd.read_parquet(io.BytesIO(client.get(f"/api/trials/{run_id}/patients").content))
    with TestClient(create_app(tmp_path / "local", warm=False)) as client:
        run_id = client.post("/api/trials", json=SMALL_TRIAL).json()["id"]
        assert wait_for(client, run_id, lambda v: v["status"] not in ("queued", "running"))["status"] == "done"
        local = pd.read_parquet(io.BytesIO(client.get(f"/api/trials/{run_id}/patients").content))
    pd.testing.assert_frame_equal(on_dask, local)
