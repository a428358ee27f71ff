"""Speed of `ketasim fit`: a single-patient PK fit on a synthetic plasma data set, and (with
``--hierarchical``) a mixed-effects fit of the shipped 30-ID example event data set.

Plasma ketamine after a 35 mg IV bolus, simulated from known parameters (racemic R-clearance x1.25,
central volume x0.85) with 5 % noise at 9 times; two parameters fitted by maximum likelihood
(2 starts) with profile-likelihood CIs, as `ketasim fit` does. Timed cold (empty kernel and JAX
caches: includes compiling the Jacobian) and warm (second process, caches on disk).

The hierarchical fit: `ketasim fit --dataset examples/datasets/study30.csv --outputs
pk.ketamine_plasma --params pk.cl_s_ketamine,pk.v_central --hierarchical --vpc-replicates 0` (30 IDs
in three designs, random effects on both parameters; the fit without the report's predictive check),
timed warm (after the single-patient runs filled the caches;
each design compiles its own Jacobian the first time).

    python benchmarks/fit_speed.py [--hierarchical] [--json results/benchmarks/fit_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

BOLUS = ('[[dose]]\ndrug = "racemic-ketamine"\nroute = "iv"\namount = "35 mg"\n'
         '[simulation]\nduration = "8 h"\noutput_every = "5 min"\n')
NAMES = "pk.cl_r_ketamine,pk.v_central"


def synthetic_data(folder: Path) -> Path:
    import ketasim

    (folder / "bolus.toml").write_text(BOLUS)
    params = ketasim.load_parameters()
    truth = params.replace(pk__cl_r_ketamine=params["pk.cl_r_ketamine"].value * 1.25,
                           pk__v_central=params["pk.v_central"].value * 0.85)
    res = ketasim.simulate(folder / "bolus.toml", params=truth)
    rng = np.random.default_rng(7)
    rows = [{"scenario": "bolus.toml", "quantity": "pk.ketamine_plasma", "time": f"{t} h",
             "value": res.at("pk.ketamine_plasma", t) * (1 + 0.05 * rng.standard_normal()), "unit": "ng/mL",
             "sd": 0.05 * res.at("pk.ketamine_plasma", t)} for t in (0.1, 0.25, 0.5, 1, 2, 3, 4, 6, 8)]
    pd.DataFrame(rows).to_csv(folder / "data.csv", index=False)
    return folder / "data.csv"


def timed_fit(data: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "KETASIM_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ketasim", "fit", str(data), "--params", NAMES, "--out", str(out),
                    "--starts", "2"], check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "datasets" / "study30.csv"


def timed_hierarchical_fit(out: Path, cache: Path) -> tuple[float, dict]:
    env = {**os.environ, "KETASIM_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ketasim", "fit", "--dataset", str(EXAMPLE), "--outputs", "pk.ketamine_plasma",
                    "--params", "pk.cl_s_ketamine,pk.v_central", "--hierarchical", "--vpc-replicates", "0",
                    "--out", str(out)],
                   check=True, env=env, capture_output=True)
    return time.perf_counter() - t0, json.loads((out / "fit.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/fit_speed.json"))
    ap.add_argument("--hierarchical", action="store_true", help="also the 30-ID mixed-effects fit (minutes)")
    args = ap.parse_args()
    hierarchical = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = synthetic_data(tmp)
        cold = timed_fit(data, tmp / "cold", tmp / "cache")
        warm = timed_fit(data, tmp / "warm", tmp / "cache")
        fit = json.loads((tmp / "warm" / "fit.json").read_text())
        if args.hierarchical:
            first, _ = timed_hierarchical_fit(tmp / "h1", tmp / "cache")
            second, summary = timed_hierarchical_fit(tmp / "h2", tmp / "cache")
            hierarchical = {"first [s]": first, "second [s]": second, "iterations": summary["iterations"],
                            "n_patients": summary["n_patients"], "n_observations": summary["n_observations"],
                            "estimates": summary["estimates"], "residual_scale": summary["residual_scale"]}
    print("| run | wall [s] |\n|---|---:|")
    print(f"| cold (compiles the Jacobian) | {cold:.1f} |\n| warm (caches on disk) | {warm:.1f} |")
    for name, e in fit["estimates"].items():
        print(f"{name}: {e['value']:.4g} {e['unit']} (profile 95 % CI {e['profile_ci95']})")
    if hierarchical is not None:
        print(f"| hierarchical, 30 IDs, first run (compiles each design) | {hierarchical['first [s]']:.1f} |")
        print(f"| hierarchical, 30 IDs, second run | {hierarchical['second [s]']:.1f} |")
        for name, e in hierarchical["estimates"].items():
            print(f"{name}: typical {e['value']:.4g} {e['unit']}, between-patient CV {e['between_patient']['cv']:.3g}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cold [s]": cold, "warm [s]": warm, "estimates": fit["estimates"],
                                     "hierarchical": hierarchical}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
