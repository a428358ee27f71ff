"""Endpoint statistics of virtual trials against published and independently computed values.

Sources of the expected numbers (each assertion says which):
- Newcombe RG, Stat Med 1998;17:857-872 (Table I, method 3: Wilson) and 1998;17:873-890 (Table II,
  method 10: hybrid score difference), to the 4 decimals printed there;
- the Freireich 1963 6-MP remission data (Gehan 1965; R: MASS::gehan) with the values R's survival
  package prints for it (survfit, survdiff, coxph), to the digits printed;
- full-precision cross-checks computed outside this repository with lifelines 0.30.3
  (KaplanMeierFitter, logrank_test, CoxPHFitter) and statsmodels 0.15.0 (proportion_confint "wilson",
  confint_proportions_2indep "newcomb", Table2x2, PHReg efron/breslow, CompareMeans), which agree with
  the published values above;
- small examples computed by hand from the formulas.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats

from ketasim.trial import statistics as st
from ketasim.trial.statistics import (
    cox_hazard_ratio,
    kaplan_meier,
    km_median,
    logrank_test,
    mean_ci,
    mean_difference,
    odds_ratio,
    proportion_ci,
    risk_difference,
)

Z95 = 1.959963984540054

# Freireich 1963 6-MP trial, remission duration in weeks (Gehan 1965); event False = censored
MP_TIME = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
MP_EVENT = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
PLACEBO_TIME = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
PLACEBO_EVENT = [1] * 21
# pooled, group 1 = placebo, so the hazard ratio is placebo against 6-MP as in R's coxph on gehan
TIME = MP_TIME + PLACEBO_TIME
EVENT = MP_EVENT + PLACEBO_EVENT
GROUP = [0] * 21 + [1] * 21


def test_module_doctest():
    failures, tried = doctest.testmod(st)
    assert tried > 0 and failures == 0


# ---------------------------------------------------------------------------------------------------
# binary endpoints


@pytest.mark.parametrize(
    "k, n, lower, upper",
    [  # Newcombe 1998 (Stat Med 17:857) Table I, method 3 (Wilson score without continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_newcombe_table(k, n, lower, upper):
    est, lo, hi = proportion_ci(k, n)
    assert est == pytest.approx(k / n)
    assert lo == pytest.approx(lower, abs=5e-5)
    assert hi == pytest.approx(upper, abs=5e-5)


def test_wilson_full_precision_and_level():
    # statsmodels proportion_confint(81, 263, method="wilson")
    assert proportion_ci(81, 263)[1:] == pytest.approx((0.2552885198782742, 0.36620957698280004), rel=1e-12)
    # hand formula at 90 %: centre +- half with z = 1.6449
    z = stats.norm.ppf(0.95)
    centre = (52 + z * z / 2) / (100 + z * z)
    half = z * math.sqrt(100 * 0.52 * 0.48 + z * z / 4) / (100 + z * z)
    assert proportion_ci(52, 100, level=0.90) == pytest.approx((0.52, centre - half, centre + half), rel=1e-12)
    est, lo, hi = proportion_ci(20, 20)
    assert (est, hi) == (1.0, 1.0) and lo < 1.0
    assert all(isinstance(v, float) for v in proportion_ci(np.int64(3), np.int64(10)))


@pytest.mark.parametrize(
    "k1, n1, k0, n0, lower, upper",
    [  # Newcombe 1998 (Stat Med 17:873) Table II, method 10; statsmodels "newcomb" gives the same to 1e-6
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
        (10, 10, 0, 10, 0.6075, 1.0000),
    ],
)
def test_newcombe_hybrid_score(k1, n1, k0, n0, lower, upper):
    r = risk_difference(k1, n1, k0, n0)
    assert r["difference"] == pytest.approx(k1 / n1 - k0 / n0)
    assert r["lower"] == pytest.approx(lower, abs=5e-5)
    assert r["upper"] == pytest.approx(upper, abs=5e-5)


def test_odds_ratio_woolf():
    # hand: a=20, b=30, c=10, d=40 -> OR 8/3, se = sqrt(1/20 + 1/30 + 1/10 + 1/40); statsmodels Table2x2 agrees
    r = odds_ratio(20, 50, 10, 50)
    se = math.sqrt(1 / 20 + 1 / 30 + 1 / 10 + 1 / 40)
    assert r["odds_ratio"] == pytest.approx(8 / 3)
    assert r["lower"] == pytest.approx(8 / 3 * math.exp(-Z95 * se), rel=1e-9)
    assert r["upper"] == pytest.approx(8 / 3 * math.exp(Z95 * se), rel=1e-9)
    assert (r["lower"], r["upper"]) == pytest.approx((1.0900593901721, 6.5235997003690), rel=1e-9)


def test_odds_ratio_haldane_zero_cell():
    # 0/10 vs 5/10: cells (0, 10, 5, 5) -> (0.5, 10.5, 5.5, 5.5); OR = 0.5*5.5 / (10.5*5.5) = 1/21
    # se = sqrt(1/0.5 + 1/10.5 + 2/5.5) = 1.568080 (statsmodels Table2x2 on the corrected table agrees)
    r = odds_ratio(0, 10, 5, 10)
    se = math.sqrt(2 + 1 / 10.5 + 2 / 5.5)
    assert r["odds_ratio"] == pytest.approx(1 / 21)
    assert r["lower"] == pytest.approx(math.exp(math.log(1 / 21) - Z95 * se))
    assert r["upper"] == pytest.approx(math.exp(math.log(1 / 21) + Z95 * se))
    assert (r["lower"], r["upper"]) == pytest.approx((0.0022030720739671, 1.0292780354034656), rel=1e-9)


@pytest.mark.parametrize("args", [(0, 0, 3, 10), (3, 10, 0, 0), (0, 10, 0, 10), (10, 10, 5, 5), (0, 0, 0, 0)])
def test_odds_ratio_undefined_margins_are_nan(args):
    assert all(math.isnan(v) for v in odds_ratio(*args).values())


def test_empty_arms_give_nan():
    assert all(math.isnan(v) for v in proportion_ci(0, 0))
    assert all(math.isnan(v) for v in risk_difference(0, 0, 3, 10).values())
    assert all(math.isnan(v) for v in risk_difference(3, 10, 0, 0).values())


# ---------------------------------------------------------------------------------------------------
# continuous endpoints


def test_mean_ci_t_interval():
    # hand: mean 5, sd sqrt(24/5), half-width t(0.975, 5) sd / sqrt(6); statsmodels tconfint_mean agrees
    r = mean_ci([2.0, 4, 4, 5, 7, 8])
    assert r["n"] == 6 and r["mean"] == pytest.approx(5.0)
    assert r["sd"] == pytest.approx(math.sqrt(24 / 5))
    half = stats.t.ppf(0.975, 5) * math.sqrt(24 / 5) / math.sqrt(6)
    assert (r["lower"], r["upper"]) == pytest.approx((5 - half, 5 + half))
    assert (r["lower"], r["upper"]) == pytest.approx((2.7008017095164, 7.2991982904836), rel=1e-9)


def test_mean_ci_degenerate():
    r = mean_ci([])
    assert r["n"] == 0 and all(math.isnan(r[k]) for k in ("mean", "sd", "lower", "upper"))
    r = mean_ci([3.0])
    assert r["mean"] == 3.0 and all(math.isnan(r[k]) for k in ("sd", "lower", "upper"))


def test_welch_hand_computed():
    # x = 1..4 (mean 2.5, var 5/3), y = 2,4,..,10 (mean 6, var 10):
    # se^2 = 5/12 + 2 = 29/12, df = (29/12)^2 / ((5/12)^2/3 + 2^2/4) = 5.520788
    x, y = [1.0, 2, 3, 4], [2.0, 4, 6, 8, 10]
    r = mean_difference(x, y)
    se = math.sqrt(29 / 12)
    df = (29 / 12) ** 2 / ((5 / 12) ** 2 / 3 + 1.0)
    assert df == pytest.approx(5.520787746170677)
    assert r["difference"] == pytest.approx(-3.5)
    half = stats.t.ppf(0.975, df) * se
    assert (r["lower"], r["upper"]) == pytest.approx((-3.5 - half, -3.5 + half))
    assert (r["lower"], r["upper"]) == pytest.approx((-7.385368080514, 0.385368080514), rel=1e-9)  # statsmodels
    assert r["p_value"] == pytest.approx(2 * stats.t.sf(3.5 / se, df))
    assert r["p_value"] == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)


def test_welch_degenerate():
    r = mean_difference([1.0], [2.0, 3.0])
    assert r["difference"] == pytest.approx(-1.5)
    assert math.isnan(r["lower"]) and math.isnan(r["p_value"])
    assert all(math.isnan(v) for v in mean_difference([], [1.0, 2.0]).values())
    r = mean_difference([1.0, 1.0], [2.0, 2.0])  # no spread: the Welch df are 0/0
    assert r["difference"] == -1.0 and math.isnan(r["p_value"])


# ---------------------------------------------------------------------------------------------------
# time to event: 6-MP data


def test_kaplan_meier_6mp():
    km = kaplan_meier(MP_TIME, MP_EVENT)
    np.testing.assert_array_equal(km["time"], [0, 6, 7, 10, 13, 16, 22, 23])
    np.testing.assert_array_equal(km["at_risk"], [21, 21, 17, 15, 12, 11, 7, 6])
    np.testing.assert_array_equal(km["events"], [0, 3, 1, 1, 1, 1, 1, 1])
    # S(t) as printed by R survfit / Kalbfleisch-Prentice for the 6-MP arm (3 decimals)
    np.testing.assert_allclose(km["survival"], [1, 0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448], atol=5e-4)
    # log(-log) band: R survfit(conf.type="log-log") prints 0.620-0.952 at t = 6; full rows from lifelines
    np.testing.assert_allclose(km["lower"][1:], [0.6197, 0.5631, 0.5032, 0.4316, 0.3675, 0.2678, 0.1881], atol=5e-5)
    np.testing.assert_allclose(km["upper"][1:], [0.9516, 0.9228, 0.8894, 0.8491, 0.8049, 0.7468, 0.6801], atol=5e-5)


def test_kaplan_meier_greenwood_by_hand():
    # t = 6: S = 18/21, Greenwood sum 3/(21*18); band S^exp(+-z sqrt(sum)/|log S|)
    km = kaplan_meier(MP_TIME, MP_EVENT)
    s, g = 18 / 21, 3 / (21 * 18)
    w = Z95 * math.sqrt(g) / -math.log(s)
    assert km["survival"][1] == pytest.approx(s)
    assert (km["lower"][1], km["upper"][1]) == pytest.approx((s ** math.exp(w), s ** math.exp(-w)))


def test_kaplan_meier_placebo_ends_at_zero():
    km = kaplan_meier(PLACEBO_TIME, PLACEBO_EVENT)
    assert km["survival"][-1] == 0.0 and km["time"][-1] == 23
    # undefined on the log(-log) scale, NA in R
    assert math.isnan(km["lower"][-1]) and math.isnan(km["upper"][-1])
    assert km["survival"][list(km["time"]).index(8)] == pytest.approx(8 / 21)


def test_km_median_6mp_and_placebo():
    # medians 23 and 8 weeks (R print(survfit(...)) on gehan); Brookmeyer-Crowley log-log limits: lifelines
    # median_survival_times(confidence_interval_) gives (13, inf) and (4, 11), i.e. R's NA = not reached
    assert km_median(MP_TIME, MP_EVENT) == {"median": 23.0, "lower": 13.0, "upper": math.inf}
    assert km_median(PLACEBO_TIME, PLACEBO_EVENT) == {"median": 8.0, "lower": 4.0, "upper": 11.0}


def test_km_median_exact_half_takes_midpoint_like_r():
    # S = 0.5 exactly on [5, 6): R's print.survfit takes (5 + 6) / 2, the ordinary sample median
    times = np.arange(1.0, 11.0)
    r = km_median(times, np.ones(10, dtype=bool))
    assert r["median"] == 5.5 == np.median(times)
    assert r["lower"] <= r["median"] <= r["upper"]


def test_km_all_censored_and_empty():
    km = kaplan_meier([3.0, 5.0, 8.0], [False, False, False])
    np.testing.assert_array_equal(km["time"], [0.0])
    np.testing.assert_array_equal(km["survival"], [1.0])
    assert km_median([3.0, 5.0, 8.0], [0, 0, 0]) == {"median": math.inf, "lower": math.inf, "upper": math.inf}
    empty = kaplan_meier([], [])
    assert empty["at_risk"].tolist() == [0] and math.isnan(empty["survival"][0])
    assert all(math.isnan(v) for v in km_median([], []).values())


def test_km_single_event_median_without_lower_limit():
    # the curve falls from 1 straight to 0: median 5, no band below 0.5 before it -> lower NaN, upper not reached
    r = km_median([5.0], [True])
    assert r["median"] == 5.0 and math.isnan(r["lower"]) and r["upper"] == math.inf


def test_km_events_at_time_zero():
    km = kaplan_meier([0.0, 0.0, 3.0], [1, 0, 1])
    np.testing.assert_array_equal(km["time"], [0.0, 0.0, 3.0])
    np.testing.assert_allclose(km["survival"], [1.0, 2 / 3, 0.0])


def test_logrank_6mp():
    # R survdiff on gehan: Chisq = 16.8 on 1 df, p = 4e-05; lifelines: 16.792940989216547, p 4.1688e-05
    r = logrank_test(TIME, EVENT, GROUP)
    assert r["chi2"] == pytest.approx(16.8, abs=0.05)
    assert r["chi2"] == pytest.approx(16.792940989216547, rel=1e-10)
    assert r["p_value"] == pytest.approx(4.2e-5, abs=0.05e-5)
    assert logrank_test(TIME, EVENT, np.array(GROUP, dtype=bool)) == r
    # symmetric in the labels
    assert logrank_test(TIME, EVENT, [1 - g for g in GROUP])["chi2"] == pytest.approx(r["chi2"])


def test_logrank_degenerate():
    assert math.isnan(logrank_test([1.0, 2.0], [1, 1], [0, 0])["chi2"])  # one group only
    assert math.isnan(logrank_test([1.0, 2.0], [0, 0], [0, 1])["p_value"])  # no events
    assert math.isnan(logrank_test([], [], [])["chi2"])


def test_cox_efron_6mp():
    # R coxph(Surv(time, cens) ~ treat, gehan): coef 1.572, exp(coef) 4.82 (4.817), 95 % CI 2.15-10.81,
    # Wald p = 0.00014; lifelines CoxPHFitter and statsmodels PHReg(ties="efron"): coef 1.572125, se 0.412397
    r = cox_hazard_ratio(TIME, EVENT, GROUP)
    assert math.log(r["hazard_ratio"]) == pytest.approx(1.572, abs=5e-4)
    assert r["hazard_ratio"] == pytest.approx(4.817, abs=5e-4)
    assert r["lower"] == pytest.approx(2.15, abs=5e-3)
    assert r["upper"] == pytest.approx(10.81, abs=5e-3)
    assert r["p_value"] == pytest.approx(1.3775e-4, rel=1e-3)
    assert (r["hazard_ratio"], r["lower"], r["upper"]) == pytest.approx((4.816873, 2.146508, 10.809307), rel=1e-6)


def test_cox_breslow_6mp():
    # R coxph(..., ties="breslow"): coef 1.509; statsmodels PHReg(ties="breslow"): 1.50919141, se 0.40956441
    r = cox_hazard_ratio(TIME, EVENT, GROUP, ties="breslow")
    assert math.log(r["hazard_ratio"]) == pytest.approx(1.509, abs=5e-4)
    assert (r["lower"], r["upper"]) == pytest.approx((2.02680351, 10.09381539), rel=1e-6)


def test_cox_symmetry_and_level():
    r = cox_hazard_ratio(TIME, EVENT, GROUP)
    flipped = cox_hazard_ratio(TIME, EVENT, [1 - g for g in GROUP])
    assert flipped["hazard_ratio"] == pytest.approx(1 / r["hazard_ratio"])
    assert flipped["p_value"] == pytest.approx(r["p_value"])
    r90 = cox_hazard_ratio(TIME, EVENT, GROUP, level=0.90)
    log_hr, se = math.log(r["hazard_ratio"]), (math.log(r["upper"]) - math.log(r["lower"])) / (2 * Z95)
    assert math.log(r90["upper"]) == pytest.approx(log_hr + stats.norm.ppf(0.95) * se)


def test_cox_monotone_likelihood():
    # every event in one group: the partial likelihood has no maximum, HR is 0 or inf with no interval
    r = cox_hazard_ratio([1.0, 2, 3, 4], [1, 1, 0, 0], [1, 1, 0, 0])
    assert r["hazard_ratio"] == math.inf and math.isnan(r["lower"]) and math.isnan(r["p_value"])
    r = cox_hazard_ratio([1.0, 2, 3, 4], [1, 1, 0, 0], [0, 0, 1, 1])
    assert r["hazard_ratio"] == 0.0 and math.isnan(r["upper"])
    # events only after group 1 has left follow-up: flat likelihood, nothing estimable
    assert all(math.isnan(v) for v in cox_hazard_ratio([1.0, 2, 3, 4, 5], [0, 0, 0, 1, 1], [1, 1, 0, 0, 0]).values())
    assert all(math.isnan(v) for v in cox_hazard_ratio([], [], []).values())


# ---------------------------------------------------------------------------------------------------
# invalid input


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: proportion_ci(5, 3), "k"),
        (lambda: proportion_ci(-1, 3), "k"),
        (lambda: proportion_ci(1.5, 3), "k"),
        (lambda: proportion_ci(1, 3, level=1.0), "level"),
        (lambda: proportion_ci(1, 3, level=0), "level"),
        (lambda: odds_ratio(1, 3, 4, 2), "k0"),
        (lambda: risk_difference(1, -3, 1, 2), "n1"),
        (lambda: mean_ci([1.0, np.nan]), "x"),
        (lambda: mean_ci([1.0, 2.0], level=95), "level"),
        (lambda: mean_difference([1.0, 2.0], [[1.0]]), "y"),
        (lambda: kaplan_meier([1.0, -2.0], [1, 1]), "time"),
        (lambda: kaplan_meier([1.0, 2.0], [1, 1, 0]), "event"),
        (lambda: kaplan_meier([1.0, 2.0], [1, 2]), "event"),
        (lambda: km_median([1.0, 2.0], [1, 0], level=-0.5), "level"),
        (lambda: logrank_test([1.0, 2.0], [1, 1], [0, 2]), "group"),
        (lambda: logrank_test([1.0, 2.0], [1, 1], [0]), "group"),
        (lambda: cox_hazard_ratio([1.0, 2.0], [1, 1], [0, 1], ties="exact"), "ties"),
    ],
)
def test_invalid_input_names_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
