"""Ketamine use over a course (trial/ketamine_use.py): the day counts and flags against an
independent count of the schedule, infusions and days counted from the first dose, the amounts, the
patients table, the summary, every design (crossover, run-in), adaptive dosing (held and delayed
doses) and the optimiser's caps."""

from __future__ import annotations

import numpy as np
import pytest

import ketasim
from ketasim import run_trial
from ketasim.trial import adaptive
from ketasim.trial.ketamine_use import LABEL_DAYS_PER_WEEK, USE_COLUMNS, KetamineUse, most_days_in_window, use_columns
from ketasim.trial.optimise import CAP_COLUMNS

NASAL = {"drug": "esketamine", "route": "intranasal"}


def _by_hand(days_dosed: list[int], window: int) -> int:
    """The most dosing days in any ``window`` consecutive days, counted one window at a time."""
    last = max(days_dosed, default=0)
    return max((sum(start <= d < start + window for d in days_dosed) for start in range(last + 1)), default=0)


@pytest.mark.parametrize("days_dosed", [[], [0], [0, 3, 7, 10, 14, 17, 21, 24], [0, 2, 4, 6, 8], list(range(9)),
                                        [0, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14], [5, 190, 191, 350]])
def test_window_counts_match_a_count_by_hand(days_dosed):
    matrix = np.zeros((1, 400), dtype=bool)
    matrix[0, days_dosed] = True
    for window in (1, 7, 180, 500):
        assert most_days_in_window(matrix, window)[0] == _by_hand(days_dosed, window)


def test_the_label_schedule_is_not_flagged_and_daily_use_is():
    """Twice weekly, then weekly, then every other week (the esketamine label) stays within the
    label's frequency; a dose every other day goes beyond it; seven days in a row is daily use and six
    are not."""
    def flags(days_dosed):
        matrix = np.zeros((1, 200), dtype=bool)
        matrix[0, days_dosed] = True
        cols = use_columns(matrix, np.zeros(1))
        return bool(cols["beyond_label_frequency"][0]), bool(cols["daily_use"][0])

    label = [0, 3, 7, 10, 14, 17, 21, 24, 28, 35, 42, 49, 63, 77]
    assert flags(label) == (False, False)
    assert flags([0, 2, 4]) == (True, False)  # three days in a week: more than LABEL_DAYS_PER_WEEK
    assert LABEL_DAYS_PER_WEEK == 2  # a pin: SPRAVATO US prescribing information, section 2
    assert flags(list(range(6))) == (True, False)
    assert flags(list(range(7))) == (True, True)


def test_an_infusion_counts_every_day_it_runs_and_days_start_at_the_first_dose():
    use = KetamineUse(3)
    # patient 0: a 7-day infusion from hour 10; patient 1: twice daily for 7 days from hour 60 (a
    # lead-in's offset), which spans 7 days from its first dose, not 8 of the simulation's; patient 2:
    # a midazolam infusion, not a ketamine drug
    use.add("racemic-ketamine", 10.0, 7 * 24.0, 700.0, np.array([True, False, False]))
    for k in range(14):
        use.add("esketamine", 60.0 + 12.0 * k, None, 28.0, np.array([False, True, False]))
    use.add("midazolam", 0.0, 7 * 24.0, 5.0, np.array([False, False, True]))
    cols = use.columns()
    assert cols["ketamine_dosing_days [days]"].tolist() == [7, 7, 0]
    assert cols["daily_use"].tolist() == [True, True, False]
    assert cols["ketamine_amount [mg]"].tolist() == [700.0, 14 * 28.0, 0.0]


@pytest.fixture(scope="module")
def three_arms():
    trial = {"trial": {"name": "exposure", "seed": 3, "assessments": ["1 d", "4 w"], "control": "midazolam"},
             "population": {"n": 12, "preset": "treatment-resistant"},
             "arm": [{"name": "esketamine twice weekly", "dose": [{**NASAL, "amount": "56 mg", "start": "0 d",
                                                                    "every": "3.5 d", "count": 8}]},
                     {"name": "oral ketamine daily", "dose": [{"drug": "racemic-ketamine", "route": "oral",
                                                               "amount": "0.5 mg/kg", "start": "0 d", "every": "1 d",
                                                               "count": 10}]},
                     {"name": "midazolam", "dose": [{"drug": "midazolam", "route": "iv", "amount": "0.045 mg/kg",
                                                     "duration": "40 min", "at": ["0 h"]}]}]}
    return run_trial(trial)


def test_the_patients_table_holds_each_patients_ketamine_use(three_arms):
    df = three_arms.patients
    assert set(USE_COLUMNS) <= set(df.columns)
    first = df.drop_duplicates("patient").set_index("arm")
    nasal, oral, control = (first.loc[a] for a in ("esketamine twice weekly", "oral ketamine daily", "midazolam"))
    assert (nasal["ketamine_amount [mg]"] == 8 * 56.0).all()
    assert (nasal["ketamine_dosing_days [days]"] == 8).all() and (nasal["ketamine_dosing_days_max_7d [days]"] == 2).all()
    assert not nasal["beyond_label_frequency"].any() and not nasal["daily_use"].any()
    np.testing.assert_allclose(oral["ketamine_amount [mg]"], 10 * 0.5 * oral["weight [kg]"], rtol=1e-12)
    assert (oral["ketamine_dosing_days_max_180d [days]"] == 10).all() and oral["daily_use"].all()
    # midazolam is not a ketamine drug
    assert (control["ketamine_amount [mg]"] == 0.0).all() and (control["ketamine_dosing_days [days]"] == 0).all()
    # every row of a patient carries the same values
    assert (df.groupby("patient")["ketamine_amount [mg]"].nunique() == 1).all()


def test_the_summary_counts_are_the_patients_tables(three_arms, tmp_path):
    df = three_arms.patients
    for arm, s in three_arms.summary["arms"].items():
        e, first = s["ketamine_use"], df[df["arm"] == arm].drop_duplicates("patient")
        for flag in ("beyond_label_frequency", "daily_use"):
            assert e[f"{flag}_fraction"]["k"] == int(first[flag].sum()) and e[f"{flag}_fraction"]["n"] == len(first)
        assert e["ketamine_amount [mg]"]["mean"] == pytest.approx(first["ketamine_amount [mg]"].mean(), rel=1e-12)
        assert e["ketamine_dosing_days_max_7d [days]"]["max"] == first["ketamine_dosing_days_max_7d [days]"].max()
    three_arms.write(tmp_path)
    assert "Ketamine use over the course" in (tmp_path / "report.html").read_text()


def test_doses_held_by_a_rule_are_not_counted():
    """Under a hold rule (skip a session after a large SBP rise) each patient's exposure is what the
    rules gave: the amount is the decision columns' total and the dosing days their count."""
    trial = {"trial": {"name": "hold", "seed": 12, "assessments": ["1 d", "4 w"]},
             "population": {"n": 40, "preset": "treatment-resistant"},
             "arm": [{"name": "esketamine 84 mg, skip on SBP", "dose": [{**NASAL, "amount": "84 mg", "start": "0 d",
                                                                          "every": "3.5 d", "count": 8}],
                      "rule": [{"type": "hold", "if_sbp_rise_at_least": 10, "action": "skip"}]}]}
    first = run_trial(trial).patients.drop_duplicates("patient")
    assert (first["doses_held [count]"] > 0).any()  # the rule acted
    np.testing.assert_allclose(first["ketamine_amount [mg]"], first["dose_total [mg]"], rtol=1e-12)
    assert (first["ketamine_dosing_days [days]"] == first["doses_given [count]"]).all()


def test_a_delayed_dose_counts_on_its_own_day():
    """Under a delay rule the dosing days are those of the doses as given, read back independently
    from the patients table's decisions (``adaptive.given_doses``, which the data-set export uses)."""
    trial = {"trial": {"name": "delay", "seed": 12, "assessments": ["1 d", "4 w"]},
             "population": {"n": 30, "preset": "treatment-resistant"},
             "arm": [{"name": "esketamine 84 mg, delay on SBP", "dose": [{**NASAL, "amount": "84 mg", "start": "0 d",
                                                                           "every": "3.5 d", "count": 8}],
                      "rule": [{"type": "hold", "if_sbp_rise_at_least": 10, "action": "delay", "delay": "2 d"}]}]}
    result = run_trial(trial)
    first = result.patients.drop_duplicates("patient")
    assert (first["doses_delayed [count]"] > 0).any()
    plan = adaptive.plan(result.spec, result.spec.sequences[0])
    given = adaptive.given_doses(plan, first["dose_decisions"].to_numpy(), first["patient"].to_numpy(),
                                 first["period"].to_numpy())
    for _, row in first.iterrows():
        times = sorted(t for who, t, _, _ in given if who == row["patient"])
        days = sorted({int((t - times[0]) // 24.0) for t in times})
        assert row["ketamine_dosing_days [days]"] == len(days)
        assert row["ketamine_dosing_days_max_7d [days]"] == _by_hand(days, 7)
        assert row["ketamine_amount [mg]"] == pytest.approx(row["dose_total [mg]"], rel=1e-12)


def test_use_is_counted_over_the_whole_course_in_every_design():
    """A crossover's patients carry their whole course in both periods; a randomised withdrawal's
    placebo arm carries the open-label run-in that preceded randomisation."""
    crossover = {"trial": {"name": "x", "seed": 1, "design": "crossover", "assessments": ["1 d", "3 d"],
                           "washout": "4 d", "control": "placebo"},
                 "population": {"n": 6, "preset": "treatment-resistant"},
                 "arm": [{"name": "esketamine", "dose": [{**NASAL, "amount": "56 mg", "start": "0 d", "every": "2 d",
                                                          "count": 2}]},
                         {"name": "placebo", "dose": [{"drug": "placebo", "route": "intranasal", "start": "0 d"}]}]}
    df = run_trial(crossover).patients
    assert (df["ketamine_amount [mg]"] == 112.0).all() and (df["ketamine_dosing_days [days]"] == 2).all()
    withdrawal = {"trial": {"name": "w", "seed": 2, "design": "randomised-withdrawal", "assessments": ["1 w", "2 w"],
                            "control": "placebo"},
                  "population": {"n": 12, "preset": "treatment-resistant"},
                  "run_in": {"duration": "2 w", "select": "responders",
                             "dose": [{**NASAL, "amount": "84 mg", "start": "0 d", "every": "3.5 d", "count": 4}]},
                  "arm": [{"name": "esketamine", "dose": [{**NASAL, "amount": "84 mg", "start": "0 d", "every": "1 w",
                                                           "count": 2}]},
                          {"name": "placebo", "dose": [{"drug": "placebo", "route": "intranasal", "start": "0 d",
                                                        "every": "1 w", "count": 2}]}]}
    first = run_trial(withdrawal).patients.drop_duplicates("patient").set_index("arm")
    assert (first.loc["placebo", "ketamine_amount [mg]"] == 4 * 84.0).all()
    assert (first.loc["esketamine", "ketamine_amount [mg]"] == 6 * 84.0).all()


def test_a_patients_table_without_the_columns_is_still_summarised(three_arms):
    from ketasim.trial.summary import trial_summary

    old = three_arms.patients.drop(columns=list(USE_COLUMNS))
    summary = trial_summary(three_arms.spec, old)
    assert all("ketamine_use" not in arm for arm in summary["arms"].values())


def _beyond_label(every_h: float, count: int) -> bool:
    days_dosed = sorted({int(k * every_h // 24) for k in range(count)})
    return _by_hand(days_dosed, 7) > LABEL_DAYS_PER_WEEK


def test_the_label_frequency_cap_binds():
    """``beyond_label_frequency_fraction = 0`` keeps every feasible regimen of the example (doses
    every 2 to 7 days) to at most two dosing days a week, counted independently here."""
    from test_optimise import small

    out = ketasim.optimise(small(budget=8, caps={"beyond_label_frequency_fraction": 0.0}))
    table, column = out.candidates, CAP_COLUMNS["beyond_label_frequency_fraction"]
    expected = [_beyond_label(e, c) for e, c in zip(table["every [h]"], table["count"])]
    assert (table[column] == np.array(expected, dtype=float)).all()  # every patient alike: 0 or 1
    assert any(expected) and not table.loc[table["feasible"], column].any()
