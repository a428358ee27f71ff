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
from ..scenario import Scenario
from .data import convert

DEFAULT_CV = 0.10
CHI2_95 = 3.841458820694124  # chi-square, 1 degree of freedom, 95 %
FITTABLE_METRICS = ("at", "change")


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


@dataclass
class Problem:
    names: tuple[str, ...]
    groups: list[Group]
    lower: np.ndarray
    upper: np.ndarray
    prior_sd: np.ndarray
    use_prior: bool

    @property
    def n_observations(self) -> int:
        return sum(len(g.observed) for g in self.groups)

    def residuals(self, x: np.ndarray, with_jacobian: bool = False):
        res, jac = [], []
        for g in self.groups:
            if with_jacobian:
                values, d = g.function.value_and_jacobian(x)
            else:
                values, d = g.function(x), None
            pred = values[g.out_index, g.time_index] - np.where(g.baseline, values[g.out_index, 0], 0.0)
            res.append((pred - g.observed) / g.sigma)
            if with_jacobian:
                dpred = d[g.out_index, g.time_index, :] - np.where(g.baseline[:, None], d[g.out_index, 0, :], 0.0)
                jac.append(dpred / g.sigma[:, None])
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
    groups = []
    for scenario_path, rows in data.groupby("scenario_path", sort=True):
        scenario = Scenario.from_toml(scenario_path)
        outputs = tuple(sorted(set(rows["quantity"])))
        times = sorted(set(rows["time [h]"]) | {0.0})
        fn = OutputFunction(scenario, params, names, outputs, times, model=model_for(outputs))
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


def model_for(outputs: Sequence[str]) -> Model:
    """The smallest model that predicts ``outputs``: pharmacokinetic data need only the PK layer
    (the layers above never feed back on it), which makes fits several times faster."""
    if all(o.startswith("pk.") for o in outputs):
        return Model([PK()])
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


def maximise_likelihood(problem: Problem, starts: int = 4, seed: int = 0) -> FitResult:
    """Multi-start trust-region least squares within the bounds, with the exact Jacobian."""
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
                     message=str(best.message), starts=runs, standard_error=se)


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


def _standard_errors(jac: np.ndarray) -> np.ndarray:
    """From the Gauss-Newton information; a parameter the data do not touch gets infinity, without
    spoiling the others (pseudo-inverse)."""
    info = jac.T @ jac
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(info)), 0.0, np.inf))
    untouched = np.linalg.norm(jac, axis=0) <= 1e-12 * max(np.linalg.norm(jac), 1e-300)
    se[untouched] = np.inf
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
