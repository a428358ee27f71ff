"""Calibrate the PK parameters marked ``calibrated:`` in params/pk.toml against the shared targets.

Run: ``python scripts/calibrate_pk.py`` (prints the fitted values; copy them into pk.toml).
Only targets in ketasim/data/calibration.toml are used. Closed-form parameters come first
(hepatic blood flow from Fanta's 8 % oral availability given the assumed gut-wall availability, nasal mucosal fraction from the label's 48 %,
norketamine clearance from Fanta's AUC ratio and its volume from the label's 8 h half-life);
the rest are 1-D root finds on simulations, iterated to a fixed point.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar

import ketasim
from ketasim.params import load_parameters


def infusion(params, amount="0.5 mg/kg"):
    return ketasim.simulate({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": amount,
                                       "duration": "40 min"}],
                             "simulation": {"duration": "2 h", "output_every": "1 min"}}, params=params)


def terminal_half_life_h(params) -> float:
    """ln 2 over the slowest eigenvalue of S-ketamine's three-compartment disposition."""
    v1, v2, v3 = (params.value(f"pk.{n}") for n in ("v_central", "v_peripheral", "v_deep"))
    q2, q3 = params.value("pk.q_peripheral"), params.value("pk.q_deep")
    cl = params.value("pk.cl_s_ketamine")
    a = np.array([[-(cl + q2 + q3) / v1, q2 / v2, q3 / v3],
                  [q2 / v1, -q2 / v2, 0.0],
                  [q3 / v1, 0.0, -q3 / v3]])
    return math.log(2) / min(abs(np.linalg.eigvals(a)))


def closed_form(params):
    fe = params.value("pk.fraction_extrahepatic")
    cl_s = params.value("pk.cl_s_ketamine")
    q_gut, clint_gut = params.value("pk.q_gut"), params.value("pk.clint_gut_cyp3a4")
    f_gut = q_gut / (q_gut + clint_gut)  # assumed gut-wall availability
    f_oral_s = 0.08  # fanta2015_oral_esketamine
    f_hep = f_oral_s / f_gut
    q_h = cl_s * (1 - fe) / (1 - f_hep)  # well-stirred liver: F_h = 1 - CL_h / Q_h
    f_dep = params.value("pk.f_nasal_deposited")
    f_muc = (0.48 - (1 - f_dep) * f_oral_s) / f_dep  # spravato_label_pk bioavailability 0.48
    fm = params.value("pk.fm_cyp2b6") + params.value("pk.fm_cyp3a4")
    formed = (1 - f_gut) + f_gut * (1 - f_hep) * fm + f_oral_s * fm * (1 - fe)
    ratio_molar = 16.5 * params.value("pk.mw_ketamine") / params.value("pk.mw_norketamine")
    cl_nk = formed * cl_s / (f_oral_s * ratio_molar)
    v_nk = cl_nk * 8.0 / math.log(2)  # noresketamine terminal half-life 8 h
    return params.replace(pk__q_hepatic=q_h, pk__f_nasal_mucosal=f_muc,
                          pk__cl_norketamine=cl_nk, pk__v_norketamine=v_nk)


def fit(params):
    for _ in range(3):
        params = params.replace(pk__v_deep=709.0 - params["pk.v_central"].value - params["pk.v_peripheral"].value)
        q3 = brentq(lambda q: terminal_half_life_h(params.replace(pk__q_deep=q)) - 9.5, 5.0, 150.0)
        params = params.replace(pk__q_deep=q3)
        v1 = brentq(lambda v: infusion(params.replace(pk__v_central=v)).at("pk.ketamine_plasma", 40 / 60) - 185.0,
                    41.0, 199.0)
        params = params.replace(pk__v_central=v1)

    def oral_cmax(ka):
        r = ketasim.simulate({"dose": [{"drug": "racemic-ketamine", "route": "oral", "amount": "0.5 mg/kg"}],
                              "simulation": {"duration": "12 h", "output_every": "2 min"}},
                             params=params.replace(pk__ka_oral=ka))
        return r["pk.ketamine_plasma"].max()

    # least squares within the range: the racemic oral availability caps Cmax below 45 ng/mL
    best = minimize_scalar(lambda k: (oral_cmax(k) - 45.0) ** 2, bounds=(0.3, 10.0), method="bounded",
                           options={"xatol": 1e-3})
    params = params.replace(pk__ka_oral=float(best.x))
    print(f"  oral Cmax {oral_cmax(best.x):.1f} ng/mL at ka {best.x:.3f} 1/h (target 45 +- 10)")

    def nasal_tmax(ka):
        r = ketasim.simulate({"dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg"}],
                              "simulation": {"duration": "4 h", "output_every": "0.5 min"}},
                             params=params.replace(pk__ka_nasal=ka))
        return r.times_h[np.argmax(r["pk.s_ketamine_plasma"])] * 60

    params = params.replace(pk__ka_nasal=brentq(lambda k: nasal_tmax(k) - 30.0, 0.6, 14.9, xtol=1e-3))
    return params


if __name__ == "__main__":
    p = fit(closed_form(load_parameters()))
    for name in ("v_central", "v_deep", "q_deep", "q_hepatic", "f_nasal_mucosal", "cl_norketamine",
                 "v_norketamine", "ka_oral", "ka_nasal"):
        print(f"pk.{name} = {p[f'pk.{name}'].value:.4g} {p[f'pk.{name}'].unit}")
    print(f"terminal half-life {terminal_half_life_h(p):.2f} h; V1+V2 = "
          f"{p['pk.v_central'].value + p['pk.v_peripheral'].value:.0f} L")
