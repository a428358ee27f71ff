# ---------------------------------------------------------------------------------------------
# Rodas4 (coefficients in ketasim.engine.tableau), solved with the analytic Jacobian. This text is
# appended by ketasim.engine.codegen to the generated functions of a model (module globals N_STATES,
# N_PARAMS, N_DERIVED, LU_SIZE, W_ROWS, W_COLS, FASTMATH, derived, rhs, w_matrix, w_factor, w_solve), so numba compiles model and
# solver as one unit. W = I/(h GAMMA) - J is built, factored and solved in the sparse storage of
# ketasim.engine.sparse_lu (fixed pattern, no pivoting); if that factorisation reports an unfit
# pivot, the step uses the dense LU with partial pivoting below instead. Each patient gets its own
# adaptive step size (rtol and atol are per state); ketasim.engine.cpu runs slices of a batch in
# parallel threads. Outputs between steps come from cubic Hermite interpolation with the derivatives
# at both step ends.
# Status codes: 0 ok, 1 too many steps, 2 step size underflow, 3 non-finite values.
# ---------------------------------------------------------------------------------------------
from ketasim.engine.tableau import (  # noqa: E402  (the coefficients every backend shares)
    A21,
    A31,
    A32,
    A41,
    A42,
    A43,
    A51,
    A52,
    A53,
    A54,
    C21,
    C31,
    C32,
    C41,
    C42,
    C43,
    C51,
    C52,
    C53,
    C54,
    C61,
    C62,
    C63,
    C64,
    C65,
    FAC_MAX,
    FAC_MIN,
    GAMMA,
    SAFETY,
)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def lu_factor(a, piv):
    """In-place LU with partial pivoting; returns False if the matrix is singular."""
    n = a.shape[0]
    for k in range(n):
        p = k
        big = abs(a[k, k])
        for i in range(k + 1, n):
            if abs(a[i, k]) > big:
                big = abs(a[i, k])
                p = i
        piv[k] = p
        if big == 0.0:
            return False
        if p != k:
            for j in range(n):
                a[k, j], a[p, j] = a[p, j], a[k, j]
        inv = 1.0 / a[k, k]
        for i in range(k + 1, n):
            if a[i, k] != 0.0:
                a[i, k] *= inv
                f = a[i, k]
                for j in range(k + 1, n):
                    a[i, j] -= f * a[k, j]
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def lu_solve(a, piv, b):
    n = a.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            b[k], b[p] = b[p], b[k]
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= a[i, j] * b[j]
        b[i] = s
    for i in range(n - 1, -1, -1):
        s = b[i]
        for j in range(i + 1, n):
            s -= a[i, j] * b[j]
        b[i] = s / a[i, i]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def extended_parameters(p):
    """The parameters followed by the model's parameter-only subexpressions (``derived``), which
    ``rhs`` and ``w_matrix`` read from there instead of recomputing them (divisions, powers) in
    every call."""
    pe = np.empty(N_PARAMS + N_DERIVED)
    pe[:N_PARAMS] = p
    derived(pe)
    return pe


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def factor_w(y, p, u, fac, lu, w, piv):
    """W in ``lu`` (sparse, factored) or, if a pivot was unfit there, in ``w``/``piv`` (dense, pivoted).

    Returns 0 for the sparse factors, 1 for the dense ones, -1 if W is singular.
    """
    w_matrix(y, p, u, fac, lu)
    if w_factor(lu):
        return 0
    w_matrix(y, p, u, fac, lu)  # the failed factorisation overwrote it
    w[:, :] = 0.0
    for k in range(W_ROWS.shape[0]):
        w[W_ROWS[k], W_COLS[k]] = lu[k]
    return 1 if lu_factor(w, piv) else -1


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def solve_w(kind, lu, w, piv, b):
    if kind == 0:
        w_solve(lu, b)
    else:
        lu_solve(w, piv, b)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def integrate_patient(y0, p, seg_t, seg_u, seg_jump, t_out, rtol, atol, h_max, max_steps, out):
    n = y0.shape[0]
    n_seg = seg_t.shape[0] - 1
    n_out = t_out.shape[0]
    pe = extended_parameters(p)
    y = y0.copy()
    ynew = np.empty(n)
    arg = np.empty(n)
    f0 = np.empty(n)
    f1 = np.empty(n)
    fs = np.empty(n)
    k1 = np.empty(n)
    k2 = np.empty(n)
    k3 = np.empty(n)
    k4 = np.empty(n)
    k5 = np.empty(n)
    k6 = np.empty(n)
    lu = np.empty(LU_SIZE)
    w = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    last_real = -1
    for s in range(n_seg):
        if seg_t[s + 1] > seg_t[s]:
            last_real = s
    k_out = 0
    steps = 0
    rejected = False  # the last attempt was rejected by the error test
    h = min(1e-4, h_max)
    t = seg_t[0]
    for s in range(n_seg):
        t0 = seg_t[s]
        t1 = seg_t[s + 1]
        if not t1 > t0:
            continue
        for i in range(n):
            y[i] += seg_jump[s, i]
        u = seg_u[s]
        t = t0
        while k_out < n_out and t_out[k_out] <= t0:  # right-continuous: post-dose state
            for i in range(n):
                out[k_out, i] = y[i]
            k_out += 1
        rhs(y, pe, u, f0)
        while t < t1:
            if steps >= max_steps:
                return 1, steps
            h_wanted = h
            reach_end = False
            if t + h >= t1 - 1e-12 * max(1.0, abs(t1)):
                h = t1 - t
                reach_end = True
            kind = factor_w(y, pe, u, 1.0 / (h * GAMMA), lu, w, piv)
            if kind < 0:
                h *= 0.5
                continue
            inv_h = 1.0 / h  # one division per step instead of one per state and stage
            for i in range(n):
                k1[i] = f0[i]
            solve_w(kind, lu, w, piv, k1)
            for i in range(n):
                arg[i] = y[i] + A21 * k1[i]
            rhs(arg, pe, u, fs)
            for i in range(n):
                k2[i] = fs[i] + C21 * k1[i] * inv_h
            solve_w(kind, lu, w, piv, k2)
            for i in range(n):
                arg[i] = y[i] + A31 * k1[i] + A32 * k2[i]
            rhs(arg, pe, u, fs)
            for i in range(n):
                k3[i] = fs[i] + (C31 * k1[i] + C32 * k2[i]) * inv_h
            solve_w(kind, lu, w, piv, k3)
            for i in range(n):
                arg[i] = y[i] + A41 * k1[i] + A42 * k2[i] + A43 * k3[i]
            rhs(arg, pe, u, fs)
            for i in range(n):
                k4[i] = fs[i] + (C41 * k1[i] + C42 * k2[i] + C43 * k3[i]) * inv_h
            solve_w(kind, lu, w, piv, k4)
            for i in range(n):
                arg[i] = y[i] + A51 * k1[i] + A52 * k2[i] + A53 * k3[i] + A54 * k4[i]
            rhs(arg, pe, u, fs)
            for i in range(n):
                k5[i] = fs[i] + (C51 * k1[i] + C52 * k2[i] + C53 * k3[i] + C54 * k4[i]) * inv_h
            solve_w(kind, lu, w, piv, k5)
            for i in range(n):
                arg[i] += k5[i]
            rhs(arg, pe, u, fs)
            for i in range(n):
                k6[i] = fs[i] + (C61 * k1[i] + C62 * k2[i] + C63 * k3[i] + C64 * k4[i] + C65 * k5[i]) * inv_h
            solve_w(kind, lu, w, piv, k6)
            err = 0.0
            for i in range(n):
                ynew[i] = arg[i] + k6[i]
                sc = atol[i] + rtol[i] * max(abs(y[i]), abs(ynew[i]))
                err += (k6[i] / sc) ** 2
            err = math.sqrt(err / n)
            steps += 1
            if not math.isfinite(err):
                h *= 0.25
                if h < 1e-14 * max(1.0, abs(t)):
                    return 3, steps
                continue
            if err <= 1.0:
                rhs(ynew, pe, u, f1)
                tn = t1 if reach_end else t + h
                final = reach_end and s == last_real
                while k_out < n_out and (t_out[k_out] < tn or (t_out[k_out] <= tn and (final or not reach_end))):
                    x = (t_out[k_out] - t) / h
                    h00 = (1.0 + 2.0 * x) * (1.0 - x) ** 2
                    h10 = x * (1.0 - x) ** 2
                    h01 = x * x * (3.0 - 2.0 * x)
                    h11 = x * x * (x - 1.0)
                    for i in range(n):
                        out[k_out, i] = h00 * y[i] + h10 * h * f0[i] + h01 * ynew[i] + h11 * h * f1[i]
                    k_out += 1
                t = tn
                for i in range(n):
                    y[i] = ynew[i]
                    f0[i] = f1[i]
                grow = FAC_MAX if err == 0.0 else min(FAC_MAX, max(FAC_MIN, SAFETY * err ** -0.25))
                if rejected:
                    # no growth right after a rejection (Hairer & Wanner's rodas.f): where the error
                    # changes quickly with time (a receptor population's block collapsing once its
                    # channels reopen), growing again at once was rejected again, step after step
                    grow = min(grow, 1.0)
                rejected = False
                h = min(h * grow, h_max)
                if reach_end:
                    h = min(max(h, h_wanted), h_max)
            else:
                # a second rejection in a row cuts the step by FAC_MIN (CVODE's rule after repeated
                # error-test failures, Hindmarsh et al. 2005): far above its asymptotic range, e.g. a
                # step of hours carried into a dose's transients, the error barely falls as the step
                # shrinks, and err ** -0.25 alone took about nine tries to get there
                h *= FAC_MIN if rejected else max(FAC_MIN, SAFETY * err ** -0.25)
                rejected = True
                if h < 1e-14 * max(1.0, abs(t)):
                    return 2, steps
    while k_out < n_out:  # output times past the last event: the state there
        for i in range(n):
            out[k_out, i] = y[i]
        k_out += 1
    return 0, steps


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)  # nogil: several run at once, in threads (engine.cpu)
def solve_batch(y0, p, seg_t, seg_u, seg_jump, t_out, rtol, atol, h_max, max_steps, out, status, n_steps):
    for b in range(y0.shape[0]):
        st, ns = integrate_patient(y0[b], p[b], seg_t[b], seg_u[b], seg_jump[b], t_out,
                                   rtol, atol, h_max, max_steps, out[b])
        status[b] = st
        n_steps[b] = ns
