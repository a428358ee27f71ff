"""Speed of the sensitivity analyses on MADRS 24 h after one racemic infusion (examples/single_infusion.toml,
28 days simulated).

1. Local normalised sensitivities of MADRS@24h to every parameter (autodiff, finite differences for
   the few acting through the dose schedule or covariates): the first call in a fresh process
   (``cold`` with ``--cold``: empty kernel and JAX caches, so compilation included; otherwise loaded
   from the disk cache), then a second call in the same process.
2. Sobol' first and total order on MADRS@24h over ``--parameters`` (default: 20 parameters across
   the layers) with SALib's Saltelli/Sobol' sampling: N base samples give N * (D + 2) model runs,
   run as batches of the compiled engine; optionally again on a local Dask cluster (``--workers``).

    KETASIM_CACHE_DIR=/tmp/kcache python benchmarks/sensitivity_speed.py [--n 1000] [--cold] [--workers 2]

Target (issue "Fitting and sensitivity"): a 1,000-sample Sobol analysis on a 24-h endpoint in minutes.
Writes results/benchmarks/sensitivity.json. For research and teaching only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = "examples/single_infusion.toml"
OUTPUT = "clinical.madrs@24h"
#: a spread over the chain: PK, receptor, synapse, plasticity, inflammation, circuit, clinical
DEFAULT_PARAMETERS = [
    "pk.cl_s_ketamine", "pk.v_central", "pk.kpuu_brain", "pk.keo_ketamine", "pk.fu_ketamine",
    "receptor.ki_s_ketamine", "receptor.trapping_fraction", "receptor.p_open_pyramidal",
    "synapse.surge_gain", "synapse.k_glutamate",
    "plasticity.bdnf_translation_gain", "plasticity.k_spine_formation", "plasticity.k_spine_loss",
    "plasticity.mtorc1_gain", "plasticity.k_protein_synthesis",
    "inflammation.k_il6", "circuit.w_vmpfc_to_amygdala",
    "clinical.strength_symptom_gain", "clinical.expectancy_sustained_max", "clinical.k_severity",
]

_LOCAL_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import ketasim.sensitivity as ks
t1 = time.perf_counter(); r = ks.local_sensitivity({scenario!r}, [{output!r}])
t2 = time.perf_counter(); ks.local_sensitivity({scenario!r}, [{output!r}])
t3 = time.perf_counter()
print(json.dumps({{"first_call [s]": t2 - t1, "second_call [s]": t3 - t2, "import [s]": t1 - t0,
                   "parameters": r.settings["parameters"], "autodiff": r.settings["autodiff"],
                   "finite_differences": r.settings["finite_differences"],
                   "top": [p for p, _ in r.ranking(r.outputs[0]["label"])[:5]]}}))
"""


def local_timing(cold: bool) -> dict:
    """Run the local analysis in a child process (a fresh process, so in-memory caches do not count)."""
    env = dict(os.environ)
    tmp = None
    if cold:
        tmp = tempfile.mkdtemp(prefix="ketasim-cold-cache-")
        env["KETASIM_CACHE_DIR"] = tmp
    code = _LOCAL_CHILD.format(scenario=SCENARIO, output=OUTPUT)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["caches"] = "empty (compilation included)" if cold else "loaded from disk"
    return out


def sobol_timing(n: int, parameters: list[str], workers: int | None) -> dict:
    import ketasim.sensitivity as ks

    started = time.perf_counter()
    r = ks.sobol(SCENARIO, [OUTPUT], samples=n, parameters=parameters, workers=workers)
    wall = time.perf_counter() - started
    label = r.outputs[0]["label"]
    return {"N": n, "D": r.settings["parameters (D)"], "model_runs": r.settings["model_runs"], "workers": workers,
            "wall [s]": wall, "runs_per_s": r.settings["model_runs"] / wall,
            "top_ST": [(p, round(v, 3)) for p, v in r.ranking(label)[:5]],
            "sum_S1": sum(v["S1"] for v in r.indices[label].values()), "notes": r.notes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="Sobol base samples N (N * (D + 2) runs)")
    ap.add_argument("--parameters", nargs="*", default=None, help="parameters for the Sobol analysis")
    ap.add_argument("--cold", action="store_true", help="time the local analysis from empty caches")
    ap.add_argument("--workers", type=int, default=None, help="also run the Sobol analysis on a local Dask cluster")
    ap.add_argument("--json", default="results/benchmarks/sensitivity.json")
    args = ap.parse_args()

    parameters = args.parameters or DEFAULT_PARAMETERS
    local = local_timing(args.cold)
    runs = [sobol_timing(args.n, parameters, None)]
    if args.workers:
        runs.append(sobol_timing(args.n, parameters, args.workers))

    print(f"local sensitivities of {OUTPUT}, {local['parameters']} parameters ({local['autodiff']} autodiff, "
          f"{local['finite_differences']} finite differences), caches {local['caches']}:")
    print(f"  first call {local['first_call [s]']:.1f} s, second call {local['second_call [s]']:.1f} s; top: {local['top']}")
    print("\n| analysis | N | D | model runs | workers | wall [s] | runs/s |\n|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| Sobol S1+ST, {OUTPUT} | {r['N']} | {r['D']} | {r['model_runs']:,} | {r['workers'] or 1} "
              f"| {r['wall [s]']:.1f} | {r['runs_per_s']:,.0f} |")
    print(f"top ST: {runs[0]['top_ST']}")
    result = {"machine": platform.platform(), "cpus": os.cpu_count(), "scenario": SCENARIO, "output": OUTPUT,
              "local": local, "sobol": runs, "parameters": parameters,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
