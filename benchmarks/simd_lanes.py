"""Would SIMD lanes over patients pay in the generated kernel? (issue 17, part 1)

The kernel's per-step work is three generated functions (``rhs``, six times a step; ``w_matrix``, once;
``w_solve``, six times), straight-line code for one patient. This benchmark rewrites each into lane
form, several patients in one call, and times it against the scalar function called once per patient,
on the same inputs (random states and parameters around 1, results compared):

* ``loop``: the body inside ``for l in range(LANES)`` over lane-major flat arrays (``y[i * LANES + l]``),
  the form LLVM's loop vectoriser needs (unit stride, trip count known when compiled);
* ``unrolled`` (with ``--unrolled``): each statement written once per lane, next to each other
  (``w_solve`` only), the form LLVM's SLP vectoriser packs; numba takes minutes to compile it (236 s
  for 4 lanes on the 2-core machine).

It also counts packed (``v...pd``) against scalar (``v...sd``) double-precision instructions in the
machine code numba produced (moves and broadcasts included, so a rough count), which says whether
any vectorising happened at all. ``same`` is whether the lane results equal the scalar ones to 1e-12.

    python benchmarks/simd_lanes.py [--lanes 8] [--reps 20000] [--unrolled] [--json PATH]

Prints a table and writes JSON. Numba compiles these functions afresh (about a minute).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from ketasim.engine.sparse_lu import NJIT as _KERNEL_NJIT

#: the kernel's own compile flags (ketasim.engine.sparse_lu.NJIT), without numba's disk cache
NJIT = _KERNEL_NJIT.replace("cache=True", "cache=False")
#: how often each function runs in one Rodas4 step (the per-step total weights them so)
CALLS_PER_STEP = {"rhs": 6, "w_matrix": 1, "w_solve (loop)": 6}


def _function(source: str, name: str) -> str:
    """The generated function ``name`` (decorator to its return) from the kernel's source."""
    match = re.search(rf"^@numba[^\n]*\ndef {name}\(.*?\n    return (None|True)\n", source, re.S | re.M)
    if match is None:
        raise SystemExit(f"the kernel has no function {name}")
    return match.group(0)


def _body(function: str) -> list[str]:
    return [line for line in function.split("\n")[2:] if line.strip() and line.strip() != "return None"]


def _lane_index(line: str, arrays: str, lane: str) -> str:
    return re.sub(rf"\b({arrays})\[(\d+)\]", rf"\1[\2 * LANES + {lane}]", line)


def loop_form(function: str, name: str, args: str) -> str:
    lines = [NJIT, f"def {name}({args}):", "    for l in range(LANES):"]
    for line in _body(function):
        line = _lane_index(line, "y|p|u|out|lu|b", "l")
        # w_matrix's diagonal entries read the scalar fac, now one per lane
        line = line.replace("fac - (", "fac[l] - (")
        if line.rstrip().endswith("= fac"):
            line = line.rstrip()[:-3] + "fac[l]"
        lines.append("    " + line)
    return "\n".join([*lines, "    return None"])


def unrolled_form(function: str, name: str, args: str, lanes: int) -> str:
    lines = [NJIT, f"def {name}({args}):"]
    for line in _body(function):
        for lane in range(lanes):
            lines.append(re.sub(r"\b(lu|b)\[(\d+)\]",
                                lambda m, lane=lane: f"{m.group(1)}[{int(m.group(2)) * lanes + lane}]", line))
    return "\n".join([*lines, "    return None"])


DRIVERS = """
@numba.njit(cache=False)
def rhs_scalar(Y, P, U, OUT, reps):
    for r in range(reps):
        for l in range(Y.shape[0]):
            rhs(Y[l], P[l], U[l], OUT[l])


@numba.njit(cache=False)
def rhs_loop(Y, P, U, OUT, reps):
    for r in range(reps):
        rhs_lanes(Y, P, U, OUT)


@numba.njit(cache=False)
def w_matrix_scalar(Y, P, U, FAC, LU, reps):
    for r in range(reps):
        for l in range(Y.shape[0]):
            w_matrix(Y[l], P[l], U[l], FAC[l], LU[l])


@numba.njit(cache=False)
def w_matrix_loop(Y, P, U, FAC, LU, reps):
    for r in range(reps):
        w_matrix_lanes(Y, P, U, FAC, LU)


@numba.njit(cache=False)
def w_solve_scalar(LU, B, reps):
    for r in range(reps):
        for l in range(B.shape[0]):
            w_solve(LU[l], B[l])


@numba.njit(cache=False)
def w_solve_loop(LU, B, reps):
    for r in range(reps):
        w_solve_lanes(LU, B)


@numba.njit(cache=False)
def w_solve_unrolled_driver(LU, B, reps):
    for r in range(reps):
        w_solve_unrolled(LU, B)
"""


def build(lanes: int):
    """The model's kernel source with lane forms and timing drivers, compiled as a module."""
    import ketasim
    from ketasim.engine import build_problem, codegen
    from ketasim.model.system import default_model
    from ketasim.scenario import Scenario

    model = default_model()
    problem = build_problem(Scenario.from_dict({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "35 mg"}]}),
                            ketasim.load_parameters(), model)
    source = Path(codegen.compiled_kernel(model, problem.parameter_names).__file__).read_text()
    header = source.split("@numba")[0]
    functions = {name: _function(source, name) for name in ("rhs", "w_matrix", "w_solve")}
    text = "\n\n".join([
        header + f"LANES = {lanes}",
        *functions.values(),
        loop_form(functions["rhs"], "rhs_lanes", "y, p, u, out"),
        loop_form(functions["w_matrix"], "w_matrix_lanes", "y, p, u, fac, lu"),
        loop_form(functions["w_solve"], "w_solve_lanes", "lu, b"),
        unrolled_form(functions["w_solve"], "w_solve_unrolled", "lu, b", lanes),
        DRIVERS,
    ])
    path = Path(tempfile.mkdtemp()) / "ketasim_simd_lanes.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("ketasim_simd_lanes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _instructions(dispatcher) -> dict[str, int]:
    asm = "\n".join(dispatcher.inspect_asm().values())
    return {"packed_double": len(re.findall(r"\bv\w+pd\b", asm)), "scalar_double": len(re.findall(r"\bv\w+sd\b", asm))}


def _timed(fn, args, reps: int) -> float:
    fn(*args, 1)  # compile
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        fn(*args, reps)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, default=8, help="patients per call (8 doubles: one AVX-512 register)")
    ap.add_argument("--reps", type=int, default=20_000)
    ap.add_argument("--unrolled", action="store_true", help="also the unrolled w_solve (minutes of compiling)")
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/simd_lanes.json"))
    args = ap.parse_args()
    lanes, reps = args.lanes, args.reps
    g = build(lanes)
    rng = np.random.default_rng(0)
    n, n_par, n_in = g.N_STATES, g.N_PARAMS + g.N_DERIVED, max(g.N_INPUTS, 1)
    y, p, u = rng.uniform(0.5, 1.5, (lanes, n)), rng.uniform(0.5, 1.5, (lanes, n_par)), rng.uniform(0.5, 1.5, (lanes, n_in))
    fac = rng.uniform(10.0, 20.0, lanes)
    lu = rng.uniform(0.0, 0.01, (lanes, g.LU_SIZE))
    b = rng.uniform(size=(lanes, n))

    def lane_major(a):
        return np.ascontiguousarray(a.T).ravel()

    cases = {
        "rhs": (g.rhs_scalar, (y, p, u, np.zeros((lanes, n))), g.rhs_loop,
                (lane_major(y), lane_major(p), lane_major(u), np.zeros(n * lanes)), g.rhs_lanes),
        "w_matrix": (g.w_matrix_scalar, (y, p, u, fac, lu.copy()), g.w_matrix_loop,
                     (lane_major(y), lane_major(p), lane_major(u), fac, lane_major(lu)), g.w_matrix_lanes),
        "w_solve (loop)": (g.w_solve_scalar, (lu, b.copy()), g.w_solve_loop, (lane_major(lu), lane_major(b)), g.w_solve_lanes),
    }
    if args.unrolled:
        cases["w_solve (unrolled)"] = (g.w_solve_scalar, (lu, b.copy()), g.w_solve_unrolled_driver,
                                       (lane_major(lu), lane_major(b)), g.w_solve_unrolled)
    rows = []
    for name, (scalar, scalar_args, lane, lane_args, kernel) in cases.items():
        # one call each on fresh copies: the lane form must give what the scalar one gives
        s_out, l_out = [a.copy() for a in scalar_args], [a.copy() for a in lane_args]
        scalar(*s_out, 1)
        lane(*l_out, 1)
        agree = bool(np.allclose(s_out[-1], l_out[-1].reshape(-1, lanes).T, rtol=1e-12, atol=0.0, equal_nan=True))
        t_scalar = _timed(scalar, scalar_args, reps) / (reps * lanes) * 1e9
        t_lanes = _timed(lane, lane_args, reps) / (reps * lanes) * 1e9
        rows.append({"function": name, "scalar_ns_per_patient": t_scalar, "lanes_ns_per_patient": t_lanes,
                     "speed_up": t_scalar / t_lanes, "same_result": agree, **_instructions(kernel)})
    print(f"lanes = {lanes}, {reps} repetitions, best of 3; ns per patient and call")
    print(f"{'function':<20} {'scalar':>9} {'lanes':>9} {'speed-up':>9} {'packed':>7} {'scalar':>7} same")
    for r in rows:
        print(f"{r['function']:<20} {r['scalar_ns_per_patient']:>9.1f} {r['lanes_ns_per_patient']:>9.1f} "
              f"{r['speed_up']:>9.2f} {r['packed_double']:>7} {r['scalar_double']:>7} {r['same_result']}")
    per_step = {kind: sum(CALLS_PER_STEP[r["function"]] * r[f"{kind}_ns_per_patient"] for r in rows
                          if r["function"] in CALLS_PER_STEP) for kind in ("scalar", "lanes")}
    print(f"{'per Rodas4 step':<20} {per_step['scalar']:>9.0f} {per_step['lanes']:>9.0f} "
          f"{per_step['scalar'] / per_step['lanes']:>9.2f}   (rhs x6, w_matrix x1, w_solve x6)")
    import numba

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"lanes": lanes, "reps": reps, "rows": rows, "per_step_ns": per_step, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "numba": numba.__version__,
        "svml": bool(numba.config.USING_SVML)}}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
