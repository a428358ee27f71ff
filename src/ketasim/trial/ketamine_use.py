"""Ketamine use over a course (amounts and dosing days), and flags for the frequent use that
published series link to urological and cognitive harm.

These are exposure flags, not predictions of injury: the model has no bladder and no memory, and the
harm was described in people who used ketamine recreationally, most of them daily and for months to
years, at doses far above a clinic's. What a trial can say is how its regimens compare with the
patterns in those reports and with the most frequent schedule the esketamine label uses.

Per patient and treatment period, counting the days on which a ketamine drug (racemic ketamine,
esketamine, arketamine) was given, whatever the route:

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
  then weekly or every other week; SPRAVATO US prescribing information, section 2).
* ``daily_use``: a dose on each of some 7 consecutive days, the pattern of the people in whom
  ketamine cystitis was first described (all nine of Shahani R et al. Urology 2007;69:810 used
  ketamine daily) and with whom cognitive impairment goes ("frequent, daily use is also associated
  with neurocognitive impairment", Morgan CJA, Curran HV. Addiction 2012;107:27).

No published threshold of cumulative amount or of duration was found (the onset of urinary symptoms
ranged widely, 24.7 +- 26.4 months after first use in Li CC et al. Sci Rep 2019;9:7240), so there
is no flag for either; the amount and the day counts are there to compare regimens.
"""

from __future__ import annotations

from collections.abc import Mapping

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
                              "consecutive days, more often than the esketamine label's most frequent schedule "
                              "(SPRAVATO US prescribing information, section 2)",
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
    """The ketamine given to a chunk's patients, period by period: (n, days) dosing days and (n,)
    amounts, filled from a schedule as written and, where rules decide, from what they gave."""

    def __init__(self, n: int, period_starts_h: tuple[float, ...], duration_h: float):
        self.starts = np.asarray(period_starts_h, dtype=float)
        days = int(np.ceil(duration_h / 24.0)) + 1
        self.days = np.zeros((len(period_starts_h), n, days), dtype=bool)
        self.amount = np.zeros((len(period_starts_h), n))

    def _period(self, t_h: float) -> int:
        return max(0, int(np.searchsorted(self.starts, t_h, side="right")) - 1)

    def add(self, drug: str, t_h: float, amount_mg: np.ndarray | float, who: np.ndarray | slice = slice(None)) -> None:
        """A dose of ``drug`` at ``t_h`` to the patients ``who`` (default: all)."""
        if drug not in KETAMINE_DRUGS:
            return
        p, day = self._period(t_h), min(int(t_h // 24.0), self.days.shape[2] - 1)
        self.days[p, who, day] = True
        self.amount[p, who] += np.broadcast_to(amount_mg, self.amount[p, who].shape)

    def add_written(self, doses, weight_kg: np.ndarray) -> None:
        """Every administration of ``doses`` (a scenario's dose lines), to every patient."""
        for d in doses:
            if d.drug in KETAMINE_DRUGS:
                mg = np.asarray(d.amount_mg(weight_kg), dtype=float)
                for t in d.times_h:
                    self.add(d.drug, t, mg)

    def columns(self, p: int) -> Mapping[str, np.ndarray]:
        return use_columns(self.days[p], self.amount[p])
