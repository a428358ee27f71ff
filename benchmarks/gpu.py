"""Virtual-trial throughput of the JAX backend on a GPU (or whatever device JAX finds).

The full model, 28 days after one 0.5 mg/kg/40 min racemic infusion, MADRS at 8 assessment times,
for 10^4 to 10^6 patients of the treatment-resistant population (parameter variability included).
Problem building (Python: sampling, schedules) is done once for ``--distinct`` patients and the
arrays are tiled up to N, so the table measures the device solve; the build time per patient is
printed separately. A subset is checked against the compiled CPU kernel (max MADRS difference).

    python benchmarks/gpu.py [--sizes 10000 100000 1000000] [--batch 100000] [--json results/benchmarks/gpu.json]

Target (issue "Virtual populations and virtual clinical trials"): 10^6 patients x 28 days in < 60 s
on one H200. Without a GPU the script still runs (on the CPU, slowly): use small --sizes there.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ASSESSMENTS_H = np.array([0.0, 2 / 3, 4.0, 24.0, 72.0, 168.0, 336.0, 672.0])
TRIAL = {"trial": {"name": "gpu benchmark", "seed": 1, "assessments": ["28 d"]},
         "population": {"n": 1, "preset": "treatment-resistant"},
         "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                                "duration": "40 min"}]}]}


def build(distinct: int):
    from ketasim.engine import build_batch_problem
    from ketasim.model import default_model
    from ketasim.params import load_parameters
    from ketasim.population import PopulationSampler
    from ketasim.trial import TrialSpec

    spec = TrialSpec.from_dict(TRIAL)
    params, model = load_parameters(), default_model()
    seq = spec.sequences[0]
    t0 = time.perf_counter()
    cohort = PopulationSampler(spec.population, params).draw_cohort(spec.seed, 0, range(distinct))
    problem = build_batch_problem(seq.scenario, cohort.patients, cohort.parameters, model, t_out=ASSESSMENTS_H)
    return problem, (time.perf_counter() - t0) / distinct


def tiled(problem, n: int):
    reps = -(-n // problem.n_patients)

    def tile(a):
        return np.tile(a, (reps,) + (1,) * (a.ndim - 1))[:n]

    return replace(problem, y0=tile(problem.y0), theta=tile(problem.theta), seg_t=tile(problem.seg_t),
                   seg_u=tile(problem.seg_u), seg_jump=tile(problem.seg_jump), dosed_umol=tile(problem.dosed_umol))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batch", type=int, default=100_000, help="patients per device call")
    ap.add_argument("--distinct", type=int, default=4096, help="distinct patients built, then tiled")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/gpu.json"))
    args = ap.parse_args()

    import jax

    from ketasim.engine import SolverSettings, solve

    device = jax.devices()[0]
    settings = SolverSettings(rtol=args.rtol, atol=args.atol)
    problem, build_s = build(args.distinct)
    madrs = problem.model.state_names.index("clinical.severity")

    check = problem.subset(slice(0, min(64, problem.n_patients)))
    t0 = time.perf_counter()
    gpu_states, _, _ = solve(check, settings, backend="jax")  # compiles
    compile_s = time.perf_counter() - t0
    cpu_states, _, _ = solve(check, settings, backend="cpu")
    max_diff = float(np.max(np.abs(gpu_states[:, :, madrs] - cpu_states[:, :, madrs])))

    rows = []
    for n in args.sizes:
        batch = min(args.batch, n)
        full = tiled(problem, batch)
        solve(full.subset(slice(0, batch)), settings, backend="jax")  # compile for this batch shape
        t0 = time.perf_counter()
        failed, done = 0, 0
        while done < n:
            size = min(batch, n - done)
            part = full if size == batch else full.subset(slice(0, size))
            _, status, _ = solve(part, settings, backend="jax")
            failed += int(np.sum(status != 0))
            done += size
        wall = time.perf_counter() - t0
        rows.append({"patients": n, "batch": batch, "wall [s]": wall, "patients/s": n / wall, "failed": failed})
        print(f"{n:>10,d} patients  {wall:9.2f} s  {n / wall:12,.0f} patients/s  failed {failed}", flush=True)

    print(f"\ndevice: {device.platform} ({device.device_kind}); compile {compile_s:.1f} s; build "
          f"{build_s * 1e3:.2f} ms/patient (CPU, Python); max |MADRS jax - cpu| = {max_diff:.2e} points")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": f"{device.platform} {device.device_kind}", "rtol": args.rtol,
                                     "atol": args.atol, "compile [s]": compile_s, "build [ms/patient]": build_s * 1e3,
                                     "max_madrs_difference_vs_cpu [points]": max_diff, "python": platform.python_version(),
                                     "runs": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
