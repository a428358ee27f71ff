"""Cross-check ketasim's esketamine PK against an independent published population model.

Perez-Ruixo C et al. Clin Pharmacokinet 2021;60:501 fitted one model to 9,784 esketamine and 9,397
noresketamine concentrations from 820 subjects (13 studies: intranasal 14-112 mg, IV 28 mg, oral
84 mg). Its typical values (Table 3, non-Asian, under 60 years) are written out here as their own
small ODE system: three esketamine compartments with a hepato-portal (liver) compartment that
carries first pass, nasal absorption ka_n 2.93 1/h of the fraction FRn 0.54 absorbed through the
nasal cavity (0.62 times that for each 28-mg device after the first), the swallowed rest and oral
solutions released over Dsw 0.53 h / Dpo 0.32 h and absorbed at 1.45 / 0.97 1/h with Fgut 0.64,
and a two-compartment apparent noresketamine. The printed ODEs have typos; the reading follows the
paper's Fig. 1 and the bioavailability formulae (as nlmixr2lib's source-traced coding of the same
table does, which reports esketamine Cmax and AUC within 4 % of the paper's Table 4). Noresketamine's
parameters are apparent (scaled by an unknown fraction metabolised), so its levels compare only
roughly.

Nothing here is fitted: the table prints both models' typical patient (74 kg, 45 y, the study's
median) side by side, for a reader to see where ketasim's PK stands against a model built on far
more esketamine data than its calibration targets hold. Findings are in docs/model.md, "What the
model does not reproduce".

    python scripts/crosscheck_esketamine_popk.py
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

import ketasim

# Perez-Ruixo 2021, Table 3 (typical values; rate constants in 1/h, volumes in L, flows in L/h)
FRN, LATER_DEVICE, DEVICE_MG = 0.54, 0.62, 28.0
KA_N, D_SW, KA_SW, D_PO, KA_PO, F_GUT = 2.93, 0.53, 1.45, 0.32, 0.97, 0.64
VC, Q1, VP1, Q2, VP2, QH, VH, KEL, KMET = 192.0, 84.3, 143.0, 37.6, 417.0, 151.0, 101.0, 1.11, 2.77
VCN, CLN, VPN, Q3 = 70.0, 38.0, 115.0, 26.1
INFUSION_H = 40.0 / 60.0

CASES = (("iv", 28.0), ("oral", 84.0), ("intranasal", 28.0), ("intranasal", 56.0), ("intranasal", 84.0))


def perez_ruixo(route: str, dose_mg: float, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(esketamine, noresketamine) plasma ng/mL of the published model's typical patient."""
    devices = max(1.0, dose_mg / DEVICE_MG)
    frn = FRN * (1.0 + (devices - 1.0) * LATER_DEVICE) / devices if route == "intranasal" else 0.0
    nasal = dose_mg * frn
    swallowed = dose_mg * (1.0 - frn) * F_GUT if route in ("intranasal", "oral") else 0.0
    release_h, ka_gut = (D_SW, KA_SW) if route == "intranasal" else (D_PO, KA_PO)
    iv_rate = dose_mg / INFUSION_H if route == "iv" else 0.0

    def rhs(time, y):
        nose, gut, central, p1, p2, liver, nor, nor_p = y
        into_gut = swallowed / release_h if time < release_h else 0.0
        infused = iv_rate if time < INFUSION_H else 0.0
        return [-KA_N * nose,
                into_gut - ka_gut * gut,
                infused + KA_N * nose + Q1 / VP1 * p1 + Q2 / VP2 * p2 + QH / VH * liver - (Q1 + Q2 + QH) / VC * central,
                Q1 / VC * central - Q1 / VP1 * p1,
                Q2 / VC * central - Q2 / VP2 * p2,
                ka_gut * gut + QH / VC * central - (QH / VH + KEL + KMET) * liver,
                KMET * liver + Q3 / VPN * nor_p - (CLN + Q3) / VCN * nor,
                Q3 / VCN * nor - Q3 / VPN * nor_p]

    sol = solve_ivp(rhs, (0.0, t[-1]), [nasal, 0, 0, 0, 0, 0, 0, 0], t_eval=t, max_step=0.01, rtol=1e-8, atol=1e-10)
    return sol.y[2] / VC * 1000.0, sol.y[6] / VCN * 1000.0


def ketasim_typical(route: str, dose_mg: float, hours: float) -> tuple[np.ndarray, np.ndarray]:
    dose = {"drug": "esketamine", "route": route, "amount": f"{dose_mg:g} mg"}
    if route == "iv":
        dose["duration"] = "40 min"
    res = ketasim.simulate({"patient": {"weight": "74 kg", "age": "45 y"}, "dose": [dose],
                            "simulation": {"duration": f"{hours:g} h", "output_every": "1 min"}})
    return res["pk.s_ketamine_plasma"], res["pk.s_norketamine_plasma"]


def describe(t: np.ndarray, c: np.ndarray, nor: np.ndarray) -> dict[str, float]:
    i = int(np.argmax(c))
    return {"Cmax [ng/mL]": float(c[i]), "Tmax [min]": 60.0 * float(t[i]),
            "AUC0-24 [ng/mL*h]": float(np.sum(np.diff(t) * (c[1:] + c[:-1]) / 2.0)),
            "C 1.5 h / Cmax": float(np.interp(1.5, t, c) / c[i]), "noresketamine Cmax [ng/mL]": float(nor.max())}


def main() -> None:
    t = np.linspace(0.0, 24.0, 24 * 60 + 1)
    header = ["route", "dose [mg]", "model", "Cmax [ng/mL]", "Tmax [min]", "AUC0-24 [ng/mL*h]", "C 1.5 h / Cmax",
              "noresketamine Cmax [ng/mL]"]
    print(" | ".join(header))
    for route, dose in CASES:
        for name, (c, nor) in (("Perez-Ruixo 2021", perez_ruixo(route, dose, t)),
                               ("ketasim", ketasim_typical(route, dose, t[-1]))):
            d = describe(t, c, nor)
            print(" | ".join([route, f"{dose:g}", name, *(f"{d[k]:.3g}" for k in header[3:])]))
    print("Typical patients (74 kg, 45 y); nothing fitted. ketasim is for research and teaching only.")


if __name__ == "__main__":
    main()
