"""Virtual-trial throughput: ketasim's batched compiled kernel vs libRoadRunner on the same model.

The same virtual trial for both engines: one 0.5 mg/kg/40 min racemic infusion, 28 days, outputs at
8 assessment times only, patients differing in weight, age and baseline MADRS. libRoadRunner runs
ketasim's SBML export as a careful user would: the model loaded once per process, both cores
through multiprocessing, resetAll + setValues per patient, output at the assessments only.

    python benchmarks/trial_throughput.py [--n 2000] [--n-rr 200] [--json results/bench.json]

Prints a table and writes JSON (patients/s, ratio, compile time, max MADRS difference).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

ASSESSMENTS_H = [0.0, 2 / 3, 4.0, 24.0, 72.0, 168.0, 336.0, 672.0]
BASE = {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}],
        "simulation": {"duration": "28 d", "output_every": "1 d"}}


def patients(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    weights = np.clip(rng.normal(80, 16, n), 45, 150)
    ages = np.clip(rng.normal(46, 12, n), 18, 70)
    madrs = np.clip(rng.normal(32, 5, n), 22, 50)
    return [{**BASE, "patient": {"weight": f"{w:.3f} kg", "age": f"{a:.3f} y", "baseline_madrs": float(m)}}
            for w, a, m in zip(weights, ages, madrs)]


def run_ketasim(scenarios, rtol, atol):
    from ketasim.engine import SolverSettings, build_problem, solve
    from ketasim.model import default_model
    from ketasim.params import load_parameters
    from ketasim.scenario import Scenario

    model, params = default_model(), load_parameters()
    parsed = [Scenario.from_dict(s) for s in scenarios]
    t0 = time.perf_counter()
    problem = build_problem(parsed, params, model, t_out=np.asarray(ASSESSMENTS_H))
    t_build = time.perf_counter() - t0
    settings = SolverSettings(rtol=rtol, atol=atol)
    t0 = time.perf_counter()
    solve(problem.subset(slice(0, 1)), settings)  # compile or load the cached kernel
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    states, status, _ = solve(problem, settings)
    t_solve = time.perf_counter() - t0
    i = model.state_names.index("clinical.severity")
    return states[:, :, i], status, t_build, t_compile, t_solve


_RR = None


def _rr_init(xml, rtol, atol):
    global _RR
    import roadrunner

    _RR = roadrunner.RoadRunner(xml)
    _RR.integrator.relative_tolerance = rtol
    _RR.integrator.absolute_tolerance = atol
    _RR.timeCourseSelections = ["clinical_severity"]


def _rr_patient(values):
    _RR.resetAll()
    for key, value in values.items():  # current values at t = 0 (setting init() would regenerate the model)
        _RR.setValue(key, value)
    return np.asarray(_RR.simulate(times=ASSESSMENTS_H)["clinical_severity"])


def rr_values(scenarios):
    """Per patient: every covariate and every state value at t = 0 (after the doses given at 0)."""
    from ketasim.engine import build_problem
    from ketasim.model import default_model
    from ketasim.params import load_parameters
    from ketasim.sbml import sbml_id
    from ketasim.scenario import Scenario

    model, params = default_model(), load_parameters()
    problem = build_problem([Scenario.from_dict(s) for s in scenarios], params, model,
                            t_out=np.asarray(ASSESSMENTS_H))
    cov = [problem.parameter_names.index(n) for n in model.covariate_names]
    start = problem.y0 + problem.seg_jump[:, 0, :]
    out = []
    for b in range(problem.n_patients):
        values = {sbml_id(problem.parameter_names[k]): float(problem.theta[b, k]) for k in cov}
        values.update({sbml_id(n): float(start[b, i]) for i, n in enumerate(model.state_names)
                       if start[b, i] != 0.0 or n.startswith(("clinical.", "inflammation.", "plasticity."))})
        values.update({sbml_id(n): float(problem.seg_u[b, 0, k]) for k, n in enumerate(model.input_names)})
        out.append(values)
    return out


def run_roadrunner(scenarios, rtol, atol, processes=2):
    from ketasim.sbml import export_sbml

    xml = export_sbml(scenarios[0])
    values = rr_values(scenarios)
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(processes, initializer=_rr_init, initargs=(xml, rtol, atol)) as pool:
        pool.map(_rr_patient, values[:processes])  # load the model in every worker
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = np.asarray(pool.map(_rr_patient, values, chunksize=max(1, len(values) // (4 * processes))))
        t_solve = time.perf_counter() - t0
    return result, t_load, t_solve


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="patients for ketasim")
    ap.add_argument("--n-rr", type=int, default=200, help="patients for libRoadRunner")
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/trial_throughput.json"))
    args = ap.parse_args()
    rtol, atol = 1e-8, 1e-10
    scen = patients(max(args.n, args.n_rr))
    k_madrs, status, t_build, t_compile, t_k = run_ketasim(scen[:args.n], rtol, atol)
    rr_madrs, t_load, t_rr = run_roadrunner(scen[:args.n_rr], rtol, atol)
    diff = float(np.max(np.abs(k_madrs[:args.n_rr] - rr_madrs)))
    k_rate, rr_rate = args.n / t_k, args.n_rr / t_rr
    rows = [("engine", "patients", "seconds", "patients/s"),
            ("ketasim (numba Rodas4, batched)", args.n, f"{t_k:.2f}", f"{k_rate:,.0f}"),
            ("libRoadRunner (CVODE, 2 processes)", args.n_rr, f"{t_rr:.2f}", f"{rr_rate:,.0f}")]
    for r in rows:
        print(f"{r[0]:38s} {r[1]:>9} {r[2]:>9} {r[3]:>11}")
    print(f"ratio ketasim / libRoadRunner: {k_rate / rr_rate:.2f}x; max |MADRS difference| {diff:.2e} points; "
          f"ketasim compile/load {t_compile:.1f} s, problem build {t_build:.1f} s; libRoadRunner load {t_load:.1f} s")
    report = {"model": "ketasim full chain", "days": 28, "assessments_h": ASSESSMENTS_H, "rtol": rtol, "atol": atol,
              "ketasim": {"patients": args.n, "seconds": t_k, "patients_per_s": k_rate, "compile_s": t_compile,
                          "build_s": t_build, "failed": int(np.sum(status != 0))},
              "libroadrunner": {"patients": args.n_rr, "seconds": t_rr, "patients_per_s": rr_rate, "load_s": t_load},
              "ratio": k_rate / rr_rate, "max_madrs_difference_points": diff,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
