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

_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """This process's pool of ``threads`` solver threads (keyed by process too: a forked child, such
    as a Dask worker, inherits the dictionary but not the threads)."""
    key = (os.getpid(), threads)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ketasim-solver")
        return _pools[key]


def solve_cpu(problem: Problem, settings: SolverSettings = SolverSettings(), threads: int | None = None):
    """States at ``problem.t_out`` for every patient: (states (n, n_out, n_states), status, steps).

    ``threads``: how many patients are integrated at once (default ``numba.get_num_threads()``, the
    machine's cores unless NUMBA_NUM_THREADS or ``numba.set_num_threads`` say otherwise). Each
    patient's result is the same whatever the threads and slices.
    """
    kernel = compiled_kernel(problem.model, problem.parameter_names)
    n = problem.n_patients
    out = np.empty((n, problem.t_out.shape[0], problem.y0.shape[1]))
    status = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    y0, theta = np.ascontiguousarray(problem.y0), np.ascontiguousarray(problem.theta)
    seg_t, seg_u = np.ascontiguousarray(problem.seg_t), np.ascontiguousarray(problem.seg_u)
    seg_jump, t_out = np.ascontiguousarray(problem.seg_jump), np.ascontiguousarray(problem.t_out)
    tol = (float(settings.rtol), float(settings.atol), float(settings.h_max), int(settings.max_steps))

    def integrate(a: int, b: int) -> None:
        # each slice zeroes its own rows first, so the pages of a large output are first touched in
        # parallel and ahead of the kernel (left to the kernel's writes, some solves ran up to twice as slow)
        out[a:b] = 0.0
        kernel.solve_batch(y0[a:b], theta[a:b], seg_t[a:b], seg_u[a:b], seg_jump[a:b], t_out, *tol,
                           out[a:b], status[a:b], steps[a:b])

    threads = threads or numba.get_num_threads()
    size = max(1, min(MAX_SLICE, math.ceil(n / (4 * threads))))
    if threads == 1 or n <= size:
        integrate(0, n)
    else:
        for future in [_pool(threads).submit(integrate, a, min(a + size, n)) for a in range(0, n, size)]:
            future.result()
    return out, status, steps
