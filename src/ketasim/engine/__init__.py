"""The engine: integrates a batch of patients built from the one model definition.

Backends: ``"cpu"`` (numba kernel generated from the model, analytic sparse Jacobian, per-patient
adaptive Rodas4, patients in parallel threads) and ``"jax"`` (the same method in JAX: gradients
and GPUs). The model layers know nothing about either.
"""

from __future__ import annotations

import os

from .problem import Problem, SolverSettings, build_batch_problem, build_problem

BACKENDS = ("cpu", "jax")

STATUS_MESSAGES = {0: "ok", 1: "too many steps", 2: "step size underflow", 3: "non-finite values"}


#: XLA's CPU setting for ketasim's own processes: Eigen's operations not split across threads. A
#: patient's ODE is far too small to share, and on a busy machine those threads compete with the
#: solver's (a one-iteration hierarchical fit took 53 s beside a running `ketasim calibrate` with the
#: default, 30 s with this flag; 13 s either way on an idle machine)
XLA_CPU_FLAGS = "--xla_cpu_multi_thread_eigen=false"
#: read by OpenBLAS when a library loads it (numba reads NUMBA_NUM_THREADS, so the solver keeps its threads)
BLAS_THREAD_VARIABLE = "OPENBLAS_NUM_THREADS"


def limit_library_threads() -> None:
    """For processes ketasim owns (the command line, the tests): XLA's CPU flags (``XLA_CPU_FLAGS``,
    unless the user set ``XLA_FLAGS``; before JAX starts its backend) and one thread for BLAS/LAPACK
    (as numpy, scipy and jaxlib load it), unless the user set ``OPENBLAS_NUM_THREADS``.

    Every matrix ketasim factors is small (at most the model's states), so BLAS threads buy nothing,
    and OpenBLAS's waiting threads spin: beside other busy processes on a 2-core machine, the
    likelihood profile of a two-parameter fit took 72-93 s instead of 4.8 s idle; with one thread,
    3.9-5.8 s (one run each, beside two busy processes).
    """
    os.environ.setdefault("XLA_FLAGS", XLA_CPU_FLAGS)
    if BLAS_THREAD_VARIABLE in os.environ:
        return  # the user chose BLAS's threads
    os.environ[BLAS_THREAD_VARIABLE] = "1"  # the libraries loaded from now on (scipy's own OpenBLAS among them)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # those already loaded (numpy's; MKL or BLIS alike)


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
