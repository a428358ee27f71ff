"""Drawing virtual patients: what the population sampler costs per patient.

Times `PopulationSampler.draw_cohort` (covariates, screening, parameter deviations with their range
and constraint redraws) for the treatment-resistant preset, warm (keys cached), best of several
repeats, and the parameter deviations alone. A trial's end-to-end cost per patient is the yardstick:
`benchmarks/trial_throughput.py` measures about 12,000 patients/s on this kind of machine with two
solver threads, i.e. about 80 us per patient, of which drawing is a part.

    python benchmarks/population_draws.py [--patients 12800] [--repeats 5] [--json results/benchmarks/population_draws.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ketasim.params import load_parameters
from ketasim.population import PopulationSampler, PopulationSpec
from ketasim.population.sample import BLOCK

ROOT = Path(__file__).resolve().parents[1]


def best_seconds(call, repeats: int) -> float:
    call()  # warm: keys cached, numpy paths loaded
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100 * BLOCK)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "benchmarks" / "population_draws.json")
    args = parser.parse_args()

    params = load_parameters()
    sampler = PopulationSampler(PopulationSpec.from_dict({"n": args.patients, "preset": "treatment-resistant"}), params)
    n, blocks = args.patients, -(-args.patients // BLOCK)
    whole = best_seconds(lambda: sampler.draw_cohort(7, 0, range(n)), args.repeats)
    deviations = best_seconds(lambda: [sampler._parameters(7, 0, b, BLOCK) for b in range(blocks)], args.repeats)
    rows = [("draw_cohort (covariates, screening, parameters)", whole), ("parameter deviations alone", deviations)]
    print(f"{n} patients ({blocks} blocks of {BLOCK}), {len(sampler.varied)} varied parameters, best of {args.repeats}")
    print(f"{'part':<50} {'ms/block':>9} {'us/patient':>11} {'patients/s':>11}")
    result = {"patients": n, "varied_parameters": len(sampler.varied), "repeats": args.repeats, "parts": {}}
    for name, seconds in rows:
        per_block_ms, per_patient_us = seconds / blocks * 1e3, seconds / n * 1e6
        print(f"{name:<50} {per_block_ms:>9.2f} {per_patient_us:>11.1f} {n / seconds:>11,.0f}")
        result["parts"][name] = {"ms_per_block": per_block_ms, "us_per_patient": per_patient_us,
                                 "patients_per_s": n / seconds}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
