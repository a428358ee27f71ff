"""Is the model well posed over its whole declared parameter space? Count what fails.

``design_failures`` runs a Sobol' design (the same sampling as ``sobol``: every parameter with a
non-trivial range, log-uniform over wide positive ranges, constrained groups shrunk so every
sample is a valid parameter set) through one scenario and counts, over every model output and
readout at the given times, the samples the solver could not finish and the values that are not
finite. It returns the counts and, for the samples that failed, the parameters at the edge of
their range, so a failure can be traced to a region of parameter space rather than dropped.

``benchmarks/well_posed.py`` runs it at full scale (>= 50,000 runs) together with a large virtual
trial; the tests run a small design.

>>> counts = design_failures({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
...                                     "duration": "40 min"}], "simulation": {"duration": "1 d"}},
...                          samples=8, times_h=(24.0,))
>>> counts["runs"] == 8 * (counts["parameters"] + 2), counts["solver_failures"], counts["non_finite_values"]
(True, 0, 0)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine import SolverSettings, build_batch_problem, solve
from ..model.system import default_model
from ..params import ParameterColumns, load_parameters
from ..scenario import PatientColumns, Scenario
from .analysis import sobol_sample
from .problem import BLOCK_ROWS, internal_values, parameter_space, select_parameters

#: a sample value within this share of its range's width from a bound counts as "at the edge"
EDGE = 0.05


def design_failures(scenario, *, samples: int = 64, times_h: Sequence[float] = (4.0, 24.0, 168.0), params=None,
                    settings: SolverSettings = SolverSettings(rtol=1e-6, atol=1e-9), seed: int = 0,
                    progress=None) -> dict[str, Any]:
    """Counts of solver failures and non-finite outputs over a Sobol' design of ``samples`` base
    samples (``samples * (D + 2)`` runs) through ``scenario``, every output and readout at ``times_h``."""
    from ..simulate import observe_batch

    params = params or load_parameters()
    scenario = Scenario.load(scenario)
    space = parameter_space(params, select_parameters(params))
    X = space.to_file_units(sobol_sample(space.salib_problem(), samples, seed=seed))
    model = default_model()
    times = np.asarray(sorted(set(float(t) for t in times_h)))
    failed_rows: list[int] = []
    non_finite = Counter()
    for start in range(0, len(X), BLOCK_ROWS):
        rows = X[start:start + BLOCK_ROWS]
        values = [internal_values(params, space, r) for r in rows]
        names = tuple(values[0])
        columns = ParameterColumns(names, np.array([[v[n] for n in names] for v in values]))
        patients = PatientColumns.of([scenario.patient] * len(rows))
        problem = build_batch_problem(scenario, patients, columns, model, t_out=times)
        states, status, _ = solve(problem, settings)
        ok = status == 0
        failed_rows += (start + np.flatnonzero(~ok)).tolist()
        outputs = observe_batch(model, states[ok], problem.parameter_names, problem.theta[ok])
        for name, v in outputs.items():
            bad = int(np.count_nonzero(~np.isfinite(v)))
            if bad:
                non_finite[name] += bad
        if progress:
            progress(min(start + BLOCK_ROWS, len(X)), len(X))
    edges = Counter()
    width = space.high - space.low
    for r in failed_rows:
        at_low = X[r] <= space.low + EDGE * width
        at_high = X[r] >= space.high - EDGE * width
        for k in np.flatnonzero(at_low | at_high):
            edges[f"{space.names[k]} ({'low' if at_low[k] else 'high'})"] += 1
    return {"runs": int(len(X)), "parameters": int(space.dimension), "times [h]": times.tolist(),
            "outputs": len(model.output_names), "solver_failures": len(failed_rows),
            "non_finite_values": int(sum(non_finite.values())), "non_finite_by_output": dict(non_finite),
            "failed_samples_at_range_edges": dict(edges.most_common(20))}
