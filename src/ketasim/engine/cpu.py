"""The compiled CPU backend: numba kernel generated from the model, per-patient adaptive Rodas4.

The kernel integrates its patients one after another and releases the GIL, so a batch is spread over
threads here: it is cut into small slices that a pool of threads takes one at a time. A thread that
shares its core with other work (a trial preparing its next chunk) simply takes fewer slices, so no
core waits at the end of a batch for a slower one, as it did with a static split of the patients
(numba's ``prange``), whose waiting threads also spun on the cores the rest of the program needed.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .codegen import compiled_kernel
from .problem import Problem, SolverSettings

#: patients per slice at most: small enough to balance the threads, large enough that the call costs
#: nothing (a slice of 64 patients takes ~8 ms to integrate, a call ~20 us)
MAX_SLICE = 64

_THREAD_PREFIX = "ketasim-solver"
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools_in_child() -> None:
    """A forked child (a Dask worker, say) inherits the pools but not their threads, and perhaps a
    held lock: it starts its own."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools_in_child)


def _pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` solver threads."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=_THREAD_PREFIX)
        return _pools[threads]


def _plain(array) -> np.ndarray:
    return np.require(array, np.float64, ["C", "W"])


def solve_cpu(problem: Problem, settings: SolverSettings = SolverSettings(), threads: int | None = None):
    """States at ``problem.t_out`` for every patient: (states (n, n_out, n_states), status, steps).

    ``threads``: how many patients are integrated at once (default: ``NUMBA_NUM_THREADS``, the
    machine's cores unless that environment variable says otherwise). Each patient's result is the
    same whatever the threads and slices.
    """
    kernel = compiled_kernel(problem.model, problem.parameter_names)
    n = problem.n_patients
    out = np.empty((n, problem.t_out.shape[0], problem.y0.shape[1]))
    status = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    # writeable C-contiguous float64, the one signature the kernel was compiled for (engine.codegen):
    # a broadcast one-patient array is read-only, which numba would compile again
    y0, theta = _plain(problem.y0), _plain(problem.theta)
    seg_t, seg_u, seg_jump, t_out = _plain(problem.seg_t), _plain(problem.seg_u), _plain(problem.seg_jump), _plain(problem.t_out)
    rtol, atol = settings.tolerances(problem.model.state_names)
    tol = (_plain(rtol), _plain(atol), float(settings.h_max), int(settings.max_steps))

    def integrate(a: int, b: int) -> None:
        # each slice zeroes its own rows first, so the pages of a large output are first touched in
        # parallel and ahead of the kernel (left to the kernel's writes, some solves ran up to twice as slow)
        out[a:b] = 0.0
        kernel.solve_batch(y0[a:b], theta[a:b], seg_t[a:b], seg_u[a:b], seg_jump[a:b], t_out, *tol,
                           out[a:b], status[a:b], steps[a:b])

    threads = threads or numba.config.NUMBA_NUM_THREADS
    size = max(1, min(MAX_SLICE, math.ceil(n / (4 * threads))))
    # serially on one thread, for a small batch, or when called from a solver thread itself (waiting
    # there on the pool's other slices could leave no thread free to run them)
    if threads == 1 or n <= size or threading.current_thread().name.startswith(_THREAD_PREFIX):
        integrate(0, n)
        return out, status, steps
    futures = [_pool(threads).submit(integrate, a, min(a + size, n)) for a in range(0, n, size)]
    try:
        for future in futures:
            future.result()
    except BaseException:  # an error or an interrupt: drop the slices not yet started
        for future in futures:
            future.cancel()
        raise
    return out, status, steps
