"""The service as a shared one runs it (issue 16 part 3): token authentication, security headers,
a request log without patient inputs, atomic admission under a burst of submissions, retention of
finished runs, and `ketasim serve` refusing an exposed address without a token."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import sqlite3
import warnings

import httpx
import pytest
from typer.testing import CliRunner

from ketasim.cli import app as cli
from ketasim.store import RunRegistry
from ketasim.web import create_app
from ketasim.web.app import MAX_PENDING_TRIALS
from ketasim.web.security import CONTENT_SECURITY_POLICY

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

TOKEN = "test-token-0123456789abcdef"
INFUSION = {"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}
TINY_TRIAL = {"trial": {"name": "burst", "seed": 1, "assessments": ["24 h"]},
              "population": {"n": 2, "preset": "treatment-resistant"},
              "arm": [{"name": "ketamine", "dose": [INFUSION]}]}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    with TestClient(create_app(tmp_path_factory.mktemp("guarded"), warm=False, token=TOKEN)) as c:
        yield c


# ---------------------------------------------------------------------- token
@pytest.mark.parametrize("path", ["/api/options", "/api/runs", "/api/parameters"])
def test_the_api_needs_the_token(guarded, path):
    missing = guarded.get(path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["detail"][0]["loc"] == ["header", "authorization"]
    assert guarded.get(path, headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert guarded.get(path, params={"token": TOKEN}).status_code == 200  # download links a browser follows


def test_a_post_without_the_token_is_refused_before_anything_runs(guarded):
    answer = guarded.post("/api/trials", json=TINY_TRIAL)
    assert answer.status_code == 401
    assert guarded.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).json()["count"] == 0


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/healthz", "/openapi.json"])
def test_the_page_its_files_and_the_schema_need_no_token(guarded, path):
    assert guarded.get(path).status_code == 200


def test_a_short_token_is_refused(tmp_path):
    with pytest.raises(ValueError, match="16 characters"):
        create_app(tmp_path, warm=False, token="short")


# ---------------------------------------------------------------------- headers
def test_security_headers_and_a_policy_without_inline_script(guarded):
    page = guarded.get("/")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    script_src = re.search(r"script-src ([^;]+)", policy).group(1)
    assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src and "http" not in script_src
    # and the page needs none: every script is a file of its own
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, flags=re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handlers either
    refused = guarded.get("/api/options")  # a 401 carries the headers too
    assert refused.headers["x-content-type-options"] == "nosniff"


# ---------------------------------------------------------------------- request log
def test_the_request_log_holds_no_patient_inputs_and_no_token(tmp_path, caplog):
    scenario = {"patient": {"weight": "83.7 kg", "age": "57 years"}, "dose": [INFUSION],
                "simulation": {"duration": "2 h"}}
    with TestClient(create_app(tmp_path, warm=False)) as c, caplog.at_level(logging.INFO, "ketasim.web.requests"):
        assert c.post("/api/simulate", json=scenario).status_code == 200
        c.get("/api/runs", params={"token": "do-not-log-me", "limit": 3})
    lines = [r.getMessage() for r in caplog.records if r.name == "ketasim.web.requests"]
    assert any(re.fullmatch(r"POST /api/simulate 200 [0-9.]+ ms", line) for line in lines), lines
    assert any(line.startswith("GET /api/runs 200 ") for line in lines), lines
    text = "\n".join(lines)
    for secret in ("83.7", "57", "racemic", "do-not-log-me", "limit"):
        assert secret not in text.replace("ms", ""), secret


# ---------------------------------------------------------------------- admission
def test_the_pending_limit_holds_under_200_concurrent_submissions(tmp_path, monkeypatch):
    """200 trials posted at once against a service whose jobs never finish: exactly the limit is
    accepted, the rest get 429, nothing gets a 5xx, and the registry holds exactly the accepted ones."""
    app = create_app(tmp_path, warm=False, max_patients=10)
    runner = app.state.service.runner
    accepted_jobs = []
    monkeypatch.setattr(runner, "submit", lambda run_id, trial: accepted_jobs.append(run_id))
    monkeypatch.setattr(runner, "pending", lambda: len(accepted_jobs))

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post("/api/trials", json=TINY_TRIAL) for _ in range(200)))

    answers = asyncio.run(burst())
    codes = [a.status_code for a in answers]
    assert codes.count(202) == MAX_PENDING_TRIALS and codes.count(429) == 200 - MAX_PENDING_TRIALS, sorted(set(codes))
    assert len(accepted_jobs) == MAX_PENDING_TRIALS == RunRegistry(tmp_path).count()


# ---------------------------------------------------------------------- retention
def _finished_runs(registry: RunRegistry, n: int) -> list[str]:
    ids = []
    for i in range(n):
        run_id = registry.create("trial", {"i": i}, model_version="0", parameter_hash="h")
        folder = registry.folder / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text("{}")
        registry.mark_done(run_id, f"runs/{run_id}")
        ids.append(run_id)
    return ids


def test_retention_keeps_the_newest_runs_and_never_an_unfinished_one(tmp_path):
    registry = RunRegistry(tmp_path)
    old = _finished_runs(registry, 5)
    queued = registry.create("trial", {"still": "queued"}, model_version="0", parameter_hash="h")
    deleted = registry.prune(keep_runs=2)
    assert sorted(deleted) == sorted(old[:3])
    assert {r.id for r in registry.list()} == {*old[3:], queued}
    assert not any((tmp_path / "runs" / i).exists() for i in old[:3])
    assert all((tmp_path / "runs" / i / "summary.json").is_file() for i in old[3:])


def test_retention_by_age(tmp_path):
    registry = RunRegistry(tmp_path)
    ids = _finished_runs(registry, 3)
    long_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)).isoformat(timespec="milliseconds")
    with sqlite3.connect(registry.path) as con:
        con.execute("UPDATE runs SET finished = ? WHERE id = ?", (long_ago, ids[0]))
    assert registry.prune(keep_days=7) == [ids[0]]
    assert registry.prune(keep_days=7) == []


def test_the_service_prunes_at_start_and_after_each_run(tmp_path):
    _finished_runs(RunRegistry(tmp_path), 4)
    with TestClient(create_app(tmp_path, warm=False, keep_runs=2)) as c:
        assert c.get("/api/runs").json()["count"] == 2  # pruned at start
        body = c.post("/api/simulate", json={"dose": [INFUSION], "simulation": {"duration": "1 h"}}).json()
        runs = c.get("/api/runs").json()["runs"]
    assert len(runs) == 2 and runs[0]["id"] == body["run_id"]


# ---------------------------------------------------------------------- ketasim serve
runner = CliRunner()


@pytest.mark.parametrize("args, words", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0"),
    (["--host", "192.168.1.20"], "--token"),
    (["--token", "short"], "--token"),
    (["--keep-runs", "0"], "--keep-runs"),
    (["--keep-days", "-1"], "--keep-days"),
])
def test_serve_refuses_unsafe_or_bad_settings(tmp_path, args, words):
    result = runner.invoke(cli, ["serve", "--data", str(tmp_path / "d"), *args], env={"KETASIM_TOKEN": ""})
    assert result.exit_code == 2, result.output
    assert words in result.output
