"""Fuzzing the web API from its own OpenAPI schema (schemathesis): no request may get a server error,
with token authentication on (every case sends the token).

Schemathesis generates valid and invalid bodies, query values and path parameters for every
operation. The trial endpoint may start real jobs (at most a few tiny ones: the app allows 4
patients per trial), so the worker processes are shut down at the end. The number of cases and
server errors is written to ``test-artifacts/web_fuzz.json``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

with warnings.catch_warnings():
    # Starlette 1.x prefers the httpx2 fork for its test client; httpx (a declared test dependency) still works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient` is deprecated")
    import schemathesis
    from fastapi.testclient import TestClient  # noqa: F401  (imported here, under the filter, before schemathesis uses it)

from ketasim.web import create_app

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # schemathesis gives every operation's test the same id, and pytest-xdist's file and scope schedulers
    # keep one item per id: under -n this file would fuzz one operation and pass, so it refuses instead
    pytest.fail("tests/test_web_fuzz.py cannot run under pytest-xdist (-n): its cases share one test id; "
                "pass --ignore=tests/test_web_fuzz.py and run it in a separate pytest without -n, as "
                "`make test` does", pytrace=False)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
EXAMPLES_PER_OPERATION = 50
TALLY = {"cases": 0, "server_errors": 0, "by_status": {}, "failures": []}


def _data_dir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="ketasim-fuzz-"))


TOKEN = "fuzz-token-0123456789abcdef"  # the service runs with token authentication on, as a shared one would
APP = create_app(_data_dir(), max_patients=4, warm=False, token=TOKEN)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def tally_and_stop_workers():
    yield
    APP.state.service.runner.shutdown()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "web_fuzz.json").write_text(json.dumps(TALLY, indent=2))
    # the token reached the routes: the cases were answered by the API, not all refused at the door
    assert set(TALLY["by_status"]) - {"401"}, TALLY["by_status"]


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_no_server_errors(case):
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    TALLY["cases"] += 1
    code = str(response.status_code)
    TALLY["by_status"][code] = TALLY["by_status"].get(code, 0) + 1
    if response.status_code >= 500:
        TALLY["server_errors"] += 1
        TALLY["failures"].append({"operation": f"{case.method} {case.path}", "body": repr(case.body)[:500],
                                  "query": repr(case.query), "status": response.status_code})
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
