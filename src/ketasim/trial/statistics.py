"""Endpoint statistics of virtual clinical trials: estimates and confidence intervals per arm and between arms.

A simulated trial ends in per-patient endpoints (responder yes/no, a score change, time to relapse with
censoring); these functions turn them into the numbers a trial report gives, with the methods a
statistician would use on a real trial of the same size.  They are pure functions of numpy arrays (or
plain counts), return plain floats (arrays only for the Kaplan-Meier curve), give NaN where a quantity is
undefined for the data at hand (an empty arm, no events) and raise :class:`ValueError` naming the argument
when the input itself is invalid (mismatched lengths, negative times, ``k > n``, ``level`` outside (0, 1)).

Binary endpoints: :func:`proportion_ci`, :func:`odds_ratio`, :func:`risk_difference`.
Continuous endpoints: :func:`mean_ci`, :func:`mean_difference`.
Time to event: :func:`kaplan_meier`, :func:`km_median`, :func:`logrank_test`, :func:`cox_hazard_ratio`.

>>> est, lo, hi = proportion_ci(52, 100)
>>> round(est, 2), round(lo, 4), round(hi, 4)
(0.52, 0.4232, 0.6154)
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import special, stats

__all__ = [
    "proportion_ci",
    "mean_ci",
    "mean_difference",
    "odds_ratio",
    "risk_difference",
    "kaplan_meier",
    "km_median",
    "logrank_test",
    "cox_hazard_ratio",
]

NAN = float("nan")

# R's all.equal tolerance, which survival::print.survfit uses to decide that S(t) "is" 0.5
_HALF_TOL = math.sqrt(np.finfo(float).eps)


# ---------------------------------------------------------------------------------------------------
# input checks


def _z(level) -> float:
    """Two-sided standard normal quantile for a confidence level in (0, 1)."""
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a number strictly between 0 and 1, got {level!r}")
    return float(stats.norm.ppf(0.5 + float(level) / 2.0))


def _count(value, name: str) -> int:
    """A non-negative whole number (int, numpy integer or integral float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
    if not math.isfinite(float(value)) or float(value) != int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
    return int(value)


def _counts(k, n, kname: str = "k", nname: str = "n") -> tuple[int, int]:
    k, n = _count(k, kname), _count(n, nname)
    if k > n:
        raise ValueError(f"{kname} ({k}) must not exceed {nname} ({n})")
    return k, n


def _sample(x, name: str) -> np.ndarray:
    """A 1-D array of finite floats."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must contain only finite numbers")
    return a


def _indicator(x, name: str, n: int) -> np.ndarray:
    """A 1-D boolean array of length n from bools or 0/1 numbers."""
    a = np.asarray(x)
    if a.ndim != 1 or a.size != n:
        raise ValueError(f"{name} must be one-dimensional with the same length as time ({n}), got shape {a.shape}")
    if a.dtype == bool:
        return a
    if a.size and not (np.issubdtype(a.dtype, np.number) and np.all((a == 0) | (a == 1))):
        raise ValueError(f"{name} must be boolean or 0/1")
    return a.astype(bool)


def _survival_data(time, event) -> tuple[np.ndarray, np.ndarray]:
    t = _sample(time, "time")
    if np.any(t < 0):
        raise ValueError("time must be non-negative")
    return t, _indicator(event, "event", t.size)


# ---------------------------------------------------------------------------------------------------
# binary endpoints


def _wilson(k: int, n: int, z: float) -> tuple[float, float, float]:
    p = k / n
    denom = 2.0 * (n + z * z)
    centre = (2.0 * n * p + z * z) / denom
    half = z * math.sqrt(z * z + 4.0 * n * p * (1.0 - p)) / denom
    # exact 0 and 1 at the boundaries, where the formula leaves round-off
    lower = 0.0 if k == 0 else centre - half
    upper = 1.0 if k == n else centre + half
    return p, lower, upper


def proportion_ci(k, n, level=0.95) -> tuple[float, float, float]:
    """Proportion ``k / n`` with its Wilson score interval: ``(estimate, lower, upper)``.

    Source: Wilson EB, J Am Stat Assoc 1927;22:209-212 (Newcombe RG, Stat Med 1998;17:857-872, method 3).

    ``n = 0`` gives ``(nan, nan, nan)``.
    """
    z = _z(level)
    k, n = _counts(k, n)
    if n == 0:
        return NAN, NAN, NAN
    return _wilson(k, n, z)


def odds_ratio(k1, n1, k0, n0, level=0.95) -> dict:
    """Odds ratio of arm 1 (``k1`` events of ``n1``) against arm 0 with Woolf's logit interval.

    Source: Woolf B, Ann Hum Genet 1955;19:251-253; zero cells: Haldane JBS, Ann Hum Genet 1956;20:309-311.

    When any of the four cells is zero, 0.5 is added to all four (Haldane-Anscombe) for the estimate and
    the interval.  When a whole row or column of the 2x2 table is zero (an empty arm, no events at all or
    only events) the odds ratio is 0/0 and every entry is NaN.

    Returns ``{"odds_ratio", "lower", "upper"}``.
    """
    z = _z(level)
    k1, n1 = _counts(k1, n1, "k1", "n1")
    k0, n0 = _counts(k0, n0, "k0", "n0")
    a, b, c, d = k1, n1 - k1, k0, n0 - k0
    if 0 in (a + b, c + d, a + c, b + d):
        return {"odds_ratio": NAN, "lower": NAN, "upper": NAN}
    if 0 in (a, b, c, d):
        a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    log_or = math.log(a * d / (b * c))
    se = math.sqrt(1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d)
    return {"odds_ratio": math.exp(log_or), "lower": math.exp(log_or - z * se), "upper": math.exp(log_or + z * se)}


def risk_difference(k1, n1, k0, n0, level=0.95) -> dict:
    """Difference of proportions ``k1/n1 - k0/n0`` with Newcombe's hybrid score interval.

    Source: Newcombe RG, Stat Med 1998;17:873-890, method 10 (Wilson limits of each arm combined).

    An empty arm gives NaN throughout.  Returns ``{"difference", "lower", "upper"}``.
    """
    z = _z(level)
    k1, n1 = _counts(k1, n1, "k1", "n1")
    k0, n0 = _counts(k0, n0, "k0", "n0")
    if n1 == 0 or n0 == 0:
        return {"difference": NAN, "lower": NAN, "upper": NAN}
    p1, l1, u1 = _wilson(k1, n1, z)
    p0, l0, u0 = _wilson(k0, n0, z)
    diff = p1 - p0
    lower = diff - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    upper = diff + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return {"difference": diff, "lower": lower, "upper": upper}


# ---------------------------------------------------------------------------------------------------
# continuous endpoints


def _mean_sd(x: np.ndarray) -> tuple[float, float]:
    # guarded by size, because numpy warns (and the test suite errors) on empty means
    mean = float(np.mean(x)) if x.size else NAN
    sd = float(np.std(x, ddof=1)) if x.size > 1 else NAN
    return mean, sd


def mean_ci(x, level=0.95) -> dict:
    """Mean of ``x`` with its Student t interval.

    Source: Student, Biometrika 1908;6:1-25.

    Returns ``{"n", "mean", "sd", "lower", "upper"}`` (``sd`` with n - 1 in the denominator); with fewer
    than two values ``sd`` and the interval are NaN, with none the mean is NaN too.
    """
    _z(level)
    a = _sample(x, "x")
    mean, sd = _mean_sd(a)
    return mean_ci_from(int(a.size), mean, sd, level)


def mean_ci_from(n: int, mean: float, sd: float, level=0.95) -> dict:
    """``mean_ci`` from a sample's size, mean and SD (n - 1 denominator): a sample summarised chunk by chunk.

    >>> round(mean_ci_from(4, 2.5, 1.2909944487358056)["upper"], 4)
    4.5543
    """
    _z(level)
    if n < 2:
        return {"n": n, "mean": mean, "sd": sd, "lower": NAN, "upper": NAN}
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lower": mean - half, "upper": mean + half}


def mean_difference(x, y, level=0.95) -> dict:
    """Difference of means ``mean(x) - mean(y)`` with Welch's t interval and two-sided p-value.

    Source: Welch BL, Biometrika 1947;34:28-35; degrees of freedom: Satterthwaite FE, Biometrics 1946;2:110-114.

    The interval and p-value need at least two values per group and some spread; otherwise they are
    NaN (the difference itself is NaN only when a group is empty).
    Returns ``{"difference", "lower", "upper", "p_value"}``.
    """
    _z(level)
    a, b = _sample(x, "x"), _sample(y, "y")
    (mx, sx), (my, sy) = _mean_sd(a), _mean_sd(b)
    return mean_difference_from(int(a.size), mx, sx, int(b.size), my, sy, level)


def mean_difference_from(nx: int, mx: float, sx: float, ny: int, my: float, sy: float, level=0.95) -> dict:
    """``mean_difference`` from each sample's size, mean and SD (empty samples: mean NaN)."""
    _z(level)
    mx, my = (mx if nx else NAN), (my if ny else NAN)
    diff = mx - my
    out = {"difference": diff, "lower": NAN, "upper": NAN, "p_value": NAN}
    if nx < 2 or ny < 2:
        return out
    vx, vy = sx * sx / nx, sy * sy / ny
    se = math.sqrt(vx + vy)
    if se == 0.0:
        return out
    df = (vx + vy) ** 2 / (vx * vx / (nx - 1) + vy * vy / (ny - 1))
    half = float(stats.t.ppf(0.5 + level / 2.0, df)) * se
    p = 2.0 * float(stats.t.sf(abs(diff) / se, df))
    out.update(lower=diff - half, upper=diff + half, p_value=p)
    return out


# ---------------------------------------------------------------------------------------------------
# time to event


def _risk_table(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number at risk (time >= t) and number of events at each time in ``at``."""
    sorted_time = np.sort(time)
    sorted_events = np.sort(time[event])
    at_risk = time.size - np.searchsorted(sorted_time, at, side="left")
    events = np.searchsorted(sorted_events, at, side="right") - np.searchsorted(sorted_events, at, side="left")
    return at_risk, events


def _loglog_band(surv: np.ndarray, greenwood: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise interval of S by the log(-log S) transform; NaN where S is 0 (or 1), as in R."""
    lower = np.full(surv.shape, NAN)
    upper = np.full(surv.shape, NAN)
    ok = (surv > 0.0) & (surv < 1.0)
    log_s = np.log(surv[ok])
    shift = z * np.sqrt(greenwood[ok]) / -log_s
    lower[ok] = np.exp(log_s * np.exp(shift))
    upper[ok] = np.exp(log_s * np.exp(-shift))
    return lower, upper


def kaplan_meier(time, event, level=0.95) -> dict:
    """Kaplan-Meier product-limit estimate with Greenwood variance and log(-log) pointwise interval.

    Source: Kaplan EL, Meier P, J Am Stat Assoc 1958;53:457-481; Greenwood M 1926; interval:
    Kalbfleisch JD, Prentice RL, The Statistical Analysis of Failure Time Data (1980), R's conf.type="log-log".

    ``event`` is True (or 1) for an observed event and False (0) for a censored time; a censored time equal
    to an event time counts as at risk at that time.  The result is a right-continuous step function given
    at time 0 (survival 1, interval [1, 1], everyone at risk) and at each distinct event time:
    ``{"time", "survival", "lower", "upper", "at_risk", "events"}`` as arrays, where ``survival[i]`` holds on
    ``[time[i], time[i + 1])``.  Events at time 0 add a second row at time 0.  The interval is NaN where
    the survival has dropped to 0.  Without any subject the single time-0 row has NaN survival.
    """
    z = _z(level)
    t, e = _survival_data(time, event)
    event_times = np.unique(t[e])
    at_risk, events = _risk_table(t, e, event_times)
    surv = np.cumprod(1.0 - events / at_risk)
    # the Greenwood term is infinite once everyone at risk has had the event; S is 0 from there on
    remaining = at_risk - events
    terms = np.divide(events, at_risk * remaining, out=np.full(surv.shape, np.inf), where=remaining > 0)
    lower, upper = _loglog_band(surv, np.cumsum(terms), z)
    start = 1.0 if t.size else NAN
    return {
        "time": np.concatenate(([0.0], event_times)),
        "survival": np.concatenate(([start], surv)),
        "lower": np.concatenate(([start], lower)),
        "upper": np.concatenate(([start], upper)),
        "at_risk": np.concatenate(([t.size], at_risk)).astype(int),
        "events": np.concatenate(([0], events)).astype(int),
    }


def _first_below_half(curve: np.ndarray, times: np.ndarray) -> float:
    """First time a decreasing curve reaches 0.5 (R's survival ``minmin``), inf if it never does.

    A curve that sits exactly at 0.5 (within R's all.equal tolerance) over an interval gives the midpoint
    of that interval's start and the next time the curve drops, like the sample median of an even number
    of uncensored times.  NaN entries (a band where S = 0) are skipped.
    """
    keep = ~np.isnan(curve) & (curve < 0.5 + _HALF_TOL)
    if not np.any(keep):
        return math.inf
    y, x = curve[keep], times[keep]
    if abs(y[0] - 0.5) < _HALF_TOL:
        lower_later = np.flatnonzero(y < y[0])
        if lower_later.size:
            return float((x[0] + x[lower_later[0]]) / 2.0)
    return float(x[0])


def km_median(time, event, level=0.95) -> dict:
    """Median survival time from the Kaplan-Meier curve with the Brookmeyer-Crowley interval.

    Source: Brookmeyer R, Crowley J, Biometrics 1982;38:29-41, with the log(-log) band as in R's
    ``survival::survfit(conf.type="log-log")`` and its ``print`` method.

    The median is the first time at which S(t) <= 0.5 (if S equals 0.5 exactly on an interval, the midpoint
    between its start and the next event time, as R does).  The interval is the set of times whose pointwise
    band contains 0.5: ``lower`` is the first time the *lower* band reaches 0.5 and ``upper`` the first time
    the *upper* band reaches 0.5, with the same rule.  ``inf`` means "not reached within follow-up" (the curve
    or band stays above 0.5 up to the last observation; R prints NA).  The band is undefined where S = 0, so,
    as in R, a band that has not reached 0.5 before the curve falls to 0 gives ``inf`` for the upper limit
    (lifelines, which sets the band to 0 there, reports that last time instead) and NaN for the lower limit.
    Without any subject everything is NaN.

    Returns ``{"median", "lower", "upper"}``.
    """
    km = kaplan_meier(time, event, level)
    if km["at_risk"][0] == 0:
        return {"median": NAN, "lower": NAN, "upper": NAN}
    times = km["time"]
    median = _first_below_half(km["survival"], times)
    lower = _first_below_half(km["lower"], times)
    upper = _first_below_half(km["upper"], times)
    if math.isinf(lower) and math.isfinite(median):
        lower = NAN
    return {"median": median, "lower": lower, "upper": upper}


def _two_group_table(time, event, group) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """At each distinct event time: at risk and events in group 0 and in group 1."""
    t, e = _survival_data(time, event)
    g = _indicator(group, "group", t.size)
    event_times = np.unique(t[e])
    n1, d1 = _risk_table(t[g], e[g], event_times)
    n0, d0 = _risk_table(t[~g], e[~g], event_times)
    return n0.astype(float), d0.astype(float), n1.astype(float), d1.astype(float)


def logrank_test(time, event, group) -> dict:
    """Log-rank test of equal survival in two groups (``group`` 0/1 or bool), chi-square on 1 df.

    Source: Mantel N, Cancer Chemother Rep 1966;50:163-170 (hypergeometric variance, as R's survdiff).

    NaN when the statistic is undefined (no events, or one group empty).  Returns ``{"chi2", "p_value"}``.
    """
    n0, d0, n1, d1 = _two_group_table(time, event, group)
    n, d = n0 + n1, d0 + d1
    expected1 = d * n1 / n
    # with one subject at risk the hypergeometric variance is 0 (n - d = 0); dodge the 0/0
    var = np.divide(d * n1 * n0 * (n - d), n * n * (n - 1.0), out=np.zeros(n.shape), where=n > 1)
    total_var = float(np.sum(var))
    if total_var <= 0.0:
        return {"chi2": NAN, "p_value": NAN}
    chi2 = float(np.sum(d1 - expected1)) ** 2 / total_var
    return {"chi2": chi2, "p_value": float(stats.chi2.sf(chi2, 1))}


def _efron_rows(n0, d0, n1, d1, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """Per tied-event fraction, log weights of group 1 and group 0 in the (Efron-thinned) risk set.

    With one binary covariate the Efron denominator for the l-th of d tied events is
    (n1 - l/d d1) exp(beta) + (n0 - l/d d0); Breslow keeps l/d = 0.
    """
    d = (d0 + d1).astype(int)
    row = np.repeat(np.arange(d.size), d)
    frac = np.arange(row.size) - np.repeat(np.cumsum(d) - d, d)
    frac = frac / d[row] if ties == "efron" else np.zeros(row.size)
    w1 = n1[row] - frac * d1[row]
    w0 = n0[row] - frac * d0[row]
    log_w1 = np.log(w1, out=np.full(w1.shape, -np.inf), where=w1 > 0)
    log_w0 = np.log(w0, out=np.full(w0.shape, -np.inf), where=w0 > 0)
    return log_w1, log_w0


def _cox_loglik(beta: float, events1: float, log_w1, log_w0) -> float:
    return beta * events1 - float(np.sum(np.logaddexp(beta + log_w1, log_w0)))


def _cox_score_info(beta: float, events1: float, log_w1, log_w0) -> tuple[float, float]:
    # the covariate is 0/1, so the weighted mean in the risk set is a logistic and its variance m(1 - m)
    m = special.expit(beta + log_w1 - log_w0)
    return events1 - float(np.sum(m)), float(np.sum(m * (1.0 - m)))


def _cox_newton(events1: float, log_w1, log_w0) -> tuple[float, float]:
    """Maximise the partial likelihood from beta = 0, halving steps that lower it (as R's coxph.fit)."""
    beta = 0.0
    loglik = _cox_loglik(beta, events1, log_w1, log_w0)
    for _ in range(100):
        score, info = _cox_score_info(beta, events1, log_w1, log_w0)
        step = score / info
        for _ in range(60):
            trial_loglik = _cox_loglik(beta + step, events1, log_w1, log_w0)
            if trial_loglik >= loglik - 1e-12 * abs(loglik):
                break
            step /= 2.0
        beta, loglik = beta + step, trial_loglik
        if abs(step) < 1e-10 * (1.0 + abs(beta)):
            break
    return beta, _cox_score_info(beta, events1, log_w1, log_w0)[1]


def cox_hazard_ratio(time, event, group, level=0.95, ties="efron") -> dict:
    """Hazard ratio of group 1 against group 0 from a Cox model with that one binary covariate.

    Source: Cox DR, J R Stat Soc B 1972;34:187-220; ties: Efron B, J Am Stat Assoc 1977;72:557-565 (R's default).

    Newton-Raphson on the partial likelihood (``ties="breslow"`` for Breslow's approximation), Wald interval
    and Wald p-value, as R's ``summary(coxph(...))`` reports them.  When the likelihood is monotone -- at every
    event time with both groups at risk, all events fall in one group (typically: one group has no events) --
    the estimate is ``inf`` (only group 1 has events) or ``0.0`` (only group 0), with NaN interval and p-value,
    instead of a diverging iteration.  With no such event time at all (no events, one group empty) the
    likelihood is flat and everything is NaN.

    Returns ``{"hazard_ratio", "lower", "upper", "p_value"}``.
    """
    z = _z(level)
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    n0, d0, n1, d1 = _two_group_table(time, event, group)
    both = (n0 > 0) & (n1 > 0)
    informative0, informative1 = float(np.sum(d0[both])), float(np.sum(d1[both]))
    undefined = {"hazard_ratio": NAN, "lower": NAN, "upper": NAN, "p_value": NAN}
    if informative0 + informative1 == 0:
        return undefined
    if informative0 == 0 or informative1 == 0:
        return undefined | {"hazard_ratio": math.inf if informative0 == 0 else 0.0}
    log_w1, log_w0 = _efron_rows(n0, d0, n1, d1, ties)
    beta, info = _cox_newton(float(np.sum(d1)), log_w1, log_w0)
    se = 1.0 / math.sqrt(info)
    return {
        "hazard_ratio": math.exp(beta),
        "lower": math.exp(beta - z * se),
        "upper": math.exp(beta + z * se),
        "p_value": 2.0 * float(stats.norm.sf(abs(beta) / se)),
    }
