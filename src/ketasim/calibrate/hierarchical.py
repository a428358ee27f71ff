"""Hierarchical (mixed-effects) fits to individual data: log-normal random effects per patient.

The model. Patient ``i``'s parameters are ``theta_i = theta_file * exp(phi_i)`` with log-shifts

    phi_i = mu + P eta_i,        eta_i ~ N(0, Omega),  Omega diagonal,

where ``mu`` holds the typical log-shift of every fitted parameter and ``P`` picks the parameters
named as random (the others are the same in every patient). Observation ``j`` of patient ``i`` is
Gaussian around the model, ``y_ij ~ N(f_ij(phi_i), (s sigma_ij)^2)``: ``sigma_ij`` is the row's SD
(for an event data set, the mapping's residual error model at the observed value) and ``s``, a
residual scale, is estimated with the rest (``s = 1`` when the declared error model is right).

The estimation is Lindstrom & Bates (1990, Biometrics 46:673)'s alternating algorithm, the one
behind R's ``nlme``:

1. *penalised nonlinear least squares*, per patient: the conditional mode (empirical Bayes
   estimate) ``eta_i`` minimising ``|e_i(mu + P eta)|^2 / s^2 + eta' Omega^-1 eta``, with
   ``e_ij = (f_ij - y_ij) / sigma_ij``, by trust-region Gauss-Newton with the exact forward-mode
   Jacobian ``D_i = de_i/dphi`` of the model (``ketasim.engine.differentiable``);
2. *linear mixed-effects step*: linearised about each ``phi_i``, the working response
   ``z_i = D_i phi_i - e_i`` is ``N(D_i mu, V_i)`` with ``V_i = D_i P Omega P' D_i' + s^2 I``;
   ``mu`` follows by generalised least squares, ``Omega`` and ``s^2`` by maximising that Gaussian
   likelihood (profiled over ``mu``).

The two steps alternate until ``mu`` (log scale), the random-effect SDs and ``s`` change by less
than ``tol``. The objective reported is the Laplace approximation of ``-2 log L`` at the conditional
modes with the Gauss-Newton Hessian ``H_i = P' D_i' D_i P / s^2 + Omega^-1`` (FOCE's objective
for this error model). Standard errors come from the expected information of the linearised model
(Wald; variances on the log scale). Each patient's interval is from its Laplace posterior
covariance ``H_i^-1``; shrinkage is ``1 - SD(eta_i) / omega`` (Savic & Karlsson 2009, AAPS J 11:558).

Individual log-shifts are kept within the parameter file's range widened threefold each way
(``INDIVIDUAL_WIDENING``), so that an outlying patient cannot drive the solver where the model was
never meant to go; the typical values stay within the range itself.

>>> import numpy as np
>>> class Line:  # a linear "model": y = a + b t, two observations per patient
...     def __init__(self, pid, y): self.id, self.y, self.n_observations = pid, np.asarray(y), 2
...     def residuals(self, phi, with_jacobian=False):
...         d = np.array([[1.0, 0.0], [1.0, 1.0]])
...         return d @ phi - self.y, (d if with_jacobian else None)
>>> rng = np.random.default_rng(0)
>>> pts = [Line(i, [0.3 + a, 0.3 + a + 0.1] + 0.05 * rng.standard_normal(2))
...        for i, a in enumerate(0.2 * rng.standard_normal(40))]
>>> fit = estimate(pts, ["a", "b"], ["a"], lower=np.full(2, -3.0), upper=np.full(2, 3.0))
>>> fit.converged, round(float(fit.mu[0]), 1), round(float(fit.mu[1]), 1)
(True, 0.3, 0.1)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import least_squares, minimize

from .data import convert
from .fit import AvailabilityGroup, FitError, Group, Problem

#: individual log-shifts may leave the file's range by this factor on either side
INDIVIDUAL_WIDENING = 3.0
Z95 = 1.959963984540054


class PatientData(Protocol):
    """What the estimation needs of one patient: ``residuals(phi, with_jacobian)`` gives the
    SD-scaled residuals ``e = (model - observed) / sigma`` at log-shifts ``phi`` and, when asked,
    ``de/dphi`` of shape (n_observations, n_parameters)."""

    id: Any
    n_observations: int

    def residuals(self, phi: np.ndarray, with_jacobian: bool = False) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass
class Patient:
    """The observations of one patient (one group per scenario: an ID with several occasions has
    several) and their differentiable predictions.

    Where the table gives a residual error model per row (``error_proportional``, ``error_additive``
    in the row's unit, as ``fit --dataset`` writes them), ``reweight`` sets each row's SD to that model
    at the patient's current prediction: generalised least squares (Davidian & Giltinan 1995,
    section 2.3). An SD computed from the observed value instead would give high observations less
    weight than low ones and bias clearances upwards under a proportional error.
    """

    id: Any
    groups: list[Group]
    #: per group: (proportional, additive in the output's unit) of each row, NaN where the row has
    #: none (its table SD stands), or None for a group without an error model
    error_models: list[tuple[np.ndarray, np.ndarray] | None] = field(default_factory=list)
    _last: tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]] | None = field(default=None, repr=False)
    _table_sigma: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self._table_sigma = [g.sigma.copy() for g in self.groups]

    @property
    def n_observations(self) -> int:
        return sum(len(g.observed) for g in self.groups)

    @property
    def sigma(self) -> np.ndarray:
        return np.concatenate([g.sigma for g in self.groups])

    def reset_weights(self) -> None:
        """The SDs as the table gave them (a new fit starts from them)."""
        for g, table in zip(self.groups, self._table_sigma):
            g.sigma = table.copy()
        self._last = None

    def residuals(self, phi: np.ndarray, with_jacobian: bool = False):
        phi = np.asarray(phi, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], phi):  # the solver asks twice at its optimum
            return self._last[1], (self._last[2] if with_jacobian else None)
        e, d, preds = [], [], []
        for g in self.groups:
            pred, dpred = g.predict(phi, with_jacobian)
            preds.append(pred)
            e.append((pred - g.observed) / g.sigma)
            if with_jacobian:
                d.append(dpred / g.sigma[:, None])
        e = np.concatenate(e)
        if not with_jacobian:
            return e, None
        jac = np.vstack(d)
        self._last = (phi.copy(), e, jac, preds)
        return e, jac

    def reweight(self, phi: np.ndarray) -> np.ndarray:
        """Each row's SD from its error model at the prediction at ``phi``; returns old SD / new SD
        per row (1 where the table's SDs stand)."""
        phi = np.asarray(phi, dtype=float)
        if self._last is None or not np.array_equal(self._last[0], phi):
            self.residuals(phi, with_jacobian=True)
        ratios = []
        for g, pred, model in zip(self.groups, self._last[3], self.error_models):
            if model is None:
                ratios.append(np.ones(len(g.observed)))
                continue
            proportional, additive = model
            new = np.where(np.isnan(proportional), g.sigma, np.hypot(proportional * pred, additive))
            if not np.all(new > 0):
                raise FitError(f"patient {self.id}: the residual error model gives SD 0 where the prediction is 0; "
                               "give the output an additive error ([error] of --mapping)")
            ratios.append(g.sigma / new)
            g.sigma = new
        self._last = None
        return np.concatenate(ratios)


def patients_of(problem: Problem) -> list[Patient]:
    """The problem's observation groups gathered by the table's ``patient`` column, in the order of
    the ids."""
    by_id: dict[Any, list[Group]] = {}
    for g in problem.groups:
        if isinstance(g, AvailabilityGroup):
            raise FitError("--hierarchical: bioavailability rows are summary data; a hierarchical fit takes "
                           "individual observations (metric at or change)")
        if "patient" not in g.rows.columns or g.rows["patient"].isna().any():
            raise FitError(f"--hierarchical: every row needs a 'patient' id ({g.scenario} has rows without one); "
                           "an event data set (--dataset) gives one per ID")
        keys = ["source_table", "patient"] if "source_table" in g.rows.columns else ["patient"]
        for key, rows in g.rows.groupby(keys, sort=False):
            if len(rows) != len(g.rows):
                raise FitError(f"--hierarchical: {g.scenario} holds rows of several patients; give each patient "
                               "a scenario of its own")
            by_id.setdefault(key, []).append(g)
    if len(by_id) < 2:
        raise FitError(f"--hierarchical: the data hold {len(by_id)} patient(s); between-patient variances need several")
    sources = {key[0] for key in by_id if isinstance(key, tuple) and len(key) == 2}
    patients = []
    for key in sorted(by_id, key=lambda k: tuple((type(v).__name__, v) for v in (k if isinstance(k, tuple) else (k,)))):
        parts = key if isinstance(key, tuple) else (key,)
        # ids from different tables are different patients; named with their table when several
        pid = f"{Path(parts[0]).name}:{parts[-1]}" if len(sources) > 1 else parts[-1]
        patients.append(Patient(pid, by_id[key], [_error_model(g) for g in by_id[key]]))
    return patients


def _error_model(g: Group) -> tuple[np.ndarray, np.ndarray] | None:
    """The rows' residual error model in the output's unit, where the table gives one (NaN in rows
    that have none, e.g. a table without the columns fitted together with a data set)."""
    columns = ("error_proportional", "error_additive")
    if not set(columns) <= set(g.rows.columns) or g.rows[list(columns)].isna().all(axis=None):
        return None
    unit = {o: next(v.unit for v in g.function.model.outputs if v.name == o) for o in g.function.outputs}
    proportional = g.rows["error_proportional"].to_numpy(dtype=float)
    additive = np.array([convert(a, str(u), unit[q]) if a == a else np.nan for a, u, q in
                         zip(g.rows["error_additive"], g.rows["unit"], g.rows["quantity"])])
    given = ~(np.isnan(proportional) & np.isnan(additive))
    if np.any(np.isnan(proportional[given]) | np.isnan(additive[given])):
        raise FitError(f"{g.scenario}: a row gives only one of error_proportional and error_additive")
    if not (np.all(proportional[given] >= 0) and np.all(additive[given] >= 0)):
        raise FitError(f"{g.scenario}: error_proportional and error_additive must be >= 0")
    return np.where(given, proportional, np.nan), np.where(given, additive, np.nan)


@dataclass
class HierarchicalResult:
    names: tuple[str, ...]
    random: tuple[str, ...]
    mu: np.ndarray  # typical log-shifts, one per name
    omega2: np.ndarray  # variance of each random effect (log scale), one per random name
    residual_scale: float  # s
    mu_se: np.ndarray
    omega2_se: np.ndarray
    residual_scale_se: float
    objective: float  # Laplace -2 log L
    iterations: int
    converged: bool  # the alternation settled and every patient's conditional mode was found
    modes_unsettled: int  # patients whose conditional mode hit the solver's evaluation limit
    n_observations: int
    patient_ids: list[Any]
    eta: np.ndarray  # (patients, random) conditional modes
    eta_sd: np.ndarray  # (patients, random) Laplace posterior SDs
    lower: np.ndarray
    upper: np.ndarray
    history: list[dict[str, Any]]

    def phi(self) -> np.ndarray:
        """(patients, names) individual log-shifts."""
        phi = np.tile(self.mu, (len(self.patient_ids), 1))
        phi[:, self._random_index] += self.eta
        return phi

    @property
    def _random_index(self) -> np.ndarray:
        return np.array([self.names.index(n) for n in self.random], dtype=int)

    @property
    def shrinkage(self) -> np.ndarray:
        """eta-shrinkage per random effect, 1 - SD(eta_i) / omega."""
        return 1.0 - np.std(self.eta, axis=0, ddof=1) / np.sqrt(self.omega2)

    def individual_table(self, nominal: Sequence[float], units: Sequence[str]) -> pd.DataFrame:
        """One row per patient and parameter, values in the file unit with their 95 % intervals
        (random parameters; a fixed one is the typical value in every patient)."""
        rows = []
        phi = self.phi()
        sd = np.zeros_like(phi)
        sd[:, self._random_index] = self.eta_sd
        for i, pid in enumerate(self.patient_ids):
            for k, name in enumerate(self.names):
                random = name in self.random
                rows.append({"patient": pid, "parameter": name, "unit": units[k], "random": random,
                             "value": nominal[k] * math.exp(phi[i, k]),
                             "lower95": nominal[k] * math.exp(phi[i, k] - Z95 * sd[i, k]),
                             "upper95": nominal[k] * math.exp(phi[i, k] + Z95 * sd[i, k]),
                             "eta": float(phi[i, k] - self.mu[k])})
        return pd.DataFrame(rows)


def check_random(names: Sequence[str], random: Sequence[str]) -> tuple[str, ...]:
    """The parameters with a random effect, checked against the fitted ones (``--random``)."""
    random = tuple(random)
    unknown = [r for r in random if r not in names]
    if unknown:
        raise FitError(f"--random: {', '.join(unknown)} not among --params ({', '.join(names)})")
    if not random:
        raise FitError("--random: name at least one parameter with a between-patient variance")
    if len(set(random)) != len(random):
        raise FitError("--random: a parameter is named twice")
    return random


def estimate(patients: Sequence[PatientData], names: Sequence[str], random: Sequence[str], *, lower: np.ndarray,
             upper: np.ndarray, max_iterations: int = 50, tol: float = 1e-3, omega2_start: float = 0.1,
             progress=None) -> HierarchicalResult:
    """Fit typical values ``mu``, random-effect variances ``Omega`` and the residual scale ``s``
    (module docstring) to ``patients``; ``lower``/``upper`` bound the typical log-shifts."""
    names, random = tuple(names), check_random(names, random)
    rnd = np.array([names.index(r) for r in random], dtype=int)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    widen = math.log(INDIVIDUAL_WIDENING)
    ind_lower, ind_upper = lower[rnd] - widen, upper[rnd] + widen
    for p in patients:
        if hasattr(p, "reset_weights"):
            p.reset_weights()
    mu = np.clip(np.zeros(len(names)), lower, upper)
    omega2 = np.full(len(random), omega2_start)
    s2 = 1.0
    eta = np.zeros((len(patients), len(random)))
    history, converged, iteration = [], False, 0
    for iteration in range(1, max_iterations + 1):
        work = []
        for i, p in enumerate(patients):
            eta[i], e, d, _ = _conditional_mode(p, mu, rnd, omega2, s2, eta[i], ind_lower, ind_upper)
            phi = _individual(mu, rnd, eta[i])
            if hasattr(p, "reweight"):  # SDs at the new individual predictions, for the step and the next modes
                ratio = p.reweight(phi)
                e, d = e * ratio, d * ratio[:, None]
            work.append((d @ phi - e, d))
        new_mu, new_omega2, new_s2 = _linear_mixed_step(work, rnd, omega2, s2, lower, upper)
        change = max(np.max(np.abs(new_mu - mu)), np.max(np.abs(np.sqrt(new_omega2) - np.sqrt(omega2))),
                     abs(math.sqrt(new_s2) - math.sqrt(s2)))
        eta += (mu - new_mu)[rnd]  # the same individual parameters, re-centred: the next warm start
        mu, omega2, s2 = new_mu, new_omega2, new_s2
        history.append({"iteration": iteration, "mu": mu.tolist(), "omega2": omega2.tolist(), "residual_scale": math.sqrt(s2),
                        "change": float(change)})
        if progress is not None:
            progress(iteration, float(change))
        if change < tol:
            converged = True
            break
    # the conditional modes, the objective and the information at the final estimates
    objective, info_mu, info_var, eta_sd = 0.0, 0.0, 0.0, np.zeros_like(eta)
    n_obs, modes_unsettled = 0, 0
    for i, p in enumerate(patients):
        eta[i], e, d, settled = _conditional_mode(p, mu, rnd, omega2, s2, eta[i], ind_lower, ind_upper)
        if hasattr(p, "reweight"):  # once more under the SDs at this mode; the SDs at the new one are reported
            p.reweight(_individual(mu, rnd, eta[i]))
            eta[i], e, d, settled = _conditional_mode(p, mu, rnd, omega2, s2, eta[i], ind_lower, ind_upper)
            ratio = p.reweight(_individual(mu, rnd, eta[i]))
            e, d = e * ratio, d * ratio[:, None]
        modes_unsettled += not settled
        z = d[:, rnd]
        h = z.T @ z / s2 + np.diag(1.0 / omega2)
        h_inv = np.linalg.inv(h)
        eta_sd[i] = np.sqrt(np.diag(h_inv))
        logdet_h = np.linalg.slogdet(h)[1]
        n = len(e)
        n_obs += n
        log_sigma = float(np.sum(np.log(p.sigma))) if hasattr(p, "sigma") else 0.0
        objective += (n * math.log(2 * math.pi * s2) + 2 * log_sigma + float(e @ e) / s2
                      + float(eta[i] @ (eta[i] / omega2)) + float(np.sum(np.log(omega2))) + logdet_h)
        a, b = _information(d, rnd, omega2, s2)
        info_mu, info_var = info_mu + a, info_var + b
    mu_se = _standard_errors(info_mu)
    var_se = _standard_errors(info_var)
    return HierarchicalResult(
        names=names, random=random, mu=mu, omega2=omega2, residual_scale=math.sqrt(s2), mu_se=mu_se,
        omega2_se=var_se[:-1], residual_scale_se=float(var_se[-1] / (2 * math.sqrt(s2))), objective=objective,
        iterations=iteration, converged=converged and modes_unsettled == 0, modes_unsettled=modes_unsettled,
        n_observations=n_obs, patient_ids=[p.id for p in patients],
        eta=eta, eta_sd=eta_sd, lower=lower, upper=upper, history=history)


def _individual(mu: np.ndarray, rnd: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """A patient's log-shifts phi = mu + P eta."""
    phi = mu.copy()
    phi[rnd] += eta
    return phi


def _conditional_mode(patient: PatientData, mu, rnd, omega2, s2, eta0, ind_lower, ind_upper):
    """Penalised least squares for one patient's random effects: (eta, e, de/dphi, found) at the mode."""
    s = math.sqrt(s2)
    prior = 1.0 / np.sqrt(omega2)
    lo, hi = ind_lower - mu[rnd], ind_upper - mu[rnd]

    def fun(eta):
        e, _ = patient.residuals(_individual(mu, rnd, eta))
        return np.concatenate([e / s, prior * eta])

    def jac(eta):
        _, d = patient.residuals(_individual(mu, rnd, eta), with_jacobian=True)
        return np.vstack([d[:, rnd] / s, np.diag(prior)])

    margin = 1e-9 * (hi - lo)
    start = np.clip(eta0, lo + margin, hi - margin)
    try:
        sol = least_squares(fun, start, jac=jac, bounds=(lo, hi), method="trf", xtol=1e-8, ftol=1e-10, gtol=1e-8,
                            max_nfev=100)
    except ValueError as exc:  # scipy: residuals not finite at the start
        raise FitError(f"patient {patient.id}: the model could not be evaluated at its individual parameters "
                       f"({exc})") from None
    if not np.all(np.isfinite(sol.fun)):
        raise FitError(f"patient {patient.id}: the model could not be evaluated at its individual parameters")
    e, d = patient.residuals(_individual(mu, rnd, sol.x), with_jacobian=True)
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(d))):
        raise FitError(f"patient {patient.id}: the model's Jacobian is not finite at its individual parameters")
    return sol.x, e, d, sol.status > 0


def _covariances(work, rnd, omega2, s2):
    """Per patient: (Cholesky factor of V_i, D_i, z_i)."""
    out = []
    for z, d in work:
        zr = d[:, rnd]
        v = (zr * omega2) @ zr.T + s2 * np.eye(len(z))
        out.append((cho_factor(v, lower=True), d, z))
    return out


def _gls(pieces, n_par):
    """Generalised least squares for mu, with the profiled -2 log L of the linearised model."""
    a = np.zeros((n_par, n_par))
    b = np.zeros(n_par)
    ztz, logdet = 0.0, 0.0
    for cho, d, z in pieces:
        vd, vz = cho_solve(cho, d), cho_solve(cho, z)
        a += d.T @ vd
        b += d.T @ vz
        ztz += float(z @ vz)
        logdet += 2.0 * float(np.sum(np.log(np.diag(cho[0]))))
    mu = np.linalg.pinv(a) @ b
    return mu, logdet + ztz - 2 * float(mu @ b) + float(mu @ a @ mu)


def _linear_mixed_step(work, rnd, omega2, s2, lower, upper):
    """Maximum likelihood of the linearised model: (mu, Omega diagonal, s^2)."""
    n_par = work[0][1].shape[1]

    def objective(v):
        return _gls(_covariances(work, rnd, np.exp(v[:-1]), math.exp(v[-1])), n_par)[1]

    start = np.log(np.concatenate([omega2, [s2]]))
    bounds = [(math.log(1e-8), math.log(25.0))] * len(rnd) + [(math.log(1e-6), math.log(1e6))]
    sol = minimize(objective, np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds]), method="L-BFGS-B",
                   bounds=bounds, options={"ftol": 1e-12, "gtol": 1e-8})
    omega2_new, s2_new = np.exp(sol.x[:-1]), math.exp(sol.x[-1])
    mu, _ = _gls(_covariances(work, rnd, omega2_new, s2_new), n_par)
    return np.clip(mu, lower, upper), omega2_new, s2_new


def _information(d, rnd, omega2, s2):
    """One patient's expected information of the linearised model: (for mu, for (Omega, s^2))."""
    zr = d[:, rnd]
    v = (zr * omega2) @ zr.T + s2 * np.eye(len(d))
    v_inv = np.linalg.inv(v)
    info_mu = d.T @ v_inv @ d
    derivs = [np.outer(zr[:, k], zr[:, k]) for k in range(len(rnd))] + [np.eye(len(d))]
    w = [v_inv @ dv for dv in derivs]
    info_var = 0.5 * np.array([[np.sum(wa * wb.T) for wb in w] for wa in w])
    return info_mu, info_var


def _standard_errors(info: np.ndarray) -> np.ndarray:
    """From the information matrix; infinity for a direction the data do not inform."""
    untouched = np.abs(np.diag(info)) <= 1e-12 * max(np.abs(info).max(), 1e-300)
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(info)), 0.0, np.inf))
    se[untouched] = np.inf
    return se
