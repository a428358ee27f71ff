"""The JAX backend: the model's vector field in ``jax.numpy``, its Jacobian by forward-mode
autodiff, and the same Rodas4 method and step control as the compiled CPU kernel, vmapped over
patients. It runs on CPU and GPU, and is differentiable in forward mode (``jax.jacfwd``) with
respect to parameters and initial states: the exact derivatives of the computed solution, step
control included, so that a fit's Jacobian is consistent with its objective. Float64 is enabled
for the call (``jax.enable_x64``), not process-wide.

W = I/(h gamma) - J is factored in one of two ways (``LINEAR_ALGEBRA``):
- "dense": LU with partial pivoting of the whole matrix (``jax.scipy.linalg``);
- "sparse": as the compiled kernel does (``sparse_lu.py``), in the order and on the pattern of W's
  structural non-zeros and fill, without pivoting, unrolled at trace time into scalar operations
  that ``vmap`` turns into operations over the patients (587 multiply-adds a factorisation for the
  full model, against about 280,000 for a dense LU of its 94 states). Where that factorisation is
  unfit (a zero or non-finite pivot, or a multiplier inside a diagonal block above
  ``MAX_MULTIPLIER``) the compiled kernel takes the dense LU with partial pivoting for that step;
  here the attempt counts as one with non-finite values (the step cut to a quarter and tried again;
  status 3 if it underflows): a dense fallback would be computed for every patient and step under
  ``vmap``, which is what the sparse factorisation saves. Such steps are rare (none in 20 trial
  patients' 1,545 attempts; a zero pivot needs W singular on its pattern, and a shorter step makes
  W's diagonal dominate).

On this project's 2-core CPU (2026-12-03, ``benchmarks/gpu.py``, 64 trial patients at the trials'
tolerance) the sparse solve ran 311-324 patients/s against the dense one's 76-84, but its thousands of
unrolled operations doubled XLA's compile time (15 against 7 s for a simulation; the default test
tier took 432 s against 343 s). On a CPU the JAX path mostly compiles (fits, sensitivities, tests)
and the compiled kernel does the large solves, so "dense" is the default there; on an accelerator,
where the JAX path exists for trials of 10^4-10^6 patients, "sparse" (``default_linear_algebra``).
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ..model.system import Model
from .problem import Problem, SolverSettings
from .sparse_lu import MAX_MULTIPLIER, SparseLU, symbolic_lu
from .tableau import FAC_MAX, FAC_MIN, GAMMA, SAFETY, A, C

#: how W is factored and solved (module docstring)
LINEAR_ALGEBRA = ("dense", "sparse")


def default_linear_algebra() -> str:
    """"dense" where JAX runs on the CPU, "sparse" on an accelerator (module docstring)."""
    return "dense" if jax.default_backend() == "cpu" else "sparse"


def vector_field(model: Model, parameter_names: tuple[str, ...]):
    """f(y, theta, u) -> dy/dt as arrays, from the same layer functions the kernel is built from."""
    states, inputs = model.state_names, model.input_names

    def rhs(y, theta, u):
        dy = model.derivatives(dict(zip(states, y)), dict(zip(parameter_names, theta)),
                               dict(zip(inputs, u)), jnp)
        return jnp.stack([jnp.asarray(dy[n], dtype=y.dtype) for n in states])

    return rhs


def _stage_coefficients() -> tuple[np.ndarray, np.ndarray]:
    """A and C as dense 7 x 6 arrays, row i for stage i. The sixth stage's argument is the fifth's plus
    k_5, so its A row is the fifth's with a 1 for k_5; row 6 (the step's end, y + that + k_6) is where
    the vector field is evaluated for the dense output."""
    a = np.zeros((7, 6))
    c = np.zeros((7, 6))
    for i, row in enumerate(A):
        a[i, :len(row)] = row
    a[5] = a[4]
    a[5, 4] = 1.0
    a[6] = a[5]
    a[6, 5] = 1.0
    for i, row in enumerate(C):
        c[i, :len(row)] = row
    return a, c


_A_DENSE, _C_DENSE = _stage_coefficients()


@lru_cache(maxsize=8)
def w_structure(model: Model, parameter_names: tuple[str, ...]) -> SparseLU:
    """The ordering and pattern (with fill) of W's sparse LU: the compiled kernel's (``codegen``),
    from the Jacobian's structural non-zeros."""
    from .codegen import symbolic_model

    return symbolic_lu(len(model.state_names), list(symbolic_model(model, parameter_names).jacobian))


def sparse_factor(lu: SparseLU, w):
    """W's LU on ``lu``'s pattern, as ``sparse_lu.factor_source`` prints it for the kernel: (the
    entries in ``lu.slots``' order with the multipliers in place, the reciprocal pivots, whether the
    factorisation is fit: finite non-zero pivots, in-block multipliers at most ``MAX_MULTIPLIER``)."""
    rows, cols = np.array(lu.entries).T
    gathered = w[rows, cols]
    vals = [gathered[k] for k in range(rows.size)]
    inv = [None] * lu.n
    pivots, multipliers = [], []
    for r in range(lu.n):
        for k, ik, updates in lu.eliminations(r):
            m = vals[ik] * inv[k]
            vals[ik] = m
            if lu.tested(r, k):
                multipliers.append(m)
            for rj, kj in updates:
                vals[rj] = vals[rj] - m * vals[kj]
        pivots.append(vals[lu.slots[(r, r)]])
        inv[r] = 1.0 / pivots[-1]
    pivots = jnp.stack(pivots)
    fit = jnp.all((pivots != 0.0) & jnp.isfinite(pivots))
    if multipliers:
        fit = fit & jnp.all(jnp.abs(jnp.stack(multipliers)) <= MAX_MULTIPLIER)  # NaN fails this too
    return jnp.stack(vals), jnp.stack(inv), fit


def sparse_solve(lu: SparseLU, vals, inv, b):
    """W^-1 b from ``sparse_factor``'s factors (b and the result in the states' order), as
    ``sparse_lu.solve_source`` prints it for the kernel."""
    p = lu.perm
    x = [b[i] for i in range(lu.n)]
    for r in range(lu.n):  # forward: unit lower triangle
        terms = [vals[slot] * x[p[k]] for slot, k in lu.lower(r)]
        if terms:
            x[p[r]] = x[p[r]] - sum(terms[1:], terms[0])
    for r in range(lu.n - 1, -1, -1):  # backward: upper triangle, reciprocal pivots
        terms = [vals[slot] * x[p[j]] for slot, j in lu.upper(r)]
        rest = x[p[r]] - sum(terms[1:], terms[0]) if terms else x[p[r]]
        x[p[r]] = rest * inv[r]
    return jnp.stack(x)


def _rodas4_step(rhs, jac, structure: SparseLU | None, y, theta, u, h):
    """One Rodas4 step: (y at the step's end, the error estimate k_6, f at the start, f at the end,
    whether W's factorisation was fit; if not, the rest is not to be used). ``structure``: W's sparse
    LU (None: the dense LU with partial pivoting, always fit).

    The vector field is evaluated in one loop (the six stages, then the step's end) so that XLA
    compiles it once rather than seven times; compiling the vector field is most of the JAX paths'
    compile time. f at the start is evaluated in the loop too, rather than carried over from the
    previous step's end: one evaluation more per step, the same numbers.
    """
    n = y.shape[0]
    w = jnp.eye(n) / (h * GAMMA) - jac(y, theta, u)
    if structure is None:
        factors, fit = jsl.lu_factor(w), jnp.asarray(True)

        def w_solve(b):
            return jsl.lu_solve(factors, b)
    else:
        vals, inv, fit = sparse_factor(structure, w)

        def w_solve(b):
            return sparse_solve(structure, vals, inv, b)
    a, c = jnp.asarray(_A_DENSE, dtype=y.dtype), jnp.asarray(_C_DENSE, dtype=y.dtype)

    def stage(i, carry):
        ks, f_start, _ = carry
        fs = rhs(y + a[i] @ ks, theta, u)
        k = w_solve(fs + (c[i] @ ks) / h)
        ks = jnp.where(i < 6, ks.at[jnp.minimum(i, 5)].set(k), ks)
        return ks, jnp.where(i == 0, fs, f_start), fs

    zeros = jnp.zeros(n, dtype=y.dtype)
    ks, f_start, f_end = jax.lax.fori_loop(0, 7, stage, (jnp.zeros((6, n), dtype=y.dtype), zeros, zeros))
    return y + a[6] @ ks, ks[5], f_start, f_end, fit


#: an error norm below which the step factor is FAC_MAX whatever the norm (half the norm at which
#: SAFETY * err ** -0.25 reaches FAC_MAX, so the clip, not rounding, decides)
ERR_FLOOR = 0.5 * (SAFETY / FAC_MAX) ** 4


def make_patient_solver(model: Model, parameter_names: tuple[str, ...], linear_algebra: str | None = None):
    """solve(y0, theta, seg_t, seg_u, seg_jump, t_out, rtol, atol, h_max, max_steps) for one patient;
    ``rtol`` and ``atol`` are numbers or one per state. ``linear_algebra``: one of ``LINEAR_ALGEBRA``
    (default: ``default_linear_algebra()``)."""
    linear_algebra = linear_algebra or default_linear_algebra()
    if linear_algebra not in LINEAR_ALGEBRA:
        raise ValueError(f"linear_algebra '{linear_algebra}' is not one of: {', '.join(LINEAR_ALGEBRA)}")
    rhs = vector_field(model, parameter_names)
    jac = jax.jacfwd(rhs, argnums=0)
    structure = w_structure(model, parameter_names) if linear_algebra == "sparse" else None

    def solve(y0, theta, seg_t, seg_u, seg_jump, t_out, rtol, atol, h_max, max_steps):
        n_seg = seg_u.shape[0]
        idx = jnp.arange(n_seg)
        last_real = jnp.max(jnp.where(seg_t[1:] > seg_t[:-1], idx, -1))
        out0 = jnp.zeros((t_out.shape[0], y0.shape[0]), dtype=y0.dtype)
        recorded0 = jnp.zeros(t_out.shape[0], dtype=bool)

        def segment(carry, seg):
            y, h, out, recorded, steps, status = carry
            s, t0, t1, u, jump = seg
            active = t1 > t0
            y = jnp.where(active, y + jump, y)
            at_start = active & ~recorded & (t_out <= t0)
            out = jnp.where(at_start[:, None], y[None, :], out)
            recorded = recorded | at_start
            is_final = s == last_real

            def cond(c):
                t, y, h, out, recorded, steps, status, rejected = c
                return active & (t < t1) & (status == 0)

            def body(c):
                t, y, h, out, recorded, steps, status, rejected = c
                h_wanted = h
                reach_end = t + h >= t1 - 1e-12 * jnp.maximum(1.0, jnp.abs(t1))
                h = jnp.where(reach_end, t1 - t, h)
                ynew, err_vec, f0, f1, fit = _rodas4_step(rhs, jac, structure, y, theta, u, h)
                scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(ynew))
                # the error norm with a derivative everywhere: at exactly zero (a model at rest) the
                # square root's is infinite, so it is taken of 1 there and its value replaced; a NaN
                # norm stays NaN (not finite: the step is cut, as in the compiled kernel)
                mean_square = jnp.mean((err_vec / scale) ** 2)
                at_rest = mean_square == 0
                err = jnp.where(at_rest, 0.0, jnp.sqrt(jnp.where(at_rest, 1.0, mean_square)))
                # an unfit sparse factorisation counts as a step with non-finite values (module docstring)
                finite = jnp.isfinite(err) & fit
                accept = finite & (err <= 1.0)
                tn = jnp.where(reach_end, t1, t + h)
                x = (t_out - t) / h
                h00 = (1.0 + 2.0 * x) * (1.0 - x) ** 2
                h10 = x * (1.0 - x) ** 2
                h01 = x * x * (3.0 - 2.0 * x)
                h11 = x * x * (x - 1.0)
                interp = (h00[:, None] * y + h10[:, None] * h * f0 + h01[:, None] * ynew + h11[:, None] * h * f1)
                take = accept & ~recorded & ((t_out < tn) | ((t_out <= tn) & ((reach_end & is_final) | ~reach_end)))
                out = jnp.where(take[:, None], interp, out)
                recorded = recorded | take
                # below ERR_FLOOR the factor is clipped to FAC_MAX anyway: the floor keeps err ** -0.25's
                # derivative finite there (an unbounded one times the clip's zero would be NaN)
                safe_err = jnp.where(finite & (err > ERR_FLOOR), err, ERR_FLOOR)
                fac = jnp.clip(SAFETY * safe_err ** -0.25, FAC_MIN, FAC_MAX)
                # no growth right after a rejection, as the compiled kernel does
                h_acc = jnp.minimum(h * jnp.where(rejected, jnp.minimum(fac, 1.0), fac), h_max)
                h_acc = jnp.where(reach_end, jnp.minimum(jnp.maximum(h_acc, h_wanted), h_max), h_acc)
                # a second rejection in a row cuts by FAC_MIN, as the compiled kernel does
                h_rejected = h * jnp.where(rejected, FAC_MIN, jnp.maximum(FAC_MIN, fac))
                h_new = jnp.where(accept, h_acc, jnp.where(finite, h_rejected, h * 0.25))
                rejected = jnp.where(accept, False, finite | rejected)
                t_new = jnp.where(accept, tn, t)
                underflow = (~accept) & (h_new < 1e-14 * jnp.maximum(1.0, jnp.abs(t)))
                steps = steps + 1
                status = jnp.where(underflow, jnp.where(finite, 2, 3), status)
                status = jnp.where((status == 0) & (steps >= max_steps) & (t_new < t1), 1, status)
                return t_new, jnp.where(accept, ynew, y), h_new, out, recorded, steps, status, rejected

            # the step carried in is kept whole (the loop shortens the segment's last step to its end
            # and then resumes from the longer of the two), as in the compiled kernel
            t, y, h, out, recorded, steps, status, _ = jax.lax.while_loop(
                cond, body, (t0, y, h, out, recorded, steps, status, jnp.asarray(False)))
            return (y, h, out, recorded, steps, status), None

        carry0 = (y0, jnp.minimum(1e-4, h_max), out0, recorded0, jnp.asarray(0), jnp.asarray(0))
        segs = (idx, seg_t[:-1], seg_t[1:], seg_u, seg_jump)
        (y, _, out, recorded, steps, status), _ = jax.lax.scan(segment, carry0, segs)
        out = jnp.where(recorded[:, None], out, y[None, :])
        return out, status, steps

    return solve


@lru_cache(maxsize=8)
def _batched_solver(model: Model, parameter_names: tuple[str, ...], linear_algebra: str):
    solve = make_patient_solver(model, parameter_names, linear_algebra)
    return jax.jit(jax.vmap(solve, in_axes=(0, 0, 0, 0, 0, None, None, None, None, None)))


def solve_jax(problem: Problem, settings: SolverSettings = SolverSettings(), linear_algebra: str | None = None):
    """Same contract as ``solve_cpu``: (states (n, n_out, n_states), status (n,), steps (n,)).
    ``linear_algebra``: one of ``LINEAR_ALGEBRA`` (default: ``default_linear_algebra()``)."""
    with jax.enable_x64(True):
        fn = _batched_solver(problem.model, problem.parameter_names, linear_algebra or default_linear_algebra())
        # one per state, always (one compilation whatever the per-state tolerances); a state with none
        # of its own gets rtol and atol themselves, so its arithmetic is that of plain numbers
        rtol, atol = (jnp.asarray(v) for v in settings.tolerances(problem.model.state_names))
        out, status, steps = fn(jnp.asarray(problem.y0), jnp.asarray(problem.theta), jnp.asarray(problem.seg_t),
                                jnp.asarray(problem.seg_u), jnp.asarray(problem.seg_jump), jnp.asarray(problem.t_out),
                                rtol, atol, settings.h_max, settings.max_steps)
        return np.asarray(out), np.asarray(status, dtype=np.int64), np.asarray(steps, dtype=np.int64)
