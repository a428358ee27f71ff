"""Virtual-trial throughput of the JAX backend on a GPU (or whatever device JAX finds), against the
compiled CPU engine on the same patients.

The full model, 28 days after one 0.5 mg/kg/40 min racemic infusion, MADRS at 8 assessment times,
for 10^4 to 10^6 patients of the treatment-resistant population (parameter variability included),
solved at the trials' own tolerances (``ketasim.trial.run.TRIAL_SETTINGS`` with the per-state
tolerances a trial's chunk gets, ``chunk_settings``) unless ``--rtol``/``--atol`` say otherwise.
Problem building (Python: sampling, schedules) is done once for ``--distinct`` patients and the arrays
are tiled up to N, so the table measures the device solve; the build time per patient is printed
separately. Printed, and written to the JSON as each is measured (a run stopped at a time limit
keeps what it measured), in this order:

- accuracy, on ``--check`` patients: the largest MADRS difference from a tight CPU reference (rtol
  1e-11, atol 1e-14) of the JAX backend and of the CPU engine at the same settings (a trial promises
  0.01 points), between the two engines, and the patients whose steps differ between them;
- the compiled CPU engine on the ``--distinct`` patients at the same settings, on every core: the
  rate the device's is set against;
- transfers: the seconds to put one batch's inputs on the device and to fetch its states back;
- a step's parts (``step_parts``), each timed alone over a batch: the Jacobian, W's LU
  factorisation, a vector field, a solve; their sum per lane, beside the measured time per lane and
  step below, says which part to make faster if the device is far from the target;
- per size, smallest first: wall time, patients/s, the ratio to the CPU engine, failures, the time
  per lane and step, and the lanes' lockstep: in a vmapped batch every patient waits for the
  batch's slowest (per segment), so the mean over the maximum of the steps is at most the share of
  the lane-steps that do work.

    python benchmarks/gpu.py [--sizes 10000 100000 1000000] [--batch 100000] [--linear-algebra auto|dense|sparse]
                             [--json results/benchmarks/gpu.json]

Target (issue 17, part 4): 10^6 patients x 28 days in < 60 s on one H200. Without a GPU the script
still runs (on the CPU, slowly): use small sizes there, e.g. ``--sizes 64 --batch 64 --distinct 64
--check 16``.
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
REFERENCE_TOL = (1e-11, 1e-14)  # the tight reference, as benchmarks/trial_throughput.py's
TRIAL_ACCURACY_POINTS = 0.01  # what the trials' tolerance promises for the MADRS (TRIAL_SETTINGS' comment)


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


def solver_settings(problem, rtol: float | None, atol: float | None):
    """The trials' settings for ``problem`` (per-state tolerances included), with ``rtol``/``atol`` if given."""
    from ketasim.trial.run import TRIAL_SETTINGS, chunk_settings

    settings = chunk_settings(problem, TRIAL_SETTINGS)
    changes = {k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}
    return replace(settings, **changes) if changes else settings


def accuracy(check, settings, madrs: int, linear_algebra: str) -> dict:
    """Largest MADRS differences [points] on ``check``: JAX and CPU (same settings) from the tight
    reference, and JAX from CPU; whether both took the same steps. Also compiles the JAX solver (its
    time is returned)."""
    from ketasim.engine import SolverSettings, solve
    from ketasim.engine.jax_backend import solve_jax

    reference, status, _ = solve(check, SolverSettings(rtol=REFERENCE_TOL[0], atol=REFERENCE_TOL[1]), backend="cpu")
    assert np.all(status == 0), "the tight reference failed for some patients"
    t0 = time.perf_counter()
    jax_states, jax_status, jax_steps = solve_jax(check, settings, linear_algebra)
    compile_s = time.perf_counter() - t0
    cpu_states, cpu_status, cpu_steps = solve(check, settings, backend="cpu")

    def largest(a, b):
        return float(np.max(np.abs(a[:, :, madrs] - b[:, :, madrs])))

    return {"patients": check.n_patients, "compile [s]": compile_s,
            "failed": {"jax": int(np.sum(jax_status != 0)), "cpu": int(np.sum(cpu_status != 0))},
            "max_madrs_error_jax [points]": largest(jax_states, reference),
            "max_madrs_error_cpu [points]": largest(cpu_states, reference),
            "max_madrs_difference_jax_cpu [points]": largest(jax_states, cpu_states),
            "patients_with_other_steps_than_cpu": int(np.sum(jax_steps != cpu_steps))}


def cpu_engine(problem, settings) -> dict:
    """The compiled CPU engine on ``problem`` at ``settings``, every core, after a warm-up call."""
    import numba

    from ketasim.engine import solve

    solve(problem.subset(slice(0, 1)), settings, backend="cpu")  # kernel loaded
    t0 = time.perf_counter()
    _, status, steps = solve(problem, settings, backend="cpu")
    wall = time.perf_counter() - t0
    threads = numba.config.NUMBA_NUM_THREADS
    return {"patients": problem.n_patients, "threads": threads, "wall [s]": wall,
            "patients/s": problem.n_patients / wall, "mean_steps": float(steps.mean()),
            "us_per_step": wall * threads / max(1, int(steps.sum())) * 1e6, "failed": int(np.sum(status != 0))}


def transfers(problem) -> dict:
    """Seconds to put a batch's inputs on the device and to fetch states of its shape back."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        inputs = (problem.y0, problem.theta, problem.seg_t, problem.seg_u, problem.seg_jump)
        t0 = time.perf_counter()
        jax.block_until_ready([jax.device_put(a) for a in inputs])
        put_s = time.perf_counter() - t0
        states = jnp.zeros((problem.n_patients, problem.t_out.shape[0], problem.y0.shape[1]))
        jax.block_until_ready(states)
        t0 = time.perf_counter()
        np.asarray(states)
        get_s = time.perf_counter() - t0
    return {"patients": problem.n_patients, "put_inputs [s]": put_s, "fetch_states [s]": get_s}


def step_parts(problem, batch: int, linear_algebra: str, repeats: int = 3) -> dict:
    """What one Rodas4 step of the JAX backend is made of, each part vmapped over a ``batch`` of
    patients at their initial state with their first dose's inputs and timed alone (best of
    ``repeats``, after compiling): the Jacobian (forward mode), W's LU factorisation
    (``linear_algebra``: "dense" or "sparse", as the solver's), one vector field and one LU solve. A
    step takes one Jacobian and factorisation, seven vector fields and six solves
    (``jax_backend._rodas4_step``); set beside the measured time per lane and step, the sum says
    whether the linear algebra, the model or what lies around them (the lanes' lockstep, the step
    control, the loop) sets the device's time."""
    import jax
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    from ketasim.engine.jax_backend import sparse_factor, sparse_solve, vector_field, w_structure
    from ketasim.engine.tableau import GAMMA

    rhs = vector_field(problem.model, problem.parameter_names)
    jac = jax.jacfwd(rhs, argnums=0)
    structure = w_structure(problem.model, problem.parameter_names) if linear_algebra == "sparse" else None
    full = tiled(problem, batch)
    dosing = np.argmax(np.any(full.seg_u != 0.0, axis=2), axis=1)  # each patient's first segment with a dose running
    with jax.enable_x64(True):
        y, theta = jnp.asarray(full.y0), jnp.asarray(full.theta)
        u = jnp.asarray(full.seg_u[np.arange(batch), dosing])
        n = y.shape[1]
        parts = {
            "jacobian": (jax.jit(jax.vmap(jac)), (y, theta, u)),
            "vector_field": (jax.jit(jax.vmap(rhs)), (y, theta, u)),
        }
        w = jax.jit(jax.vmap(lambda j: jnp.eye(n) / (0.1 * GAMMA) - j))(parts["jacobian"][0](y, theta, u))
        if linear_algebra == "sparse":
            parts["lu_factor"] = (jax.jit(jax.vmap(lambda w_: sparse_factor(structure, w_))), (w,))
            vals, inv, _ = parts["lu_factor"][0](w)
            parts["lu_solve"] = (jax.jit(jax.vmap(lambda v, i, b: sparse_solve(structure, v, i, b))), (vals, inv, y))
        else:
            parts["lu_factor"] = (jax.jit(jax.vmap(jsl.lu_factor)), (w,))
            lu, piv = parts["lu_factor"][0](w)
            parts["lu_solve"] = (jax.jit(jax.vmap(lambda lu_, piv_, b: jsl.lu_solve((lu_, piv_), b))), (lu, piv, y))
        seconds = {}
        for name, (fn, args) in parts.items():
            jax.block_until_ready(fn(*args))  # compiled
            best = np.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(*args))
                best = min(best, time.perf_counter() - t0)
            seconds[name] = best
    per_lane_ns = {name: 1e9 * t / batch for name, t in seconds.items()}
    step = (per_lane_ns["jacobian"] + per_lane_ns["lu_factor"] + 7 * per_lane_ns["vector_field"]
            + 6 * per_lane_ns["lu_solve"])
    return {"batch": batch, "linear_algebra": linear_algebra, "per_lane_ns": per_lane_ns, "step_from_parts_ns": step,
            "linear_algebra_share": (per_lane_ns["lu_factor"] + 6 * per_lane_ns["lu_solve"]) / step}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--batch", type=int, default=100_000, help="patients per device call")
    ap.add_argument("--distinct", type=int, default=4096, help="distinct patients built, then tiled; the CPU engine "
                                                                 "is timed on them")
    ap.add_argument("--check", type=int, default=64, help="patients checked against the tight reference")
    ap.add_argument("--rtol", type=float, default=None, help="default: the trials' (TRIAL_SETTINGS)")
    ap.add_argument("--atol", type=float, default=None, help="default: the trials' (TRIAL_SETTINGS)")
    ap.add_argument("--linear-algebra", choices=("auto", "dense", "sparse"), default="auto",
                    help="how the JAX backend factors W (ketasim.engine.jax_backend; auto: sparse on an accelerator, "
                         "dense on a CPU)")
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/gpu.json"))
    args = ap.parse_args()

    import jax

    from ketasim.engine.jax_backend import default_linear_algebra, solve_jax

    linear_algebra = default_linear_algebra() if args.linear_algebra == "auto" else args.linear_algebra

    device = jax.devices()[0]
    problem, build_s = build(args.distinct)
    settings = solver_settings(problem, args.rtol, args.atol)
    madrs = problem.model.state_names.index("clinical.severity")
    print(f"device: {device.platform} ({device.device_kind}); settings: rtol {settings.rtol:g}, atol {settings.atol:g}, "
          f"steps up to {settings.h_max:g} h, {len(settings.loose_states)} idle states at {settings.loose_factor:g}x, "
          f"drug amounts in {settings.amount_volume:g} L; W factored {linear_algebra}", flush=True)

    record = {"device": f"{device.platform} {device.device_kind}", "linear_algebra": linear_algebra,
              "rtol": settings.rtol, "atol": settings.atol, "h_max [h]": settings.h_max,
              "loose_states": len(settings.loose_states), "loose_factor": settings.loose_factor,
              "amount_volume [L]": settings.amount_volume, "build [ms/patient]": build_s * 1e3,
              "python": platform.python_version(), "runs": []}

    def save() -> None:
        """The JSON as it stands: a run stopped at its time limit keeps what it measured."""
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))

    check = accuracy(problem.subset(slice(0, min(args.check, problem.n_patients))), settings, madrs, linear_algebra)
    record.update({"compile [s]": check["compile [s]"], "accuracy": check,
                   "max_madrs_difference_vs_cpu [points]": check["max_madrs_difference_jax_cpu [points]"]})
    save()
    print(f"accuracy on {check['patients']} patients (MADRS, from the tight reference): jax "
          f"{check['max_madrs_error_jax [points]']:.2e}, cpu {check['max_madrs_error_cpu [points]']:.2e} points "
          f"(the trials' promise: {TRIAL_ACCURACY_POINTS}); |jax - cpu| {check['max_madrs_difference_jax_cpu [points]']:.2e}; "
          f"{check['patients_with_other_steps_than_cpu']} patients with other steps than the CPU's; "
          f"compile {check['compile [s]']:.1f} s", flush=True)
    cpu = record["cpu_engine"] = cpu_engine(problem, settings)
    save()
    print(f"CPU engine: {cpu['patients']:,d} patients, {cpu['threads']} threads: {cpu['patients/s']:,.0f} patients/s "
          f"({cpu['mean_steps']:.1f} steps/patient, {cpu['us_per_step']:.2f} us/step)", flush=True)
    batch = min(args.batch, max(args.sizes))
    moved = record["transfers"] = transfers(tiled(problem, batch))
    print(f"transfers of a {moved['patients']:,d}-patient batch: inputs {moved['put_inputs [s]']:.3f} s, "
          f"states back {moved['fetch_states [s]']:.3f} s; build {build_s * 1e3:.2f} ms/patient (CPU, Python)", flush=True)
    parts = record["step_parts"] = step_parts(problem, batch, linear_algebra)
    save()
    ns = parts["per_lane_ns"]
    print(f"one step per lane, from its parts ({parts['batch']:,d} lanes): Jacobian {ns['jacobian']:,.0f} ns, "
          f"LU factorisation {ns['lu_factor']:,.0f}, 7 vector fields {7 * ns['vector_field']:,.0f}, 6 solves "
          f"{6 * ns['lu_solve']:,.0f}: {parts['step_from_parts_ns']:,.0f} ns (linear algebra "
          f"{parts['linear_algebra_share']:.0%})", flush=True)

    for n in sorted(args.sizes):
        batch = min(args.batch, n)
        full = tiled(problem, batch)
        _, _, steps = solve_jax(full, settings, linear_algebra)  # compile for this batch shape; the lanes' steps
        t0 = time.perf_counter()
        failed, done = 0, 0
        while done < n:
            size = min(batch, n - done)
            part = full if size == batch else full.subset(slice(0, size))
            _, status, _ = solve_jax(part, settings, linear_algebra)
            failed += int(np.sum(status != 0))
            done += size
        wall = time.perf_counter() - t0
        row = {"patients": n, "batch": batch, "wall [s]": wall, "patients/s": n / wall,
               "ratio_to_cpu_engine": n / wall / cpu["patients/s"], "failed": failed,
               "mean_steps": float(steps.mean()), "max_steps": int(steps.max()),
               "lockstep_share_at_most": float(steps.mean() / max(1, steps.max())),
               # every lane runs its batch's slowest lane's steps
               "measured_per_lane_step_ns": 1e9 * wall / (n * max(1, int(steps.max())))}
        record["runs"].append(row)
        save()
        print(f"{n:>10,d} patients  {wall:9.2f} s  {n / wall:12,.0f} patients/s  {row['ratio_to_cpu_engine']:6.2f}x "
              f"the CPU engine  failed {failed}  steps mean {row['mean_steps']:.1f}, max {row['max_steps']} "
              f"(lanes working at most {row['lockstep_share_at_most']:.0%}); "
              f"{row['measured_per_lane_step_ns']:,.0f} ns per lane and step", flush=True)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
