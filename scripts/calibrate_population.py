"""Calibrate the population's MADRS rating spread to the shared target han2016_response_decay.

The typical patient is calibrated by scripts/calibrate_pd.py; response and remission *rates* also
need the spread of observed MADRS around the model's value. This script runs the ketamine arm of a
treatment-resistant population (0.5 mg/kg over 40 min, assessments at 24 h, 3 d and 7 d) for a grid
of ``population.madrs_rating_sd`` and picks the value with the least squared error over Han's six
pooled rates. Only the shared target is used.

    python scripts/calibrate_population.py [--n 2000] [--write]
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import numpy as np

from ketasim.params import load_parameters
from ketasim.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "src/ketasim/data/calibration.toml"
PARAM_FILE = ROOT / "src/ketasim/params/population.toml"


def han_targets() -> dict[str, float]:
    data = tomllib.loads(TARGETS.read_text())
    return next(t for t in data["target"] if t["id"] == "han2016_response_decay")["values"]


def trial(n: int) -> dict:
    return {"trial": {"name": "han2016 ketamine arm", "seed": 2016, "assessments": ["24 h", "3 d", "7 d"]},
            "population": {"n": n, "preset": "treatment-resistant"},
            "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                                   "duration": "40 min"}]}]}


def rates(sd: float, n: int) -> dict[str, float]:
    params = load_parameters().replace(population__madrs_rating_sd=sd)
    summary = run_trial(trial(n), params=params).summary["arms"]["ketamine"]["assessments"]
    out = {}
    for label, row in zip(("24h", "72h", "day7"), summary):
        out[f"response_{label}"] = row["response_rate"]["estimate"]
        out[f"remission_{label}"] = row["remission_rate"]["estimate"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--write", action="store_true", help="write the best value into params/population.toml")
    args = ap.parse_args()
    target = han_targets()
    best = None
    print(f"{'rating SD [points]':>18} " + " ".join(f"{k:>14}" for k in target) + f" {'SSE':>8}")
    print(f"{'Han 2016':>18} " + " ".join(f"{v:14.3f}" for v in target.values()))
    for sd in np.arange(0.0, 8.01, 0.5):
        r = rates(float(sd), args.n)
        sse = sum((r[k] - v) ** 2 for k, v in target.items())
        print(f"{sd:18.1f} " + " ".join(f"{r[k]:14.3f}" for k in target) + f" {sse:8.4f}")
        if best is None or sse < best[1]:
            best = (float(sd), sse)
    print(f"best population.madrs_rating_sd = {best[0]:g} points (SSE {best[1]:.4f})")
    if args.write:
        text = PARAM_FILE.read_text()
        text = re.sub(r"(\[madrs_rating_sd\]\nvalue = )[0-9.]+", rf"\g<1>{best[0]:g}", text)
        PARAM_FILE.write_text(text)
        print(f"wrote {PARAM_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
