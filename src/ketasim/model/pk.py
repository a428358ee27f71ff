"""Pharmacokinetics: S- and R-ketamine with norketamine, DHNK and HNK, six routes, CYP2B6/CYP3A4.

Per enantiomer (``s``, ``r``; racemic = 50/50 by moles) the layer tracks, in umol:

* depots: ``stomach`` and ``gut`` (oral and swallowed drug: gastric emptying, then absorption),
  ``nasal``, ``buccal`` (sublingual), ``im``;
* parent disposition: ``ketamine_central`` (plasma), ``ketamine_peripheral`` and ``ketamine_deep``
  (three-compartment mammillary model, Clements & Nimmo 1981 for the first two, a slow deep
  compartment for the 7-12 h terminal phase of the SPRAVATO label);
* metabolites: ``norketamine`` -> ``dhnk`` and ``hnk`` (one compartment each);
* brain effect sites (uM, plasma-equivalent): ``ketamine_effect``, ``norketamine_effect``,
  ``hnk_effect``;

and one bookkeeping state ``eliminated`` (umol that left the tracked species), which closes the mass
balance: dose = depots + body + eliminated.

Hepatic clearance follows the well-stirred liver model; its intrinsic clearance is the sum of a
CYP2B6 part, a CYP3A4 part and a rest, each scaled by the patient's enzyme activity (genotype x
interacting drugs). Oral and swallowed drug passes the gut wall (Q_gut model, CYP3A4) and the liver
before reaching plasma, and the metabolised part appears as norketamine: first-pass metabolism
raises metabolite exposure. Sizes scale allometrically with weight (exponent 1 for volumes, 0.75
for flows and clearances; Anderson & Holford 2008); hepatic blood flow falls with age (Wynne 1989).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Layer, Variable

ENANTIOMERS = ("s", "r")
REFERENCE_WEIGHT_KG = 70.0
REFERENCE_AGE_H = 40.0 * 8766.0  # 40 years; internal time unit is the hour (1 y = 8766 h)

_DEPOTS = ("ketamine_stomach", "ketamine_gut", "ketamine_nasal", "ketamine_buccal", "ketamine_im")
_SPECIES = ("ketamine_central", "ketamine_peripheral", "ketamine_deep",
            "norketamine", "dhnk", "hnk")
_EFFECT = ("ketamine_effect", "norketamine_effect", "hnk_effect")

#: mg of esketamine one nasal spray device delivers (two sprays; SPRAVATO label), the unit in which
#: Perez-Ruixo 2021 counts the fall of nasal absorption with dose
NASAL_DEVICE_MG = 28.0
#: where each route puts a dose (state suffix per enantiomer), see ``dose_fractions``
ROUTES = ("iv", "im", "intranasal", "oral", "sublingual")


def _enantiomer_name(e: str) -> str:
    return {"s": "S", "r": "R"}[e]


class PK(Layer):
    """Ketamine enantiomers and metabolites from dose to unbound brain concentration."""

    name: ClassVar[str] = "pk"

    def states(self) -> tuple[Variable, ...]:
        out = []
        for e in ENANTIOMERS:
            en = _enantiomer_name(e)
            for d in _DEPOTS:
                out.append(Variable(f"{e}_{d}", "umol", f"{en}-ketamine in the {d.split('_')[1]} depot"))
            for s in _SPECIES:
                out.append(Variable(f"{e}_{s}", "umol", f"{en}-{s.replace('_', ' ')} amount"))
            for s in _EFFECT:
                out.append(Variable(f"{e}_{s}", "uM",
                                    f"{en}-{s.split('_')[0]} brain effect-site (plasma-equivalent) concentration"))
        out.append(Variable("eliminated", "umol", "cumulative drug that left all tracked species"))
        return tuple(out)

    def outputs(self) -> tuple[Variable, ...]:
        out = [
            Variable("ketamine_plasma", "ng/mL", "total (S+R) ketamine in plasma"),
            Variable("s_ketamine_plasma", "ng/mL", "S-ketamine in plasma"),
            Variable("r_ketamine_plasma", "ng/mL", "R-ketamine in plasma"),
            Variable("norketamine_plasma", "ng/mL", "total norketamine in plasma"),
            Variable("s_norketamine_plasma", "ng/mL", "S-norketamine in plasma"),
            Variable("r_norketamine_plasma", "ng/mL", "R-norketamine in plasma"),
            Variable("dhnk_plasma", "ng/mL", "dehydronorketamine (S+R) in plasma"),
            Variable("hnk_plasma", "ng/mL", "hydroxynorketamine ((2S,6S)+(2R,6R)) in plasma"),
            Variable("s_hnk_plasma", "ng/mL", "(2S,6S)-hydroxynorketamine in plasma"),
            Variable("r_hnk_plasma", "ng/mL", "(2R,6R)-hydroxynorketamine in plasma"),
            Variable("ketamine_brain", "ng/mL", "total (S+R) ketamine in brain tissue"),
        ]
        for e in ENANTIOMERS:
            en = _enantiomer_name(e)
            for s in ("ketamine", "norketamine", "hnk"):
                out.append(Variable(f"{e}_{s}_brain_unbound", "uM",
                                    f"unbound {en}-{s} at the brain NMDA receptor"))
        return tuple(out)

    # ------------------------------------------------------------------ individual parameters
    @staticmethod
    def disposition(p: Mapping[str, Any], c: Mapping[str, Any], e: str, m: Any) -> dict[str, Any]:
        """Individual volumes (L), flows and clearances (L/h) for enantiomer ``e``."""
        size = c["weight"] / REFERENCE_WEIGHT_KG
        flow_scale = size ** p["allometric_exponent_clearance"]
        # apparent liver blood flow falls linearly with age (Wynne 1989)
        q_hepatic = p["q_hepatic"] * flow_scale * (1.0 - p["hepatic_flow_age_slope"] * (c["age"] - REFERENCE_AGE_H))
        cl_ref = p[f"cl_{e}_ketamine"]
        cl_hepatic_ref = cl_ref * (1.0 - p["fraction_extrahepatic"])
        # intrinsic clearance that gives the reference hepatic clearance (well-stirred liver)
        clint_ref = cl_hepatic_ref * p["q_hepatic"] / (p["q_hepatic"] - cl_hepatic_ref)
        enzyme_2b6 = p["fm_cyp2b6"] * c["cyp2b6_activity"]
        enzyme_3a4 = p["fm_cyp3a4"] * c["cyp3a4_hepatic_activity"]
        other = 1.0 - p["fm_cyp2b6"] - p["fm_cyp3a4"]
        clint = clint_ref * flow_scale * (enzyme_2b6 + enzyme_3a4 + other)
        cl_hepatic = q_hepatic * clint / (q_hepatic + clint)
        clint_gut = p["clint_gut_cyp3a4"] * flow_scale * c["cyp3a4_gut_activity"]
        q_gut = p["q_gut"] * flow_scale
        clint_nk = p["cl_norketamine"] * flow_scale * (
            p["fm_norketamine_cyp2b6"] * c["cyp2b6_activity"] + 1.0 - p["fm_norketamine_cyp2b6"])
        return {
            "v1": p["v_central"] * size, "v2": p["v_peripheral"] * size, "v3": p["v_deep"] * size,
            "q2": p["q_peripheral"] * flow_scale, "q3": p["q_deep"] * flow_scale,
            "cl_hepatic": cl_hepatic,
            "cl_extrahepatic": cl_ref * p["fraction_extrahepatic"] * flow_scale,
            "f_hepatic": q_hepatic / (q_hepatic + clint),
            "f_gut": q_gut / (q_gut + clint_gut),
            # share of hepatic metabolism that N-demethylates (CYP2B6 and CYP3A4) to norketamine
            "fm_norketamine": (enzyme_2b6 + enzyme_3a4) / (enzyme_2b6 + enzyme_3a4 + other),
            "cl_norketamine": clint_nk,
            "v_norketamine": p["v_norketamine"] * size,
            "cl_dhnk": p["cl_dhnk"] * flow_scale, "v_dhnk": p["v_dhnk"] * size,
            "cl_hnk": p[f"cl_{e}_hnk"] * flow_scale, "v_hnk": p["v_hnk"] * size,
        }

    # ------------------------------------------------------------------ vector field
    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        dx: dict[str, Any] = {}
        eliminated = 0.0
        for e in ENANTIOMERS:
            d = self.disposition(p, c, e, m)
            c1 = x[f"{e}_ketamine_central"] / d["v1"]
            c2 = x[f"{e}_ketamine_peripheral"] / d["v2"]
            c3 = x[f"{e}_ketamine_deep"] / d["v3"]
            c_nk = x[f"{e}_norketamine"] / d["v_norketamine"]
            c_dhnk = x[f"{e}_dhnk"] / d["v_dhnk"]
            c_hnk = x[f"{e}_hnk"] / d["v_hnk"]

            # swallowed drug reaches the absorbing gut after gastric emptying (Perez-Ruixo 2021's
            # delayed input into the gut), so an oral dose cannot peak within minutes
            emptied = p["k_gastric_emptying"] * x[f"{e}_ketamine_stomach"]
            absorbed_gut = p["ka_oral"] * x[f"{e}_ketamine_gut"]
            absorbed_nasal = p["ka_nasal"] * x[f"{e}_ketamine_nasal"]
            absorbed_buccal = p["ka_buccal"] * x[f"{e}_ketamine_buccal"]
            absorbed_im = p["ka_im"] * x[f"{e}_ketamine_im"]
            # first pass: gut wall (CYP3A4) then liver; what is metabolised becomes norketamine
            escapes_gut = absorbed_gut * d["f_gut"]
            reaches_plasma = escapes_gut * d["f_hepatic"]
            first_pass_liver = escapes_gut - reaches_plasma
            first_pass_norketamine = (absorbed_gut - escapes_gut) + first_pass_liver * d["fm_norketamine"]

            hepatic = d["cl_hepatic"] * c1
            to_norketamine = hepatic * d["fm_norketamine"]
            nk_out = d["cl_norketamine"] * c_nk

            dx[f"{e}_ketamine_stomach"] = -emptied
            dx[f"{e}_ketamine_gut"] = emptied - absorbed_gut
            dx[f"{e}_ketamine_nasal"] = -absorbed_nasal
            dx[f"{e}_ketamine_buccal"] = -absorbed_buccal
            dx[f"{e}_ketamine_im"] = -absorbed_im
            dx[f"{e}_ketamine_central"] = (inp[f"dosing.{e}_ketamine_iv_rate"] + absorbed_nasal + absorbed_buccal
                                          + absorbed_im + reaches_plasma - hepatic - d["cl_extrahepatic"] * c1
                                          - d["q2"] * (c1 - c2) - d["q3"] * (c1 - c3))
            dx[f"{e}_ketamine_peripheral"] = d["q2"] * (c1 - c2)
            dx[f"{e}_ketamine_deep"] = d["q3"] * (c1 - c3)
            dx[f"{e}_norketamine"] = to_norketamine + first_pass_norketamine - nk_out
            dx[f"{e}_dhnk"] = p["f_norketamine_to_dhnk"] * nk_out - d["cl_dhnk"] * c_dhnk
            dx[f"{e}_hnk"] = (p["f_norketamine_to_hnk"] * nk_out - d["cl_hnk"] * c_hnk
                              + (inp["dosing.r_hnk_iv_rate"] if e == "r" else 0.0))
            # effect sites: first-order equilibration with plasma (Cohen 1973: brain peak < 1 min)
            dx[f"{e}_ketamine_effect"] = p["keo_ketamine"] * (c1 - x[f"{e}_ketamine_effect"])
            dx[f"{e}_norketamine_effect"] = p["keo_norketamine"] * (c_nk - x[f"{e}_norketamine_effect"])
            dx[f"{e}_hnk_effect"] = p["keo_hnk"] * (c_hnk - x[f"{e}_hnk_effect"])

            eliminated = (eliminated + (hepatic - to_norketamine) + d["cl_extrahepatic"] * c1
                          + first_pass_liver * (1.0 - d["fm_norketamine"])
                          + nk_out * (1.0 - p["f_norketamine_to_dhnk"] - p["f_norketamine_to_hnk"])
                          + d["cl_dhnk"] * c_dhnk + d["cl_hnk"] * c_hnk)
        dx["eliminated"] = eliminated
        # dosed (2R,6R)-HNK enters its compartment directly: mass balance is dose = depots + body + eliminated
        return dx

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        size = c["weight"] / REFERENCE_WEIGHT_KG
        out: dict[str, Any] = {}
        for e in ENANTIOMERS:
            out[f"{e}_ketamine_plasma"] = x[f"{e}_ketamine_central"] / (p["v_central"] * size) * p["mw_ketamine"]
            out[f"{e}_norketamine_plasma"] = x[f"{e}_norketamine"] / (p["v_norketamine"] * size) * p["mw_norketamine"]
            out[f"{e}_dhnk_plasma"] = x[f"{e}_dhnk"] / (p["v_dhnk"] * size) * p["mw_dhnk"]
            out[f"{e}_hnk_plasma"] = x[f"{e}_hnk"] / (p["v_hnk"] * size) * p["mw_hnk"]
            # unbound brain = Kp,uu x unbound plasma at the effect site (passive entry assumed)
            for s in ("ketamine", "norketamine", "hnk"):
                out[f"{e}_{s}_brain_unbound"] = p["kpuu_brain"] * p[f"fu_{s}"] * x[f"{e}_{s}_effect"]
        result = {
            "ketamine_plasma": out["s_ketamine_plasma"] + out["r_ketamine_plasma"],
            "s_ketamine_plasma": out["s_ketamine_plasma"],
            "r_ketamine_plasma": out["r_ketamine_plasma"],
            "norketamine_plasma": out["s_norketamine_plasma"] + out["r_norketamine_plasma"],
            "s_norketamine_plasma": out["s_norketamine_plasma"],
            "r_norketamine_plasma": out["r_norketamine_plasma"],
            "dhnk_plasma": out["s_dhnk_plasma"] + out["r_dhnk_plasma"],
            "hnk_plasma": out["s_hnk_plasma"] + out["r_hnk_plasma"],
            "s_hnk_plasma": out["s_hnk_plasma"],
            "r_hnk_plasma": out["r_hnk_plasma"],
            # total brain tissue = Kp x plasma-equivalent effect-site concentration (Cohen 1973)
            "ketamine_brain": p["kp_brain_ketamine"] * p["mw_ketamine"]
            * (x["s_ketamine_effect"] + x["r_ketamine_effect"]),
        }
        for e in ENANTIOMERS:
            for s in ("ketamine", "norketamine", "hnk"):
                result[f"{e}_{s}_brain_unbound"] = out[f"{e}_{s}_brain_unbound"]
        return result


def dose_fractions(route: str, p: Mapping[str, Any], dose_mg) -> dict[str, Any]:
    """Where a bolus of ``route`` goes: state suffix -> fraction of the dose (sums to 1); arrays
    where ``p`` or ``dose_mg`` (the dose entry's amount, per patient where weight-based) are.

    IV infusions are not boluses; they enter as the ``dosing.<e>_ketamine_iv_rate`` input. A nasal
    dose counts its 28-mg devices from its own amount: a session written as separate entries (one
    per device) is read as that many first devices.
    """
    if route == "iv":
        return {"ketamine_central": 1.0}
    if route == "im":
        return {"ketamine_im": p["f_im"], "eliminated": 1.0 - p["f_im"]}
    if route == "intranasal":
        # Perez-Ruixo 2021 (Table 3 and its footnote): the nasal mucosa absorbs a fraction FRn of the
        # first 28-mg device and 0.62 x FRn of each later one, all of it completely; the rest is
        # swallowed. Counted per 28 mg delivered, so a racemic nasal dose is treated alike.
        devices = dose_mg / NASAL_DEVICE_MG
        devices = devices + (1.0 - devices) * (devices < 1.0)  # at least one device (floats and arrays)
        nasal = p["f_nasal_deposited"] * (1.0 + (devices - 1.0) * p["nasal_later_device_ratio"]) / devices
        return {"ketamine_nasal": nasal * p["f_nasal_mucosal"],
                "ketamine_stomach": 1.0 - nasal,
                "eliminated": nasal * (1.0 - p["f_nasal_mucosal"])}
    if route == "oral":
        return {"ketamine_stomach": 1.0}
    if route == "sublingual":
        return {"ketamine_buccal": p["f_sublingual_buccal"], "ketamine_stomach": 1.0 - p["f_sublingual_buccal"]}
    raise ValueError(f"unknown route '{route}'; allowed: {', '.join(ROUTES)}")
