"""Model outputs as a differentiable function of parameters, for fitting and local sensitivity.

``OutputFunction(scenario, params, names, outputs, times)`` is a JAX function of ``x``, the log of
each named parameter relative to its value in ``params`` (``theta_i = theta_i0 * exp(x_i)``, so
``x = 0`` is the parameter set itself and derivatives with respect to ``x`` are normalised
sensitivities ``theta * d output / d theta``). It integrates with the JAX backend's Rodas4 (the same
method as the compiled kernel) and differentiates in forward mode (``jax.jacfwd``): exact
derivatives of the discretised solution, not finite differences.

Parameters that act through the dose schedule (bioavailable fractions, molar masses, therapy
efficacy) or through patient covariates (genotype and co-medication fold activities, inflammatory
baselines) enter the engine as precomputed numbers, not as parameters; they are refused here with
their names (``NotDifferentiable``) so a caller can fall back to finite differences.

>>> import numpy as np, ketasim
>>> from ketasim.engine.differentiable import OutputFunction
>>> f = OutputFunction({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
...                                "duration": "40 min"}], "simulation": {"duration": "2 h"}},
...                    ketasim.load_parameters(), ["pk.cl_s_ketamine"], ["pk.ketamine_plasma"], [1.0])
>>> value, jac = f.value_and_jacobian(np.zeros(1))
>>> bool(jac[0, 0, 0] < 0)  # more clearance, less ketamine at 1 h
True
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..dosing import build_schedule, covariates
from ..errors import KetasimError
from ..model.system import Model, default_model
from ..params import ParameterSet
from ..scenario import Scenario
from .jax_backend import make_patient_solver
from .problem import SolverSettings, build_problem


class NotDifferentiable(KetasimError, ValueError):
    """Some parameters reach the engine only through the schedule or the covariates."""

    def __init__(self, names: Sequence[str]):
        self.names = tuple(names)
        super().__init__(f"{', '.join(names)}: act through the dose schedule or patient covariates, "
                         "which the engine takes as fixed numbers; they cannot be differentiated by autodiff "
                         "(use finite differences)")


def indirect_parameters(scenario: Scenario, params: ParameterSet, names: Sequence[str], model: Model) -> list[str]:
    """The names among ``names`` that change the schedule or the covariates (checked by perturbing)."""
    base_cov = covariates(scenario.patient, params)
    base = build_schedule(scenario, model, params)
    out = []
    for name in names:
        p = params[name]
        bumped = p.value * 1.01 if p.value != 0 else 1e-6
        bumped = min(max(bumped, p.range[0]), p.range[1])
        if bumped == p.value:
            bumped = p.value * 0.99
        try:
            other = params.replace(**{name.replace(".", "__"): bumped})
        except KetasimError:  # a constraint blocks the bump: the parameter still counts as direct
            continue
        sched = build_schedule(scenario, model, other)
        if covariates(scenario.patient, other) != base_cov or not (
                np.array_equal(sched.jumps, base.jumps) and np.array_equal(sched.rates, base.rates)):
            out.append(name)
    return out


_COMPILED: dict[tuple, tuple] = {}


def _compiled(model: Model, parameter_names: tuple[str, ...], outputs: tuple[str, ...], index: tuple[int, ...],
              held: tuple[int, ...] = ()):
    """Jitted outputs and forward-mode Jacobian, shared by every OutputFunction with the same layers,
    parameters, outputs and held initial states (the scenario's numbers are arguments, so one
    compilation serves many). XLA's compiled code is also kept on disk (JAX's persistent cache), so a
    second process skips the minute-long compilation of the Jacobian."""
    key = (model.layer_names, parameter_names, outputs, index, held)
    if key not in _COMPILED:
        _enable_persistent_cache()
        _COMPILED[key] = _build(model, parameter_names, outputs, index, held)
    return _COMPILED[key]


def _enable_persistent_cache() -> None:
    if jax.config.jax_compilation_cache_dir is None:  # respect a cache the user configured
        from .codegen import cache_dir

        jax.config.update("jax_compilation_cache_dir", str(cache_dir().parent / "jax"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _build(model: Model, parameter_names: tuple[str, ...], outputs: tuple[str, ...], index: tuple[int, ...],
           held: tuple[int, ...]):
    solve = make_patient_solver(model, parameter_names)
    held_idx = np.asarray(held, dtype=int)
    fitted = {i: k for k, i in enumerate(index)}  # parameter position -> its entry of x

    def outputs_of(x, theta0, seg_t, seg_u, seg_jump, times, rtol, atol, h_max, max_steps, held_values):
        # one scalar per parameter, so that the ones not fitted carry no derivative at all (a zero one
        # times a non-finite partial, e.g. of a power's exponent at a negative base in a Rodas stage,
        # would be NaN)
        scale = jnp.exp(x)
        theta = [theta0[i] * scale[fitted[i]] if i in fitted else theta0[i] for i in range(len(parameter_names))]
        th = dict(zip(parameter_names, theta))
        init = model.initial_state(th)
        y0 = jnp.stack([jnp.asarray(init[n], dtype=theta0.dtype) for n in model.state_names])
        if held:  # a steady-state start, computed outside and independent of x (checked when built)
            y0 = y0.at[held_idx].set(held_values)
        states, status, _ = solve(y0, theta, seg_t, seg_u, seg_jump, times, rtol, atol, h_max, max_steps)
        y = {n: states[:, i] for i, n in enumerate(model.state_names)}
        out = model.observe(y, th, {n: 0.0 for n in model.input_names}, jnp)
        values = jnp.stack([jnp.broadcast_to(jnp.asarray(out[o], dtype=theta0.dtype), times.shape) for o in outputs])
        return jnp.where(status == 0, values, jnp.nan)

    def with_value(*args):
        value = outputs_of(*args)
        return value, value

    # the Jacobian's compilation also returns the outputs, so value_and_jacobian compiles once
    return jax.jit(outputs_of), jax.jit(jax.jacfwd(with_value, has_aux=True))


class OutputFunction:
    """Selected outputs at selected times of one scenario, as a function of log-parameter shifts.

    Parameters that the scenario does not use at all (e.g. an oral bioavailability for an IV dose)
    are allowed and have zero derivatives.
    """

    def __init__(self, scenario, params: ParameterSet, names: Sequence[str], outputs: Sequence[str],
                 times_h: Sequence[float], *, model: Model | None = None,
                 settings: SolverSettings = SolverSettings(rtol=1e-7, atol=1e-9)):
        self.scenario = Scenario.load(scenario)
        self.model = model or default_model()
        self.names, self.outputs = tuple(names), tuple(outputs)
        unknown = [n for n in self.names if n not in params]
        if unknown:
            raise KetasimError(f"unknown parameter(s) {', '.join(unknown)}")
        missing = [o for o in self.outputs if o not in self.model.output_names]
        if missing:
            raise KetasimError(f"unknown output(s) {', '.join(missing)}; see `layer.quantity` names in docs/model.md")
        indirect = indirect_parameters(self.scenario, params, self.names, self.model)
        if indirect:
            raise NotDifferentiable(indirect)
        self.times = np.asarray(sorted(set(float(t) for t in times_h)), dtype=np.float64)
        problem = build_problem(self.scenario, params, self.model, t_out=self.times)
        self.parameter_names = problem.parameter_names
        #: position of each name among the engine's parameters; -1: not used by this scenario at all
        self.kernel = np.array([n in self.parameter_names for n in self.names])
        index = tuple(self.parameter_names.index(n) for n, k in zip(self.names, self.kernel) if k)
        held = self._steady_state_start(problem, params)
        self._fn, self._jac = _compiled(self.model, self.parameter_names, self.outputs, index, held)
        s = settings
        self._args = (problem.theta[0], problem.seg_t[0], problem.seg_u[0], problem.seg_jump[0], self.times,
                      s.rtol, s.atol, s.h_max, s.max_steps, jnp.asarray(problem.y0[0, list(held)]))
        self.theta0 = problem.theta[0]
        self._nominal = np.array([params.value(n) for n in self.names])

    def _steady_state_start(self, problem, params: ParameterSet) -> tuple[int, ...]:
        """The states a steady-state start sets (``steady_state``, ``SS=1``), held at their values:
        the start is computed outside the differentiated function, so it is allowed only where no
        fitted parameter changes it (each bumped by 1 % and the start recomputed)."""
        steady = [f"dose[{i}]" for i, d in enumerate(self.scenario.doses) if d.steady_state]
        if not steady:
            return ()
        init = self.model.initial_state(dict(zip(problem.parameter_names, problem.theta.T)))
        plain = np.array([np.broadcast_to(np.asarray(init[x], dtype=np.float64), (1,))[0] for x in self.model.state_names])
        held = tuple(int(i) for i in np.flatnonzero(problem.y0[0] != plain))
        for name in (n for n, k in zip(self.names, self.kernel) if k):
            p = params[name]
            bumped = p.value * 1.01 if p.value * 1.01 <= p.range[1] else p.value * 0.99
            other = build_problem(self.scenario, params.replace(**{name.replace(".", "__"): bumped}), self.model,
                                  t_out=self.times)
            start = problem.y0[0, list(held)]
            if not np.allclose(other.y0[0, list(held)], start, rtol=1e-12, atol=0.0):
                raise KetasimError(f"{', '.join(steady)}: {name} changes the steady-state start (steady_state, or "
                                   "SS=1 in a data set), which cannot be differentiated yet; fit it from doses given "
                                   "explicitly before the start")
        return held

    def __call__(self, x) -> np.ndarray:
        """(n_outputs, n_times) at log-shifts ``x`` (NaN if the solver failed)."""
        with jax.enable_x64(True):
            x = jnp.asarray(np.asarray(x, dtype=np.float64)[self.kernel])
            return np.asarray(self._fn(x, *self._args))

    def value_and_jacobian(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Outputs and d outputs / d x, shape (n_outputs, n_times, n_parameters)."""
        with jax.enable_x64(True):
            xk = jnp.asarray(np.asarray(x, dtype=np.float64)[self.kernel])
            if not self.kernel.any():
                value = np.asarray(self._fn(xk, *self._args))
                return value, np.zeros(value.shape + (len(self.names),))
            jac_kernel, value = self._jac(xk, *self._args)
            value = np.asarray(value)
            jac = np.zeros(value.shape + (len(self.names),))
            jac[..., self.kernel] = np.asarray(jac_kernel)
            return value, jac

    def values(self, x) -> dict[str, float]:
        """The parameter values (internal units) at log-shifts ``x``."""
        return {n: float(v * np.exp(xi)) for n, v, xi in zip(self.names, self._nominal, x)}
