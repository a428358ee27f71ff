"""Power over replicate virtual trials: the probability that a design meets its ``[trial.success]``.

For each sample size ``N`` (patients per arm; in a crossover or randomised-withdrawal trial, patients
in all, a multiple of the number of sequences), ``R`` replicate trials are analysed with the trial's
own primary endpoint and test (``ketasim.trial.success``). The probability of success is the
fraction of replicates that succeed, with its Wilson 95 % Monte Carlo interval.

The replicates are drawn once: one run of ``R x N_max`` patients per sequence, cut by patient number
into ``R`` blocks; the trial of size ``N`` in replicate ``r`` is the first ``N`` patients of block
``r``. Replicates are therefore independent of each other within a sample size, and each sample
size reuses the patients of the larger ones (common random numbers: the power curve is smooth in
``N`` and the compiled model, population draws and schedules serve every size). The patient numbers
define the blocks, so a Dask run gives the same replicates as one process.

>>> import ketasim
>>> trial = {"trial": {"name": "demo", "seed": 1, "assessments": ["24 h"],
...                    "success": {"endpoint": "madrs_change", "at": "24 h", "sided": "one"}},
...          "population": {"n": 10, "preset": "treatment-resistant"},
...          "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv",
...                                                  "amount": "0.5 mg/kg", "duration": "40 min"}]},
...                  {"name": "saline", "dose": [{"drug": "saline", "route": "iv", "duration": "40 min"}]}]}
>>> result = ketasim.power(trial, n=[4, 8], replicates=3)
>>> [row["n"] for row in result.summary["sample_sizes"]], len(result.replicates)
([4, 8], 6)
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..engine import SolverSettings
from ..errors import ScenarioError
from ..model.mechanisms import active, with_mechanisms
from ..params import ParameterSet, load_parameters
from ..params.draws import ParameterDraws
from ..population.spec import MAX_PATIENTS
from ..result import DISCLAIMER
from . import statistics as st
from .design import TrialSpec
from .run import TRIAL_SETTINGS, ProgressCallback, _execute, chunks, per_state_tolerances
from .success import SuccessRule, analyse, patient_outcomes
from .summary import analysed

MAX_REPLICATES = 100_000
PAIRED_OR_SPLIT = ("crossover", "randomised-withdrawal")  # N counts patients in all, split over sequences


@dataclass(frozen=True)
class PowerResult:
    """One row per replicate and sample size, the summary per sample size, and a manifest."""

    spec: TrialSpec
    replicates: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any]

    def write(self, folder: str | Path, report: bool = True) -> Path:
        """``power.json``, ``power.parquet``, ``manifest.json`` and ``report.html``, atomically."""
        from ..output import atomic_folder
        from . import _write_parquet

        with atomic_folder(folder) as tmp:
            _write_parquet(self.replicates, tmp / "power.parquet")
            (tmp / "power.json").write_text(json.dumps(self.summary, indent=2))
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str))
            if report:
                from .report import write_power_report

                write_power_report(self, tmp)
        return Path(folder)


def sequences_per_size(spec: TrialSpec) -> int:
    """How many sequences a sample size is split over: 1 when it counts patients per arm."""
    return len(spec.sequences) if spec.design in PAIRED_OR_SPLIT else 1


def check_sample_sizes(spec: TrialSpec, n: Sequence[int], replicates: int) -> tuple[int, ...]:
    """The sample sizes, sorted, checked against the design and the population's limit."""
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)) or not 1 <= replicates <= MAX_REPLICATES:
        raise ScenarioError("replicates", f"{replicates!r} must be a whole number in 1..{MAX_REPLICATES}")
    sizes = []
    for value in n:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ScenarioError("n", f"{value!r}: each sample size must be a whole number >= 2")
        sizes.append(int(value))
    if not sizes:
        raise ScenarioError("n", "give at least one sample size (e.g. 20,40,80)")
    k = sequences_per_size(spec)
    for value in sizes:
        if value % k:
            raise ScenarioError("n", f"{value}: a {spec.design} trial splits its patients over {k} sequences; "
                                     f"each sample size must be a multiple of {k}")
    sizes = tuple(sorted(set(sizes)))
    per_sequence = replicates * sizes[-1] // k
    if per_sequence > MAX_PATIENTS:
        raise ScenarioError("replicates", f"{replicates} replicates x {sizes[-1]} patients is {per_sequence:,} per "
                                          f"sequence; at most {MAX_PATIENTS:,} (fewer replicates or a smaller largest n)")
    return sizes


def power(trial: str | Path | Mapping[str, Any] | TrialSpec, *, n: Sequence[int], replicates: int,
          params: ParameterSet | str | Path | None = None, target: float = 0.8, chunk_size: int | None = None,
          workers: int | None = None, scheduler: str | None = None, settings: SolverSettings = TRIAL_SETTINGS,
          progress: ProgressCallback | None = None, mechanisms: Sequence[str] | None = None,
          params_draws: ParameterDraws | str | Path | None = None) -> PowerResult:
    """Probability of success of the trial's ``[trial.success]`` at each sample size ``n``, from
    ``replicates`` replicate trials (see the module's description). ``target``: the power whose
    smallest sample size is reported. ``params_draws`` (``ketasim.params.draws``) gives each
    replicate one parameter draw, so that the probability of success averages over parameter
    uncertainty (often called assurance) rather than assuming the parameters known."""
    spec = TrialSpec.load(trial)
    if spec.success is None:
        raise ScenarioError("trial.success", "needed for a power analysis: the endpoint, the assessment and the test "
                                             "that decide a trial's success (see docs/trials.md)")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < target < 1.0:
        raise ScenarioError("target", f"{target!r} must be a number between 0 and 1")
    sizes = check_sample_sizes(spec, n, replicates)
    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    params = with_mechanisms(params, mechanisms if mechanisms is not None else spec.mechanisms)
    k = sequences_per_size(spec)
    block = sizes[-1] // k  # patients of one sequence in one replicate at the largest size
    raw = copy.deepcopy(dict(spec.raw))
    raw["population"] = {**raw["population"], "n": replicates * sizes[-1]}
    whole = TrialSpec.from_dict(raw)
    draws, per_replicate, draw_block = None, params, None
    if params_draws is not None:
        draws = ParameterDraws.of(params_draws, params)
        per_replicate, draw_block = draws.parameter_sets(params, replicates, spec.seed), block

    from . import _dask_client, _version

    started = _dt.datetime.now(_dt.timezone.utc)
    arrays = _OutcomeArrays(spec.success, whole, replicates, block)
    todo = chunks(whole, chunk_size, draw_block)
    raw_json = json.dumps(whole.raw, sort_keys=True)
    done, total = 0, whole.n_patients
    with _dask_client(workers, scheduler) as client:
        for i, frame in _execute(todo, raw_json, per_replicate, settings, client):
            arrays.add(frame)
            done += todo[i].stop - todo[i].start
            if progress:
                progress(done, total)
    rows = []
    for size in sizes:
        result = analyse(spec.success, arrays.groups(size // k))
        rows.append(pd.DataFrame({"n": size, "replicate": np.arange(replicates), **result}))
    table = pd.concat(rows, ignore_index=True)
    table["success"] = table["success"].astype(bool)
    finished = _dt.datetime.now(_dt.timezone.utc)
    summary = power_summary(spec, table, sizes, target, arrays)
    described = draws.describe() if draws is not None else None
    summary["parameter_uncertainty"] = None if draws is None else {
        **described, "values_moved_to_range_ends": draws.outside_range(params, per_replicate),
        "how": "each replicate runs with one draw: the probability of success averages over parameter "
               "uncertainty as well as patients (assurance)"}
    manifest = {
        "ketasim_version": _version(), "created": finished.isoformat(timespec="seconds"),
        "wall_time [s]": (finished - started).total_seconds(),
        "trial_source": dict(spec.raw), "replicates": replicates, "sample_sizes": list(sizes),
        "patients_simulated": total, "parameter_set_sha256": params.digest(), "mechanisms": list(active(params)),
        "solver": {"rtol": settings.rtol, "atol": settings.atol, "h_max_h": settings.h_max, **per_state_tolerances(settings)},
        "execution": {"chunk_size": chunk_size or "automatic", "workers": workers, "scheduler": scheduler},
        "parameter_draws": described,
        "disclaimer": DISCLAIMER,
    }
    return PowerResult(spec=spec, replicates=table, summary=summary, manifest=manifest)


class _OutcomeArrays:
    """The primary endpoint of every simulated patient, placed by (replicate, position in its block):
    (replicates, block) arrays per group, NaN where a patient is absent, filled chunk by chunk so that
    the patients table of the whole run is never held."""

    def __init__(self, rule: SuccessRule, spec: TrialSpec, replicates: int, block: int):
        self.rule, self.spec, self.block = rule, spec, block
        self.paired = spec.design == "crossover"
        self.streams = {s.stream for s in spec.sequences}
        shape = (replicates, block)
        keys = [("paired", s) for s in self.streams] if self.paired else [("arm", None), ("control", None)]
        self.value = {key: np.full(shape, np.nan) for key in keys}
        self.event = {key: np.zeros(shape, dtype=bool) for key in keys}
        self.simulated = 0
        self.failed = 0

    def add(self, frame: pd.DataFrame) -> None:
        first = frame.drop_duplicates("patient")
        self.simulated += len(first)
        self.failed += int((first["status"] != "ok").sum())
        out = patient_outcomes(self.rule, self.spec.design, self.spec.control, analysed(frame))
        if out.empty:
            return
        rep, pos = out["index"].to_numpy() // self.block, out["index"].to_numpy() % self.block
        measured = out["time"] if self.rule.endpoint == "relapse" else out["value"]
        for key in self.value:
            group, stream = key
            mask = (out["group"] == group).to_numpy()
            if stream is not None:
                mask = mask & (out["stream"].to_numpy() == stream)
            self.value[key][rep[mask], pos[mask]] = measured.to_numpy(dtype=float)[mask]
            self.event[key][rep[mask], pos[mask]] = out["event"].to_numpy(dtype=bool)[mask]

    def groups(self, per_sequence: int) -> dict[str, Any]:
        """The arrays of the trial with ``per_sequence`` patients in each sequence."""
        def part(key):
            values = self.value[key][:, :per_sequence]
            if self.rule.endpoint == "relapse":
                return values, self.event[key][:, :per_sequence]
            return values

        if self.paired:
            return {"paired": np.concatenate([part(key) for key in sorted(self.value, key=lambda k: k[1])], axis=1)}
        return {"arm": part(("arm", None)), "control": part(("control", None))}

    def pooled(self) -> dict[str, np.ndarray]:
        """Every patient's value per group (for the normal approximation)."""
        if self.paired:
            return {"paired": np.concatenate([v.ravel() for v in self.value.values()])}
        return {g: self.value[(g, None)].ravel() for g in ("arm", "control")}


def _describe(x: np.ndarray) -> dict[str, float | None]:
    x = x[np.isfinite(x)]
    if not x.size:
        return {"mean": None, "sd": None, "p2.5": None, "median": None, "p97.5": None}
    q = np.quantile(x, [0.025, 0.5, 0.975])
    return {"mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else None,
            "p2.5": float(q[0]), "median": float(q[1]), "p97.5": float(q[2])}


def normal_approximation(rule: SuccessRule, pooled: Mapping[str, np.ndarray], sizes: Sequence[int], k: int,
                         target: float) -> dict[str, Any]:
    """The textbook answer from the simulated effect and spread of all patients: the power at each
    size and the size for ``target`` by the normal approximation (two-sample or paired z test; for
    proportions, the pooled-variance test). Only for superiority on MADRS change, response or
    remission."""
    if rule.endpoint == "relapse" or rule.margin is not None or (k > 1 and "paired" not in pooled):
        return {"available": False, "why": "only for superiority on MADRS change, response or remission, in a "
                                           "design whose analysed numbers the sample size fixes (not randomised withdrawal)"}
    z_a = float(stats.norm.ppf(1.0 - (rule.alpha if rule.sided == "one" else rule.alpha / 2.0)))
    z_b = float(stats.norm.ppf(target))
    if "paired" in pooled:
        d = pooled["paired"][np.isfinite(pooled["paired"])]
        delta, test_sd, alt_sd = -float(d.mean()), float(d.std(ddof=1)), float(d.std(ddof=1))
        basis = {"mean within-patient difference [points]": -delta, "sd of the differences [points]": test_sd}
    else:
        a, c = (pooled[g][np.isfinite(pooled[g])] for g in ("arm", "control"))
        if rule.endpoint == "madrs_change":
            delta = float(c.mean() - a.mean())  # favourable: a larger fall in the arm
            test_sd = alt_sd = math.sqrt(float(a.var(ddof=1) + c.var(ddof=1)))
            basis = {"difference in mean change [points]": -delta, "sd arm [points]": float(a.std(ddof=1)),
                     "sd control [points]": float(c.std(ddof=1))}
        else:
            p1, p0 = float(a.mean()), float(c.mean())
            delta = p1 - p0
            p_bar = (p1 + p0) / 2.0
            test_sd, alt_sd = math.sqrt(2.0 * p_bar * (1.0 - p_bar)), math.sqrt(p1 * (1 - p1) + p0 * (1 - p0))
            basis = {"proportion arm": p1, "proportion control": p0}
    # per patient (per arm, or in all for a paired design): se = sd / sqrt(N)
    powers = {str(int(size)): float(stats.norm.cdf((delta * math.sqrt(size) - z_a * test_sd) / alt_sd)) if alt_sd > 0
              else None for size in sizes}
    needed = None
    if delta > 0 and alt_sd > 0:
        needed = math.ceil(((z_a * test_sd + z_b * alt_sd) / delta) ** 2)
        needed = int(math.ceil(needed / k) * k)
    return {"available": True, "basis": basis, "power": powers, "n_for_target": needed,
            "method": "normal approximation from every simulated patient's value (z test, one tail)"}


def power_summary(spec: TrialSpec, table: pd.DataFrame, sizes: Sequence[int], target: float,
                  arrays: _OutcomeArrays) -> dict[str, Any]:
    rule = spec.success
    per_size = []
    for size in sizes:
        g = table[table["n"] == size]
        k_success, r = int(g["success"].sum()), len(g)
        est, lo, hi = st.proportion_ci(k_success, r)
        per_size.append({
            "n": int(size), "replicates": r, "successes": k_success,
            "power": {"estimate": est, "lower": lo, "upper": hi, "method": "Wilson 95 % (Monte Carlo)"},
            "estimate": _describe(g["estimate"].to_numpy(dtype=float)),
            "p_value_median": float(np.nanmedian(g["p_value"])) if g["p_value"].notna().any() else None,
            "analysed_per_replicate": {"arm": float(g["n_arm"].mean()), "control": float(g["n_control"].mean())},
            "undefined_replicates": int(g["estimate"].isna().sum()),
        })
    reaching = [row["n"] for row in per_size if row["power"]["estimate"] >= target]
    k = sequences_per_size(spec)
    return {
        "disclaimer": DISCLAIMER,
        "trial": spec.name, "design": spec.design, "success": rule.describe(),
        "sample_size_means": "patients per arm" if spec.design not in PAIRED_OR_SPLIT else
        f"patients in all ({k} sequences)",
        "target_power": target,
        "smallest_n_reaching_target": reaching[0] if reaching else None,
        "sample_sizes": per_size,
        "normal_approximation": normal_approximation(rule, arrays.pooled(), sizes, k, target),
        "patients": {"simulated": arrays.simulated, "failed": arrays.failed},
        "replicates_are": "independent within a sample size; each size uses the first patients of the "
                          "largest size's replicates (common random numbers)",
    }
