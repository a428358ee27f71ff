"""The JAX backend: the model's vector field in ``jax.numpy``, its Jacobian by forward-mode
autodiff, and the same Rodas4 method and step control as the compiled CPU kernel, vmapped over
patients. It runs on CPU and GPU, and is differentiable in forward mode (``jax.jacfwd``) with
respect to parameters and initial states: the exact derivatives of the computed solution, step
control included, so that a fit's Jacobian is consistent with its objective. Float64 is enabled
for the call (``jax.enable_x64``), not process-wide.
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ..model.system import Model
from .problem import Problem, SolverSettings
from .tableau import FAC_MAX, FAC_MIN, GAMMA, SAFETY, A, C


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


def _rodas4_step(rhs, jac, y, theta, u, h):
    """One Rodas4 step: (y at the step's end, the error estimate k_6, f at the start, f at the end).

    The vector field is evaluated in one loop (the six stages, then the step's end) so that XLA
    compiles it once rather than seven times; compiling the vector field is most of the JAX paths'
    compile time. f at the start is evaluated in the loop too, rather than carried over from the
    previous step's end: one evaluation more per step, the same numbers.
    """
    n = y.shape[0]
    w = jnp.eye(n) / (h * GAMMA) - jac(y, theta, u)
    lu = jsl.lu_factor(w)
    a, c = jnp.asarray(_A_DENSE, dtype=y.dtype), jnp.asarray(_C_DENSE, dtype=y.dtype)

    def stage(i, carry):
        ks, f_start, _ = carry
        fs = rhs(y + a[i] @ ks, theta, u)
        k = jsl.lu_solve(lu, fs + (c[i] @ ks) / h)
        ks = jnp.where(i < 6, ks.at[jnp.minimum(i, 5)].set(k), ks)
        return ks, jnp.where(i == 0, fs, f_start), fs

    zeros = jnp.zeros(n, dtype=y.dtype)
    ks, f_start, f_end = jax.lax.fori_loop(0, 7, stage, (jnp.zeros((6, n), dtype=y.dtype), zeros, zeros))
    return y + a[6] @ ks, ks[5], f_start, f_end


#: an error norm below which the step factor is FAC_MAX whatever the norm (half the norm at which
#: SAFETY * err ** -0.25 reaches FAC_MAX, so the clip, not rounding, decides)
ERR_FLOOR = 0.5 * (SAFETY / FAC_MAX) ** 4


def make_patient_solver(model: Model, parameter_names: tuple[str, ...]):
    """solve(y0, theta, seg_t, seg_u, seg_jump, t_out, rtol, atol, h_max, max_steps) for one patient;
    ``rtol`` and ``atol`` are numbers or one per state."""
    rhs = vector_field(model, parameter_names)
    jac = jax.jacfwd(rhs, argnums=0)

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
                ynew, err_vec, f0, f1 = _rodas4_step(rhs, jac, y, theta, u, h)
                scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(ynew))
                # the error norm with a derivative everywhere: at exactly zero (a model at rest) the
                # square root's is infinite, so it is taken of 1 there and its value replaced; a NaN
                # norm stays NaN (not finite: the step is cut, as in the compiled kernel)
                mean_square = jnp.mean((err_vec / scale) ** 2)
                at_rest = mean_square == 0
                err = jnp.where(at_rest, 0.0, jnp.sqrt(jnp.where(at_rest, 1.0, mean_square)))
                finite = jnp.isfinite(err)
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
def _batched_solver(model: Model, parameter_names: tuple[str, ...]):
    solve = make_patient_solver(model, parameter_names)
    return jax.jit(jax.vmap(solve, in_axes=(0, 0, 0, 0, 0, None, None, None, None, None)))


def solve_jax(problem: Problem, settings: SolverSettings = SolverSettings()):
    """Same contract as ``solve_cpu``: (states (n, n_out, n_states), status (n,), steps (n,))."""
    with jax.enable_x64(True):
        fn = _batched_solver(problem.model, problem.parameter_names)
        # one per state, always (one compilation whatever the per-state tolerances); a state with none
        # of its own gets rtol and atol themselves, so its arithmetic is that of plain numbers
        rtol, atol = (jnp.asarray(v) for v in settings.tolerances(problem.model.state_names))
        out, status, steps = fn(jnp.asarray(problem.y0), jnp.asarray(problem.theta), jnp.asarray(problem.seg_t),
                                jnp.asarray(problem.seg_u), jnp.asarray(problem.seg_jump), jnp.asarray(problem.t_out),
                                rtol, atol, settings.h_max, settings.max_steps)
        return np.asarray(out), np.asarray(status, dtype=np.int64), np.asarray(steps, dtype=np.int64)
