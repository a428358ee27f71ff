"""Is the model well posed everywhere a user can reach? Failure and NaN counts at full scale.

Two measurements (issue 13, part 3):

1. A Sobol' design over every parameter's declared range (``--samples`` base samples, N * (D + 2)
   runs; 256 gives more than 50,000), one 0.5 mg/kg/40 min infusion, every model output and
   readout (fMRI connectivity included) at 4 h, 24 h and 7 d: solver failures and non-finite values
   (``ketasim.sensitivity.wellposed.design_failures``).
2. A virtual trial of ``--patients`` treatment-resistant patients (default 100,000) with eight nasal
   esketamine doses (56 mg twice weekly for four weeks, followed to week 8): failed patients by reason
   and undefined values in the patients table (``summary.json``'s ``patients`` block).

    python benchmarks/well_posed.py [--samples 256] [--patients 100000] [--parts design,trial] [--json PATH]

Prints a table and writes JSON (default ``results/benchmarks/well_posed.json``; a run of one part
keeps the other part's earlier result in the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

INFUSION = {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}],
            "simulation": {"duration": "7 d"}}


def nasal_trial(n: int) -> dict:
    return {"trial": {"name": "eight nasal doses", "seed": 13,
                      "assessments": ["1 d", "1 w", "2 w", "3 w", "4 w", "6 w", "8 w"]},
            "population": {"n": n, "preset": "treatment-resistant"},
            "arm": [{"name": "esketamine", "dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg",
                                                     "start": "0 d", "every": "3.5 d", "count": 8}]}]}


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=256, help="Sobol' base samples (runs = N * (D + 2))")
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--parts", default="design,trial", help="which measurements: design, trial or both")
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/well_posed.json"))
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts or parts - {"design", "trial"}:
        ap.error(f"--parts: {args.parts!r}; allowed: design, trial (comma-separated)")
    from ketasim.sensitivity.wellposed import design_failures
    from ketasim.trial import run_trial

    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    if "design" in parts:
        t0 = time.perf_counter()
        results["design"] = design_failures(INFUSION, samples=args.samples, times_h=(4.0, 24.0, 168.0))
        results["design"]["wall [s]"] = time.perf_counter() - t0
    if "trial" in parts:
        t0 = time.perf_counter()
        summary = run_trial(nasal_trial(args.patients)).summary
        arm = summary["arms"]["esketamine"]["assessments"]
        results["trial"] = {"patients": summary["patients"], "wall [s]": time.perf_counter() - t0,
                            "week 8 MADRS change [points]": arm[-1]["madrs_change [points]"],
                            "response at week 4": arm[4]["response_rate"]}
    print("| measurement | runs | solver failures | non-finite values | wall [s] |")
    print("|---|---:|---:|---:|---:|")
    if design := results.get("design"):
        print(f"| Sobol' design over all {design['parameters']} parameters' ranges, one infusion, "
              f"{design['outputs']} outputs at 4 h, 24 h, 7 d | {design['runs']:,} | {design['solver_failures']} | "
              f"{design['non_finite_values']} | {design['wall [s]']:.0f} |")
        if design["failed_samples_at_range_edges"]:
            print("failed samples at range edges:", design["failed_samples_at_range_edges"])
    if trial := results.get("trial"):
        p = trial["patients"]
        print(f"| {p['simulated']:,} treatment-resistant patients, eight nasal doses, 8 weeks | {p['simulated']:,} | "
              f"{p['failed']} | {sum(p['undefined_values'].values())} | {trial['wall [s]']:.0f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
