"""Fitting parameters to observation tables: maximum likelihood or MAP, profiles, and NUTS.

The parameters are estimated on the log scale, ``theta = theta_0 exp(x)``, within the ranges of the
parameter files. Each observation ``i`` has a Gaussian error with standard deviation
``sd_i / sqrt(n_i)`` (summary data), ``sd_i`` (individual data with an SD), or, where the table
gives none, 10 % of the observed value (``DEFAULT_CV``). The objective is
``sum_i r_i^2 / 2`` with ``r_i = (model_i - observed_i) / sigma_i``; MAP adds a normal prior on
``x`` centred on the file value whose 95 % range is the file's plausible range.

Gradients come from forward-mode autodiff through the whole model
(``ketasim.engine.differentiable``): the least-squares Jacobian is exact, not finite differences.
Standard errors are from the Gauss-Newton information ``J'J`` at the optimum; confidence intervals
from the profile likelihood (the other parameters re-optimised on a grid; 95 % where twice the
objective rises by 3.84, chi-square with 1 degree of freedom). A parameter whose profile does not
rise by that much on a side within its range is flagged as not identifiable from the data.
``bayes`` runs NUTS (numpyro) on the same likelihood and prior, with the gradient supplied by the
same forward-mode Jacobian.

Besides values at times (``at``, ``change``), a table may hold ``bioavailability`` observations:
the AUC of the row's scenario over the AUC of the same amounts given as IV boluses, both
integrated on a dense grid (trapezoids to the end of the scenario plus the log-linear tail), with
the exact Jacobian of the ratio.

Where several studies measured the same quantity and disagree beyond their own errors, rows that
share a ``group`` name can be fitted with a between-study variance (``between_study=True``): a
random-effects fit in which each row's variance is its own plus the group's ``tau^2``, estimated
by the Paule-Mandel method from the residuals at the current optimum and iterated with the fit
until it settles. Each study is then weighted by its n and uncertainty and none is picked over the
others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ..engine.differentiable import OutputFunction
from ..errors import KetasimError
from ..model.pk import PK
from ..model.system import Model, default_model
from ..params import ParameterSet
from ..scenario import DRUG_ENANTIOMERS, Scenario
from .data import convert

DEFAULT_CV = 0.10
CHI2_95 = 3.841458820694124  # chi-square, 1 degree of freedom, 95 %
FITTABLE_METRICS = ("at", "change", "bioavailability")


class FitError(KetasimError, ValueError):
    """The data or the parameter list cannot be fitted (the message says which and why)."""


@dataclass
class Group:
    """The observations of one scenario and the differentiable function that predicts them."""

    scenario: str
    function: OutputFunction
    rows: pd.DataFrame
    out_index: np.ndarray  # (n_obs,) index into the function's outputs
    time_index: np.ndarray  # (n_obs,) index into its times
    baseline: np.ndarray  # (n_obs,) True where the metric is a change from time 0
    observed: np.ndarray  # (n_obs,) in the output's unit
    sigma: np.ndarray  # (n_obs,) in the output's unit
    #: (n_obs,) between-study variance added to sigma^2 (random-effects fits; 0 otherwise)
    extra_variance: np.ndarray = field(default=None)

    def __post_init__(self):
        if self.extra_variance is None:
            self.extra_variance = np.zeros_like(self.observed)

    @property
    def total_sigma(self) -> np.ndarray:
        return np.sqrt(self.sigma ** 2 + self.extra_variance)

    def predict(self, x: np.ndarray, with_jacobian: bool = False):
        """(predictions, d predictions / d x or None) for the group's rows."""
        if with_jacobian:
            values, d = self.function.value_and_jacobian(x)
        else:
            values, d = self.function(x), None
        pred = values[self.out_index, self.time_index] - np.where(self.baseline, values[self.out_index, 0], 0.0)
        if not with_jacobian:
            return pred, None
        return pred, d[self.out_index, self.time_index, :] - np.where(self.baseline[:, None], d[self.out_index, 0, :], 0.0)


#: output grid for AUCs: every 5 min for 4 h, every 30 min to 24 h, then every 2 h (h)
def _auc_grid(end_h: float) -> np.ndarray:
    grid = np.concatenate([np.arange(0.0, 4.0, 5 / 60), np.arange(4.0, 24.0, 0.5), np.arange(24.0, end_h, 2.0), [end_h]])
    return np.unique(grid[grid <= end_h])


def _auc(values: np.ndarray, d: np.ndarray | None, t: np.ndarray):
    """AUC to infinity of each output row (trapezoids plus C_last / lambda from the last two points)
    and its derivative."""
    dt = np.diff(t)
    area = np.sum(dt * (values[:, 1:] + values[:, :-1]) / 2, axis=1)
    c1, c2 = values[:, -2], values[:, -1]
    lam = np.log(c1 / c2) / dt[-1]
    tail = c2 / lam
    if d is None:
        return area + tail, None
    d_area = np.sum(dt[None, :, None] * (d[:, 1:, :] + d[:, :-1, :]) / 2, axis=1)
    d1, d2 = d[:, -2, :], d[:, -1, :]
    d_lam = (d1 / c1[:, None] - d2 / c2[:, None]) / dt[-1]
    d_tail = d2 / lam[:, None] - c2[:, None] * d_lam / lam[:, None] ** 2
    return area + tail, d_area + d_tail


@dataclass
class AvailabilityGroup:
    """Bioavailability observations of one scenario: its AUC over the AUC of the same amounts IV."""

    scenario: str
    function: OutputFunction  # the scenario, on an AUC grid
    reference: OutputFunction  # the same amounts as IV boluses, same grid
    rows: pd.DataFrame
    out_index: np.ndarray
    observed: np.ndarray  # (n_obs,) fraction
    sigma: np.ndarray
    extra_variance: np.ndarray = field(default=None)

    __post_init__ = Group.__post_init__
    total_sigma = Group.total_sigma

    def predict(self, x: np.ndarray, with_jacobian: bool = False):
        if with_jacobian:
            (v, dv), (r, dr) = self.function.value_and_jacobian(x), self.reference.value_and_jacobian(x)
        else:
            v, dv, r, dr = self.function(x), None, self.reference(x), None
        auc, d_auc = _auc(v, dv, self.function.times)
        ref, d_ref = _auc(r, dr, self.reference.times)
        ratio = auc / ref
        if not with_jacobian:
            return ratio[self.out_index], None
        d_ratio = d_auc / ref[:, None] - (auc / ref ** 2)[:, None] * d_ref
        return ratio[self.out_index], d_ratio[self.out_index]


@dataclass
class Problem:
    names: tuple[str, ...]
    groups: list[Group | AvailabilityGroup]
    lower: np.ndarray
    upper: np.ndarray
    prior_sd: np.ndarray
    use_prior: bool
    #: group name -> between-study variance (random-effects fits)
    tau2: dict[str, float] = field(default_factory=dict)

    @property
    def n_observations(self) -> int:
        return sum(len(g.observed) for g in self.groups)

    def residuals(self, x: np.ndarray, with_jacobian: bool = False):
        res, jac = [], []
        for g in self.groups:
            pred, dpred = g.predict(x, with_jacobian)
            sigma = g.total_sigma
            res.append((pred - g.observed) / sigma)
            if with_jacobian:
                jac.append(dpred / sigma[:, None])
        if self.use_prior:
            res.append(x / self.prior_sd)
            if with_jacobian:
                jac.append(np.diag(1.0 / self.prior_sd))
        r = np.concatenate(res)
        return (r, np.vstack(jac)) if with_jacobian else r

    def objective(self, x) -> float:
        r = self.residuals(np.asarray(x, dtype=float))
        return 0.5 * float(r @ r) if np.all(np.isfinite(r)) else math.inf


def build_problem(data: pd.DataFrame, names: Sequence[str], params: ParameterSet, use_prior: bool = False) -> Problem:
    """Group the observations by scenario and prepare one differentiable function per scenario."""
    names = tuple(names)
    if not names:
        raise FitError("--params: name at least one parameter to fit")
    unknown = [n for n in names if n not in params]
    if unknown:
        raise FitError(f"--params: unknown parameter(s) {', '.join(unknown)} (`ketasim cite` lists them)")
    bad = sorted(set(data["metric"]) - set(FITTABLE_METRICS))
    if bad:
        raise FitError(f"metric(s) {', '.join(bad)} cannot be fitted yet; use {', '.join(FITTABLE_METRICS)}")
    lower, upper = [], []
    for n in names:
        p = params[n]
        if p.value <= 0 or p.range[0] <= 0:
            raise FitError(f"--params: {n} must be positive with a positive range to be fitted on the log scale")
        lower.append(math.log(p.range[0] / p.value))
        upper.append(math.log(p.range[1] / p.value))
    lower, upper = np.array(lower), np.array(upper)
    if np.any(upper - lower <= 0):
        raise FitError("--params: a parameter with a single-point range cannot be fitted")
    groups: list[Group | AvailabilityGroup] = []
    availability = data["metric"] == "bioavailability"
    for scenario_path, rows in data[availability].groupby("scenario_path", sort=True):
        groups.append(_availability_group(scenario_path, rows, names, params))
    for scenario_path, rows in data[~availability].groupby("scenario_path", sort=True):
        scenario = Scenario.from_toml(scenario_path)
        outputs = tuple(sorted(set(rows["quantity"])))
        times = sorted(set(rows["time [h]"]) | {0.0})
        fn = OutputFunction(scenario, params, names, outputs, times, model=model_for(outputs, scenario))
        units = {o: next(v.unit for v in fn.model.outputs if v.name == o) for o in outputs}
        observed = np.array([convert(r["value"], str(r["unit"]), units[r["quantity"]]) for _, r in rows.iterrows()])
        sigma = np.array([_sigma(r, units[r["quantity"]]) for _, r in rows.iterrows()])
        groups.append(Group(
            scenario=scenario_path, function=fn, rows=rows,
            out_index=np.array([outputs.index(q) for q in rows["quantity"]]),
            time_index=np.searchsorted(fn.times, rows["time [h]"].to_numpy()),
            baseline=(rows["metric"] == "change").to_numpy(), observed=observed, sigma=sigma))
    return Problem(names=names, groups=groups, lower=lower, upper=upper, prior_sd=(upper - lower) / 4.0,
                   use_prior=use_prior)


def _availability_group(scenario_path: str, rows: pd.DataFrame, names: tuple[str, ...],
                        params: ParameterSet) -> AvailabilityGroup:
    from .targets import _iv_reference

    scenario = Scenario.from_toml(scenario_path)
    outputs = tuple(sorted(set(rows["quantity"])))
    grid = _auc_grid(scenario.duration_h)
    fn = OutputFunction(scenario, params, names, outputs, grid, model=model_for(outputs, scenario))
    ref = OutputFunction(_iv_reference(scenario), params, names, outputs, grid, model=model_for(outputs, scenario))
    observed = np.array([convert(r["value"], str(r["unit"]), "fraction") for _, r in rows.iterrows()])
    sigma = np.array([_sigma(r, "fraction") for _, r in rows.iterrows()])
    return AvailabilityGroup(scenario=scenario_path, function=fn, reference=ref, rows=rows,
                             out_index=np.array([outputs.index(q) for q in rows["quantity"]]), observed=observed,
                             sigma=sigma)


def between_study_variances(problem: Problem, x: np.ndarray) -> dict[str, float]:
    """Paule-Mandel tau^2 of every ``group`` of rows, from their residuals e_i at ``x``: the tau^2 at
    which sum e_i^2 / (sigma_i^2 + tau^2) equals the group's k - 1 (0 when even tau^2 = 0 gives less).
    Unlike DerSimonian-Laird it does not let one very precise study inflate tau^2 (Paule RC, Mandel J.
    J Res Natl Bur Stand 1982;87:377; recommended by Veroniki AA et al. Res Synth Methods 2016;7:55)."""
    by_group: dict[str, list[tuple[float, float]]] = {}
    for g in problem.groups:
        pred, _ = g.predict(x)
        names = g.rows["group"] if "group" in g.rows else [None] * len(g.observed)
        for name, y, m, s in zip(names, g.observed, pred, g.sigma):
            if isinstance(name, str) and name:
                by_group.setdefault(name, []).append((y - m, s ** 2))
    tau2 = {}
    for name, entries in by_group.items():
        e2 = np.array([e * e for e, _ in entries])
        var = np.array([v for _, v in entries])
        target = len(entries) - 1

        def q(t2, e2=e2, var=var):
            return float(np.sum(e2 / (var + t2)))

        if len(entries) < 2 or q(0.0) <= target:
            tau2[name] = 0.0
            continue
        low, high = 0.0, float(np.max(e2))  # q(high) <= k * max(e2) / max(e2) ... below k - 1 soon after
        while q(high) > target:
            high *= 2.0
        for _ in range(200):  # bisection: q decreases in tau^2
            mid = 0.5 * (low + high)
            low, high = (mid, high) if q(mid) > target else (low, mid)
        tau2[name] = 0.5 * (low + high)
    return tau2


def set_between_study_variances(problem: Problem, tau2: dict[str, float]) -> None:
    problem.tau2 = dict(tau2)
    for g in problem.groups:
        names = g.rows["group"] if "group" in g.rows else [None] * len(g.observed)
        g.extra_variance = np.array([tau2.get(n, 0.0) if isinstance(n, str) else 0.0 for n in names])


def model_for(outputs: Sequence[str], scenario: Scenario | None = None) -> Model:
    """The smallest model that predicts ``outputs``: pharmacokinetic data need only the PK layer
    (the layers above never feed back on it), with the comparator drugs' layer where the outputs
    or the doses name an SSRI, midazolam or another comparator; this makes fits several times faster.
    Anything else gets the whole model."""
    from ..dosing import DRUG_ENTRIES
    from ..model.comparators import Comparators

    needed = {o.split(".", 1)[0] for o in outputs}
    for dose in scenario.doses if scenario is not None else ():
        if dose.drug not in DRUG_ENANTIOMERS:
            entry = DRUG_ENTRIES.get(dose.drug)
            needed.add(entry.state.split(".", 1)[0] if entry is not None else "other")
    if needed <= {"pk"}:
        return Model([PK()])
    if needed <= {"pk", "comparators"}:
        return Model([PK(), Comparators()])
    return default_model()


def _sigma(row: pd.Series, unit: str) -> float:
    """Standard error of one observation in the output's unit."""
    sd = row.get("sd")
    if sd is not None and not (isinstance(sd, float) and math.isnan(sd)):
        n = row.get("n")
        individual = "patient" in row and pd.notna(row["patient"])
        size = 1.0 if (individual or n is None or (isinstance(n, float) and math.isnan(n))) else float(n)
        return convert(float(sd), str(row["unit"]), unit) / math.sqrt(size)
    value = convert(row["value"], str(row["unit"]), unit)
    if value == 0:
        raise FitError(f"an observation of 0 {row['unit']} ({row['quantity']} at {row.get('time', '')}) needs an sd: "
                       "the default error is 10 % of the value")
    return DEFAULT_CV * abs(value)


@dataclass
class FitResult:
    names: tuple[str, ...]
    x: np.ndarray
    objective: float
    converged: bool
    message: str
    starts: list[dict[str, Any]]
    standard_error: np.ndarray
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: covariance of the log-shifts (Gauss-Newton); rows and columns of untouched parameters are NaN
    covariance: np.ndarray | None = None


def maximise_likelihood(problem: Problem, starts: int = 4, seed: int = 0, between_study: bool = False) -> FitResult:
    """Multi-start trust-region least squares within the bounds, with the exact Jacobian; with
    ``between_study``, alternated with the groups' between-study variances until they settle."""
    result = _maximise(problem, starts, seed)
    if not between_study:
        return result
    for _ in range(20):
        tau2 = between_study_variances(problem, result.x)
        old = problem.tau2
        set_between_study_variances(problem, tau2)
        result = _maximise(problem, starts, seed)
        if all(abs(tau2[k] - old.get(k, 0.0)) <= 1e-3 * max(tau2[k], 1e-12) for k in tau2):
            break
    set_between_study_variances(problem, between_study_variances(problem, result.x))
    result.objective = problem.objective(result.x)
    jac = problem.residuals(result.x, with_jacobian=True)[1]
    result.standard_error, result.covariance = _standard_errors(jac), _covariance(jac)
    return result


def _maximise(problem: Problem, starts: int, seed: int) -> FitResult:
    rng = np.random.default_rng(seed)
    points = [np.clip(np.zeros(len(problem.names)), problem.lower, problem.upper)]
    points += [rng.uniform(problem.lower, problem.upper) for _ in range(max(starts - 1, 0))]
    runs, best = [], None
    for x0 in points:
        try:
            sol = _least_squares(problem, x0, np.ones(len(x0), dtype=bool))
        except ValueError as exc:  # the solver failed at this start (non-finite residuals): try the others
            runs.append({"start": x0.tolist(), "failed": str(exc)})
            continue
        runs.append({"start": x0.tolist(), "x": sol.x.tolist(), "objective": float(sol.cost), "status": int(sol.status)})
        if best is None or sol.cost < best.cost:
            best = sol
    if best is None:
        raise FitError("the model could not be evaluated at any starting point; check the data's times and scenarios")
    _, jac = problem.residuals(best.x, with_jacobian=True)
    se = _standard_errors(jac)
    return FitResult(names=problem.names, x=best.x, objective=float(best.cost), converged=bool(best.status > 0),
                     message=str(best.message), starts=runs, standard_error=se, covariance=_covariance(jac))


def _least_squares(problem: Problem, x0: np.ndarray, free: np.ndarray):
    fixed = x0.copy()

    def full(z):
        x = fixed.copy()
        x[free] = z
        return x

    def fun(z):
        return problem.residuals(full(z))

    def jac(z):
        return problem.residuals(full(z), with_jacobian=True)[1][:, free]

    sol = least_squares(fun, x0[free], jac=jac, bounds=(problem.lower[free], problem.upper[free]),
                        method="trf", x_scale="jac", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=200)
    sol.x = full(sol.x)
    return sol


def _untouched(jac: np.ndarray) -> np.ndarray:
    return np.linalg.norm(jac, axis=0) <= 1e-12 * max(np.linalg.norm(jac), 1e-300)


def _covariance(jac: np.ndarray) -> np.ndarray:
    """The inverse Gauss-Newton information (pseudo-inverse), NaN for parameters the data do not touch."""
    cov = np.linalg.pinv(jac.T @ jac)
    untouched = _untouched(jac)
    cov[untouched, :] = np.nan
    cov[:, untouched] = np.nan
    return cov


def _standard_errors(jac: np.ndarray) -> np.ndarray:
    """From the Gauss-Newton information; a parameter the data do not touch gets infinity, without
    spoiling the others (pseudo-inverse)."""
    info = jac.T @ jac
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(info)), 0.0, np.inf))
    se[_untouched(jac)] = np.inf
    return se


def profile_likelihood(problem: Problem, result: FitResult, points: int = 7) -> dict[str, dict[str, Any]]:
    """Profiles of each parameter around the optimum; 95 % CI and identifiability flags."""
    out = {}
    for k, name in enumerate(problem.names):
        free = np.ones(len(problem.names), dtype=bool)
        free[k] = False
        half = 3.0 * (result.standard_error[k] if np.isfinite(result.standard_error[k]) else 1.0)
        lo_edge, hi_edge = max(problem.lower[k], result.x[k] - half), min(problem.upper[k], result.x[k] + half)
        grid = np.unique(np.concatenate([np.linspace(lo_edge, result.x[k], points), np.linspace(result.x[k], hi_edge, points)]))
        profile = np.array([_profile_point(problem, result, k, free, v) for v in grid])
        rise = 2.0 * (profile - result.objective)
        lower = _crossing(grid, rise, result.x[k], side=-1)
        upper = _crossing(grid, rise, result.x[k], side=+1)
        # not crossed within +-3 SE: look on to the bound before calling the parameter not identifiable
        extra = [e for e, crossed, edge, bound in ((-1, lower, lo_edge, problem.lower[k]), (1, upper, hi_edge, problem.upper[k]))
                 if crossed is None and not np.isclose(edge, bound) for e in np.linspace(edge, bound, 3)[1:]]
        if extra:
            grid = np.concatenate([grid, extra])
            profile = np.concatenate([profile, [_profile_point(problem, result, k, free, v) for v in extra]])
            order = np.argsort(grid)
            grid, profile = grid[order], profile[order]
            rise = 2.0 * (profile - result.objective)
            lower = _crossing(grid, rise, result.x[k], side=-1)
            upper = _crossing(grid, rise, result.x[k], side=+1)
        out[name] = {"x": grid.tolist(), "objective": profile.tolist(), "lower_x": lower, "upper_x": upper,
                     "identifiable": lower is not None and upper is not None}
    return out


def _profile_point(problem: Problem, result: FitResult, k: int, free: np.ndarray, value: float) -> float:
    """The objective with parameter k fixed at ``value`` and the others re-optimised."""
    x0 = result.x.copy()
    x0[k] = value
    if not free.any():
        return problem.objective(x0)
    try:
        return float(_least_squares(problem, x0, free).cost)
    except ValueError:  # the model fails there: as unlikely as it gets
        return math.inf


def _crossing(grid: np.ndarray, rise: np.ndarray, x_hat: float, side: int) -> float | None:
    """Where twice the objective's rise crosses the chi-square threshold on one side (linear interpolation)."""
    idx = np.flatnonzero(grid < x_hat) if side < 0 else np.flatnonzero(grid > x_hat)
    if idx.size == 0:
        return None
    order = idx[::-1] if side < 0 else idx
    prev_x, prev_r = x_hat, 0.0
    for i in order:
        if rise[i] >= CHI2_95:
            frac = (CHI2_95 - prev_r) / (rise[i] - prev_r) if rise[i] != prev_r else 0.0
            return float(prev_x + frac * (grid[i] - prev_x))
        prev_x, prev_r = grid[i], rise[i]
    return None


def bayes(problem: Problem, result: FitResult, *, warmup: int = 300, samples: int = 300, chains: int = 2,
          seed: int = 0) -> dict[str, Any]:
    """NUTS (numpyro) on the same likelihood; the prior is the MAP prior (normal on x within the bounds)."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.diagnostics import summary as mcmc_summary
    from numpyro.infer import MCMC, NUTS

    names = problem.names

    @jax.custom_vjp
    def residuals(x):
        return jax.pure_callback(lambda v: problem.residuals(np.asarray(v)).astype(np.float64),
                                 jax.ShapeDtypeStruct((_n_residuals(problem),), jnp.float64), x)

    def residuals_fwd(x):
        r, j = jax.pure_callback(
            lambda v: tuple(a.astype(np.float64) for a in problem.residuals(np.asarray(v), with_jacobian=True)),
            (jax.ShapeDtypeStruct((_n_residuals(problem),), jnp.float64),
             jax.ShapeDtypeStruct((_n_residuals(problem), len(names)), jnp.float64)), x)
        return r, j

    def residuals_bwd(j, g):
        return (g @ j,)

    residuals.defvjp(residuals_fwd, residuals_bwd)
    data_problem = Problem(problem.names, problem.groups, problem.lower, problem.upper, problem.prior_sd, False)
    n_data = data_problem.n_observations

    def model():
        x = numpyro.sample("x", dist.TruncatedNormal(jnp.zeros(len(names)), jnp.asarray(problem.prior_sd),
                                                    low=jnp.asarray(problem.lower), high=jnp.asarray(problem.upper)))
        r = residuals(x)[:n_data]
        numpyro.factor("likelihood", -0.5 * jnp.sum(r ** 2))

    # the residual callbacks run on JAX's callback thread, which does not see a thread-local
    # `enable_x64`; float64 is switched on process-wide for the sampling and restored afterwards
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        kernel = NUTS(model, init_strategy=numpyro.infer.init_to_value(values={"x": jnp.asarray(result.x)}))
        mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains, chain_method="sequential",
                    progress_bar=False)
        mcmc.run(jax.random.PRNGKey(seed))
        draws = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])  # (chains, samples, n)
    finally:
        jax.config.update("jax_enable_x64", previous)
    stats = mcmc_summary({"x": draws}, prob=0.95)["x"]
    out = {}
    for k, name in enumerate(names):
        values = draws[:, :, k].ravel()
        out[name] = {"mean_x": float(values.mean()), "sd_x": float(values.std(ddof=1)),
                     "lower_x": float(np.quantile(values, 0.025)), "upper_x": float(np.quantile(values, 0.975)),
                     "r_hat": float(np.atleast_1d(stats["r_hat"])[k]), "ess": float(np.atleast_1d(stats["n_eff"])[k])}
    return {"parameters": out, "chains": chains, "warmup": warmup, "samples": samples,
            "draws_x": draws.tolist()}


def _n_residuals(problem: Problem) -> int:
    return problem.n_observations + (len(problem.names) if problem.use_prior else 0)
