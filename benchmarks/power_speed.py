"""Cost of a power analysis: `ketasim power` of a two-arm, 28-day trial.

Ketamine 0.5 mg/kg over 40 min against midazolam, treatment-resistant population, assessments at
24 h, 7, 14 and 28 days, primary endpoint MADRS change at 24 h (two-sided Welch t at 0.05).
R replicates x sample sizes 20, 40, 80 and 160 per arm (the issue's 1,000 x 4 by default), timed
through the command line (process start, compile from the disk cache, simulation, statistics and
report), with the patients simulated per second and the peak memory.

    python benchmarks/power_speed.py [--replicates 1000] [--json results/benchmarks/power_speed.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIAL = """
[trial]
name = "power benchmark"
seed = 5
assessments = ["24 h", "7 d", "14 d", "28 d"]
control = "midazolam"
[trial.success]
endpoint = "madrs_change"
at = "24 h"
sided = "two"

[population]
n = 10
preset = "treatment-resistant"

[[arm]]
name = "ketamine"
[[arm.dose]]
drug = "racemic-ketamine"
route = "iv"
amount = "0.5 mg/kg"
duration = "40 min"

[[arm]]
name = "midazolam"
[[arm.dose]]
drug = "midazolam"
route = "iv"
amount = "0.045 mg/kg"
duration = "40 min"
"""
SIZES = (20, 40, 80, 160)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/power_speed.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "trial.toml").write_text(TRIAL)
        # warm the kernel cache so that the timing is the power analysis, not the first compile
        subprocess.run([sys.executable, "-m", "ketasim", "power", str(tmp / "trial.toml"), "--n", "2",
                        "--replicates", "2", "--out", str(tmp / "warm"), "--quiet"], check=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ketasim", "power", str(tmp / "trial.toml"), "--n",
                        ",".join(map(str, SIZES)), "--replicates", str(args.replicates), "--out", str(tmp / "power"),
                        "--quiet"], check=True)
        wall = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        summary = json.loads((tmp / "power" / "power.json").read_text())
        manifest = json.loads((tmp / "power" / "manifest.json").read_text())
    patients = manifest["patients_simulated"]
    print(f"{'replicates':>10} {'sizes':>16} {'patients':>10} {'wall [s]':>9} {'patients/s':>11} {'peak RSS [MB]':>14}")
    print(f"{args.replicates:>10} {','.join(map(str, SIZES)):>16} {patients:>10,} {wall:>9.1f} "
          f"{patients / wall:>11,.0f} {peak_mb:>14,.0f}")
    for row in summary["sample_sizes"]:
        print(f"  n = {row['n']:>4}: power {row['power']['estimate']:.3f} "
              f"({row['power']['lower']:.3f}-{row['power']['upper']:.3f})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"replicates": args.replicates, "sizes": SIZES, "patients": patients,
                                     "wall_s": wall, "patients_per_s": patients / wall, "peak_rss_mb": peak_mb,
                                     "power": summary["sample_sizes"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
