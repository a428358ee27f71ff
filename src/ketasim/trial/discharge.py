"""Readiness for discharge after a dosing session: when the model's discharge criteria are met.

The esketamine label asks for at least two hours of observation after each session; the maker's
dosing page adds "until the provider determines the patient is safe to leave", with blood pressure
checked before the dose, at 40 minutes "and subsequently as clinically warranted until values
remain consistent at a safe level" (spravatohcp.com, "Monitoring & Discharge"). ketasim turns that
into criteria on its own outputs, each with its source (model criteria, not clinical guidance):

* dissociation has passed: CADSS total at most 4 points, the cut-off above which the esketamine
  trials counted dissociation as present (TRANSFORM-2, Chen 2022 Int J Neuropsychopharmacol
  25:269: "significant dissociation", peak CADSS > 4);
* blood pressure is no longer rising (at or after the sample where it peaks in the session's
  window: "values remain consistent") and not in a hypertensive crisis, systolic above 180 mmHg
  (2017 ACC/AHA guideline, Whelton 2018). The crisis bound is ketasim's own lenient choice: a
  clinic may wait for a lower reading.

Readiness is the time after the dose from which every criterion holds to the end of the session's
window (the dose to ``SESSION_WINDOW_H`` after it, whatever the assessment that reports the
session; shorter where the simulation or the period ends sooner), so a patient whose CADSS dips
below 4 and rises again is not ready at the dip. It is infinite where the criteria do not hold at
the window's end (not ready within it) and NaN without a session. Sedation by ketamine itself,
dizziness and nausea (TRANSFORM's other reasons for a later discharge) are not model outputs;
these causes could only lengthen the times.

Reference point (not fitted): across the eight sessions of TRANSFORM-1 and -2 (349 patients on
twice-weekly esketamine), at least 90 % were ready for discharge at 90 minutes and at most 3.5 %
were not ready at 2 hours ("Adverse events affecting readiness for discharge from the clinical
setting after esketamine nasal spray", Psych Congress 2019 poster). ketasim misses it on 84 mg
(README, "Discharge after a session"; tests/test_discharge.py).

>>> import numpy as np
>>> t = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
>>> cadss = np.array([[0.0, 9.0, 5.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 9.0, 7.0, 6.0, 5.0]])
>>> sbp = np.array([[120.0, 135.0, 130.0, 125.0, 121.0], [120.0] * 5, [120.0, 135.0, 130.0, 125.0, 121.0]])
>>> ready_after(t, cadss, sbp).tolist()  # dissociation past at 1.5 h; nothing to wait for; not within 2 h
[1.5, 0.0, inf]
"""

from __future__ import annotations

import numpy as np

#: dissociation still present above this CADSS total [points] (TRANSFORM-2; Chen 2022)
CADSS_READY_AT_MOST = 4.0
#: systolic pressure above which a reading is a hypertensive crisis [mmHg] (2017 ACC/AHA; Whelton 2018)
SBP_CRISIS_MMHG = 180.0
#: the label's minimum observation [h], and the readings the summary counts against it
OBSERVATION_H = 2.0
READY_BY_H = (1.5, OBSERVATION_H)
DISCHARGE_CRITERIA = (f"CADSS <= {CADSS_READY_AT_MOST:g} points, SBP at or past its session peak and at most "
                      f"{SBP_CRISIS_MMHG:g} mmHg, from then to the end of the session's window (model criteria, "
                      "not clinical guidance)")


def ready_by_key(h: float) -> str:
    """The summary's key for the share ready ``h`` hours after the dose: ``ready_by_1.5_h``."""
    return f"ready_by_{h:g}_h"


#: the summary's key for the share not ready at the end of the label's observation
NOT_READY_KEY = f"not_ready_at_{OBSERVATION_H:g}_h"


def ready_after(times_h: np.ndarray, cadss: np.ndarray, sbp: np.ndarray) -> np.ndarray:
    """(n,) hours from the dose until the discharge criteria hold for the rest of the window.

    ``times_h`` (k,) are the window's grid times, the dose first; ``cadss`` and ``sbp`` (n, k) the
    patients' values on it. Infinite for a patient not ready at the window's end; NaN for one with a
    non-finite value.
    """
    times_h = np.asarray(times_h, dtype=float)
    cadss, sbp = np.atleast_2d(cadss), np.atleast_2d(sbp)
    past_peak = np.arange(times_h.size)[None, :] >= np.argmax(sbp, axis=1)[:, None]
    ok = (cadss <= CADSS_READY_AT_MOST) & (sbp <= SBP_CRISIS_MMHG) & past_peak
    # the first index from which every later one is ok: one past the last index that is not
    not_ok = ~ok
    last_bad = np.where(not_ok.any(axis=1), times_h.size - 1 - np.argmax(not_ok[:, ::-1], axis=1), -1)
    first_ready = last_bad + 1
    out = np.full(cadss.shape[0], np.inf)
    within = first_ready < times_h.size
    # rounded so that 1.5 h after a dose at a time such as 20 min reads as 1.5 h wherever it is compared
    out[within] = np.round(times_h[first_ready[within]] - times_h[0], 9)
    out[~(np.isfinite(cadss).all(axis=1) & np.isfinite(sbp).all(axis=1))] = np.nan
    return out
