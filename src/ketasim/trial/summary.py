"""From the patients table to the trial's endpoints: per arm, per assessment and between arms.

Only patients the solver finished (``status == "ok"``) and who were randomised enter the
statistics; failed patients are counted, with their reasons, never dropped silently.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..result import DISCLAIMER
from . import statistics as st
from .design import TrialSpec
from .success import patient_numbers, primary_analysis

MADRS, CHANGE = "madrs [points]", "madrs_change [points]"
MECHANISM_COLUMNS = ("nmda_block_interneuron_peak [fraction]", "spine_density [fold baseline]", "pfc_gbc [z]",
                     "il6 [pg/mL]")
ASSESSMENT_COLUMNS = ("madrs_model [points]", "spine_density [fold baseline]", "pfc_gbc [z]", "il6 [pg/mL]")
ASSESSMENT = "assessment [h]"


def analysed(patients: pd.DataFrame) -> pd.DataFrame:
    """The rows the statistics use: solver finished and randomised."""
    return patients[(patients["status"] == "ok") & patients["randomised"]]


def _interval(est: float, lo: float, hi: float, **extra) -> dict[str, Any]:
    return {"estimate": _num(est), "lower": _num(lo), "upper": _num(hi), **extra}


def _num(x) -> float | None:
    """JSON-safe number: NaN (undefined) and an infinite estimate (not estimable) become null."""
    x = float(x)
    return None if not math.isfinite(x) else x


def _rate(flags: np.ndarray) -> dict[str, Any]:
    k, n = int(np.sum(flags)), int(flags.size)
    return _interval(*st.proportion_ci(k, n), k=k, n=n)


def per_patient(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per patient and period with the patient-level endpoints."""
    keys = ["patient", "period"]
    return rows.groupby(keys, sort=False).agg(
        arm=("arm", "first"), at_risk=("at_risk_of_relapse", "first"),
        relapse_time=("time_to_relapse [h]", "first"), response=("response_time [h]", "first"), last=(ASSESSMENT, "max"),
        cadss_peak=("cadss_peak [points]", "max"), sbp_rise=("sbp_peak_rise [mmHg]", "max")).reset_index()


def relapse_data(per_patient: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(time from response h, event) of relapse for patients at risk (responders), censored at the
    last assessment."""
    at_risk = per_patient[per_patient["at_risk"].astype(bool)]
    event = at_risk["relapse_time"].notna().to_numpy()
    censored = at_risk["last"].to_numpy(dtype=float) - at_risk["response"].to_numpy(dtype=float)
    time = np.where(event, at_risk["relapse_time"].to_numpy(dtype=float), censored)
    return time, event


def _median(time: np.ndarray, event: np.ndarray) -> dict[str, Any]:
    m = st.km_median(time, event)

    def show(x):
        return "not reached" if math.isinf(x) else _num(x)

    return {"estimate": show(m["median"]), "lower": show(m["lower"]), "upper": show(m["upper"]),
            "at_risk": int(time.size), "events": int(np.sum(event))}


def madrs_trajectory(rows: pd.DataFrame) -> dict[str, list[float]]:
    """One arm's MADRS over time: baseline (the drawn covariate, no CI), then at each assessment the
    mean with its 95 % CI and the 10-90 % range of patients (the report's and the page's figures)."""
    base = rows.drop_duplicates(["patient", "period"])["baseline_madrs [points]"]
    out = {"time [h]": [0.0], "mean [points]": [float(base.mean())], "lower [points]": [math.nan],
           "upper [points]": [math.nan], "p10 [points]": [float(base.quantile(0.1))],
           "p90 [points]": [float(base.quantile(0.9))]}
    for time, at in rows.groupby(ASSESSMENT):
        madrs = at[MADRS]
        m = st.mean_ci(madrs.to_numpy())
        for key, value in (("time [h]", time), ("mean [points]", m["mean"]), ("lower [points]", m["lower"]),
                           ("upper [points]", m["upper"]), ("p10 [points]", madrs.quantile(0.1)),
                           ("p90 [points]", madrs.quantile(0.9))):
            out[key].append(float(value))
    return out


def arm_summary(spec: TrialSpec, rows: pd.DataFrame) -> dict[str, Any]:
    ep = spec.endpoints
    per_assessment = []
    for t, at in rows.groupby(ASSESSMENT, sort=True):
        change = at[CHANGE].to_numpy()
        m = st.mean_ci(change)
        per_assessment.append({
            ASSESSMENT: float(t), "n": int(m["n"]),
            "madrs [points]": _num(at[MADRS].mean()),
            CHANGE: {"mean": _num(m["mean"]), "sd": _num(m["sd"]), "lower": _num(m["lower"]), "upper": _num(m["upper"])},
            "response_rate": _rate(at["responder"].to_numpy()),
            "remission_rate": _rate(at["remitter"].to_numpy()),
            "relapsed_fraction": _rate(at["relapsed"].to_numpy()),
            # readouts a patient's state cannot define are counted here, not dropped from the mean unseen
            "mechanism": {c: {"mean": _num(at[c].mean()), "missing": int(at[c].isna().sum())}
                          for c in MECHANISM_COLUMNS},
        })
    pp = per_patient(rows)
    time, event = relapse_data(pp)
    cadss, sbp = pp["cadss_peak"].fillna(0.0).to_numpy(), pp["sbp_rise"].fillna(0.0).to_numpy()
    out = {
        "n": int(len(pp)),
        "assessments": per_assessment,
        "relapse": {"median_time_to_relapse [h]": _median(time, event),
                    "counted_from": "the first responding assessment (randomisation in randomised withdrawal)"},
        "side_effects": {
            f"cadss_at_least_{ep.cadss_at_least:g}_points": _rate(cadss >= ep.cadss_at_least),
            f"sbp_rise_at_least_{ep.sbp_rise_at_least:g}_mmHg": _rate(sbp >= ep.sbp_rise_at_least),
            "cadss_peak [points]": {"mean": _num(pp["cadss_peak"].mean()), "max": _num(pp["cadss_peak"].max())},
            "sbp_peak_rise [mmHg]": {"mean": _num(pp["sbp_rise"].mean()), "max": _num(pp["sbp_rise"].max())},
        },
    }
    if DOSES_GIVEN in rows:
        out["adaptive_dosing"] = dosing_decisions(rows)
    return out


DOSES_GIVEN = "doses_given [count]"


def dosing_decisions(rows: pd.DataFrame) -> dict[str, Any]:
    """What the arm's dosing rules did: administrations given, held, delayed and at the titrated
    amount (totals and per patient), patients who stopped, and the amount given."""
    first = rows.drop_duplicates(["patient", "period"])
    out: dict[str, Any] = {"patients": int(len(first))}
    for what in ("given", "held", "delayed", "titrated", "stopped"):
        counts = first[f"doses_{what} [count]"].to_numpy(dtype=float)
        out[f"doses_{what}"] = {"total": int(counts.sum()), "mean_per_patient": _num(counts.mean()),
                                "patients_with_any": int((counts > 0).sum())}
    out["patients_stopped"] = _rate(first["stopped_at [h]"].notna().to_numpy())
    total = first["dose_total [mg]"].to_numpy(dtype=float)
    out["dose_total [mg]"] = {"mean": _num(np.mean(total)), "p10": _num(np.quantile(total, 0.1)),
                              "p90": _num(np.quantile(total, 0.9))} if total.size else None
    return out


def comparison(spec: TrialSpec, rows: pd.DataFrame, arm: str, control: str) -> dict[str, Any]:
    """``arm`` against ``control``: mean change difference and response odds ratio per assessment,
    hazard ratio and log-rank test for relapse. A crossover compares within patients (paired)."""
    a, c = rows[rows["arm"] == arm], rows[rows["arm"] == control]
    paired = spec.design == "crossover"
    per_assessment = []
    for t in sorted(set(a[ASSESSMENT]) & set(c[ASSESSMENT])):
        at, ct = a[a[ASSESSMENT] == t], c[c[ASSESSMENT] == t]
        if paired:
            both = at.set_index("patient")[CHANGE].to_frame("a").join(ct.set_index("patient")[CHANGE].to_frame("c"),
                                                                        how="inner")
            m = st.mean_ci((both["a"] - both["c"]).to_numpy())
            diff = _interval(m["mean"], m["lower"], m["upper"], method="paired t (within-patient differences)")
        else:
            d = st.mean_difference(at[CHANGE].to_numpy(), ct[CHANGE].to_numpy())
            diff = _interval(d["difference"], d["lower"], d["upper"], p_value=_num(d["p_value"]), method="Welch t")
        k1, n1 = int(at["responder"].sum()), len(at)
        k0, n0 = int(ct["responder"].sum()), len(ct)
        o = st.odds_ratio(k1, n1, k0, n0)
        per_assessment.append({ASSESSMENT: float(t), "difference_in_madrs_change [points]": diff,
                               "odds_ratio_response": _interval(o["odds_ratio"], o["lower"], o["upper"], method="Woolf")})
    pa, pc = per_patient(a), per_patient(c)
    ta, ea = relapse_data(pa)
    tc, ec = relapse_data(pc)
    time, event = np.concatenate([ta, tc]), np.concatenate([ea, ec])
    group = np.concatenate([np.ones(ta.size, dtype=int), np.zeros(tc.size, dtype=int)])
    hr = st.cox_hazard_ratio(time, event, group)
    lr = st.logrank_test(time, event, group)
    return {"arm": arm, "control": control, "paired": paired, "assessments": per_assessment,
            "relapse_hazard_ratio": _interval(hr["hazard_ratio"], hr["lower"], hr["upper"],
                                              p_value=_num(hr["p_value"]), method="Cox (Efron ties), responders only"),
            "relapse_logrank": {"chi2": _num(lr["chi2"]), "p_value": _num(lr["p_value"])}}


def trial_summary(spec: TrialSpec, patients: pd.DataFrame) -> dict[str, Any]:
    """Everything ``summary.json`` holds."""
    rows = analysed(patients)
    first = patients.drop_duplicates(["patient"])
    failed = first[first["status"] != "ok"]
    arms = [a.name for a in spec.arms]
    return {
        "disclaimer": DISCLAIMER,
        "trial": spec.describe(),
        "patients": {
            "simulated": int(len(first)), "failed": int(len(failed)),
            "failed_reasons": {str(k): int(v) for k, v in failed["status"].value_counts().items()},
            "randomised": int(first[first["status"].eq("ok") & first["randomised"]].shape[0]),
            # values defined at every assessment that a finished patient's state leaves undefined (NaN),
            # by column: 0 when the model is well posed (session peaks are NaN without a session, not here)
            "undefined_values": {c: int(patients.loc[patients["status"] == "ok", c].isna().sum())
                                 for c in ASSESSMENT_COLUMNS},
        },
        "arms": {arm: arm_summary(spec, rows[rows["arm"] == arm]) for arm in arms},
        "comparisons": [comparison(spec, rows, arm, spec.control) for arm in arms if arm != spec.control],
        # the declared primary analysis ([trial.success]) and whether this trial met it
        "primary": primary_analysis(spec.success, spec.design, spec.control, rows) if spec.success else None,
    }


def _random_effects(values: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """One-way random-effects decomposition (ANOVA estimators) of ``values`` grouped by ``groups``:
    the between-group variance of the group means' expectation and the within-group variance."""
    keys, inverse, n_b = np.unique(groups, return_inverse=True, return_counts=True)
    n, b = values.size, keys.size
    means = np.bincount(inverse, weights=values) / n_b
    grand = values.mean()
    ms_within = np.sum((values - means[inverse]) ** 2) / (n - b) if n > b else math.nan
    if b < 2:
        return {"mean": grand, "between": math.nan, "within": ms_within, "n": n, "groups": b, "p_value": math.nan}
    ms_between = np.sum(n_b * (means - grand) ** 2) / (b - 1)
    n0 = (n - np.sum(n_b ** 2) / n) / (b - 1)
    from scipy.stats import f as f_dist

    # F test of "no between-group variance": with few groups the split is imprecise, and this says
    # whether the parameter share is distinguishable from the patients' sampling noise
    p_value = float(f_dist.sf(ms_between / ms_within, b - 1, n - b)) if ms_within > 0 else math.nan
    return {"mean": grand, "between": max(0.0, (ms_between - ms_within) / n0), "within": ms_within, "n": n,
            "groups": b, "p_value": p_value}


def parameter_uncertainty(spec: TrialSpec, patients: pd.DataFrame, draw_block: int) -> dict[str, Any]:
    """Per arm and assessment, the MADRS change split into parameter uncertainty (the spread of the
    population mean between parameter draws, one draw per block of ``draw_block`` patients) and
    between-patient variability, with the 95 % interval of the arm's mean change that carries both
    (normal, mean +- 1.96 sqrt(parameter variance + patient variance / n)) beside the interval from
    the patients alone (t, as in ``arms``)."""
    rows = analysed(patients)
    block = patient_numbers(rows["patient"])["index"].to_numpy() // draw_block
    out = {}
    for arm in (a.name for a in spec.arms):
        in_arm = (rows["arm"] == arm).to_numpy()
        per_assessment = []
        for t in sorted(rows.loc[in_arm, ASSESSMENT].unique()):
            at = in_arm & (rows[ASSESSMENT] == t).to_numpy()
            change = rows.loc[at, CHANGE].to_numpy(dtype=float)
            ok = np.isfinite(change)
            if ok.sum() < 3:
                continue
            re = _random_effects(change[ok], block[at][ok])
            patients_only = st.mean_ci(change[ok])
            total = re["between"] + re["within"] / re["n"]
            half = st._z(0.95) * math.sqrt(total) if math.isfinite(total) else math.nan
            per_assessment.append({
                ASSESSMENT: float(t), "n": int(re["n"]), "draws": int(re["groups"]),
                "mean_change [points]": _num(re["mean"]),
                "sd_between_patients [points]": _num(math.sqrt(re["within"])),
                "sd_of_mean_from_parameters [points]": _num(math.sqrt(re["between"])),
                "share_of_mean_variance_from_parameters": _num(re["between"] / total) if total > 0 else None,
                "f_test_p_value_of_no_parameter_variance": _num(re["p_value"]),
                "interval95_with_parameter_uncertainty [points]": [_num(re["mean"] - half), _num(re["mean"] + half)],
                "interval95_patients_only [points]": [_num(patients_only["lower"]), _num(patients_only["upper"])],
            })
        out[arm] = per_assessment
    return {"method": "one-way random effects over blocks of patients, one parameter draw each (ANOVA estimators)",
            "arms": out}
