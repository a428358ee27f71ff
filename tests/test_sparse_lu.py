"""The generated sparse LU of W = I/(h gamma) - J: ordering, fill, factor and solve against numpy, the
unfit-pivot report that sends a step to the dense pivoted LU, and the real model's W."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from ketasim.engine.sparse_lu import (
    MAX_MULTIPLIER,
    factor_source,
    solve_source,
    strongly_connected_components,
    symbolic_lu,
)


def compile_lu(n, pattern):
    """factor(lu) and solve(lu, b) for ``pattern``, compiled from the generated source."""
    lu = symbolic_lu(n, pattern)
    namespace = {"numba": numba, "math": math, "np": np, "MAX_MULTIPLIER": MAX_MULTIPLIER}
    source = (factor_source(lu) + "\n\n" + solve_source(lu)).replace("cache=True", "cache=False")
    exec(compile(source, "<generated>", "exec"), namespace)  # noqa: S102  (our own generated code)
    return lu, namespace["w_factor"], namespace["w_solve"]


def pack(lu, w):
    """The dense matrix ``w`` (original order) in the flat storage of ``lu``."""
    flat = np.zeros(lu.size)
    for (r, c), slot in lu.slots.items():
        flat[slot] = w[lu.perm[r], lu.perm[c]]
    return flat


def test_components_come_after_what_they_depend_on():
    # 0 <- 1 <-> 2 <- 3, and 4 alone: i depends on deps[i]
    deps = [[], [0, 2], [1], [2], []]
    comps = strongly_connected_components(5, deps)
    order = {v: k for k, comp in enumerate(comps) for v in comp}
    assert sorted(map(sorted, comps)) == [[0], [1, 2], [3], [4]]
    assert order[0] < order[1] == order[2] < order[3]


def test_block_triangular_order_keeps_fill_inside_the_blocks():
    # a one-way cascade with a 2-cycle: in SCC order nothing fills above the diagonal blocks
    pattern = [(1, 0), (2, 1), (1, 2), (3, 2), (3, 0), (0, 0), (1, 1), (2, 2), (3, 3)]
    lu = symbolic_lu(4, pattern)
    for (r, c) in lu.slots:
        if c > r:
            assert lu.block[r] == lu.block[c]


@pytest.mark.parametrize("seed", range(5))
def test_factor_and_solve_match_numpy_on_random_patterns(seed):
    rng = np.random.default_rng(seed)
    n = 12
    mask = rng.random((n, n)) < 0.25
    pattern = [(i, j) for i in range(n) for j in range(n) if mask[i, j]]
    w = np.where(mask, rng.normal(size=(n, n)), 0.0) + np.diag(rng.uniform(3.0, 5.0, n) * n)
    lu, factor, solve = compile_lu(n, pattern)
    flat = pack(lu, w)
    assert factor(flat)
    b = rng.normal(size=n)
    x = b.copy()
    solve(flat, x)
    np.testing.assert_allclose(x, np.linalg.solve(w, b), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("w", [np.array([[0.0, 1.0], [1.0, 0.0]]),  # zero pivot: pivoting needed
                               np.array([[1e-12, 1.0], [1.0, 1.0]]),  # tiny pivot: multiplier 1e12
                               np.array([[np.nan, 1.0], [1.0, 1.0]])])
def test_unfit_pivots_are_reported_not_used(w):
    lu, factor, _ = compile_lu(2, [(0, 0), (0, 1), (1, 0), (1, 1)])
    assert not factor(pack(lu, w))


def test_large_multipliers_between_blocks_are_used_not_reported():
    # block triangular: state 1 depends on state 0, not back; the multiplier 1 / 1e-12 lies outside
    # the diagonal blocks, so it feeds no pivot, and the solve is W's own (module docstring)
    w = np.array([[1e-12, 0.0], [1.0, 1.0]])
    lu, factor, solve = compile_lu(2, [(0, 0), (1, 0), (1, 1)])
    assert lu.block[0] != lu.block[1]
    flat = pack(lu, w)
    assert factor(flat)
    assert abs(flat[lu.slots[(lu.perm.index(1), lu.perm.index(0))]]) > MAX_MULTIPLIER
    b = np.array([1e-12, 3.0])
    x = b.copy()
    solve(flat, x)
    np.testing.assert_allclose(x, np.linalg.solve(w, b), rtol=1e-14)


def test_model_w_matrix_is_fac_minus_jacobian_and_solves_like_numpy(params):
    from ketasim.engine import build_problem
    from ketasim.engine.codegen import compiled_kernel
    from ketasim.model import default_model
    from ketasim.scenario import Scenario

    model = default_model()
    sc = Scenario.from_dict({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                       "duration": "40 min"}], "simulation": {"duration": "1 d"}})
    problem = build_problem(sc, params, model)
    kernel = compiled_kernel(model, problem.parameter_names)
    y = problem.y0[0] + problem.seg_jump[0, 0] + 0.01  # off the steady state: every term active
    p, u = kernel.extended_parameters(problem.theta[0]), problem.seg_u[0, 0]
    n = y.size

    def f(x):
        out = np.empty(n)
        kernel.rhs(x, p, u, out)
        return out

    jac_fd = np.empty((n, n))
    for j in range(n):
        dx = 1e-6 * max(abs(y[j]), 1e-3)
        up, down = y.copy(), y.copy()
        up[j] += dx
        down[j] -= dx
        jac_fd[:, j] = (f(up) - f(down)) / (2 * dx)
    fac = 1.0 / (0.5 * 0.25)
    flat = np.empty(kernel.LU_SIZE)
    kernel.w_matrix(y, p, u, fac, flat)
    w = np.zeros((n, n))
    w[kernel.W_ROWS, kernel.W_COLS] = flat[:kernel.W_ROWS.size]  # what the dense fallback scatters
    expected = fac * np.eye(n) - jac_fd
    assert np.max(np.abs(w - expected)) <= 1e-5 * max(1.0, np.max(np.abs(expected)))

    b = np.random.default_rng(0).normal(size=n)
    assert kernel.w_factor(flat)
    x = b.copy()
    kernel.w_solve(flat, x)
    np.testing.assert_allclose(x, np.linalg.solve(w, b), rtol=1e-9, atol=1e-12)
    piv = np.empty(n, dtype=np.int64)  # and the dense pivoted fallback agrees
    assert kernel.lu_factor(w, piv)
    x_dense = b.copy()
    kernel.lu_solve(w, piv, x_dense)
    np.testing.assert_allclose(x_dense, x, rtol=1e-9, atol=1e-12)
