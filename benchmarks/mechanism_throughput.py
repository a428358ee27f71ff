"""Trial throughput by mechanism variant: does switching hypotheses on cost speed?

Every variant is the same compiled kernel with different switch parameters, so the cost per step
cannot differ; what can differ is the number of steps (stiffer dynamics with more routes on). This
runs the same virtual trial (one 0.5 mg/kg/40 min racemic infusion, 28 days, seven assessments,
treatment-resistant preset with full parameter variability) with ``run_trial`` under the calibrated
set, with every mechanism on, and with each route alone, and reports patients per second (the best
of ``--repeats`` runs after one warm-up) and the ratio to the calibrated set.

    python benchmarks/mechanism_throughput.py [--n 3000] [--repeats 2] [--json PATH]

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

TRIAL = {"trial": {"name": "throughput", "seed": 11, "assessments": ["4 h", "24 h", "3 d", "7 d", "14 d", "21 d", "28 d"]},
         "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                                 "duration": "40 min"}]}]}


def main() -> None:
    from ketasim import run_trial
    from ketasim.model.mechanisms import DEFAULT_MECHANISMS, MECHANISMS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="patients per variant")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per variant (the best counts)")
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/mechanism_throughput.json"))
    args = ap.parse_args()
    trial = {**TRIAL, "population": {"n": args.n, "preset": "treatment-resistant"}}
    variants = {"calibrated": DEFAULT_MECHANISMS, "every mechanism": tuple(MECHANISMS)}
    variants |= {f"{m.name} only": (m.name,) for m in MECHANISMS.values() if m.kind == "route"}
    run_trial({**trial, "population": {"n": 50, "preset": "treatment-resistant"}})  # compile / load the kernel
    rows = []
    for name, mechanisms in variants.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run_trial(trial, mechanisms=mechanisms)
            times.append(time.perf_counter() - start)
        rows.append({"variant": name, "mechanisms": list(mechanisms), "patients": args.n,
                     "best wall time [s]": min(times), "patients/s": args.n / min(times)})
    base = rows[0]["patients/s"]
    for r in rows:
        r["ratio to calibrated"] = r["patients/s"] / base
    print(f"{'variant':<32} {'wall [s]':>9} {'patients/s':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['variant']:<32} {r['best wall time [s]']:>9.2f} {r['patients/s']:>11.0f} {r['ratio to calibrated']:>6.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                               "platform": platform.platform()}}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
