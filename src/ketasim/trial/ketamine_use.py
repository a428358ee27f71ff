"""Ketamine use over a course (amounts and dosing days), and flags for the frequent use that
published series link to urological and cognitive harm.

These are exposure flags, not predictions of injury: the model has no bladder and no memory, and the
harm was described in people who used ketamine recreationally, most of them daily and for months to
years, at doses far above a clinic's. What a trial can say is how its regimens compare with the
patterns in those reports and with the most frequent schedule the esketamine label uses.

Per patient over the whole simulated course (every period, a randomised withdrawal's run-in and a
background lead-in included: it is the patient's use that the reports describe, so a crossover's
rows carry the same values in both periods), counting the days on which a ketamine drug (racemic
ketamine, esketamine, arketamine) was given, whatever the route. A day is 24 h from the patient's
first dose, so a regimen counts the same days whenever in the simulation it starts, and an infusion
counts every day it runs on.

* ``ketamine_amount [mg]``: the amount given in all (cumulative exposure).
* ``ketamine_dosing_days [days]``: the days with a dose.
* ``ketamine_dosing_days_max_7d [days]``: the most days with a dose in any 7 consecutive days.
* ``ketamine_dosing_days_max_180d [days]``: the most in any 180 consecutive days, the exposure measure
  of the largest survey of urinary symptoms in ketamine users (Erowid survey, 18,802 respondents:
  each additional day of use in the last 180 days raised the odds of urinary frequency by 1.6 %,
  of urgency by 1.4 %, of dysuria by 1.7 % and of haematuria by 1.9 %; Drug Alcohol Depend
  2013;132:189, doi 10.1016/j.drugalcdep.2013.02.005). The odds are not computed here: they were
  measured in recreational users.
* ``beyond_label_frequency``: more than ``LABEL_DAYS_PER_WEEK`` days with a dose in some 7 consecutive
  days, more often than the esketamine label's most frequent schedule (twice a week in weeks 1-4,
  then weekly or every other week; SPRAVATO US prescribing information, section 2). Counted over any
  7 consecutive days, not calendar weeks: sessions that keep to two a calendar week but bunch up
  (Friday, Monday, Thursday) are flagged.
* ``daily_use``: a dose on each of some 7 consecutive days, the pattern of the people in whom
  ketamine cystitis was first described (all nine of Shahani R et al. Urology 2007;69:810 used
  ketamine daily) and with whom cognitive impairment goes ("frequent, daily use is also associated
  with neurocognitive impairment", Morgan CJA, Curran HV. Addiction 2012;107:27).

No published threshold of cumulative amount or of duration was found (the onset of urinary symptoms
ranged widely, 24.7 +- 26.4 months after first use in Li CC et al. Sci Rep 2019;9:7240), so there
is no flag for either; the amount and the day counts are there to compare regimens.
"""

from __future__ import annotations

import numpy as np

#: the drugs counted: every form of ketamine the package doses (its metabolite HNK is not ketamine)
KETAMINE_DRUGS = frozenset({"racemic-ketamine", "esketamine", "arketamine"})
#: SPRAVATO US prescribing information, section 2: at most twice a week (weeks 1-4 of induction)
LABEL_DAYS_PER_WEEK = 2
#: the survey window of Drug Alcohol Depend 2013;132:189 (days of use in the last 180 days)
SURVEY_WINDOW_D = 180
WEEK_D = 7

USE_FLAGS = ("beyond_label_frequency", "daily_use")
FLAG_MEANINGS = {
    "beyond_label_frequency": f"more than {LABEL_DAYS_PER_WEEK} days with a dose of a ketamine drug in some {WEEK_D} "
                              "consecutive days (not calendar weeks), more often than the esketamine label's most "
                              "frequent schedule (SPRAVATO US prescribing information, section 2)",
    "daily_use": f"a dose on each of some {WEEK_D} consecutive days: the pattern of the users in whom ketamine cystitis "
                 "was described (Shahani 2007) and with whom cognitive impairment goes (Morgan & Curran 2012); an "
                 "exposure flag, not a prediction of injury"}
USE_COLUMNS = ("ketamine_amount [mg]", "ketamine_dosing_days [days]", "ketamine_dosing_days_max_7d [days]",
               "ketamine_dosing_days_max_180d [days]", "beyond_label_frequency", "daily_use")


def most_days_in_window(dosing_days: np.ndarray, window_d: int) -> np.ndarray:
    """(n,) the most days with a dose in any ``window_d`` consecutive days, from (n, days) booleans.

    >>> most_days_in_window(np.array([[1, 0, 0, 1, 0, 0, 0, 1, 1, 0]], dtype=bool), 7)
    array([3])
    """
    n, days = dosing_days.shape
    counts = np.concatenate([np.zeros((n, 1), dtype=np.int64), np.cumsum(dosing_days, axis=1)], axis=1)
    if days <= window_d:
        return counts[:, -1]
    return (counts[:, window_d:] - counts[:, :-window_d]).max(axis=1)


def use_columns(dosing_days: np.ndarray, amount_mg: np.ndarray) -> dict[str, np.ndarray]:
    """``USE_COLUMNS`` per patient from (n, days) booleans (a dose of a ketamine drug that day)
    and (n,) the amount given."""
    week = most_days_in_window(dosing_days, WEEK_D)
    return {"ketamine_amount [mg]": np.asarray(amount_mg, dtype=float),
            "ketamine_dosing_days [days]": dosing_days.sum(axis=1),
            "ketamine_dosing_days_max_7d [days]": week,
            "ketamine_dosing_days_max_180d [days]": most_days_in_window(dosing_days, SURVEY_WINDOW_D),
            "beyond_label_frequency": week > LABEL_DAYS_PER_WEEK,
            "daily_use": week >= WEEK_D}


class KetamineUse:
    """The ketamine given to a chunk's patients over the whole course: doses are added as they are
    known (a schedule as written, or what dosing rules gave), then ``columns`` lays them on days
    counted from each patient's first dose."""

    def __init__(self, n: int):
        self.n = n
        self._doses: list[tuple[float, float, np.ndarray, np.ndarray]] = []  # (t h, duration h, mg (n,), who (n,))

    def add(self, drug: str, t_h: float, duration_h: float | None, amount_mg: np.ndarray | float,
            who: np.ndarray | None = None) -> None:
        """A dose of ``drug`` at ``t_h`` (over ``duration_h`` for an infusion, None for a bolus or an
        absorbed dose) to the patients ``who`` (default: all; ``amount_mg`` per patient or one for all)."""
        if drug not in KETAMINE_DRUGS:
            return
        who = np.ones(self.n, dtype=bool) if who is None else np.asarray(who, dtype=bool)
        mg = np.zeros(self.n)
        mg[who] = np.broadcast_to(np.asarray(amount_mg, dtype=float), (self.n,))[who]
        self._doses.append((float(t_h), float(duration_h or 0.0), mg, who))

    def add_written(self, doses, weight_kg: np.ndarray) -> None:
        """Every administration of ``doses`` (a scenario's dose lines), to every patient."""
        for d in doses:
            if d.drug in KETAMINE_DRUGS:
                mg = np.asarray(d.amount_mg(weight_kg), dtype=float)
                for t in d.times_h:
                    self.add(d.drug, t, d.duration_h, mg)

    def columns(self) -> dict[str, np.ndarray]:
        """``USE_COLUMNS`` per patient."""
        if not self._doses:
            return use_columns(np.zeros((self.n, 1), dtype=bool), np.zeros(self.n))
        first = np.full(self.n, np.inf)
        for t, _, _, who in self._doses:
            first[who] = np.minimum(first[who], t)
        first[~np.isfinite(first)] = 0.0
        last = max(t + dur for t, dur, _, _ in self._doses)
        days = np.zeros((self.n, int((last - first.min()) // 24.0) + 2), dtype=bool)
        amount = np.zeros(self.n)
        rows = np.arange(self.n)
        for t, dur, mg, who in self._doses:
            # an infusion counts every day it runs on: from its start to just before its end
            start = np.floor((t - first) / 24.0).astype(int)
            end = np.floor((t + max(dur - 1e-9, 0.0) - first) / 24.0).astype(int)
            for k in range(int((end - start)[who].max()) + 1 if who.any() else 0):
                on = who & (start + k <= end)
                days[rows[on], (start + k)[on]] = True
            amount += mg
        return use_columns(days, amount)
