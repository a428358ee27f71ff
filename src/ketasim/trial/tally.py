"""A trial's summary reduced chunk by chunk: what ``summary.json`` and the report need, without the
patients table.

Each chunk of patients is reduced as it arrives (``ChunkTally.of``) to moments (count, mean, sum of
squared deviations), counts and histograms per arm and assessment, and to the few numbers per patient
that exact statistics need: the relapse data of responders (Kaplan-Meier, Cox and log-rank), the
primary endpoint's value and the amount given. ``TrialTally`` combines the chunks in the trial's
order, so a run gives the same summary whatever order its chunks finish in, and memory grows by
those few numbers per patient, not by the patients table (``ketasim trial`` streams the table to
``patients.parquet`` as it goes). The in-memory ``trial_summary`` is the same reduction of the whole
table in one chunk: the two agree to rounding (the moments are merged by Chan's formula).

Percentiles of the MADRS (the report's 10-90 % band) are read from histograms of 0.001-point bins.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..result import DISCLAIMER
from . import statistics as st
from .design import TrialSpec
from .discharge import DISCHARGE_CRITERIA, NOT_READY_KEY, OBSERVATION_H, READY_BY_H, ready_by_key
from .ketamine_use import FLAG_MEANINGS, USE_COLUMNS, USE_FLAGS
from .success import patient_numbers, patient_outcomes, primary_from_outcomes

ASSESSMENT, MADRS, CHANGE = "assessment [h]", "madrs [points]", "madrs_change [points]"
LIKING = "drug_liking_peak [points]"
#: how the drug-liking numbers are to be read (model/clinical.py)
LIKING_MEANING = ("Drug liking: each patient's highest session peak of 'drug liking at the moment' on the bipolar "
                  "visual analogue scale of abuse-potential studies (0 strongest disliking, 50 neutral, 100 strongest "
                  "liking), as recreational drug users rate it: calibrated to IV ketamine's mean peak in such users "
                  "(Shram 2023); patients in treatment may rate it otherwise. Only ketamine's liking is modelled: "
                  "other drugs (midazolam, memantine, placebo) stay at 50, which says the model has no liking for "
                  "them, not that they are neutral. A measure of abuse liability, not a prediction of misuse.")
MECHANISM_COLUMNS = ("nmda_block_interneuron_peak [fraction]", "spine_density [fold baseline]", "pfc_gbc [z]",
                     "il6 [pg/mL]")
ASSESSMENT_COLUMNS = ("madrs_model [points]", "spine_density [fold baseline]", "pfc_gbc [z]", "il6 [pg/mL]")
DECISIONS = ("given", "held", "delayed", "titrated", "stopped")
BIN_POINTS = 0.001  # histogram bin of the MADRS (0-60 points)
N_BINS = int(round(60.0 / BIN_POINTS)) + 1


def analysed(patients: pd.DataFrame) -> pd.DataFrame:
    """The rows the statistics use: solver finished and randomised."""
    return patients[(patients["status"] == "ok") & patients["randomised"]]


def per_patient(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per patient and period with the patient-level endpoints."""
    keys = ["patient", "period"]
    return rows.groupby(keys, sort=False).agg(
        arm=("arm", "first"), at_risk=("at_risk_of_relapse", "first"),
        relapse_time=("time_to_relapse [h]", "first"), response=("response_time [h]", "first"), last=(ASSESSMENT, "max"),
        cadss_peak=("cadss_peak [points]", "max"), sbp_rise=("sbp_peak_rise [mmHg]", "max"),
        discharge=("discharge_ready_after [h]", "max"),
        # a patients table written before these columns existed is still summarised, without them
        **({"liking": (LIKING, "max")} if LIKING in rows else {}),
        **{c: (c, "first") for c in USE_COLUMNS if c in rows}).reset_index()


def relapse_data(per_patient: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(time from response h, event) of relapse for patients at risk (responders), censored at the
    last assessment."""
    at_risk = per_patient[per_patient["at_risk"].astype(bool)]
    event = at_risk["relapse_time"].notna().to_numpy()
    censored = at_risk["last"].to_numpy(dtype=float) - at_risk["response"].to_numpy(dtype=float)
    time = np.where(event, at_risk["relapse_time"].to_numpy(dtype=float), censored)
    return time, event


# ---------------------------------------------------------------------- small mergeable pieces
@dataclass
class Moments:
    """Count, mean and sum of squared deviations of finite values; merged exactly in exact arithmetic
    (Chan, Golub and LeVeque, Am Stat 1983;37:242-247)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, x) -> Moments:
        a = np.asarray(x, dtype=float)
        a = a[np.isfinite(a)]
        if not a.size:
            return cls()
        mean = float(a.mean())
        return cls(int(a.size), mean, float(np.sum((a - mean) ** 2)))

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return Moments(other.n, other.mean, other.m2)
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def sd(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else math.nan

    def ci(self) -> dict[str, float]:
        return st.mean_ci_from(self.n, self.mean if self.n else math.nan, self.sd)


@dataclass
class Histogram:
    """Counts of MADRS values in ``BIN_POINTS`` bins over 0-60 points (added when chunks merge)."""

    counts: np.ndarray

    @classmethod
    def of(cls, x) -> Histogram:
        a = np.asarray(x, dtype=float)
        a = a[np.isfinite(a)]
        return cls(np.bincount(np.clip(np.rint(a / BIN_POINTS), 0, N_BINS - 1).astype(np.int64), minlength=N_BINS))

    def merge(self, other: Histogram) -> Histogram:
        return Histogram(self.counts + other.counts)


def _quantile(hist: Histogram, q: float) -> float:
    """The q-quantile (linear interpolation between order statistics, as pandas) from a histogram."""
    hist = hist.counts
    n = int(hist.sum())
    if n == 0:
        return math.nan
    cum = np.cumsum(hist)
    h = (n - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    x_lo, x_hi = (int(np.searchsorted(cum, k + 1)) * BIN_POINTS for k in (lo, hi))
    return x_lo + (h - lo) * (x_hi - x_lo)


@dataclass
class _Values:
    """Sum, count and missing count of a column that may hold NaN (pandas' skipna mean)."""

    total: float = 0.0
    n: int = 0
    missing: int = 0
    top: float = -math.inf

    @classmethod
    def of(cls, x) -> _Values:
        a = np.asarray(x, dtype=float)
        ok = np.isfinite(a)
        return cls(float(a[ok].sum()), int(ok.sum()), int((~ok).sum()), float(a[ok].max()) if ok.any() else -math.inf)

    def merge(self, o: _Values) -> _Values:
        return _Values(self.total + o.total, self.n + o.n, self.missing + o.missing, max(self.top, o.top))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def max(self) -> float:
        return self.top if self.n else math.nan


def _merge(a, b):
    """Two tallies of the same shape merged: moments, values and histograms by their rules, numbers
    added, arrays and frames concatenated (in the trial's order), dicts key by key."""
    if isinstance(a, (Moments, _Values, Histogram)):
        return a.merge(b)
    if isinstance(a, Counter):
        return a + b
    if isinstance(a, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    if isinstance(a, np.ndarray):  # per-patient values, in the trial's order
        return np.concatenate([a, b])
    if isinstance(a, pd.DataFrame):
        return pd.concat([a, b], ignore_index=True)
    return a + b


# ---------------------------------------------------------------------- one chunk
@dataclass
class ChunkTally:
    """What one chunk of the patients table contributes (see the module's description)."""

    parts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: TrialSpec, frame: pd.DataFrame, draw_block: int | None = None) -> ChunkTally:
        ep = spec.endpoints
        first = frame.drop_duplicates(["patient"])
        failed = first[first["status"] != "ok"]
        ok = frame["status"] == "ok"
        parts: dict[str, Any] = {
            "simulated": len(first), "failed": len(failed), "reasons": Counter(failed["status"].astype(str)),
            "randomised": int((first["status"].eq("ok") & first["randomised"]).sum()),
            "undefined": {c: int(frame.loc[ok, c].isna().sum()) for c in ASSESSMENT_COLUMNS},
            "population": _population(first), "arms": {}, "paired": {}}
        rows = analysed(frame)
        for arm, g in rows.groupby("arm", sort=False, observed=True):
            parts["arms"][str(arm)] = _arm(g, ep, draw_block)
        if spec.design == "crossover":
            for arm in (a.name for a in spec.arms if a.name != spec.control):
                parts["paired"][arm] = _paired(rows, arm, spec.control)
        if spec.success is not None:
            parts["outcomes"] = patient_outcomes(spec.success, spec.design, spec.control, rows)
        return cls(parts)


def _population(first: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for seq, g in first.groupby("sequence", sort=False, observed=True):
        out[str(seq)] = {"n": len(g), "female": int((g["sex"] == "female").sum()),
                         "weight": Moments.of(g["weight [kg]"]), "age": Moments.of(g["age [y]"]),
                         "baseline": Moments.of(g["baseline_madrs [points]"]),
                         "cyp2b6_poor": int((g["cyp2b6"] == "poor").sum()),
                         "met_carriers": int((g["bdnf_val66met"] != "val/val").sum()),
                         "high_inflammation": int((g["inflammation"] == "high").sum()),
                         "failures": int((g["status"] != "ok").sum())}
    return out


def _arm(g: pd.DataFrame, ep, draw_block: int | None) -> dict[str, Any]:
    pp = per_patient(g)
    time, event = relapse_data(pp)
    cadss, sbp = pp["cadss_peak"].to_numpy(dtype=float), pp["sbp_rise"].to_numpy(dtype=float)
    base = g.drop_duplicates(["patient", "period"])["baseline_madrs [points]"]
    out: dict[str, Any] = {
        "patients": len(pp), "relapse_time": time, "relapse_event": event,
        "cadss_at_least": int((np.nan_to_num(cadss) >= ep.cadss_at_least).sum()),
        "sbp_at_least": int((np.nan_to_num(sbp) >= ep.sbp_rise_at_least).sum()),
        "cadss": _Values.of(cadss), "sbp": _Values.of(sbp), "discharge": _discharge(pp["discharge"]),
        "baseline": Moments.of(base), "baseline_hist": Histogram.of(base), "at": {}}
    if "liking" in pp:
        out["liking"] = _Values.of(pp["liking"].to_numpy(dtype=float))
    if all(c in pp for c in USE_COLUMNS):
        out["ketamine_use"] = _ketamine_use(pp)
    block = patient_numbers(g["patient"])["index"].to_numpy() // draw_block if draw_block else None
    for t, at in g.groupby(ASSESSMENT, sort=False):
        change = at[CHANGE].to_numpy(dtype=float)
        entry = {"change": Moments.of(change), "madrs": Moments.of(at[MADRS]), "madrs_hist": Histogram.of(at[MADRS]),
                 "rows": len(at), "responder": int(at["responder"].sum()), "remitter": int(at["remitter"].sum()),
                 "relapsed": int(at["relapsed"].sum()),
                 "mechanism": {c: _Values.of(at[c]) for c in MECHANISM_COLUMNS}}
        if block is not None:
            b = block[(g[ASSESSMENT] == t).to_numpy()]
            entry["blocks"] = {int(k): Moments.of(change[b == k]) for k in np.unique(b)}
        out["at"][float(t)] = entry
    if "doses_given [count]" in g:
        first = g.drop_duplicates(["patient", "period"])
        decisions = {}
        for what in DECISIONS:
            counts = first[f"doses_{what} [count]"].to_numpy(dtype=float)
            decisions[what] = {"total": float(counts.sum()), "any": int((counts > 0).sum())}
        decisions["stopped_patients"] = int(first["stopped_at [h]"].notna().sum())
        decisions["dose_total"] = first["dose_total [mg]"].to_numpy(dtype=float)
        out["decisions"] = decisions
    return out


def _ketamine_use(pp: pd.DataFrame) -> dict[str, Any]:
    """The ketamine each patient was given over the course (``trial/ketamine_use.py``): amounts and
    day counts as values, the flags counted."""
    return {c: int(pp[c].astype(bool).sum()) if c in USE_FLAGS else _Values.of(pp[c].to_numpy(float))
            for c in USE_COLUMNS}


def _discharge(slowest: pd.Series) -> dict[str, Any]:
    """Counts of each patient's slowest session among those the assessments report
    (``discharge_ready_after [h]``): with a session, ready by each of ``READY_BY_H``, and the finite
    times (not ready within the window: infinite)."""
    h = slowest.to_numpy(dtype=float)
    h = h[~np.isnan(h)]
    return {"patients": int(h.size), "ready_by": {t: int((h <= t).sum()) for t in READY_BY_H},
            "ready_after": _Values.of(h)}


def _paired(rows: pd.DataFrame, arm: str, control: str) -> dict[float, Moments]:
    """Within-patient differences in MADRS change, arm minus control, per assessment."""
    a, c = rows[rows["arm"] == arm], rows[rows["arm"] == control]
    out = {}
    for t in sorted(set(a[ASSESSMENT]) & set(c[ASSESSMENT])):
        at, ct = a[a[ASSESSMENT] == t], c[c[ASSESSMENT] == t]
        both = at.set_index("patient")[CHANGE].to_frame("a").join(ct.set_index("patient")[CHANGE].to_frame("c"),
                                                                    how="inner")
        out[float(t)] = Moments.of((both["a"] - both["c"]).to_numpy())
    return out


# ---------------------------------------------------------------------- the whole trial
def _interval(est: float, lo: float, hi: float, **extra) -> dict[str, Any]:
    return {"estimate": _num(est), "lower": _num(lo), "upper": _num(hi), **extra}


def _num(x) -> float | None:
    """JSON-safe number: NaN (undefined) and an infinite estimate (not estimable) become null."""
    x = float(x)
    return None if not math.isfinite(x) else x


def _rate(k: int, n: int) -> dict[str, Any]:
    return _interval(*st.proportion_ci(k, n), k=int(k), n=int(n))


def _median(time: np.ndarray, event: np.ndarray) -> dict[str, Any]:
    m = st.km_median(time, event)

    def show(x):
        return "not reached" if math.isinf(x) else _num(x)

    return {"estimate": show(m["median"]), "lower": show(m["lower"]), "upper": show(m["upper"]),
            "at_risk": int(time.size), "events": int(np.sum(event))}


class TrialTally:
    """Chunk tallies combined in the trial's order; the summary, parameter uncertainty and report data."""

    def __init__(self, spec: TrialSpec, draw_block: int | None = None):
        self.spec, self.draw_block = spec, draw_block
        self._pending: dict[int, ChunkTally] = {}
        self._next = 0
        self.parts: dict[str, Any] | None = None

    @classmethod
    def of_frame(cls, spec: TrialSpec, patients: pd.DataFrame, draw_block: int | None = None) -> TrialTally:
        tally = cls(spec, draw_block)
        tally.add(0, ChunkTally.of(spec, patients, draw_block))
        return tally

    def add(self, index: int, chunk: ChunkTally) -> None:
        """Chunk ``index`` (0, 1, ... in the trial's order); merged once all before it have come."""
        self._pending[index] = chunk
        while self._next in self._pending:
            part = self._pending.pop(self._next).parts
            self.parts = part if self.parts is None else _merge(self.parts, part)
            self._next += 1

    # ------------------------------------------------------------------ summary.json
    def summary(self) -> dict[str, Any]:
        """Everything ``summary.json`` holds."""
        spec, p = self.spec, self.parts
        arms = [a.name for a in spec.arms]
        return {
            "disclaimer": DISCLAIMER,
            "trial": spec.describe(),
            "patients": {
                "simulated": int(p["simulated"]), "failed": int(p["failed"]),
                "failed_reasons": {str(k): int(v) for k, v in p["reasons"].most_common()},
                "randomised": int(p["randomised"]),
                # values defined at every assessment that a finished patient's state leaves undefined (NaN),
                # by column: 0 when the model is well posed (session peaks are NaN without a session, not here)
                "undefined_values": {c: int(v) for c, v in p["undefined"].items()},
            },
            "arms": {arm: self._arm_summary(arm) for arm in arms},
            "comparisons": [self._comparison(arm, spec.control) for arm in arms if arm != spec.control],
            # the declared primary analysis ([trial.success]) and whether this trial met it
            "primary": self._primary() if spec.success else None,
        }

    def _arm(self, arm: str) -> dict[str, Any]:
        return self.parts["arms"].get(arm) or {"patients": 0, "relapse_time": np.zeros(0), "relapse_event":
                                               np.zeros(0, dtype=bool), "cadss_at_least": 0, "sbp_at_least": 0,
                                               "cadss": _Values(), "sbp": _Values(), "baseline": Moments(),
                                               "discharge": _discharge(pd.Series(dtype=float)),
                                               "ketamine_use": _ketamine_use(pd.DataFrame(columns=[*USE_COLUMNS])),
                                               "baseline_hist": Histogram.of([]), "at": {}}

    def _arm_summary(self, arm: str) -> dict[str, Any]:
        ep, a = self.spec.endpoints, self._arm(arm)
        per_assessment = []
        for t in sorted(a["at"]):
            e = a["at"][t]
            m = e["change"].ci()
            per_assessment.append({
                ASSESSMENT: float(t), "n": int(m["n"]),
                "madrs [points]": _num(e["madrs"].mean if e["madrs"].n else math.nan),
                CHANGE: {"mean": _num(m["mean"]), "sd": _num(m["sd"]), "lower": _num(m["lower"]), "upper": _num(m["upper"])},
                "response_rate": _rate(e["responder"], e["rows"]),
                "remission_rate": _rate(e["remitter"], e["rows"]),
                "relapsed_fraction": _rate(e["relapsed"], e["rows"]),
                # readouts a patient's state cannot define are counted here, not dropped from the mean unseen
                "mechanism": {c: {"mean": _num(v.mean), "missing": int(v.missing)} for c, v in e["mechanism"].items()},
            })
        out = {
            "n": int(a["patients"]),
            "assessments": per_assessment,
            "relapse": {"median_time_to_relapse [h]": _median(a["relapse_time"], a["relapse_event"]),
                        "counted_from": "the first responding assessment (randomisation in randomised withdrawal)"},
            "side_effects": {
                f"cadss_at_least_{ep.cadss_at_least:g}_points": _rate(a["cadss_at_least"], a["patients"]),
                f"sbp_rise_at_least_{ep.sbp_rise_at_least:g}_mmHg": _rate(a["sbp_at_least"], a["patients"]),
                "cadss_peak [points]": {"mean": _num(a["cadss"].mean), "max": _num(a["cadss"].max)},
                "sbp_peak_rise [mmHg]": {"mean": _num(a["sbp"].mean), "max": _num(a["sbp"].max)},
                "discharge": self._discharge_summary(a["discharge"]),
            },
        }
        if "liking" in a:
            out["side_effects"][LIKING] = {"mean": _num(a["liking"].mean), "max": _num(a["liking"].max)}
        if "ketamine_use" in a:
            out["ketamine_use"] = self._ketamine_use_summary(a["ketamine_use"], a["patients"])
        if "decisions" in a:
            out["adaptive_dosing"] = self._decisions(a["decisions"], a["patients"])
        return out

    @staticmethod
    def _discharge_summary(d: Mapping[str, Any]) -> dict[str, Any]:
        """When patients met the model's discharge criteria (``trial/discharge.py``), each patient's
        slowest session among those the assessments report."""
        n, v = d["patients"], d["ready_after"]
        out: dict[str, Any] = {"criteria": DISCHARGE_CRITERIA, "patients_with_a_session": int(n)}
        for t in READY_BY_H:
            out[ready_by_key(t)] = _rate(d["ready_by"][t], n)
        out[NOT_READY_KEY] = _rate(n - d["ready_by"][OBSERVATION_H], n)
        # the times of the patients ready within the window; the others are counted
        out["ready_after [h]"] = {"mean_when_ready": _num(v.mean), "max_when_ready": _num(v.max),
                                  "not_ready_within_window": int(v.missing)}
        return out

    @staticmethod
    def _ketamine_use_summary(e: Mapping[str, Any], n: int) -> dict[str, Any]:
        """The ketamine its patients were given over the course and the share each exposure flag marks
        (``trial/ketamine_use.py``: flags of a dosing pattern, not predictions of injury)."""
        out: dict[str, Any] = {"flags": FLAG_MEANINGS}
        for c in USE_COLUMNS:
            if c in USE_FLAGS:
                out[f"{c}_fraction"] = _rate(e[c], n)
            else:
                out[c] = {"mean": _num(e[c].mean), "max": _num(e[c].max)}
        return out

    @staticmethod
    def _decisions(d: Mapping[str, Any], n: int) -> dict[str, Any]:
        """What the arm's dosing rules did: administrations given, held, delayed and at the titrated
        amount (totals and per patient), patients who stopped, and the amount given."""
        out: dict[str, Any] = {"patients": int(n)}
        for what in DECISIONS:
            out[f"doses_{what}"] = {"total": int(d[what]["total"]), "mean_per_patient": _num(d[what]["total"] / n)
                                    if n else None, "patients_with_any": int(d[what]["any"])}
        out["patients_stopped"] = _rate(d["stopped_patients"], n)
        total = d["dose_total"]
        out["dose_total [mg]"] = {"mean": _num(np.mean(total)), "p10": _num(np.quantile(total, 0.1)),
                                  "p90": _num(np.quantile(total, 0.9))} if total.size else None
        return out

    def _comparison(self, arm: str, control: str) -> dict[str, Any]:
        """``arm`` against ``control``: mean change difference and response odds ratio per assessment,
        hazard ratio and log-rank test for relapse. A crossover compares within patients (paired)."""
        a, c = self._arm(arm), self._arm(control)
        paired = self.spec.design == "crossover"
        per_assessment = []
        for t in sorted(set(a["at"]) & set(c["at"])):
            at, ct = a["at"][t], c["at"][t]
            if paired:
                m = self.parts["paired"].get(arm, {}).get(t, Moments()).ci()
                diff = _interval(m["mean"], m["lower"], m["upper"], method="paired t (within-patient differences)")
            else:
                x, y = at["change"], ct["change"]
                d = st.mean_difference_from(x.n, x.mean, x.sd, y.n, y.mean, y.sd)
                diff = _interval(d["difference"], d["lower"], d["upper"], p_value=_num(d["p_value"]), method="Welch t")
            o = st.odds_ratio(at["responder"], at["rows"], ct["responder"], ct["rows"])
            per_assessment.append({ASSESSMENT: float(t), "difference_in_madrs_change [points]": diff,
                                   "odds_ratio_response": _interval(o["odds_ratio"], o["lower"], o["upper"], method="Woolf")})
        time = np.concatenate([a["relapse_time"], c["relapse_time"]])
        event = np.concatenate([a["relapse_event"], c["relapse_event"]])
        group = np.concatenate([np.ones(a["relapse_time"].size, dtype=int), np.zeros(c["relapse_time"].size, dtype=int)])
        hr = st.cox_hazard_ratio(time, event, group)
        lr = st.logrank_test(time, event, group)
        return {"arm": arm, "control": control, "paired": paired, "assessments": per_assessment,
                "relapse_hazard_ratio": _interval(hr["hazard_ratio"], hr["lower"], hr["upper"],
                                                  p_value=_num(hr["p_value"]), method="Cox (Efron ties), responders only"),
                "relapse_logrank": {"chi2": _num(lr["chi2"]), "p_value": _num(lr["p_value"])}}

    def _primary(self) -> dict[str, Any]:
        """The whole trial's primary analysis ([trial.success])."""
        return primary_from_outcomes(self.spec.success, self.spec.design, self.parts["outcomes"])

    # ------------------------------------------------------------------ parameter uncertainty
    def parameter_uncertainty(self) -> dict[str, Any]:
        """Per arm and assessment, the MADRS change split into parameter uncertainty (the spread of the
        population mean between parameter draws, one draw per block of ``draw_block`` patients) and
        between-patient variability, with the 95 % interval of the arm's mean change that carries both
        (normal, mean +- 1.96 sqrt(parameter variance + patient variance / n)) beside the interval from
        the patients alone (t, as in ``arms``)."""
        out = {}
        for arm in (a.name for a in self.spec.arms):
            per_assessment = []
            for t, e in sorted(self._arm(arm)["at"].items()):
                if e["change"].n < 3:
                    continue
                re = _random_effects(list(e["blocks"].values()))
                patients_only = e["change"].ci()
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

    # ------------------------------------------------------------------ the report's data
    def trajectory(self, arm: str) -> dict[str, list[float]]:
        """One arm's MADRS over time: baseline (no CI), then at each assessment the mean with its 95 % CI
        and the 10-90 % range of patients."""
        a = self._arm(arm)
        out = {"time [h]": [0.0], "mean [points]": [a["baseline"].mean if a["baseline"].n else math.nan],
               "lower [points]": [math.nan], "upper [points]": [math.nan],
               "p10 [points]": [_quantile(a["baseline_hist"], 0.1)], "p90 [points]": [_quantile(a["baseline_hist"], 0.9)]}
        for t in sorted(a["at"]):
            e = a["at"][t]
            m = e["madrs"].ci()
            for key, value in (("time [h]", t), ("mean [points]", m["mean"]), ("lower [points]", m["lower"]),
                               ("upper [points]", m["upper"]), ("p10 [points]", _quantile(e["madrs_hist"], 0.1)),
                               ("p90 [points]", _quantile(e["madrs_hist"], 0.9))):
                out[key].append(float(value))
        return out

    def relapse(self, arm: str) -> tuple[np.ndarray, np.ndarray]:
        a = self._arm(arm)
        return a["relapse_time"], a["relapse_event"]

    def mechanism_means(self, arm: str, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(assessment times h, mean) of a mechanism readout."""
        at = self._arm(arm)["at"]
        times = np.array(sorted(at), dtype=float)
        return times, np.array([at[t]["mechanism"][column].mean for t in sorted(at)])

    def population(self) -> dict[str, dict[str, Any]]:
        """Per sequence: covariate counts and moments of every simulated patient."""
        return self.parts["population"]


def _random_effects(blocks: list[Moments]) -> dict[str, float]:
    """One-way random-effects decomposition (ANOVA estimators) from each group's moments: the
    between-group variance of the group means' expectation and the within-group variance."""
    blocks = [b for b in blocks if b.n]
    n_b = np.array([b.n for b in blocks], dtype=float)
    means = np.array([b.mean for b in blocks])
    n, b = int(n_b.sum()), len(blocks)
    grand = float(np.sum(n_b * means) / n)
    ms_within = sum(x.m2 for x in blocks) / (n - b) if n > b else math.nan
    if b < 2:
        return {"mean": grand, "between": math.nan, "within": ms_within, "n": n, "groups": b, "p_value": math.nan}
    ms_between = float(np.sum(n_b * (means - grand) ** 2)) / (b - 1)
    n0 = (n - np.sum(n_b ** 2) / n) / (b - 1)
    from scipy.stats import f as f_dist

    # F test of "no between-group variance": with few groups the split is imprecise, and this says
    # whether the parameter share is distinguishable from the patients' sampling noise
    p_value = float(f_dist.sf(ms_between / ms_within, b - 1, n - b)) if ms_within > 0 else math.nan
    return {"mean": grand, "between": max(0.0, (ms_between - ms_within) / n0), "within": ms_within, "n": n,
            "groups": b, "p_value": p_value}
