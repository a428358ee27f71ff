"""One simulation for the web: checked against the service's limits, run, recorded, answered with units.

Runs in a worker thread (the numba kernel releases the GIL), never on the event loop. Every run is
recorded in the registry (``running`` first, then ``done`` or ``failed``) and its time series and
summary are kept as ``runs/ID/timeseries.parquet`` and ``summary.json``.

A solver failure is answered 422 with type ``solver_failed`` (the scenario could not be simulated;
the same case the CLI reports with exit status 3), never 500.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import KetasimError, ScenarioError
from ..result import DISCLAIMER
from .errors import InputError, from_scenario_error
from .jobs import RUNS_FOLDER, result_folder

#: the layers the page shows, answered when a request names no outputs
DEFAULT_OUTPUTS = (
    "pk.ketamine_plasma", "pk.ketamine_brain", "comparators.midazolam_plasma", "comparators.ssri_plasma",
    "receptor.nmda_block_interneuron", "receptor.nmda_block_pyramidal", "synapse.glutamate",
    "plasticity.bdnf", "plasticity.mtorc1", "plasticity.spine_density",
    "inflammation.il6", "inflammation.kynurenine", "inflammation.quinolinic_acid", "inflammation.kynurenic_acid",
    "circuit.pfc_amygdala_fc", "clinical.madrs", "clinical.cadss", "clinical.sbp", "clinical.dbp",
)
#: the web service's own limits, tighter than a scenario file's, so every request stays quick
MAX_DURATION_H = 26 * 7 * 24.0  # 26 weeks
MAX_OUTPUT_POINTS = 20_000
MAX_EVENTS = 1_000  # administrations and therapy sessions


def finite(values: np.ndarray) -> list[float | None]:
    """JSON numbers: NaN or infinity (a failed solve) become null."""
    array = np.asarray(values, dtype=float)
    if np.isfinite(array).all():  # the usual case, without a Python loop over the points
        return array.tolist()
    return [v if math.isfinite(v) else None for v in array.tolist()]


def json_safe(obj: Any) -> Any:
    """Plain JSON data (numpy scalars unwrapped, non-finite numbers as null, tuples as lists)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def check_web_limits(scenario) -> None:
    """The service's limits on a valid scenario (a file may ask for more, the CLI runs it)."""
    if scenario.duration_h > MAX_DURATION_H:
        raise InputError(["body", "simulation", "duration"],
                         f"{scenario.duration_h:g} h is longer than this service runs ({MAX_DURATION_H:g} h = 26 w); "
                         "use the command line for longer courses")
    points = len(scenario.output_times())
    if points > MAX_OUTPUT_POINTS:
        raise InputError(["body", "simulation", "output_every"],
                         f"{points} output times; this service answers at most {MAX_OUTPUT_POINTS} (space them further)")
    events = sum(len(d.times_h) for d in scenario.doses) + sum(len(t.times_h) for t in scenario.therapies)
    if events > MAX_EVENTS:
        raise InputError(["body", "dose"], f"{events} administrations and sessions; this service runs at most {MAX_EVENTS}")


def validate(scenario_dict: dict[str, Any]):
    from ..scenario import Scenario

    try:
        scenario = Scenario.from_dict(scenario_dict)
    except ScenarioError as exc:
        raise from_scenario_error(exc) from None
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        # input the scenario checks did not anticipate: still the client's input, so a 422
        raise InputError(["body"], f"invalid scenario: {exc}") from None
    check_web_limits(scenario)
    return scenario


def series(result, names: Sequence[str]) -> list[dict[str, Any]]:
    by_name = {v.name: v for v in result.output_vars}
    return [{"name": n, "unit": by_name[n].unit, "description": by_name[n].description, "values": finite(result.outputs[n])}
            for n in names]


def _keep(result, folder: Path, summary: dict[str, Any]) -> None:
    """The time series (Parquet) and summary beside the registry, written to a temporary folder first."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        result.to_dataframe().to_parquet(tmp / "timeseries.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(summary))
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_simulation(service, scenario_dict: dict[str, Any], outputs: Sequence[str]) -> bytes:
    """Validate, simulate, record and answer (the JSON bytes); raises ``InputError`` for a 422."""
    from ..simulate import simulate

    scenario = validate(scenario_dict)
    registry = service.registry
    run_id = registry.create("simulation", scenario_dict, model_version=service.model_version,
                             parameter_hash=service.parameter_hash, status="running", total=1)
    try:
        result = simulate(scenario, params=service.params)
    except KetasimError as exc:
        registry.mark_failed(run_id, str(exc))
        raise InputError(["body"], f"the scenario could not be simulated: {exc}", "solver_failed") from None
    except BaseException as exc:
        registry.mark_failed(run_id, f"{type(exc).__name__}: {exc}")
        raise
    if result.status != "ok":
        registry.mark_failed(run_id, f"solver: {result.status}")
        raise InputError(["body"], f"the solver did not finish ({result.status}); nothing was kept", "solver_failed")
    try:
        summary = json_safe(result.summary())
        if service.keep_simulations:  # the page's simulations are answered, not stored, unless asked
            _keep(result, result_folder(registry.folder, run_id), summary)
    except BaseException as exc:  # e.g. a full disk: the run is recorded as failed, never left running
        registry.mark_failed(run_id, f"{type(exc).__name__}: {exc}")
        raise
    registry.mark_done(run_id, f"{RUNS_FOLDER}/{run_id}" if service.keep_simulations else None)
    answer = {
        "run_id": run_id,
        "status": result.status,
        "time": {"name": "time", "unit": "h", "values": finite(result.times_h)},
        "series": series(result, outputs),
        "summary": summary,
        "model_version": service.model_version,
        "parameter_hash": service.parameter_hash,
        "disclaimer": DISCLAIMER,
    }
    return json.dumps(answer, allow_nan=False, separators=(",", ":")).encode()
