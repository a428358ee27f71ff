"""``simulate``: one scenario in, a labelled result out."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .engine import STATUS_MESSAGES, SolverSettings, build_problem, solve
from .errors import ScenarioError
from .model.mechanisms import active, check_mechanisms, missing_layers, with_mechanisms
from .model.system import Model, default_model
from .params import ParameterSet, load_parameters
from .result import SimulationResult
from .scenario import Scenario


def observe_batch(model: Model, states: np.ndarray, parameter_names, theta: np.ndarray,
                  wanted: tuple[str, ...] | None = None, readouts: bool = True) -> dict[str, np.ndarray]:
    """Outputs (reporting units) of a batch, (n, n_out) each, from states (n, n_out, n_states) and
    parameter vectors (n, n_params), in one vectorised pass over all patients and times.

    ``wanted`` picks outputs (default: all); ``readouts=False`` skips the reporting-only ones (the
    connectivity readouts solve a Lyapunov equation per point). A failed patient's NaN states, or a
    network made unstable by extreme strengths, give NaN outputs rather than warnings.
    """
    n, n_out, _ = states.shape
    # without readouts, only the states the wanted outputs read are taken from the (strided, large)
    # states array; the others stand at 1.0 and feed only outputs nobody asked for
    reads = None if wanted is None or readouts else model.states_read_by(wanted, parameter_names)
    y = {name: states[:, :, i] if reads is None or name in reads else 1.0 for i, name in enumerate(model.state_names)}
    th = {name: theta[:, j:j + 1] for j, name in enumerate(parameter_names)}  # (n, 1): broadcast over times
    u = {name: 0.0 for name in model.input_names}
    with np.errstate(all="ignore"):
        out = model.observe(y, th, u, np, readouts=readouts)
    return {k: np.array(np.broadcast_to(np.asarray(out[k], dtype=np.float64), (n, n_out)))
            for k in (out if wanted is None else wanted)}


def observe(model: Model, states: np.ndarray, parameter_names, theta: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs (reporting units) from states at output times (n_out, n_states) of one patient."""
    batch = observe_batch(model, states[None], parameter_names, np.asarray(theta)[None])
    return {k: v[0] for k, v in batch.items()}


def simulate(scenario: str | Path | Mapping[str, Any] | Scenario, *,
             params: ParameterSet | str | Path | None = None, backend: str = "cpu",
             settings: SolverSettings = SolverSettings(), model: Model | None = None,
             mechanisms: Sequence[str] | None = None) -> SimulationResult:
    """Simulate one scenario (a TOML path, a dict or a ``Scenario``).

    ``mechanisms`` names the hypotheses the model includes (``ketasim mechanisms``); it overrides the
    scenario's ``[model] mechanisms``; neither given, the calibrated set.

    >>> import ketasim
    >>> res = ketasim.simulate({"dose": [{"drug": "racemic-ketamine", "route": "iv",
    ...                                   "amount": "0.5 mg/kg", "duration": "40 min"}],
    ...                         "simulation": {"duration": "6 h", "output_every": "10 min"}})
    >>> 150 < res.at("pk.ketamine_plasma", 40 / 60) < 215
    True
    """
    scenario = Scenario.load(scenario)
    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    model = model or default_model()
    chosen = mechanisms if mechanisms is not None else scenario.mechanisms
    if chosen is not None:
        chosen = check_mechanisms(chosen, "model.mechanisms")
        lacking = missing_layers(chosen, model.layer_names)
        if lacking:
            raise ScenarioError("model.mechanisms", "; ".join(
                f"{name} needs the {', '.join(layers)} layer(s), which this model leaves out"
                for name, layers in lacking.items()))
    params = with_mechanisms(params, chosen)
    decisions = None
    if scenario.rules is None:
        problem = build_problem(scenario, params, model)
        states, status, steps = solve(problem, settings, backend)
        times = problem.t_out
    else:
        states, status, steps, problem, decisions = _simulate_by_rules(scenario, params, model, settings, backend)
        times = scenario.output_times()
    states = states[0]
    outputs = observe(model, states, problem.parameter_names, problem.theta[0])
    manifest = {
        "ketasim_version": _version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "scenario": scenario.to_dict(),
        "scenario_source": dict(scenario.raw),
        "parameter_set_sha256": params.digest(),
        "model_layers": list(model.layer_names),
        "mechanisms": list(active(params)),
        "solver": {"method": "Rodas4 (Hairer & Wanner), analytic Jacobian", "backend": backend,
                   "rtol": settings.rtol, "atol": settings.atol, "h_max_h": settings.h_max,
                   **({"loose_states": list(settings.loose_states), "loose_factor": settings.loose_factor}
                      if settings.loose_states else {}),
                   **({"amount_states": list(settings.amount_states), "amount_volume_l": settings.amount_volume}
                      if settings.amount_states else {}),
                   "steps": int(steps[0])},
    }
    if decisions is not None:
        manifest["adaptive_dosing"] = {"rules": scenario.rules.describe(), "sessions": decisions}
    return SimulationResult(times_h=times.copy(), outputs=outputs, output_vars=model.outputs,
                            states={n: states[:, i].copy() for i, n in enumerate(model.state_names)},
                            state_vars=model.states, status=STATUS_MESSAGES[int(status[0])],
                            steps=int(steps[0]), manifest=manifest)


def _simulate_by_rules(scenario: Scenario, params: ParameterSet, model: Model, settings: SolverSettings,
                       backend: str):
    """A scenario with ``[[rule]]``: integrated dose by dose on a grid with each session's post-dose
    window (``ketasim.trial.adaptive``), returned at the scenario's output times."""
    from .trial.adaptive import governed, integrate, session_decisions
    from .trial.design import Endpoints
    from .trial.rules import SESSION_OFFSETS_H

    plan = governed(scenario, [(0.0, scenario.rules)])
    wanted = scenario.output_times()
    extra = [t + SESSION_OFFSETS_H for t in plan.session_times()] + [np.array(sorted(plan.extra_grid_times()))]
    grid = np.unique(np.concatenate([wanted, *extra]))
    grid = grid[grid <= scenario.duration_h]
    problem = build_problem(scenario, params, model, t_out=grid)
    states, status, steps, made = integrate(plan, problem, model, grid, [0], Endpoints(), params,
                                            np.array([scenario.patient.weight_kg]), settings, backend)
    keep = np.searchsorted(grid, wanted)
    return states[:, keep], status, steps, problem, session_decisions(plan, made)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ketasim")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"
