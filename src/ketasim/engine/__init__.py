"""The engine: integrates a batch of patients built from the one model definition.

Backends: ``"cpu"`` (numba kernel generated from the model, analytic sparse Jacobian, per-patient
adaptive Rodas4, patients in parallel threads) and ``"jax"`` (the same method in JAX: gradients
and GPUs). The model layers know nothing about either.
"""

from __future__ import annotations

from .problem import Problem, SolverSettings, build_batch_problem, build_problem

BACKENDS = ("cpu", "jax")

STATUS_MESSAGES = {0: "ok", 1: "too many steps", 2: "step size underflow", 3: "non-finite values"}


def solve(problem: Problem, settings: SolverSettings = SolverSettings(), backend: str = "cpu"):
    """(states (n, n_out, n_states), status codes (n,), steps (n,)) for ``problem``."""
    if backend == "cpu":
        from .cpu import solve_cpu

        return solve_cpu(problem, settings)
    if backend == "jax":
        from .jax_backend import solve_jax

        return solve_jax(problem, settings)
    raise ValueError(f"unknown backend '{backend}'; allowed: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Problem", "STATUS_MESSAGES", "SolverSettings", "build_batch_problem", "build_problem", "solve"]
