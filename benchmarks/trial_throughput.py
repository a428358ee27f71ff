"""Virtual-trial throughput: ketasim's batched compiled kernel vs libRoadRunner on the same model.

The same virtual trial for both engines: one 0.5 mg/kg/40 min racemic infusion, 28 days, outputs at
8 assessment times only, patients differing in weight, age and baseline MADRS. libRoadRunner runs
ketasim's SBML export as a careful user would: the model loaded once per process, both cores
through multiprocessing, resetAll + setValues per patient, output at the assessments only.

Each engine runs at its own loosest tolerance that meets the trials' accuracy: a tight reference
(ketasim, rtol 1e-11) is computed first; then, walking down a ladder of relative tolerances (the
same absolute tolerance on every state for both: libRoadRunner gets it as a vector, since it scales
one number by each state's initial value), the first rtol whose MADRS stays within ``--accuracy`` points
of the reference for every patient the engine is timed on, with no failed patient, is the
engine's tolerance (CVODE fails for a few patients at loose tolerances, so the search runs on the
timed patients themselves, not on a subset). Both are then timed again at that tolerance. The
absolute tolerance is the trials' own (``TRIAL_SETTINGS.atol``, 1e-7 in uM/umol) unless ``--atol``
says otherwise; the step cap is the trials' own for ketasim (CVODE has none).

Two more measurements: the trials' own tolerance on virtual patients with the full parameter
variability (the engine comparison varies covariates only, which libRoadRunner takes as values),
and a whole ``run_trial`` end to end (sampling, schedules, solve, readouts, table, statistics). The
end-to-end rate is set against libRoadRunner twice: against the engine comparison's loop above (patients
differing in covariates only), and against libRoadRunner solving the same trial's own patients, each
with its varying parameters (set in one call per patient), at its loosest tolerance meeting the same
accuracy on them, as the engine comparison does.

    python benchmarks/trial_throughput.py [--n 2000] [--n-rr 400] [--json PATH]

Prints a table and writes JSON (patients/s, ratio, tolerances, steps, peak memory, compile time,
MADRS differences between the engines and against the reference).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ASSESSMENTS_H = [0.0, 2 / 3, 4.0, 24.0, 72.0, 168.0, 336.0, 672.0]
BASE = {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}],
        "simulation": {"duration": "28 d", "output_every": "1 d"}}
LADDER = (1e-2, 3e-3, 1e-3, 5e-4, 3e-4, 1e-4, 5e-5, 3e-5, 1e-5, 3e-6, 1e-6, 1e-7, 1e-8)
REFERENCE_TOL = (1e-11, 1e-14)


def patients(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    weights = np.clip(rng.normal(80, 16, n), 45, 150)
    ages = np.clip(rng.normal(46, 12, n), 18, 70)
    madrs = np.clip(rng.normal(32, 5, n), 22, 50)
    return [{**BASE, "patient": {"weight": f"{w:.3f} kg", "age": f"{a:.3f} y", "baseline_madrs": float(m)}}
            for w, a, m in zip(weights, ages, madrs)]


def ketasim_problem(scenarios):
    from ketasim.engine import build_problem
    from ketasim.model import default_model
    from ketasim.params import load_parameters
    from ketasim.scenario import Scenario

    model, params = default_model(), load_parameters()
    problem = build_problem([Scenario.from_dict(s) for s in scenarios], params, model, t_out=np.asarray(ASSESSMENTS_H))
    return problem, model.state_names.index("clinical.severity")


def run_ketasim(problem, i_madrs, rtol, atol):
    """(MADRS (n, 8), status, steps, seconds); the kernel is loaded (or compiled) before timing."""
    from ketasim.engine import SolverSettings, solve
    from ketasim.trial.run import TRIAL_SETTINGS

    settings = SolverSettings(rtol=rtol, atol=atol, h_max=TRIAL_SETTINGS.h_max)
    solve(problem.subset(slice(0, 1)), settings)
    t0 = time.perf_counter()
    states, status, steps = solve(problem, settings)
    return states[:, :, i_madrs], status, steps, time.perf_counter() - t0


def cold_compile_seconds() -> float:
    """Generate and compile the kernel from nothing (empty cache) in a fresh process."""
    code = ("import time, numpy as np, sys; sys.path.insert(0, %r); import trial_throughput as tt; "
            "p, i = tt.ketasim_problem(tt.patients(1)); t = time.perf_counter(); "
            "tt.run_ketasim(p, i, 1e-6, 1e-10); print(time.perf_counter() - t)") % str(Path(__file__).parent)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "KETASIM_CACHE_DIR": tmp}
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


_RR = None
_RR_PARAMETERS = None  # indices, in libRoadRunner's global parameters, of the values set per patient


def _rr_init(xml, rtol, atol, parameter_ids):
    global _RR, _RR_PARAMETERS
    import roadrunner

    roadrunner.Logger.setLevel(roadrunner.Logger.LOG_FATAL)  # failures are counted, not printed
    _RR = roadrunner.RoadRunner(xml)
    _RR.integrator.relative_tolerance = rtol
    # one number would be scaled by each state's initial value (libRoadRunner's documented rule), which is
    # not ketasim's error control: the same absolute tolerance on every state, as a vector
    _RR.integrator.absolute_tolerance = [atol] * len(_RR.integrator.getAbsoluteToleranceVector())
    _RR.timeCourseSelections = ["clinical_severity"]
    ids = list(_RR.model.getGlobalParameterIds())
    _RR_PARAMETERS = np.array([ids.index(i) for i in parameter_ids], dtype=np.int32)


def _rr_patient(patient):
    parameters, values = patient
    _RR.resetAll()
    # the patient's parameters in one call: 0.5 ms a patient against 1.1 with a setValue each, for the
    # 172 that vary in the treatment-resistant population
    _RR.model.setGlobalParameterValues(_RR_PARAMETERS, parameters)
    for key, value in values.items():  # current values at t = 0 (setting init() would regenerate the model)
        _RR.setValue(key, value)
    try:
        return np.asarray(_RR.simulate(times=ASSESSMENTS_H)["clinical_severity"])
    except RuntimeError:  # CVODE gave up (e.g. error test failures at loose tolerance): a failed patient
        return np.full(len(ASSESSMENTS_H), np.nan)


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, where there is one: Linux carries ru_maxrss over
    exec, so a spawned worker's ru_maxrss would include the parent's pages it was forked from."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rr_peak_rss_mb(_):
    time.sleep(0.2)  # keep this worker busy so that the other one takes the other task
    return peak_rss_mb()


def rr_patients(problem, parameters):
    """(SBML ids of ``parameters``, and per patient: their values, and every state and input value at
    t = 0, after the doses given at 0)."""
    from ketasim.sbml import sbml_id

    model = problem.model
    cols = [problem.parameter_names.index(n) for n in parameters]
    start = problem.y0 + problem.seg_jump[:, 0, :]
    out = []
    for b in range(problem.n_patients):
        values = {sbml_id(n): float(start[b, i]) for i, n in enumerate(model.state_names)
                  if start[b, i] != 0.0 or n.startswith(("clinical.", "inflammation.", "plasticity."))}
        values.update({sbml_id(n): float(problem.seg_u[b, 0, k]) for k, n in enumerate(model.input_names)})
        out.append((np.ascontiguousarray(problem.theta[b, cols], dtype=float), values))
    return [sbml_id(n) for n in parameters], out


def run_roadrunner(xml, patients, rtol, atol, processes=2):
    """(MADRS (n, 8), load seconds, solve seconds, peak RSS of each worker in MB).

    Workers are spawned (not forked), so their peak memory is libRoadRunner's own, not a copy of
    this process's pages.
    """
    ids, values = patients
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(processes, initializer=_rr_init, initargs=(xml, rtol, atol, ids)) as pool:
        pool.map(_rr_patient, values[:processes], chunksize=1)  # load the model in every worker
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = np.asarray(pool.map(_rr_patient, values, chunksize=max(1, len(values) // (4 * processes))))
        t_solve = time.perf_counter() - t0
        rss = pool.map(_rr_peak_rss_mb, range(processes), chunksize=1)
    return result, t_load, t_solve, rss


def max_error(madrs, reference):
    """Largest |MADRS - reference| over patients and assessments; inf if any patient failed."""
    d = np.abs(np.asarray(madrs) - reference)
    return float(np.max(d)) if np.all(np.isfinite(d)) else float("inf")


def loosest_tolerance(run, reference, accuracy, atol, label):
    """Walk down LADDER; the first rtol meeting ``accuracy`` (and the rows tried, for the record)."""
    tried = []
    for rtol in LADDER:
        madrs, ok, seconds = run(rtol, atol)
        err = max_error(madrs, reference) if ok else float("inf")
        tried.append({"rtol": rtol, "max_madrs_error_points": err, "patients_per_s": len(reference) / seconds})
        print(f"  {label:13s} rtol {rtol:7.0e}: max MADRS error {err:9.2e} points, "
              f"{len(reference) / seconds:10,.0f} patients/s", flush=True)
        if err <= accuracy:
            return rtol, tried
    raise SystemExit(f"{label}: no tolerance on the ladder reaches {accuracy} MADRS points")


#: trials on which the trials' own tolerance is checked against the tight reference, every column
TOLERANCE_TRIALS = {
    "single IV infusion, 28 d": {
        "assessments": ["40 min", "4 h", "1 d", "3 d", "7 d", "14 d", "28 d"],
        "arm": [{"name": "ketamine", "dose": BASE["dose"]}]},
    "nasal esketamine twice weekly for 4 weeks, 8 weeks": {
        "assessments": ["4 h", "1 d", "7 d", "14 d", "28 d", "42 d", "56 d"],
        "arm": [{"name": "esketamine", "dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg",
                                                 "start": "0 d", "every": "3.5 d", "count": 8}]}]},
}
CHECKED_COLUMNS = ("madrs_model [points]", "cadss_peak [points]", "sbp_peak_rise [mmHg]",
                   "nmda_block_interneuron_peak [fraction]", "spine_density [fold baseline]", "pfc_gbc [z]",
                   "il6 [pg/mL]", "discharge_ready_after [h]")
#: read off the output grid, and infinite where a patient is not ready within the session's window
GRID_COLUMNS = ("discharge_ready_after [h]",)


def trial_tolerance_error(n: int) -> dict:
    """The trials' own tolerance (``TRIAL_SETTINGS``) on n virtual patients of the treatment-resistant
    population with its full parameter variability (which the engine comparison above leaves out):
    for each of ``TOLERANCE_TRIALS``, the largest difference of every model column of the patients
    table from the same trial at the tight reference tolerance."""
    from ketasim.engine import SolverSettings
    from ketasim.trial import run_trial
    from ketasim.trial.run import TRIAL_SETTINGS

    reference = SolverSettings(rtol=REFERENCE_TOL[0], atol=REFERENCE_TOL[1])
    out = {"patients": n, "rtol": TRIAL_SETTINGS.rtol, "atol": TRIAL_SETTINGS.atol, "h_max_h": TRIAL_SETTINGS.h_max,
           "trials": {}}
    for name, parts in TOLERANCE_TRIALS.items():
        trial = {"trial": {"name": name, "seed": 1, "assessments": parts["assessments"]},
                 "population": {"n": n, "preset": "treatment-resistant"}, "arm": parts["arm"]}
        ref, got = run_trial(trial, settings=reference).patients, run_trial(trial).patients
        ok = (ref["status"] == "ok") & (got["status"] == "ok")
        errors = {}
        differing = {}
        for column in CHECKED_COLUMNS:
            a, b = got.loc[ok, column].to_numpy(dtype=float), ref.loc[ok, column].to_numpy(dtype=float)
            both = np.isfinite(a) & np.isfinite(b)
            errors[column] = float(np.max(np.abs(a[both] - b[both]))) if both.any() else None
            if column in GRID_COLUMNS:  # a grid step apart, or finite in one and infinite in the other
                with np.errstate(invalid="ignore"):  # inf - inf (never ready in both) is NaN: not differing
                    differing[column] = int(np.sum((np.abs(a - b) > 1e-9) | (np.isnan(a) != np.isnan(b))))
        out["trials"][name] = {"failed": int((~ok).sum()), "max_abs_error": errors, "rows_differing": differing,
                               "rows_compared": int(ok.sum())}
    out["max_madrs_error_points"] = max(t["max_abs_error"]["madrs_model [points]"] for t in out["trials"].values())
    return out


def e2e_trial(n: int) -> dict:
    """The end-to-end trial: the engine comparison's infusion, in the treatment-resistant population with
    its full parameter variability, assessed at ``ASSESSMENTS_H``."""
    return {"trial": {"name": "throughput", "seed": 1, "assessments": ["40 min", "4 h", "1 d", "3 d", "7 d", "14 d", "28 d"]},
            "population": {"n": n, "preset": "treatment-resistant"},
            "arm": [{"name": "ketamine", "dose": BASE["dose"]}]}


def end_to_end(n: int, repeats: int = 3) -> dict:
    """Patients/s of a whole virtual trial in one process: what `ketasim trial` does, without writing
    files. The first run of this size is reported apart (it also pays one-off costs: memory first
    touched, lazily imported statistics); the rate is the median of ``repeats`` runs after it, as the
    engines above are timed after their tolerance search has warmed them."""
    from ketasim.trial import run_trial

    trial = e2e_trial(n)
    run_trial({**trial, "population": {"n": 8, "preset": "treatment-resistant"}})  # kernel load, imports
    rates = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        run_trial(trial)
        rates.append(n / (time.perf_counter() - t0))
    return {"patients": n, "first_run_patients_per_s": rates[0], "runs_patients_per_s": rates[1:],
            "patients_per_s": float(np.median(rates[1:]))}


def same_trial_roadrunner(n_trial: int, n_rr: int, xml: str, accuracy: float, atol: float) -> dict:
    """libRoadRunner on the end-to-end trial's own first ``n_rr`` patients (``run_trial`` draws them the
    same whatever its chunks), each with its values of every parameter that differs from the SBML
    export's (the treatment-resistant population varies 172): its loosest tolerance meeting
    ``accuracy`` against the tight reference of those patients, and its rate there (the fastest of the
    search's run and one more), to set a whole ``run_trial`` against the same trial's solves. Only the
    solves are timed for libRoadRunner, at the assessments only: drawing the patients, the output grid,
    the readouts and the table are ``run_trial``'s alone."""
    from ketasim.engine import SolverSettings, solve
    from ketasim.params import load_parameters
    from ketasim.trial.design import TrialSpec
    from ketasim.trial.run import TRIAL_SETTINGS, chunk_settings, prepare_chunk

    spec = TrialSpec.from_dict(e2e_trial(n_trial))
    chunk = prepare_chunk(json.dumps(spec.raw, sort_keys=True), load_parameters(), 0, 0, n_rr)
    problem, model = chunk.problem, chunk.model
    at = [int(np.argmin(np.abs(problem.t_out - t))) for t in ASSESSMENTS_H]
    assert np.allclose(problem.t_out[at], ASSESSMENTS_H), "the trial's grid lacks an assessment"
    i_madrs = model.state_names.index("clinical.severity")
    states, status, _ = solve(problem, SolverSettings(rtol=REFERENCE_TOL[0], atol=REFERENCE_TOL[1]))
    assert np.all(status == 0), "the reference failed for some patients"
    reference = states[:, at, i_madrs]
    states, _, steps = solve(problem, chunk_settings(problem, TRIAL_SETTINGS))  # as run_trial solves them
    ketasim_error = max_error(states[:, at, i_madrs], reference)
    base = ketasim_problem(patients(1))[0].theta[0]  # the parameter values in the SBML export
    differ = [n for k, n in enumerate(problem.parameter_names) if np.any(problem.theta[:, k] != base[k])]
    inputs = rr_patients(problem, differ)

    def ladder(rtol, atol):
        madrs, _, seconds, _ = run_roadrunner(xml, inputs, rtol, atol)
        return madrs, True, seconds

    rtol, tried = loosest_tolerance(ladder, reference, accuracy, atol, "libRoadRunner")
    madrs, _, seconds, _ = run_roadrunner(xml, inputs, rtol, atol)
    rates = [n_rr / seconds, *(row["patients_per_s"] for row in tried if row["rtol"] == rtol)]
    return {"patients": n_rr, "parameters_set_per_patient": len(differ), "rtol": rtol,
            "max_madrs_error_points": max_error(madrs, reference), "patients_per_s": max(rates),
            "runs_patients_per_s": rates, "ladder": tried,
            "ketasim_trial_settings": {"rtol": TRIAL_SETTINGS.rtol, "mean_steps": float(steps.mean()),
                                       "max_madrs_error_points": ketasim_error}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="patients for ketasim")
    ap.add_argument("--n-rr", type=int, default=400, help="patients for libRoadRunner")
    ap.add_argument("--accuracy", type=float, default=0.01, help="allowed MADRS error against the reference [points]")
    ap.add_argument("--atol", type=float, default=None,
                    help="absolute tolerance of both engines (default: the trials' own, TRIAL_SETTINGS.atol)")
    ap.add_argument("--skip-cold-compile", action="store_true", help="do not time a compile from an empty cache")
    ap.add_argument("--n-e2e", type=int, default=10_000, help="patients of the end-to-end run_trial measurement")
    ap.add_argument("--n-iiv", type=int, default=2000, help="patients (with parameter variability) for the trial tolerance check")
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/trial_throughput.json"))
    ap.add_argument("--step-speed-only", action="store_true",
                    help="print only this machine's per-step speed (us/step at rtol 1e-3 on --n patients) and stop")
    args = ap.parse_args()
    import numba

    from ketasim.trial.run import TRIAL_SETTINGS

    if args.atol is None:
        args.atol = TRIAL_SETTINGS.atol

    from ketasim.sbml import export_sbml

    n_all = max(args.n, args.n_rr)
    scen = patients(n_all)
    t0 = time.perf_counter()
    problem, i_madrs = ketasim_problem(scen)
    t_build = time.perf_counter() - t0
    t_cold = None if args.skip_cold_compile else cold_compile_seconds()
    t0 = time.perf_counter()
    run_ketasim(problem.subset(slice(0, 1)), i_madrs, 1e-6, args.atol)
    t_load = time.perf_counter() - t0
    if args.step_speed_only:  # the machine's speed, to set beside timings taken on it
        _, _, steps, seconds = run_ketasim(problem.subset(slice(0, args.n)), i_madrs, 1e-3, args.atol)
        threads = numba.config.NUMBA_NUM_THREADS
        print(f"per-step speed: {seconds * threads / max(1, int(steps.sum())) * 1e6:.2f} us/step "
              f"({threads} solver threads, {args.n} patients, {steps.mean():.1f} steps/patient at rtol 1e-3)")
        return

    print(f"reference: ketasim rtol {REFERENCE_TOL[0]:g}, atol {REFERENCE_TOL[1]:g}, {n_all} patients", flush=True)
    ref, ref_status, ref_steps, t_ref = run_ketasim(problem, i_madrs, *REFERENCE_TOL)
    assert np.all(ref_status == 0), "the reference failed for some patients"

    timed = problem.subset(slice(0, args.n))
    xml = export_sbml(scen[0])
    ids, values = rr_patients(problem, problem.model.covariate_names)
    loop_rr = (ids, values[:args.n_rr])

    def ketasim_ladder(rtol, atol):
        madrs, status, _, seconds = run_ketasim(timed, i_madrs, rtol, atol)
        return madrs, bool(np.all(status == 0)), seconds

    def rr_ladder(rtol, atol):
        madrs, _, seconds, _ = run_roadrunner(xml, loop_rr, rtol, atol)
        return madrs, True, seconds

    print(f"tolerance search (atol {args.atol:g}, accuracy {args.accuracy} points):")
    k_rtol, k_tried = loosest_tolerance(ketasim_ladder, ref[:args.n], args.accuracy, args.atol, "ketasim")
    rr_rtol, rr_tried = loosest_tolerance(rr_ladder, ref[:args.n_rr], args.accuracy, args.atol, "libRoadRunner")

    k_madrs, k_status, k_steps, t_k = run_ketasim(timed, i_madrs, k_rtol, args.atol)
    rr_madrs, rr_load, t_rr, rr_rss = run_roadrunner(xml, loop_rr, rr_rtol, args.atol)
    k_rate, rr_rate = args.n / t_k, args.n_rr / t_rr
    # libRoadRunner's fastest measurement at its tolerance (the search ran it there too): the ratio
    # against it is the conservative one, as its timings vary by 10-15 % from run to run
    rr_best = max(rr_rate, *(row["patients_per_s"] for row in rr_tried if row["rtol"] == rr_rtol))
    threads = numba.config.NUMBA_NUM_THREADS  # the CPU engine's solver threads
    us_step = t_k * threads / max(1, int(k_steps.sum())) * 1e6
    m = min(args.n, args.n_rr)
    k_err, rr_err = max_error(k_madrs, ref[:args.n]), max_error(rr_madrs, ref[:args.n_rr])
    between = max_error(k_madrs[:m], rr_madrs[:m])
    rss_main = peak_rss_mb()  # the benchmark's own process: ketasim, the reference, the SBML export

    rows = [("engine", "rtol", "patients", "seconds", "patients/s", "MADRS err", "peak RSS MB"),
            (f"ketasim (numba Rodas4, sparse LU, {threads} threads)", f"{k_rtol:g}", args.n, f"{t_k:.2f}",
             f"{k_rate:,.0f}", f"{k_err:.1e}", f"{rss_main:,.0f}"),
            ("libRoadRunner (CVODE, 2 processes)", f"{rr_rtol:g}", args.n_rr, f"{t_rr:.2f}", f"{rr_rate:,.0f}",
             f"{rr_err:.1e}", "/".join(f"{r:,.0f}" for r in rr_rss))]
    for r in rows:
        print(f"{r[0]:46s} {r[1]:>6} {r[2]:>9} {r[3]:>8} {r[4]:>11} {r[5]:>10} {r[6]:>12}")
    cold = "not timed" if t_cold is None else f"{t_cold:.1f} s"
    print(f"ratio ketasim / libRoadRunner: {k_rate / rr_rate:.1f}x; max |MADRS difference| between the engines "
          f"{between:.1e} points; ketasim {k_steps.mean():.1f} steps/patient, {us_step:.2f} us/step; "
          f"compile from empty cache {cold}, load from cache {t_load:.1f} s, problem build {t_build:.1f} s; "
          f"libRoadRunner load {rr_load:.1f} s")
    tol = trial_tolerance_error(args.n_iiv)
    print(f"trial tolerance (rtol {tol['rtol']:g}, atol {tol['atol']:g}, steps up to {tol['h_max_h']:g} h), "
          f"{tol['patients']} treatment-resistant patients with parameter variability, largest difference from "
          f"the reference:")
    for name, t in tol["trials"].items():
        print(f"  {name} ({t['failed']} failed): " + ", ".join(
            f"{column} {'-' if e is None else f'{e:.1e}'}" for column, e in t["max_abs_error"].items())
            + "".join(f"; {column}: {k} of {t['rows_compared']} rows differ" for column, k in t["rows_differing"].items()))
    e2e = end_to_end(args.n_e2e)
    e2e_rate = e2e["patients_per_s"]
    print(f"end to end, `ketasim.run_trial` (population sampling, schedules, solve, readouts, patients table, "
          f"statistics), {e2e['patients']} patients: {e2e_rate:,.0f} patients/s (median of "
          f"{', '.join(f'{r:,.0f}' for r in e2e['runs_patients_per_s'])}; first run {e2e['first_run_patients_per_s']:,.0f}) "
          f"= {e2e_rate / rr_rate:.1f}x libRoadRunner's solve loop above ({e2e_rate / rr_best:.1f}x its fastest run at "
          f"that tolerance, {rr_best:,.0f} patients/s), whose patients differ in covariates only")
    print(f"libRoadRunner on the same trial's first {args.n_rr} patients (their full parameter variability):", flush=True)
    same = same_trial_roadrunner(args.n_e2e, args.n_rr, xml, args.accuracy, args.atol)
    print(f"  {same['parameters_set_per_patient']} parameters set per patient")
    k_same = same["ketasim_trial_settings"]
    print(f"  libRoadRunner rtol {same['rtol']:g}: {same['patients_per_s']:,.0f} patients/s (fastest of "
          f"{', '.join(f'{r:,.0f}' for r in same['runs_patients_per_s'])}), max MADRS error "
          f"{same['max_madrs_error_points']:.1e} points; ketasim at the trials' rtol {k_same['rtol']:g}: "
          f"{k_same['mean_steps']:.1f} steps/patient, max MADRS error {k_same['max_madrs_error_points']:.1e} points")
    print(f"  end to end, the same trial both ways: {e2e_rate / same['patients_per_s']:.1f}x libRoadRunner's fastest "
          f"solve loop")
    report = {
        "end_to_end": {**e2e, "ratio_to_libroadrunner": e2e_rate / rr_rate,
                       "ratio_to_libroadrunner_fastest": e2e_rate / rr_best,
                       "same_trial_libroadrunner": same,
                       "ratio_to_libroadrunner_same_trial": e2e_rate / same["patients_per_s"]},
        "trial_tolerance": tol,
        "model": "ketasim full chain", "days": 28, "assessments_h": ASSESSMENTS_H, "atol": args.atol,
        "accuracy_points": args.accuracy,
        "reference": {"engine": "ketasim", "rtol": REFERENCE_TOL[0], "atol": REFERENCE_TOL[1], "patients": n_all,
                      "seconds": t_ref, "mean_steps": float(ref_steps.mean())},
        "ketasim": {"rtol": k_rtol, "patients": args.n, "seconds": t_k, "patients_per_s": k_rate, "threads": threads,
                    "mean_steps": float(k_steps.mean()), "us_per_step": us_step, "failed": int(np.sum(k_status != 0)),
                    "max_madrs_error_points": k_err, "compile_cold_s": t_cold, "load_cached_s": t_load,
                    "build_s": t_build, "peak_rss_mb": rss_main, "ladder": k_tried},
        "libroadrunner": {"rtol": rr_rtol, "patients": args.n_rr, "seconds": t_rr, "patients_per_s": rr_rate,
                          "fastest_patients_per_s_at_rtol": rr_best,
                          "processes": 2, "load_s": rr_load, "max_madrs_error_points": rr_err,
                          "failed": int(np.sum(~np.all(np.isfinite(rr_madrs), axis=1))),
                          "worker_peak_rss_mb": rr_rss, "ladder": rr_tried},
        "ratio": k_rate / rr_rate, "max_madrs_difference_between_engines_points": between,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
