"""The command line against the library: `ketasim trial` vs `ketasim.run_trial` at two sizes.

The example parallel trial (ketamine vs midazolam, five assessments up to 7 days) at N1 and N2
patients in all. `run_trial` is timed in one warm process (the patients
table and summary in memory, nothing written); `ketasim trial` as a user runs it, a fresh process
writing patients.parquet, summary.json, manifest.json and report.html, with its peak RSS. The
marginal rate (N2 - N1) / (t2 - t1) removes the fixed costs (process start, kernel load, report
figures); the issue asks the command line's to be within 10 % of the library's.

    python benchmarks/cli_trial.py [--n1 20000] [--n2 200000] [--json results/benchmarks/cli_trial.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIAL = ROOT / "examples" / "trials" / "parallel_ketamine_vs_midazolam.toml"
#: the command's own peak RSS: VmHWM of its address space (ru_maxrss would carry the peak of this
#: benchmark's process, from which the command is forked, over the exec)
TIME_RSS = ("import runpy, sys; sys.argv = ['ketasim'] + sys.argv[1:]; "
            "code = 0\ntry:\n    runpy.run_module('ketasim', run_name='__main__')\nexcept SystemExit as e:\n"
            "    code = e.code or 0\nhwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print('PEAK_RSS_MB', int(hwm.split()[1]) / 1024, file=sys.stderr)\nsys.exit(code)")


def trial_file(folder: Path, patients: int) -> Path:
    text = TRIAL.read_text()
    per_arm = patients // 2
    text = text.replace("n = 500                          # per arm", f"n = {per_arm}")
    path = folder / f"trial_{patients}.toml"
    path.write_text(text)
    assert tomllib.loads(text)["population"]["n"] == per_arm
    return path


def time_library(path: Path) -> float:
    import ketasim

    t0 = time.perf_counter()
    ketasim.run_trial(path)
    return time.perf_counter() - t0


def time_cli(path: Path, out: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", TIME_RSS, "trial", str(path), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss = float(proc.stderr.split("PEAK_RSS_MB")[-1].split()[0])
    return wall, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n1", type=int, default=20_000)
    ap.add_argument("--n2", type=int, default=200_000)
    ap.add_argument("--json", type=Path, default=Path("results/benchmarks/cli_trial.json"))
    args = ap.parse_args()
    import ketasim

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ketasim.run_trial(trial_file(tmp, 100))  # compile or load the kernel once
        for n in (args.n1, args.n2):
            path = trial_file(tmp, n)
            library = time_library(path)
            cli, rss = time_cli(path, tmp / f"out_{n}")
            size = sum(f.stat().st_size for f in (tmp / f"out_{n}").iterdir()) / 2 ** 20
            rows.append({"patients": n, "run_trial_s": library, "cli_s": cli, "cli_peak_rss_mb": rss,
                         "output_mb": size})
    (a, b) = rows
    marginal_lib = (b["patients"] - a["patients"]) / (b["run_trial_s"] - a["run_trial_s"])
    marginal_cli = (b["patients"] - a["patients"]) / (b["cli_s"] - a["cli_s"])
    print(f"{'patients':>9} {'run_trial [s]':>14} {'ketasim trial [s]':>18} {'CLI peak RSS [MB]':>18} {'output [MB]':>12}")
    for r in rows:
        print(f"{r['patients']:>9,} {r['run_trial_s']:>14.1f} {r['cli_s']:>18.1f} {r['cli_peak_rss_mb']:>18,.0f} "
              f"{r['output_mb']:>12.1f}")
    rss_per_patient = (b["cli_peak_rss_mb"] - a["cli_peak_rss_mb"]) / (b["patients"] - a["patients"]) * 1024
    print(f"marginal rate: run_trial {marginal_lib:,.0f} patients/s, ketasim trial {marginal_cli:,.0f} patients/s "
          f"({marginal_cli / marginal_lib:.1%} of the library's); peak RSS grows {rss_per_patient:.1f} kB per patient")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "marginal_run_trial": marginal_lib, "marginal_cli": marginal_cli,
                                     "rss_kb_per_patient": rss_per_patient}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
