"""The FastAPI service: a JSON API (OpenAPI schema at ``/openapi.json``) and the single page at ``/``.

``create_app(data_dir, max_patients, scheduler=None)`` builds it; ``ketasim serve`` runs it with
uvicorn. Simulations run in a thread pool with a concurrency limit; trials run as background jobs
in worker processes (``jobs.py``); every run is kept in the registry (``ketasim.store``).

Input is refused with 422 naming the field (``errors.py``), oversized bodies with 413, unknown runs
with 404; nothing a client sends should produce a 500. Every quantity in an answer carries its
unit, and every answer about model output (and every download) carries the research-and-teaching
disclaimer. Registry reads and writes run in worker threads, never on the event loop. The limit on
pending trials is taken before the first ``await`` of a submission, so concurrent requests cannot
exceed it. Finished runs are pruned by ``keep_runs``/``keep_days``; a page simulation keeps its
registry row but writes no files unless ``keep_simulations``. Token authentication, security
headers and the request log are in ``security.py``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import threading
import time
import tomllib
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import anyio
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..errors import ScenarioError
from ..result import DISCLAIMER
from ..store import KINDS, STATUSES, Run, RunRegistry
from . import simulation as sim
from .errors import (
    BodySizeLimit,
    InputError,
    from_scenario_error,
    input_error_handler,
    insufficient_storage,
    storage_error_handler,
)
from .jobs import JobRunner, result_folder
from .security import RequestLog, SecurityHeaders, TokenAuth

MAX_BODY_BYTES = 256 * 1024
DEFAULT_MAX_PATIENTS = 2_000
MAX_PENDING_TRIALS = 16  # queued or running trial jobs; more are refused with 429
STATIC = Path(str(resources.files("ketasim").joinpath("web/static")))
RUN_ID = PathParam(..., description="run id (32 hex digits)", max_length=64)


@dataclass
class Service:
    """What the routes share: the registry, the parameter set, the job runner and the limits."""

    registry: RunRegistry
    params: Any
    runner: JobRunner
    max_patients: int
    model_version: str
    parameter_hash: str
    simulation_slots: anyio.CapacityLimiter | None = None
    kernel: dict[str, str] = field(default_factory=lambda: {"state": "not loaded"})
    keep_simulations: bool = False
    keep_runs: int | None = None
    keep_days: float | None = None
    #: trial submissions past the pending check whose job is not yet submitted
    admitting: int = 0
    data_quota_mb: float | None = None
    _size: tuple[float, int] = (-1e9, 0)  # (when measured, bytes): the folder is walked at most every 2 s

    def prune(self) -> list[str]:
        return self.registry.prune(keep_runs=self.keep_runs, keep_days=self.keep_days)

    def data_bytes(self) -> int:
        now = time.monotonic()
        if now - self._size[0] > 2.0:
            self._size = (now, folder_bytes(self.registry.folder))
        return self._size[1]

    def check_quota(self) -> None:
        """507 before a run that would write files, when the data folder has reached its quota."""
        if self.data_quota_mb is not None and self.data_bytes() >= self.data_quota_mb * 1e6:
            raise insufficient_storage(f"{self.data_bytes() / 1e6:.1f} MB of its {self.data_quota_mb:g} MB quota")


def folder_bytes(folder: Path) -> int:
    """Bytes of every file below ``folder`` (files vanishing meanwhile are skipped)."""
    total, stack = 0, [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


#: simulations at once: the compiled kernel releases the GIL and uses no numba threading layer (the
#: CPU engine spreads a batch over its own thread pool), so threads may enter it together
SIMULATIONS_AT_ONCE = 4


# ---------------------------------------------------------------------- request bodies
def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InputError(["body"], f"malformed JSON: {exc}", "json_invalid") from None
    if not isinstance(data, dict):
        raise InputError(["body"], f"must be a JSON object (a {what}), not {type(data).__name__}", "type_error")
    return data


def parse_trial_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """A trial as JSON, or as TOML (``Content-Type: application/toml``) like ``ketasim trial`` reads."""
    if content_type.split(";")[0].strip().lower() in ("application/toml", "text/toml"):
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InputError(["body"], "the TOML text is not UTF-8", "toml_invalid") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(["body"], f"malformed TOML: {exc}", "toml_invalid") from None
        except RecursionError:  # Python 3.11's tomllib has no nesting limit
            raise InputError(["body"], "the TOML text is nested too deeply", "toml_invalid") from None
    return parse_json_object(raw, "trial")


def validate_trial(trial: dict[str, Any], max_patients: int):
    from ..trial import TrialSpec

    try:
        spec = TrialSpec.from_dict(trial)
    except ScenarioError as exc:
        raise from_scenario_error(exc) from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        raise InputError(["body"], f"invalid trial: {exc}") from None
    if spec.n_patients > max_patients:
        raise InputError(["body", "population", "n"],
                         f"{spec.n_patients} patients in all; this service runs at most {max_patients} per trial "
                         "(ketasim serve --max-patients, or the command line for larger trials)")
    return spec


# ---------------------------------------------------------------------- answers
def progress_view(run: Run) -> dict[str, Any]:
    total = run.progress_total
    return {"done": run.progress_done, "total": total, "unit": "patients" if run.kind == "trial" else "runs",
            "fraction": (run.progress_done / total) if total else 0.0}


def run_view(run: Run, inputs: bool = True) -> dict[str, Any]:
    view = {"id": run.id, "kind": run.kind, "status": run.status, "created": run.created, "started": run.started,
            "finished": run.finished, "wall_time": {"value": run.wall_time_s, "unit": "s"},
            "progress": progress_view(run), "model_version": run.model_version, "parameter_hash": run.parameter_hash,
            "result_path": run.result_path, "error": run.error}
    if inputs:
        view["inputs"] = run.inputs
    return view


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def trial_view(run: Run, data_dir: Path) -> dict[str, Any]:
    view = run_view(run)
    if run.status == "done":
        folder = result_folder(data_dir, run.id)
        view["summary"] = _read_json(folder / "summary.json")
        view["figures"] = _read_json(folder / "figures.json")
        base = f"/api/trials/{run.id}"
        view["links"] = {"patients_parquet": f"{base}/patients?format=parquet",
                         "patients_csv": f"{base}/patients?format=csv", "report_html": f"{base}/report"}
    view["disclaimer"] = DISCLAIMER
    return view


def trial_request_schema() -> dict[str, Any]:
    """OpenAPI schema of a trial body (``TrialSpec.from_dict`` checks the details and names the field)."""
    scenario = sim_scenario_schema()
    treatment = {"type": "object", "properties": {"dose": scenario["properties"]["dose"],
                                                  "therapy": scenario["properties"]["therapy"]}}
    arm = {"type": "object", "required": ["name"],
           "properties": {"name": {"type": "string"}, **treatment["properties"]}}
    return {"type": "object", "required": ["trial", "population", "arm"],
            "description": "a trial file as JSON (the TOML of `ketasim trial`); TOML itself is accepted with "
                           "Content-Type: application/toml",
            "properties": {
                "trial": {"type": "object", "required": ["seed", "assessments"],
                          "properties": {"name": {"type": "string"}, "seed": {"type": "integer", "minimum": 0},
                                         "design": {"enum": ["parallel", "crossover", "randomised-withdrawal", "add-on"]},
                                         "assessments": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                         "control": {"type": "string"}, "washout": {"type": "string"}}},
                "population": {"type": "object", "required": ["n"],
                               "properties": {"n": {"type": "integer", "minimum": 1}, "preset": {"type": "string"}}},
                "arm": {"type": "array", "items": arm, "minItems": 1},
                "run_in": {"type": "object"},
                "background": {"type": "object"}}}


@functools.lru_cache(maxsize=1)
def sim_scenario_schema() -> dict[str, Any]:
    from ..scenario import scenario_schema

    schema = dict(scenario_schema())
    for key in ("$schema", "$id"):  # identifiers of the standalone file, not of an OpenAPI component
        schema.pop(key, None)
    return schema


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": schema}}}}


def options(service: Service) -> dict[str, Any]:
    """What the page's form offers: drugs with their routes, patient choices, the mechanisms (hypotheses)
    with those of the calibrated model marked, outputs with units."""
    from ..model.mechanisms import DEFAULT_MECHANISMS, MECHANISMS
    from ..model.system import default_model
    from ..scenario import DRUG_ROUTES, GASES, INERT_DRUGS, THERAPIES

    patient = sim_scenario_schema()["properties"]["patient"]["properties"]
    choices = {k: v["enum"] for k, v in patient.items() if "enum" in v}
    choices["comedications"] = patient["comedications"]["items"]["enum"]
    return {"drugs": {d: list(r) for d, r in DRUG_ROUTES.items()}, "inert_drugs": list(INERT_DRUGS),
            "gases": list(GASES), "therapies": list(THERAPIES), "patient": choices,
            "mechanisms": [{"name": m.name, "title": m.title, "kind": m.kind, "calibrated_model": m.name in DEFAULT_MECHANISMS}
                           for m in MECHANISMS.values()],
            "outputs": [{"name": v.name, "unit": v.unit, "description": v.description} for v in default_model().outputs],
            "default_outputs": list(sim.DEFAULT_OUTPUTS),
            "limits": {"duration": {"value": sim.MAX_DURATION_H, "unit": "h"}, "output_points": sim.MAX_OUTPUT_POINTS,
                       "events": sim.MAX_EVENTS, "trial_patients": service.max_patients,
                       "request_body": {"value": MAX_BODY_BYTES, "unit": "bytes"}},
            "disclaimer": DISCLAIMER}


def example_trials() -> list[dict[str, Any]]:
    out = []
    for path in sorted(STATIC.glob("trial-*.toml")):
        text = path.read_text(encoding="utf-8")
        trial = tomllib.loads(text)
        out.append({"id": path.stem.removeprefix("trial-"), "name": trial["trial"]["name"],
                    "design": trial["trial"].get("design", "parallel"), "toml": text, "trial": trial})
    return out


def _warm_kernel(service: Service) -> None:
    """Compile or load the model kernel before the first request needs it (tens of seconds cold)."""
    from ..simulate import simulate

    service.kernel["state"] = "loading"
    try:
        simulate({"dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg"}],
                  "simulation": {"duration": "1 h", "output_every": "30 min"}}, params=service.params)
        service.kernel["state"] = "ready"
    except Exception as exc:  # the service still answers; the first simulation will report the problem
        service.kernel["state"] = f"failed: {exc}"


# ---------------------------------------------------------------------- the app
def create_app(data_dir: str | Path, max_patients: int = DEFAULT_MAX_PATIENTS, scheduler: str | None = None,
               *, trial_workers: int = 1, warm: bool = True, token: str | None = None, keep_runs: int | None = None,
               keep_days: float | None = None, keep_simulations: bool = False,
               data_quota_mb: float | None = None) -> FastAPI:
    """The service on ``data_dir`` (registry and results). Runs left unfinished by an earlier
    service on the same folder are marked ``interrupted`` here, before anything else happens, and
    finished runs beyond ``keep_runs`` or older than ``keep_days`` are deleted (then after every
    new run). With ``token``, the API answers 401 to a request without it. With ``data_quota_mb``,
    runs that would write files are refused with 507 once the data folder holds that much; a disk
    that fills up answers 507 as well, and the run is recorded as failed."""
    from ..params import load_parameters
    from ..simulate import _version

    if not 1 <= int(max_patients) <= 1_000_000:
        raise ValueError(f"max_patients={max_patients!r} must be in 1..1000000")
    if token is not None and len(token) < 16:
        raise ValueError("the service token must have at least 16 characters")
    if keep_runs is not None and not 1 <= int(keep_runs) <= 10**9:
        raise ValueError(f"keep_runs={keep_runs!r} must be at least 1")
    if keep_days is not None and not 0 < float(keep_days) <= 36500:
        raise ValueError(f"keep_days={keep_days!r} must be in (0, 36500]")
    if data_quota_mb is not None and not float(data_quota_mb) > 0:
        raise ValueError(f"data_quota_mb={data_quota_mb!r} must be more than 0")
    registry = RunRegistry(data_dir)
    interrupted = registry.mark_interrupted()
    params = load_parameters()
    service = Service(registry=registry, params=params, runner=JobRunner(registry, trial_workers, scheduler),
                      max_patients=int(max_patients), model_version=_version(), parameter_hash=params.digest(),
                      keep_simulations=bool(keep_simulations), keep_runs=keep_runs, keep_days=keep_days,
                      data_quota_mb=data_quota_mb)
    service.prune()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warm:
            threading.Thread(target=_warm_kernel, args=(service,), name="ketasim-kernel-warmup", daemon=True).start()
        yield
        await asyncio.to_thread(service.runner.shutdown)

    app = FastAPI(title="ketasim", version=service.model_version, lifespan=lifespan,
                  description="Mechanistic simulation of ketamine's antidepressant action, from dose to depression "
                              f"score. {DISCLAIMER}")
    app.state.service = service
    app.state.interrupted_at_start = interrupted
    app.add_exception_handler(InputError, input_error_handler)
    app.add_exception_handler(OSError, storage_error_handler)
    app.add_exception_handler(sqlite3.OperationalError, storage_error_handler)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    if token:
        app.add_middleware(TokenAuth, token=token)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so 401 and 413 answers carry the headers too
    app.add_middleware(RequestLog)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def slots() -> anyio.CapacityLimiter:
        if service.simulation_slots is None:  # made inside the event loop that uses it
            service.simulation_slots = anyio.CapacityLimiter(SIMULATIONS_AT_ONCE)
        return service.simulation_slots

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz", summary="Liveness and kernel state")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model_version": service.model_version, "parameter_hash": service.parameter_hash,
                "kernel": service.kernel["state"]}

    @app.get("/api/parameters", summary="Every model parameter with value, unit, range, variability and source")
    async def parameters() -> dict[str, Any]:
        rows = [{"name": p.name, "layer": p.layer, "value": p.value, "unit": p.unit, "range": list(p.range), "cv": p.cv,
                 "source": p.source, "provenance": p.provenance, "description": p.description}
                for p in (params[n] for n in params)]
        return {"parameter_hash": service.parameter_hash, "count": len(rows), "parameters": rows, "disclaimer": DISCLAIMER}

    @app.get("/api/options", summary="Choices for a scenario (drugs, routes, patient) and the outputs with units")
    async def scenario_options() -> dict[str, Any]:
        return await anyio.to_thread.run_sync(options, service)

    @app.get("/api/examples", summary="Example trials (smaller copies of examples/trials) as TOML and JSON")
    async def examples() -> dict[str, Any]:
        return {"trials": await anyio.to_thread.run_sync(example_trials), "disclaimer": DISCLAIMER}

    @app.post("/api/simulate", summary="Simulate one scenario: time series of the requested outputs and the summary",
              openapi_extra=_json_body(sim_scenario_schema(), "a scenario (the same schema as the TOML files)"),
              responses={422: {"description": "invalid scenario (the field is named), or the solver did not finish "
                                              "(type solver_failed)"}, 413: {"description": "body too large"}})
    async def simulate(request: Request,
                       output: list[str] | None = Query(None, description="output names (repeat); default: the page's "
                                                                          "layers; 'all' for every output")) -> Response:
        scenario = parse_json_object(await request.body(), "scenario")
        names = resolve_outputs(output)
        if service.keep_simulations:
            await anyio.to_thread.run_sync(service.check_quota)
        body = await anyio.to_thread.run_sync(sim.run_simulation, service, scenario, names, limiter=slots())
        if service.keep_runs is not None or service.keep_days is not None:
            await anyio.to_thread.run_sync(service.prune)
        return Response(body, media_type="application/json")

    @app.post("/api/trials", status_code=202, summary="Start a virtual trial as a background job; answers its id",
              openapi_extra=_json_body(trial_request_schema(), "a trial (the TOML of `ketasim trial` as JSON)"),
              responses={422: {"description": "invalid trial, or more patients than the service's maximum"},
                         429: {"description": "too many trials queued or running"}})
    async def start_trial(request: Request) -> JSONResponse:
        trial = parse_trial_body(await request.body(), request.headers.get("content-type", "application/json"))
        spec = await anyio.to_thread.run_sync(validate_trial, trial, service.max_patients)
        await anyio.to_thread.run_sync(service.check_quota)
        # check and take the slot with no await in between: the event loop runs one handler at a time here
        if service.runner.pending() + service.admitting >= MAX_PENDING_TRIALS:
            raise InputError(["body"], f"{MAX_PENDING_TRIALS} trials are queued or running; try again later",
                             "too_many_jobs", status=429)
        service.admitting += 1
        try:
            run_id = await anyio.to_thread.run_sync(functools.partial(
                registry.create, "trial", trial, model_version=service.model_version,
                parameter_hash=service.parameter_hash, total=spec.n_patients))
            service.runner.submit(run_id, trial)
        finally:
            service.admitting -= 1
        run = await anyio.to_thread.run_sync(registry.get, run_id)
        if service.keep_runs is not None or service.keep_days is not None:
            await anyio.to_thread.run_sync(service.prune)
        return JSONResponse(trial_view(run, registry.folder), status_code=202, headers={"Location": f"/api/trials/{run_id}"})

    async def trial_run(run_id: str) -> Run:
        run = await anyio.to_thread.run_sync(registry.get, run_id)
        if run is None or run.kind != "trial":
            raise InputError(["path", "run_id"], f"no trial with id {run_id!r}", "not_found", status=404)
        return run

    @app.get("/api/trials/{run_id}", summary="A trial's status, progress, and summary and figures when done",
             responses={404: {"description": "no such trial"}})
    async def trial_status(run_id: str = RUN_ID) -> dict[str, Any]:
        run = await trial_run(run_id)
        return sim.json_safe(await anyio.to_thread.run_sync(trial_view, run, registry.folder))  # summary.json may hold NaN

    async def finished_file(run_id: str, name: str) -> Path:
        run = await trial_run(run_id)
        if run.status != "done":
            raise InputError(["path", "run_id"], f"the trial is {run.status}; results exist only when it is done",
                             "not_done", status=409)
        path = result_folder(registry.folder, run_id) / name
        if not path.is_file():
            raise InputError(["path", "run_id"], f"the trial's {name} is missing from the data folder", "not_found",
                             status=404)
        return path

    @app.get("/api/trials/{run_id}/patients", summary="The patients table of a finished trial (Parquet or CSV)",
             responses={200: {"content": {"application/vnd.apache.parquet": {}, "text/csv": {}}},
                        404: {"description": "no such trial"}, 409: {"description": "the trial is not done"}})
    async def trial_patients(run_id: str = RUN_ID,
                             format: Literal["parquet", "csv"] = Query("parquet", description="file format")) -> Response:
        path = await finished_file(run_id, "patients.parquet")
        if format == "parquet":
            return FileResponse(path, media_type="application/vnd.apache.parquet",
                                filename=f"ketasim-trial-{run_id}-patients.parquet")
        text = await anyio.to_thread.run_sync(_parquet_to_csv, path)
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="ketasim-trial-{run_id}-patients.csv"'})

    @app.get("/api/trials/{run_id}/report", response_class=HTMLResponse, summary="The HTML report of a finished trial",
             responses={404: {"description": "no such trial"}, 409: {"description": "the trial is not done"}})
    async def trial_report(run_id: str = RUN_ID) -> FileResponse:
        return FileResponse(await finished_file(run_id, "report.html"), media_type="text/html")

    @app.get("/api/runs", summary="The run registry, newest first")
    async def runs(kind: Literal[KINDS] | None = Query(None), status: Literal[STATUSES] | None = Query(None),
                   limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=10**9)) -> dict[str, Any]:
        found = await anyio.to_thread.run_sync(functools.partial(registry.list, kind=kind, status=status, limit=limit,
                                                                 offset=offset))
        return {"runs": [run_view(r) for r in found], "count": len(found), "limit": limit, "offset": offset}

    @app.get("/api/runs/{run_id}", summary="One run of the registry", responses={404: {"description": "no such run"}})
    async def one_run(run_id: str = RUN_ID) -> dict[str, Any]:
        run = await anyio.to_thread.run_sync(registry.get, run_id)
        if run is None:
            raise InputError(["path", "run_id"], f"no run with id {run_id!r}", "not_found", status=404)
        return run_view(run)

    return app


def resolve_outputs(requested: list[str] | None) -> list[str]:
    from ..model.system import default_model

    known = [v.name for v in default_model().outputs]
    if not requested:
        return list(sim.DEFAULT_OUTPUTS)
    if requested == ["all"]:
        return known
    unknown = [n for n in requested if n not in known]
    if unknown:
        raise InputError(["query", "output"], f"unknown output(s) {', '.join(map(repr, unknown[:5]))}; allowed: 'all' or "
                                              f"{', '.join(known)}")
    return list(dict.fromkeys(requested))


def _parquet_to_csv(path: Path) -> str:
    """The table as CSV, its first line the disclaimer as a comment (read back with ``comment="#"``)."""
    import pandas as pd

    return f"# {DISCLAIMER}\n" + pd.read_parquet(path).to_csv(index=False)
