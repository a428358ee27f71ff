"""The parameter space a global analysis samples, and the functions it evaluates on many samples.

Each sampled parameter varies over its plausible range from the parameter files (file units;
internal values follow by the parameter's constant unit factor): log-uniformly where the range is
positive and spans a factor of ``LOG_SPAN`` or more (rate constants and gains known to within an
order of magnitude: uniform sampling would put nine tenths of the samples above a tenth of the
range's top, far from the file value), uniformly otherwise (``distribution`` changes this). Where a range would let a
combination break one of the model's conditions (``ketasim.model.constraints``: hepatic clearance
below liver blood flow, fractions summing to at most one), the ranges of that group are shrunk
toward the file values, by the smallest common factor that keeps every corner of the box valid,
so every sample is a valid parameter set; the results name the shrunk parameters.

Parameters that copy another's value in a second layer (``population.LINKED_PARAMETERS``) move
with their original and are not sampled on their own.

A ``ScenarioEvaluator`` runs a block of samples as one batch of the compiled engine (thousands of
patients per second); a ``TrialEvaluator`` runs one small virtual trial per sample, with the
sample as the population's typical values and the trial's seed (common random numbers, so the
endpoint differences between samples come from the parameters, not from drawing new patients).
Both are pure functions of the sample block, so blocks can run here or on Dask workers with
identical results (``evaluate``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..engine import SolverSettings, build_batch_problem, solve
from ..model.constraints import violations
from ..model.system import default_model
from ..params import ParameterColumns, ParameterSet
from ..population import LINKED_PARAMETERS
from ..scenario import PatientColumns, Scenario
from ..units import to_internal
from .outputs import OutputSpec, SensitivityError

#: parameter groups that share a condition in ``ketasim.model.constraints``; each is shrunk together
CONSTRAINED_GROUPS = (
    ("pk.cl_s_ketamine", "pk.cl_r_ketamine", "pk.fraction_extrahepatic", "pk.q_hepatic"),
    ("pk.fm_cyp2b6", "pk.fm_cyp3a4"),
    ("pk.f_norketamine_to_dhnk", "pk.f_norketamine_to_hnk"),
    ("inflammation.fraction_kmo", "inflammation.fraction_kat"),
)
#: a positive range at least this wide (high / low) is sampled log-uniformly under ``distribution="auto"``
LOG_SPAN = 10.0
DISTRIBUTIONS = ("auto", "uniform", "log-uniform")
#: samples per engine batch: bounds memory (each sample holds a full parameter mapping)
BLOCK_ROWS = 2048


@dataclass(frozen=True)
class ParameterSpace:
    """Names, sampling bounds (file units) and unit factors of the sampled parameters."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    nominal: np.ndarray
    factor: np.ndarray  # internal value = factor * file value
    units: tuple[str, ...]
    file_ranges: tuple[tuple[float, float], ...]
    shrunk: tuple[str, ...]
    log: np.ndarray  # True: sampled uniformly in ln(value)

    @property
    def dimension(self) -> int:
        return len(self.names)

    def salib_problem(self) -> dict:
        """SALib's problem in the sampled coordinates (ln of the value where ``log``)."""
        low = np.where(self.log, np.log(np.where(self.log, self.low, 1.0)), self.low)
        high = np.where(self.log, np.log(np.where(self.log, self.high, 1.0)), self.high)
        return {"num_vars": self.dimension, "names": list(self.names),
                "bounds": [[float(lo), float(hi)] for lo, hi in zip(low, high)]}

    def to_file_units(self, samples: np.ndarray) -> np.ndarray:
        """Rows of sampled coordinates to parameter values in file units (clipped to the bounds
        against round-off in exp)."""
        values = np.array(samples, dtype=np.float64, copy=True)
        values[:, self.log] = np.exp(values[:, self.log])
        return np.clip(values, self.low, self.high)

    def describe(self) -> list[dict]:
        """Per parameter: layer, unit, file value, file range and the range sampled."""
        return [{"name": n, "layer": n.split(".", 1)[0], "unit": u, "value": float(v),
                 "range_in_file": list(r), "range_sampled": [float(lo), float(hi)], "shrunk": n in self.shrunk,
                 "distribution": "log-uniform" if lg else "uniform"}
                for n, u, v, r, lo, hi, lg in zip(self.names, self.units, self.nominal, self.file_ranges, self.low,
                                                  self.high, self.log)]


def select_parameters(params: ParameterSet, wanted: Sequence[str] | None = None, *, linked: bool = False) -> list[str]:
    """Parameter names from names and layer names (all with a non-trivial range when ``wanted`` is empty).

    ``linked=False`` leaves out the copies in ``LINKED_PARAMETERS`` (they follow their original)."""
    layers = sorted({params[n].layer for n in params})
    # mechanism switches are hypotheses, not uncertain constants: ketasim compare varies them
    candidates = [n for n in params if params[n].range[0] < params[n].range[1] and params[n].layer != "mechanism"
                  and (linked or n not in LINKED_PARAMETERS)]
    if not wanted:
        return candidates
    out: list[str] = []
    for item in wanted:
        item = item.strip()
        if item in layers:
            out += [n for n in candidates if params[n].layer == item and n not in out]
        elif item in params:
            if item in LINKED_PARAMETERS and not linked:
                raise SensitivityError(f"--parameters: {item} copies {LINKED_PARAMETERS[item]} and varies with it; "
                                       f"name {LINKED_PARAMETERS[item]} instead")
            if params[item].range[0] == params[item].range[1]:
                raise SensitivityError(f"--parameters: {item} has a single-point range and cannot vary")
            if item not in out:
                out.append(item)
        else:
            raise SensitivityError(f"--parameters: unknown parameter or layer '{item}'; layers: {', '.join(layers)}; "
                                   "`ketasim cite` lists every parameter")
    if not out:
        raise SensitivityError("--parameters: no parameter selected")
    return out


def _unit_factor(p) -> float:
    # internal units are a constant multiple of the file's unit (no offsets), so one ratio converts all
    return p.internal / p.value if p.value != 0 else to_internal(1.0, p.unit)[0]


def _corners_valid(typical: dict[str, float], names: list[str], lows, highs, factors) -> bool:
    for corner in np.ndindex(*(2,) * len(names)):
        trial = dict(typical)
        for k, name in enumerate(names):
            trial[name] = factors[k] * (highs[k] if corner[k] else lows[k])
        if violations(trial):
            return False
    return True


def _shrink_group(typical, names, nominal, low, high, factors) -> float:
    """The largest s in [0, 1] such that the box nominal + s * (bounds - nominal) keeps every condition."""
    def box(s):
        return nominal - s * (nominal - low), nominal + s * (high - nominal)

    if _corners_valid(typical, names, *box(1.0), factors):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _corners_valid(typical, names, *box(mid), factors) else (lo, mid)
    return lo


def parameter_space(params: ParameterSet, names: Sequence[str], distribution: str = "auto") -> ParameterSpace:
    """Sampling bounds for ``names``: their file ranges, shrunk where a model condition needs it;
    ``distribution``: ``auto`` (log-uniform for positive ranges spanning ``LOG_SPAN`` or more),
    ``uniform`` or ``log-uniform`` (every parameter with a positive range)."""
    if distribution not in DISTRIBUTIONS:
        raise SensitivityError(f"--distribution: '{distribution}' is not allowed; allowed: {', '.join(DISTRIBUTIONS)}")
    names = list(names)
    p = [params[n] for n in names]
    low = np.array([x.range[0] for x in p])
    high = np.array([x.range[1] for x in p])
    nominal = np.array([x.value for x in p])
    factor = np.array([_unit_factor(x) for x in p])
    typical = params.internal_values()
    shrunk: list[str] = []
    for group in CONSTRAINED_GROUPS:
        idx = [names.index(n) for n in group if n in names]
        if not idx:
            continue
        s = _shrink_group(typical, [names[i] for i in idx], nominal[idx], low[idx], high[idx], factor[idx])
        if s < 1.0:
            low[idx] = nominal[idx] - s * (nominal[idx] - low[idx])
            high[idx] = nominal[idx] + s * (high[idx] - nominal[idx])
            shrunk += [names[i] for i in idx]
    positive = low > 0
    log = positive & (high >= LOG_SPAN * np.where(positive, low, 1.0)) if distribution == "auto" else \
        positive & (distribution == "log-uniform")
    return ParameterSpace(tuple(names), low, high, nominal, factor, tuple(x.unit for x in p),
                          tuple(x.range for x in p), tuple(shrunk), log)


def internal_values(params: ParameterSet, space: ParameterSpace, row: np.ndarray) -> dict[str, float]:
    """All parameters (internal units) with the sampled ones set from ``row`` (file units)."""
    values = params.internal_values()
    for name, f, x in zip(space.names, space.factor, row):
        values[name] = float(f * x)
    for copy, original in LINKED_PARAMETERS.items():
        if original in space.names and copy in values:
            values[copy] = values[copy] * values[original] / params.value(original)
    return values


# ---------------------------------------------------------------------- evaluators
class ScenarioEvaluator:
    """Model outputs at times of one scenario for a block of samples, in one engine batch."""

    block_rows = BLOCK_ROWS

    def __init__(self, scenario: Scenario, params: ParameterSet, space: ParameterSpace,
                 outputs: Sequence[OutputSpec], settings: SolverSettings):
        self.scenario, self.params, self.space, self.settings = scenario, params, space, settings
        self.outputs = tuple(outputs)
        self.times = np.array(sorted({o.time_h for o in self.outputs}))
        self.names = tuple(dict.fromkeys(o.name for o in self.outputs))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        from ..simulate import observe_batch

        model = default_model()
        values = [internal_values(self.params, self.space, r) for r in rows]
        names = tuple(values[0])
        parameters = ParameterColumns(names, np.array([[v[n] for n in names] for v in values]))
        patients = PatientColumns.of([self.scenario.patient] * len(values))
        problem = build_batch_problem(self.scenario, patients, parameters, model, t_out=self.times)
        states, status, _ = solve(problem, self.settings)
        out = observe_batch(model, states, problem.parameter_names, problem.theta, self.names)
        cols = [out[o.name][:, int(np.searchsorted(self.times, o.time_h))] for o in self.outputs]
        values = np.stack(cols, axis=1)
        values[status != 0] = np.nan  # a sample the solver could not finish
        return values


class TrialEvaluator:
    """Trial endpoints for a block of samples: one virtual trial per sample (``n_per_arm`` patients
    per arm, the trial's seed), with the sample as the population's typical parameter values."""

    block_rows = 8  # a trial per sample is slow: small blocks spread the work over Dask workers

    def __init__(self, trial, params: ParameterSet, space: ParameterSpace, outputs: Sequence[OutputSpec],
                 n_per_arm: int, settings: SolverSettings):
        raw = json.loads(json.dumps(dict(trial.raw)))  # plain data: travels to Dask workers
        raw["population"] = {**raw["population"], "n": int(n_per_arm)}
        self.raw, self.duration_h = raw, trial.duration_h
        self.params, self.space, self.settings = params, space, settings
        self.outputs = tuple(outputs)

    @property
    def trial(self):
        from ..trial import TrialSpec

        return TrialSpec.from_dict(self.raw)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self._one(r) for r in rows]).reshape(len(rows), len(self.outputs))

    def _one(self, row: np.ndarray) -> list[float]:
        from ..trial.run import run_chunks
        from ..trial.summary import trial_summary

        sample = self.params.replace(**{n.replace(".", "__"): float(x) for n, x in zip(self.space.names, row)})
        for copy, original in LINKED_PARAMETERS.items():
            if original in self.space.names:
                ratio = sample[original].value / self.params[original].value
                sample = sample.replace(**{copy.replace(".", "__"): self.params[copy].value * ratio})
        trial = self.trial
        summary = trial_summary(trial, run_chunks(trial, sample, settings=self.settings))
        return [endpoint_value(summary, o, self.duration_h) for o in self.outputs]


def endpoint_value(summary: dict, spec: OutputSpec, follow_up_h: float) -> float:
    """A trial endpoint from the summary as a number. A median time to relapse that is "not
    reached" counts as the follow-up length (a lower bound; the results count such samples); no
    responders at all (nobody at risk of relapse) gives NaN."""
    arm = summary["arms"][spec.arm]
    if spec.name == "median_time_to_relapse":
        est = arm["relapse"]["median_time_to_relapse [h]"]["estimate"]
        if est == "not reached":
            return float(follow_up_h)
        return math.nan if est is None else float(est)
    row = next((a for a in arm["assessments"] if abs(a["assessment [h]"] - spec.time_h) < 1e-9), None)
    if row is None:  # nobody analysed at that assessment (every patient of the sample failed)
        return math.nan
    value = row["madrs_change [points]"]["mean"] if spec.name == "madrs_change" else row[spec.name]["estimate"]
    return math.nan if value is None else float(value)


def _apply(evaluator: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> np.ndarray:
    return evaluator(rows)


def evaluate(evaluator: Callable[[np.ndarray], np.ndarray], samples: np.ndarray, *, block_rows: int | None = None,
             client=None, progress: Callable[[int, int], None] | None = None, checkpoint=None) -> np.ndarray:
    """(n_samples, n_outputs): ``evaluator`` over ``samples`` in fixed blocks, here or on a Dask client
    (blocks placed by their index, so the result is the same either way). With a ``Checkpoint``
    (``failures.Checkpoint``), blocks it already holds are not run again and each finished block is
    added to it; it is flushed when the run ends or is interrupted."""
    block_rows = block_rows or getattr(evaluator, "block_rows", BLOCK_ROWS)
    blocks = [samples[i:i + block_rows] for i in range(0, len(samples), block_rows)]
    results: dict[int, np.ndarray] = {}
    if checkpoint is not None:
        results.update({i: v for i, v in checkpoint.blocks.items() if i < len(blocks) and len(v) == len(blocks[i])})
    todo = [i for i in range(len(blocks)) if i not in results]
    done = sum(len(blocks[i]) for i in results)
    if progress and done:
        progress(done, len(samples))

    def finished(i: int, values: np.ndarray) -> None:
        nonlocal done
        results[i] = values
        if checkpoint is not None:
            checkpoint.add(i, values)
        done += len(blocks[i])
        if progress:
            progress(done, len(samples))

    try:
        if client is None:
            for i in todo:
                finished(i, evaluator(blocks[i]))
        elif todo:
            from distributed import as_completed

            remote = client.scatter(evaluator, broadcast=True)
            futures = {client.submit(_apply, remote, blocks[i], pure=False): i for i in todo}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    finally:
        if checkpoint is not None:
            checkpoint.flush()
    return np.concatenate([results[i] for i in range(len(blocks))], axis=0)
