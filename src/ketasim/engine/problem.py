"""A batch of patients as arrays the backends integrate: the engine's only input."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..dosing import (
    Schedule,
    SteadyState,
    build_schedule,
    build_schedules,
    parameter_matrix,
    parameter_vector,
    steady_state_start,
)
from ..model.system import Model
from ..params import ParameterColumns, ParameterSet
from ..scenario import PatientColumns, Scenario


@dataclass(frozen=True)
class SolverSettings:
    """Tolerances of the adaptive Rosenbrock integrator (internal units: h, umol, uM).

    ``loose_states`` are solved at ``loose_factor`` times ``rtol`` and ``atol``: states whose accuracy
    nothing asked of the solve needs (a trial passes the private states of its switched-off
    mechanisms, ``model.mechanisms.idle_states``); every other state keeps ``rtol`` and ``atol``.

    ``amount_states`` (states in umol, where ``atol`` is read as a concentration in uM) get the
    absolute tolerance ``atol * amount_volume`` (L): the amount whose concentration in that volume
    is ``atol``. The default volume, 1 L, leaves them at ``atol``.

    >>> s = SolverSettings(rtol=1e-4, atol=1e-7, loose_states=("b",), amount_states=("c",), amount_volume=100.0)
    >>> rtol, atol = s.tolerances(("a", "b", "c"))
    >>> rtol.tolist(), atol.round(12).tolist()
    ([0.0001, 0.001, 0.0001], [1e-07, 1e-06, 1e-05])
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    h_max: float = 24.0
    max_steps: int = 500_000
    loose_states: tuple[str, ...] = ()
    loose_factor: float = 10.0
    amount_states: tuple[str, ...] = ()
    amount_volume: float = 1.0

    def __post_init__(self):
        if not (0 < self.rtol < 1 and self.atol > 0 and self.h_max > 0 and self.max_steps > 0):
            raise ValueError(f"invalid solver settings {self}")
        if not (1.0 <= self.loose_factor and self.loose_factor * self.rtol < 1):
            raise ValueError(f"loose_factor must be at least 1 and keep loose_factor * rtol below 1, "
                             f"got {self.loose_factor} (rtol {self.rtol})")
        if not (0 < self.amount_volume < math.inf):
            raise ValueError(f"amount_volume must be a positive, finite volume in L, got {self.amount_volume}")
        object.__setattr__(self, "loose_states", tuple(self.loose_states))
        object.__setattr__(self, "amount_states", tuple(self.amount_states))

    def tolerances(self, state_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rtol, atol) per state, in the order of ``state_names``."""
        loose, amounts = set(self.loose_states), set(self.amount_states)
        for field_name, chosen in (("loose_states", loose), ("amount_states", amounts)):
            unknown = sorted(chosen - set(state_names))
            if unknown:
                raise ValueError(f"{field_name}: not states of the model: {', '.join(unknown)}")
        scale = np.array([self.loose_factor if name in loose else 1.0 for name in state_names])
        volume = np.array([self.amount_volume if name in amounts else 1.0 for name in state_names])
        return self.rtol * scale, self.atol * scale * volume


@dataclass(frozen=True)
class Problem:
    """n patients: initial states, parameter vectors, padded dose segments, shared output times."""

    model: Model
    parameter_names: tuple[str, ...]
    y0: np.ndarray  # (n, n_states)
    theta: np.ndarray  # (n, n_params)
    seg_t: np.ndarray  # (n, n_seg + 1)
    seg_u: np.ndarray  # (n, n_seg, n_inputs)
    seg_jump: np.ndarray  # (n, n_seg, n_states)
    t_out: np.ndarray  # (n_out,)
    dosed_umol: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n,)

    @property
    def n_patients(self) -> int:
        return self.y0.shape[0]

    def subset(self, rows: slice) -> Problem:
        """The patients in ``rows`` (chunks of a large batch)."""
        return Problem(self.model, self.parameter_names, self.y0[rows], self.theta[rows],
                       self.seg_t[rows], self.seg_u[rows], self.seg_jump[rows], self.t_out,
                       self.dosed_umol[rows])


def _pad(schedules: Sequence[Schedule], n_states: int, n_inputs: int):
    n_seg = max(s.n_segments for s in schedules)
    n = len(schedules)
    seg_t = np.empty((n, n_seg + 1))
    seg_u = np.zeros((n, n_seg, n_inputs))
    seg_jump = np.zeros((n, n_seg, n_states))
    for b, s in enumerate(schedules):
        k = s.n_segments
        seg_t[b, :k + 1] = s.bounds
        seg_t[b, k + 1:] = s.bounds[-1]  # zero-length padding segments are skipped
        seg_u[b, :k] = s.rates
        seg_jump[b, :k] = s.jumps
    return seg_t, seg_u, seg_jump


def build_problem(scenarios: Scenario | Sequence[Scenario], params: ParameterSet | Sequence[ParameterSet], model: Model,
                  t_out: np.ndarray | None = None) -> Problem:
    """Arrays for one scenario or a batch sharing the output grid of the first (or ``t_out``).

    ``params`` is one parameter set for all, or one per scenario (anything with ``value(name)``,
    such as a virtual patient's ``PatientParameters``). Many patients receiving the same scenario
    are built faster by ``build_batch_problem``.
    """
    if isinstance(scenarios, Scenario):
        scenarios = [scenarios]
    per_patient = params if isinstance(params, Sequence) else [params] * len(scenarios)
    if len(per_patient) != len(scenarios):
        raise ValueError(f"{len(per_patient)} parameter sets for {len(scenarios)} scenarios")
    names = None
    thetas, schedules = [], []
    for sc, pp in zip(scenarios, per_patient):
        names, theta = parameter_vector(model, pp, sc.patient)
        thetas.append(theta)
        schedules.append(build_schedule(sc, model, pp))
    seg_t, seg_u, seg_jump = _pad(schedules, len(model.state_names), len(model.input_names))
    grid = scenarios[0].output_times() if t_out is None else t_out
    regimens = []  # each patient's own, with no dose for the others
    for b, s in enumerate(schedules):
        for r in s.steady_state:
            umol = np.zeros(len(schedules))
            umol[b] = r.umol[0]
            regimens.append(r.for_patients(umol))
    return _assemble(model, names, np.asarray(thetas), seg_t, seg_u, seg_jump, grid,
                     np.asarray([s.dosed_umol for s in schedules]), tuple(regimens))


def build_batch_problem(scenario: Scenario, patients: PatientColumns, params: ParameterSet | ParameterColumns,
                        model: Model, t_out: np.ndarray | None = None) -> Problem:
    """Arrays for n patients (covariates as columns) all receiving ``scenario``'s doses and
    therapies: what ``build_problem`` gives for the scenario with each patient in turn, built in a
    few passes over arrays (a virtual trial's chunk). ``params`` is shared by all, or
    ``ParameterColumns`` with one row per patient.

    >>> from ketasim.model import default_model
    >>> from ketasim.params import load_parameters
    >>> from ketasim.scenario import Patient, PatientColumns, Scenario
    >>> scenario = Scenario.from_dict({"dose": [{"drug": "esketamine", "route": "intranasal",
    ...                                          "amount": "56 mg", "at": ["0 h"]}]})
    >>> problem = build_batch_problem(scenario, PatientColumns.of([Patient(), Patient(weight_kg=90.0)]),
    ...                               load_parameters(), default_model(), t_out=[0.0, 24.0])
    >>> problem.n_patients, problem.seg_t.shape
    (2, (2, 2))
    """
    n = len(patients)
    if n == 0:
        raise ValueError("a batch needs at least one patient")
    if isinstance(params, ParameterColumns) and len(params) != n:
        raise ValueError(f"{len(params)} rows of parameters for {n} patients")
    names, theta = parameter_matrix(model, params, patients)
    schedules = build_schedules(scenario, model, params, patients.weight_kg)
    seg_t = np.broadcast_to(schedules.bounds, (n, schedules.bounds.size))
    grid = scenario.output_times() if t_out is None else t_out
    return _assemble(model, names, theta, np.ascontiguousarray(seg_t), schedules.rates, schedules.jumps, grid,
                     schedules.dosed_umol, schedules.steady_state)


def _assemble(model: Model, names: tuple[str, ...], theta: np.ndarray, seg_t: np.ndarray, seg_u: np.ndarray,
              seg_jump: np.ndarray, t_out, dosed_umol: np.ndarray, regimens: tuple[SteadyState, ...] = ()) -> Problem:
    """The problem with its initial states (regimens at steady state where asked), after checking the
    output grid against the schedules."""
    n = theta.shape[0]
    init = model.initial_state(dict(zip(names, theta.T)))  # the layers' formulas broadcast over patients
    y0 = np.stack([np.broadcast_to(np.asarray(init[x], dtype=np.float64), (n,)) for x in model.state_names], axis=1)
    y0 = steady_state_start(model, names, theta, y0, regimens)
    grid = np.asarray(t_out, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or grid[0] < 0 or np.any(np.diff(grid) < 0):
        raise ValueError("t_out must be a non-empty, sorted (non-decreasing) 1-D array of times >= 0 h")
    shortest = seg_t[:, -1].min()
    if grid[-1] > shortest + 1e-9:
        raise ValueError(f"t_out reaches {grid[-1]:g} h, past the end of a scenario in the batch ({shortest:g} h); "
                         "give every scenario a simulation duration covering the output times")
    return Problem(model, names, np.ascontiguousarray(y0), np.ascontiguousarray(theta), seg_t, seg_u, seg_jump, grid,
                   dosed_umol)
