"""Calibrate the pharmacodynamic parameters that a typical patient (70 kg, 45 y, MADRS 32) determines,
against the shared targets (ketasim/data/calibration.toml).

    python scripts/calibrate_pd.py           # print the fitted values
    python scripts/calibrate_pd.py --write   # and write them into the parameter files

Targets used: milak2016_glutamate_surge (surge height and timing), spravato_label_bp (pressor peak
40 min after nasal dosing), cuijpers2018_psychotherapy (10 weekly CBT sessions: skill adds g = 0.45,
between the bias-corrected 0.2-0.3 and the unadjusted 0.7, times an assumed SD of change of 8 points
= 3.6 points). Everything a trial population determines (expectancy, the plasticity route's clinical
gain and time course, the observation model, the SSRI effect, the CADSS mean) is fitted jointly by
scripts/calibrate_clinical.py; run this script first.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import brentq, least_squares

import ketasim
from ketasim.params import load_parameters

BASE = {"patient": {"weight": "70 kg", "age": "45 y", "baseline_madrs": 32}}


def sim(params, doses, duration, every="5 min", therapy=None):
    sc = dict(BASE, dose=doses, simulation={"duration": duration, "output_every": every})
    if therapy:
        sc["therapy"] = therapy
    return ketasim.simulate(sc, params=params)


KETAMINE = [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}]


def fit_surge(p):
    def residuals(x):
        q = p.replace(synapse__surge_gain=x[0], synapse__k_inhibition_recovery=x[1])
        r = sim(q, KETAMINE, "2 h", "0.5 min")
        i = int(np.argmax(r["synapse.glutamate"]))
        return [(r["synapse.glutamate"][i] - 100 - 37.8) / 7.5, (r.times_h[i] * 60 - 26.0) / 5.0]

    sol = least_squares(residuals, [2.0, 3.0], bounds=([0.1, 0.05], [10.0, 20.0]))
    print("  surge residuals (SD units):", np.round(sol.fun, 3))
    return p.replace(synapse__surge_gain=sol.x[0], synapse__k_inhibition_recovery=sol.x[1])


def fit_pressor(p):
    def peak_min(k):
        r = sim(p.replace(clinical__keo_pressor=k),
                [{"drug": "esketamine", "route": "intranasal", "amount": "84 mg"}], "6 h", "1 min")
        return r.times_h[np.argmax(r["clinical.sbp"])] * 60 - 40.0

    return p.replace(clinical__keo_pressor=brentq(peak_min, 0.31, 19.9, xtol=1e-3))


def fit_psychotherapy(p):
    cbt = [{"kind": "cbt", "start": "0 d", "every": "7 d", "count": 10}]

    def extra(e):
        with_skill = sim(p.replace(clinical__skill_max_effect=e), [], "10 w", "1 d", cbt)
        without = sim(p.replace(clinical__skill_max_effect=0.0), [], "10 w", "1 d", cbt)
        return (without["clinical.madrs"][-1] - with_skill["clinical.madrs"][-1]) - 3.6

    return p.replace(clinical__skill_max_effect=brentq(extra, 0.051, 0.599, xtol=1e-4))


FITTED = ("synapse.surge_gain", "synapse.k_inhibition_recovery", "clinical.keo_pressor", "clinical.skill_max_effect")


def main(argv):
    p = load_parameters()
    for step in (fit_surge, fit_pressor, fit_psychotherapy):
        p = step(p)
        print(f"{step.__name__}: done")
    values = {name: p[name].value for name in FITTED}
    for name, value in values.items():
        print(f"{name} = {value:.4g} {p[name].unit}")
    if "--write" in argv:
        sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
        from toml_values import write_values

        write_values(values)


if __name__ == "__main__":
    main(sys.argv[1:])
