"""Local (autodiff, finite differences where needed), Sobol and Morris analyses.

Local: normalised sensitivities ``theta * d output / d theta`` (output units; the change of the
output per unit change of ``ln theta``, so about 1/100 of it for a 1 % change) at the file's
values, by forward-mode autodiff through the JAX Rodas4; parameters that act only through the dose
schedule or patient covariates by central finite differences in ``ln theta`` on the compiled
engine. The method is recorded per parameter.

Global: SALib's Saltelli/Sobol' sampling (``N`` base samples give ``N * (D + 2)`` model runs for
first and total order, ``N * (2 D + 2)`` with second order) and Morris trajectories
(``N * (D + 1)`` runs), over the parameters' plausible ranges (``problem.parameter_space``).
Confidence intervals are SALib's bootstrap intervals (``S1_conf``, ``ST_conf``, ``mu_star_conf``).

Runs that give no value are kept and reported (``failures``: each sample, and which parameters'
extremes hold them); the indices of an output are computed on the whole sampling units (a base
sample's ``D + 2`` rows, a trajectory's ``D + 1``) in which every run gave it a value. A
``checkpoint`` file keeps finished blocks so that an interrupted analysis resumes (``resume=True``).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..engine import SolverSettings, build_problem, solve
from ..errors import KetasimError
from ..model.system import default_model
from ..params import ParameterSet, load_parameters
from ..scenario import Scenario, read_toml
from .failures import Checkpoint, complete_groups, describe_failures, failure_sentences
from .outputs import OutputSpec, SensitivityError, check_model_outputs, check_trial_outputs, parse_output_spec
from .problem import ParameterSpace, ScenarioEvaluator, TrialEvaluator, evaluate, parameter_space, select_parameters
from .result import SensitivityResult

METHODS = ("local", "sobol", "morris")
#: tight tolerances for finite differences: integration error must stay far below the step's effect
FD_SETTINGS = SolverSettings(rtol=1e-10, atol=1e-13)
#: global analyses: the trial engine's accuracy (MADRS within 0.01 points of a tight reference)
GLOBAL_SETTINGS = SolverSettings(rtol=1e-6, atol=1e-9)
FD_STEP = 1e-3  # in ln theta
#: fewest complete sampling units (base samples, trajectories) an output needs for its indices
MIN_COMPLETE_UNITS = 2
SAMPLES_RANGE = {"sobol": (2, 2 ** 20), "morris": (2, 100_000)}


# ---------------------------------------------------------------------- inputs
def load_target(target) -> tuple[str, object]:
    """("scenario", Scenario) or ("trial", TrialSpec): a trial file has a ``[trial]`` table."""
    from ..trial import TrialSpec

    if isinstance(target, (Scenario, TrialSpec)):
        return ("scenario" if isinstance(target, Scenario) else "trial"), target
    data = target
    if not isinstance(target, dict):
        data = read_toml(target, "scenario or trial")
    if "trial" in data:
        return "trial", TrialSpec.from_dict(data)
    return "scenario", Scenario.from_dict(data)


def _specs(outputs: Sequence[str | OutputSpec]) -> list[OutputSpec]:
    if isinstance(outputs, (str, OutputSpec)):
        outputs = [outputs]
    if not outputs:
        raise SensitivityError("--output: give at least one, e.g. --output clinical.madrs@24h")
    specs = [o if isinstance(o, OutputSpec) else parse_output_spec(o) for o in outputs]
    labels = [s.text for s in specs]
    if len(set(labels)) != len(labels):
        raise SensitivityError(f"--output: given twice: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    return specs


def _params(params) -> ParameterSet:
    return params if isinstance(params, ParameterSet) else load_parameters(params)


def _target_info(kind: str, target) -> dict:
    if kind == "trial":
        return {"kind": "trial", "name": target.name, "design": target.design, "arms": [a.name for a in target.arms]}
    return {"kind": "scenario", "scenario": target.to_dict()}


# ---------------------------------------------------------------------- local
def finite_difference_sensitivity(scenario, params: ParameterSet, names: Sequence[str], outputs: Sequence[OutputSpec],
                                  *, step: float = FD_STEP, settings: SolverSettings = FD_SETTINGS
                                  ) -> tuple[np.ndarray, list[str]]:
    """(n_outputs, n_names) normalised sensitivities by central differences in ``ln theta`` on the
    compiled engine (one batch for all bumps), and the scheme used per parameter: ``central``,
    ``forward``/``backward`` at a range limit, or ``not computed: <why>``."""
    scenario = Scenario.load(scenario)
    model = default_model()
    times = np.array(sorted({o.time_h for o in outputs}))
    sets, plan = [params], []
    for name in names:
        p = params[name]
        up, down = p.value * math.exp(step), p.value * math.exp(-step)
        variants = {}
        for side, v in (("up", up), ("down", down)):
            if p.range[0] <= v <= p.range[1]:
                try:
                    variants[side] = params.replace(**{name.replace(".", "__"): v})
                except KetasimError:  # a model condition (constraints) refuses this side
                    pass
        plan.append((name, variants))
        sets += list(variants.values())
    problem = build_problem([scenario] * len(sets), sets, model, t_out=times)
    states, status, _ = solve(problem, settings)
    from ..simulate import observe_batch

    obs = observe_batch(model, states, problem.parameter_names, problem.theta, tuple(dict.fromkeys(o.name for o in outputs)))
    y = np.stack([obs[o.name][:, int(np.searchsorted(times, o.time_h))] for o in outputs], axis=1)  # (n_sets, n_out)
    y[status != 0] = np.nan
    sens = np.full((len(outputs), len(names)), np.nan)
    schemes, k = [], 1
    for j, (_name, variants) in enumerate(plan):
        rows = {side: k + i for i, side in enumerate(variants)}
        k += len(variants)
        if "up" in rows and "down" in rows:
            sens[:, j], scheme = (y[rows["up"]] - y[rows["down"]]) / (2 * step), "central"
        elif "up" in rows:
            sens[:, j], scheme = (y[rows["up"]] - y[0]) / step, "forward"
        elif "down" in rows:
            sens[:, j], scheme = (y[0] - y[rows["down"]]) / step, "backward"
        else:
            scheme = "not computed: both bumps leave the range or break a model condition"
        schemes.append(scheme)
    return sens, schemes


def _until(scenario: Scenario, end_h: float) -> Scenario:
    """The scenario ending at ``end_h`` when nothing is given after it (the JAX solver integrates to the
    scenario's end, so a 24-h output of a 28-day scenario would otherwise pay for 27 unused days)."""
    import dataclasses

    given = [t + (d.duration_h or 0.0) for d in scenario.doses for t in d.times_h]
    if scenario.therapies or any(t > end_h for t in given) or end_h >= scenario.duration_h:
        return scenario
    return dataclasses.replace(scenario, duration_h=float(end_h))


def local_sensitivity(scenario, outputs: Sequence[str | OutputSpec], *, params=None, parameters: Sequence[str] | None = None,
                      use_autodiff: bool = True) -> SensitivityResult:
    """Normalised local sensitivities of model outputs to every parameter (or ``parameters``: names or layers).

    Autodiff (forward mode, JAX) for parameters in the vector field; central finite differences for
    those acting through the dose schedule or covariates (``use_autodiff=False``: all by finite
    differences). The first autodiff run over all parameters compiles for about a minute (then cached on disk).

    >>> import ketasim.sensitivity as ks
    >>> r = ks.local_sensitivity({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
    ...                           "duration": "40 min"}], "simulation": {"duration": "2 h"}},
    ...                          ["pk.ketamine_plasma@1h"], parameters=["pk.cl_s_ketamine"])
    >>> r.indices["pk.ketamine_plasma@1 h [ng/mL]"]["pk.cl_s_ketamine"]["normalised"] < 0
    True
    """
    from ..engine.differentiable import OutputFunction, indirect_parameters

    started = time.perf_counter()
    params = _params(params)
    scenario = Scenario.load(scenario)
    model = default_model()
    specs = check_model_outputs(_specs(outputs), model, scenario.duration_h)
    names = select_parameters(params, parameters, linked=True)
    indirect = set(indirect_parameters(scenario, params, names, model)) if use_autodiff else set(names)
    direct = [n for n in names if n not in indirect]
    sens = np.full((len(specs), len(names)), np.nan)
    methods = [""] * len(names)
    values = None
    if direct:
        out_names = tuple(dict.fromkeys(s.name for s in specs))
        short = _until(scenario, max(s.time_h for s in specs))
        f = OutputFunction(short, params, direct, out_names, [s.time_h for s in specs], model=model)
        value, jac = f.value_and_jacobian(np.zeros(len(direct)))
        rows = [(out_names.index(s.name), int(np.searchsorted(f.times, s.time_h))) for s in specs]
        values = np.array([value[i, t] for i, t in rows])
        for j, n in enumerate(direct):
            k = names.index(n)
            sens[:, k] = [jac[i, t, j] for i, t in rows]
            methods[k] = "autodiff (forward mode)" if f.kernel[j] else "autodiff (not used by this scenario: zero)"
    fd = [n for n in names if n in indirect]
    if fd:
        s_fd, schemes = finite_difference_sensitivity(_until(scenario, max(s.time_h for s in specs)), params, fd, specs)
        for j, n in enumerate(fd):
            k = names.index(n)
            sens[:, k] = s_fd[:, j]
            methods[k] = f"finite differences ({schemes[j]})" if not schemes[j].startswith("not") else schemes[j]
    if values is None:
        values = _nominal_values(_until(scenario, max(s.time_h for s in specs)), params, specs)
    indices = {}
    for i, s in enumerate(specs):
        y = values[i]
        indices[s.label] = {n: {"normalised": float(sens[i, k]),
                                "elasticity": float(sens[i, k] / y) if y != 0 else math.nan,
                                "method": methods[k]} for k, n in enumerate(names)}
    return SensitivityResult(
        method="local", target=_target_info("scenario", scenario),
        outputs=[_output_info(s, values[i]) for i, s in enumerate(specs)],
        parameters=[{"name": n, "layer": params[n].layer, "unit": params[n].unit, "value": params[n].value,
                     "range_in_file": list(params[n].range), "method": methods[k]} for k, n in enumerate(names)],
        indices=indices,
        settings={"parameters": len(names), "autodiff": len(direct), "finite_differences": len(fd),
                  "fd_step [ln units]": FD_STEP, "wall_time [s]": time.perf_counter() - started},
        notes=["normalised = theta * d output / d theta, in the output's unit per unit change of ln theta "
               "(a 1 % rise in theta changes the output by about normalised / 100); elasticity = normalised / output"])


def _nominal_values(scenario, params, specs) -> np.ndarray:
    from ..simulate import simulate

    res = simulate(scenario, params=params, settings=FD_SETTINGS)
    return np.array([res.at(s.name, s.time_h) for s in specs])


def _output_info(spec: OutputSpec, value: float | None = None) -> dict:
    info = {"label": spec.label, "name": spec.name, "time [h]": spec.time_h, "unit": spec.unit}
    if spec.arm:
        info["arm"] = spec.arm
    if value is not None:
        info["value_at_file_parameters"] = float(value)
    return info


# ---------------------------------------------------------------------- global
def _evaluator(target, outputs, params, parameters, n_per_arm: int, distribution: str = "auto"):
    kind, spec = load_target(target)
    params = _params(params)
    specs = _specs(outputs)
    if kind == "trial":
        specs = check_trial_outputs(specs, spec)
    else:
        specs = check_model_outputs(specs, default_model(), spec.duration_h)
    space = parameter_space(params, select_parameters(params, parameters), distribution)
    if kind == "trial":
        if not 1 <= n_per_arm <= 100_000:
            raise SensitivityError(f"--n-per-arm: {n_per_arm} must be in 1..100000")
        from ..trial.run import TRIAL_SETTINGS

        evaluator = TrialEvaluator(spec, params, space, specs, n_per_arm, TRIAL_SETTINGS)
    else:
        evaluator = ScenarioEvaluator(spec, params, space, specs, GLOBAL_SETTINGS)
    return kind, spec, specs, space, evaluator


def _check_samples(method: str, samples: int) -> None:
    lo, hi = SAMPLES_RANGE[method]
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not lo <= samples <= hi:
        raise SensitivityError(f"--samples: {samples!r} must be a whole number in {lo}..{hi} for {method}")


def _run(evaluator, X, workers, scheduler, progress, checkpoint=None) -> np.ndarray:
    """Outputs for the sample matrix (file units); a run without a value stays NaN."""
    from ..trial import _dask_client

    with _dask_client(workers, scheduler) as client:
        return evaluate(evaluator, X, client=client, progress=progress, checkpoint=checkpoint)


def _checkpoint(path, resume: bool, samples: np.ndarray, method: str, spec, specs, space, evaluator,
                settings: dict) -> Checkpoint | None:
    """The checkpoint of this analysis, or None without a path. Its fingerprint covers the samples
    and everything that shapes a run."""
    if path is None:
        if resume:
            raise SensitivityError("--resume needs a checkpoint file (the command line keeps one next to --out)")
        return None
    context = json.dumps({"method": method, "target": repr(spec), "outputs": [s.label for s in specs],
                          "parameters": list(space.names), "params": evaluator.params.digest(),
                          "solver": repr(evaluator.settings), "settings": settings}, sort_keys=True, default=str)
    return Checkpoint(Path(path), Checkpoint.fingerprint_of(samples, context), resume=resume)


def _unit_scaled(space: ParameterSpace, X: np.ndarray) -> np.ndarray:
    """Samples (sampled coordinates) as positions 0..1 within each parameter's sampled range."""
    bounds = np.array(space.salib_problem()["bounds"])
    return (X - bounds[:, 0]) / np.where(bounds[:, 1] > bounds[:, 0], bounds[:, 1] - bounds[:, 0], 1.0)


def _per_output(Y: np.ndarray, group_rows: int, specs, notes: list[str], unit_name: str):
    """For each output: the rows of its complete sampling units, or None when too few remain."""
    masks = []
    for i, spec in enumerate(specs):
        mask = complete_groups(Y[:, i], group_rows)
        units, kept = len(Y) // group_rows, int(mask.sum()) // group_rows
        if kept < units:
            notes.append(f"{spec.label}: {units - kept} of {units} {unit_name} excluded because a run in them gave "
                         "no value; the indices describe the region where the model gives one")
        if kept < MIN_COMPLETE_UNITS:
            notes.append(f"{spec.label}: fewer than {MIN_COMPLETE_UNITS} complete {unit_name}: no indices")
            mask = None
        masks.append(mask)
    return masks


def _global_result(method, kind, spec, specs, space, evaluator, settings, indices, notes, Y,
                   failures: dict) -> SensitivityResult:
    info = _target_info(kind, spec)
    notes = failure_sentences(failures) + notes
    if kind == "trial":
        relapse = [i for i, s in enumerate(specs) if s.name == "median_time_to_relapse"]
        for i in relapse:
            capped = int(np.sum(np.nan_to_num(Y[:, i], nan=-np.inf) >= evaluator.duration_h - 1e-9))
            notes.append(f"{specs[i].label}: {capped} samples 'not reached', counted as the follow-up "
                         f"({evaluator.duration_h:g} h)")
    logs = [n for n, lg in zip(space.names, space.log) if lg]
    if logs:
        notes.append(f"sampled log-uniformly (indices refer to ln of the value): {', '.join(logs)}")
    if space.shrunk:
        notes.append("ranges shrunk toward the file values so every sample keeps the model's conditions: "
                     + ", ".join(space.shrunk))
    # quantiles show heavy tails (a few extreme samples dominate a variance-based index)
    outputs = []
    for i, s in enumerate(specs):
        y = Y[np.isfinite(Y[:, i]), i]
        stats = {"sample_runs_with_value": int(y.size)}
        if y.size:
            stats.update({"sample_mean": float(np.mean(y)), "sample_sd": float(np.std(y)),
                          **{f"sample_{q}": float(v) for q, v in zip(("min", "p05", "median", "p95", "max"),
                                                                     np.percentile(y, [0, 5, 50, 95, 100]))}})
        outputs.append({**_output_info(s), **stats})
    return SensitivityResult(method=method, target=info, outputs=outputs, parameters=space.describe(),
                             indices=indices, settings=settings, notes=notes, failures=failures)


def _bootstrap_seed(seed: int) -> int:
    """A non-zero seed derived from ``seed``: SALib's Sobol' analysis ignores a seed of 0 (``if seed:``),
    which would make the bootstrap CIs differ from run to run."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]) or 1


def _constant(y: np.ndarray) -> bool:
    return float(np.var(y)) <= 1e-24 * max(1.0, float(np.mean(y)) ** 2)


def sobol_indices(space_problem: dict, Y: np.ndarray, *, second_order: bool = False, num_resamples: int = 1000,
                  conf_level: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """SALib's Sobol' analysis of one output: per parameter S1, S1_conf, ST, ST_conf (bootstrap CIs).
    An output that does not vary gets zeros (every parameter leaves it alone)."""
    from SALib.analyze import sobol as sobol_analyze

    names = space_problem["names"]
    if _constant(Y):
        return {n: {"S1": 0.0, "S1_conf": 0.0, "ST": 0.0, "ST_conf": 0.0} for n in names}
    res = sobol_analyze.analyze(space_problem, Y, calc_second_order=second_order, num_resamples=num_resamples,
                                conf_level=conf_level, print_to_console=False, seed=_bootstrap_seed(seed))
    return {n: {k: float(res[k][i]) for k in ("S1", "S1_conf", "ST", "ST_conf")} for i, n in enumerate(names)}


def sobol_sample(space_problem: dict, samples: int, *, second_order: bool = False, seed: int = 0) -> np.ndarray:
    """Saltelli/Sobol' sample matrix: ``samples * (D + 2)`` rows (``samples * (2 D + 2)`` with second order)."""
    from SALib.sample import sobol as sobol_sampler

    with warnings.catch_warnings():
        # SALib warns when N is not a power of 2 (the Sobol' sequence balances best then); any N is
        # still a valid design, and the CLI documents the recommendation
        warnings.filterwarnings("ignore", message=".*(Convergence|balance) properties of (the )?Sobol.*", category=UserWarning)
        return sobol_sampler.sample(space_problem, samples, calc_second_order=second_order, scramble=True, seed=seed)


def sobol(target, outputs: Sequence[str | OutputSpec], *, samples: int = 1024, params=None,
          parameters: Sequence[str] | None = None, seed: int = 0, second_order: bool = False,
          num_resamples: int = 1000, conf_level: float = 0.95, n_per_arm: int = 50, distribution: str = "auto",
          workers: int | None = None, scheduler: str | None = None,
          progress: Callable[[int, int], None] | None = None, checkpoint: str | Path | None = None,
          resume: bool = False) -> SensitivityResult:
    """First- and total-order Sobol' indices with bootstrap CIs over the parameters' ranges.

    ``target``: a scenario (model outputs such as ``clinical.madrs@24h``) or a trial (endpoints such
    as ``response_rate@24h``, each sample running a trial of ``n_per_arm`` patients per arm).
    ``samples`` is SALib's N: the model runs ``N * (D + 2)`` times for D parameters. ``checkpoint``:
    a file that keeps finished runs; ``resume=True`` continues from it.
    """
    _check_samples("sobol", samples)
    started = time.perf_counter()
    kind, spec, specs, space, evaluator = _evaluator(target, outputs, params, parameters, n_per_arm, distribution)
    problem = space.salib_problem()
    X = sobol_sample(problem, samples, second_order=second_order, seed=seed)
    X_file = space.to_file_units(X)
    store = _checkpoint(checkpoint, resume, X_file, "sobol", spec, specs, space, evaluator,
                        {"n_per_arm": n_per_arm, "second_order": second_order})
    Y = _run(evaluator, X_file, workers, scheduler, progress, store)
    notes: list[str] = []
    group = 2 * space.dimension + 2 if second_order else space.dimension + 2
    masks = _per_output(Y, group, specs, notes, "base samples")
    indices = {s.label: (sobol_indices(problem, Y[m, i], second_order=second_order, num_resamples=num_resamples,
                                       conf_level=conf_level, seed=seed) if m is not None else
                         {n: dict.fromkeys(("S1", "S1_conf", "ST", "ST_conf")) for n in space.names})
               for i, (s, m) in enumerate(zip(specs, masks))}
    settings = {"samples (N)": samples, "distribution": distribution, "parameters (D)": space.dimension,
                "model_runs": int(len(X)),
                "runs_formula": "N * (2 D + 2)" if second_order else "N * (D + 2)", "seed": seed,
                "bootstrap_resamples": num_resamples, "confidence_level": conf_level,
                "sampler": "SALib Sobol' (scrambled) with Saltelli's scheme",
                "rtol": evaluator.settings.rtol, "atol": evaluator.settings.atol,
                "wall_time [s]": time.perf_counter() - started}
    if kind == "trial":
        settings["patients_per_arm_per_sample"] = n_per_arm
    failures = describe_failures(_unit_scaled(space, X), X_file, Y, space.names, [s.label for s in specs])
    return _global_result("sobol", kind, spec, specs, space, evaluator, settings, indices, notes, Y, failures)


def morris(target, outputs: Sequence[str | OutputSpec], *, samples: int = 50, params=None,
           parameters: Sequence[str] | None = None, seed: int = 0, num_levels: int = 4, num_resamples: int = 1000,
           conf_level: float = 0.95, n_per_arm: int = 50, distribution: str = "auto",
           workers: int | None = None, scheduler: str | None = None,
           progress: Callable[[int, int], None] | None = None, checkpoint: str | Path | None = None,
           resume: bool = False) -> SensitivityResult:
    """Morris elementary effects (mu*, its bootstrap CI, mu, sigma; output units per unit of the
    range-scaled input) from ``samples`` trajectories: ``samples * (D + 1)`` model runs."""
    from SALib.analyze import morris as morris_analyze
    from SALib.sample import morris as morris_sampler

    _check_samples("morris", samples)
    started = time.perf_counter()
    kind, spec, specs, space, evaluator = _evaluator(target, outputs, params, parameters, n_per_arm, distribution)
    problem = space.salib_problem()
    X = morris_sampler.sample(problem, samples, num_levels=num_levels, seed=seed)
    X_file = space.to_file_units(X)
    store = _checkpoint(checkpoint, resume, X_file, "morris", spec, specs, space, evaluator,
                        {"n_per_arm": n_per_arm, "num_levels": num_levels})
    Y = _run(evaluator, X_file, workers, scheduler, progress, store)
    notes: list[str] = []
    masks = _per_output(Y, space.dimension + 1, specs, notes, "trajectories")
    indices = {}
    for i, (s, m) in enumerate(zip(specs, masks)):
        if m is None:
            indices[s.label] = {n: dict.fromkeys(("mu_star", "mu_star_conf", "mu", "sigma")) for n in space.names}
            continue
        if _constant(Y[m, i]):
            indices[s.label] = {n: {"mu_star": 0.0, "mu_star_conf": 0.0, "mu": 0.0, "sigma": 0.0} for n in space.names}
            continue
        res = morris_analyze.analyze(problem, X[m], Y[m, i], num_resamples=num_resamples, conf_level=conf_level,
                                     num_levels=num_levels, print_to_console=False, seed=_bootstrap_seed(seed))
        indices[s.label] = {n: {k: float(res[k][j]) for k in ("mu_star", "mu_star_conf", "mu", "sigma")}
                            for j, n in enumerate(space.names)}
    settings = {"trajectories (N)": samples, "distribution": distribution, "parameters (D)": space.dimension,
                "model_runs": int(len(X)),
                "runs_formula": "N * (D + 1)", "levels": num_levels, "seed": seed, "bootstrap_resamples": num_resamples,
                "confidence_level": conf_level, "rtol": evaluator.settings.rtol, "atol": evaluator.settings.atol,
                "wall_time [s]": time.perf_counter() - started}
    if kind == "trial":
        settings["patients_per_arm_per_sample"] = n_per_arm
    failures = describe_failures(_unit_scaled(space, X), X_file, Y, space.names, [s.label for s in specs])
    return _global_result("morris", kind, spec, specs, space, evaluator, settings, indices, notes, Y, failures)


def sensitivity(target, outputs: Sequence[str | OutputSpec], *, method: str = "local", **kwargs) -> SensitivityResult:
    """Dispatch to ``local_sensitivity`` (scenarios only), ``sobol`` or ``morris``."""
    if method not in METHODS:
        raise SensitivityError(f"--method: '{method}' is not allowed; allowed: {', '.join(METHODS)}")
    if method == "local":
        kind, spec = load_target(target)
        if kind == "trial":
            raise SensitivityError("--method local: trial endpoints are step functions of the parameters for a finite "
                                   "population (a rate moves in steps of 1/n), so they have no useful derivative; use "
                                   "--method sobol or morris for a trial, or local on a scenario file")
        allowed = {"params", "parameters"}
        extra = sorted(k for k, v in kwargs.items() if k not in allowed and v is not None)
        if extra:
            raise SensitivityError(f"--method local does not take {', '.join(extra)}")
        return local_sensitivity(spec, outputs, **{k: v for k, v in kwargs.items() if k in allowed})
    return (sobol if method == "sobol" else morris)(target, outputs, **kwargs)


__all__ = ["METHODS", "ParameterSpace", "finite_difference_sensitivity", "load_target", "local_sensitivity", "morris",
           "sensitivity", "sobol", "sobol_indices", "sobol_sample"]
