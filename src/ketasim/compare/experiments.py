"""Discriminating experiments: observation tables of published results that tell hypotheses apart.

An experiments table is an observation table (``ketasim.calibrate.data``: ``scenario`` names a
trial file next to the table, ``quantity`` the arm, ``metric`` a trial metric) with, per row,

``experiment``
    an id shared by the rows of one study;
``likelihood``
    ``binomial`` for a rate observed in ``n`` patients (``value`` is the observed fraction, so
    ``value * n`` must be a whole count), or ``normal`` for a mean or difference with its 95 %
    interval ``low``..``high`` (the standard error is its half-width / 1.96 unless an ``se``
    column gives it, e.g. for a t interval of a small sample);
``grade``
    ``H`` read from the primary source, ``M`` through a secondary page, ``Q`` a qualitative
    finding ("no difference") turned into a number with an assumed spread, said in
    ``interval_basis``;
``finding``, ``interval_basis``, ``source``
    the result in words, where its uncertainty comes from, and the citation.

These results are evidence for comparing hypotheses, never calibration targets: nothing is
fitted to them. The shipped table is ``ketasim/data/experiments/experiments.csv``.

>>> from ketasim.compare.experiments import load_experiments, shipped_experiments
>>> table = load_experiments(shipped_experiments())
>>> "nagele2015_nitrous_oxide" in set(table["experiment"])
True
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pandas as pd

from ..calibrate.data import TRIAL_METRICS, DataError, load_observations
from ..trial.statistics import proportion_ci

LIKELIHOODS = ("binomial", "normal")
GRADES = ("H", "M", "Q")
RATE_METRICS = ("response_rate", "remission_rate")
REQUIRED = ("experiment", "likelihood", "grade", "source")
Z95 = 1.959963984540054


def shipped_experiments() -> Path:
    """The package's discriminating experiments (``ketasim/data/experiments/experiments.csv``)."""
    return Path(str(resources.files("ketasim").joinpath("data/experiments/experiments.csv")))


def load_experiments(path: str | Path) -> pd.DataFrame:
    """Read and check an experiments table; adds ``se`` (normal rows) and ``low``/``high`` (the Wilson
    95 % interval of binomial rows, ``trial.statistics.proportion_ci``)."""
    df = load_observations(path)
    name = Path(path).name
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(str(path), f"missing column(s) {', '.join(missing)}; an experiments table needs "
                                   f"{', '.join(REQUIRED)} besides the observation columns")
    for column in ("low", "high", "n"):
        if column not in df.columns:
            df[column] = math.nan
    df["low"], df["high"] = df["low"].astype(float), df["high"].astype(float)
    se = []
    for i, row in df.iterrows():
        where = f"{name} row {i + 2}"
        if not isinstance(row["experiment"], str) or not row["experiment"].strip():
            raise DataError(f"{where}: experiment", "give the study an id (e.g. williams2018_naltrexone)")
        if row["metric"] not in TRIAL_METRICS:
            raise DataError(f"{where}: metric", f"{row['metric']!r}: an experiment is a trial; allowed: "
                                                f"{', '.join(TRIAL_METRICS)}")
        if row["likelihood"] not in LIKELIHOODS:
            raise DataError(f"{where}: likelihood", f"{row['likelihood']!r} is not allowed; allowed: {', '.join(LIKELIHOODS)}")
        if row["grade"] not in GRADES:
            raise DataError(f"{where}: grade", f"{row['grade']!r} is not allowed; allowed: {', '.join(GRADES)}")
        if row["likelihood"] == "binomial":
            n = row["n"]
            if row["metric"] not in RATE_METRICS:
                raise DataError(f"{where}: likelihood", f"binomial needs a rate metric ({', '.join(RATE_METRICS)})")
            if not (isinstance(n, (int, float)) and n == n and n >= 1 and float(n).is_integer()):
                raise DataError(f"{where}: n", f"{n!r}: a binomial row needs the whole number of patients n >= 1")
            if not 0.0 <= float(row["value"]) <= 1.0:
                raise DataError(f"{where}: value", f"{row['value']!r} must be a fraction in [0, 1]")
            count = float(row["value"]) * n
            if abs(count - round(count)) > 0.01:
                raise DataError(f"{where}: value", f"{row['value']!r} of {n:g} patients is {count:.3g}, not a whole "
                                                   "count; give the fraction of a count (e.g. 0.583333 for 7 of 12)")
            _, df.loc[i, "low"], df.loc[i, "high"] = proportion_ci(round(count), int(n))
            se.append(math.nan)
        else:
            low, high = row["low"], row["high"]
            if not (low == low and high == high):
                raise DataError(f"{where}: low", "a normal row needs its 95 % interval low..high")
            if not high > low:
                raise DataError(f"{where}: high", f"the interval {low:g}..{high:g} has no width")
            given = row.get("se")
            if isinstance(given, (int, float)) and given == given:
                if not given > 0:
                    raise DataError(f"{where}: se", f"{given!r} must be > 0")
                se.append(float(given))
            else:
                se.append((high - low) / (2 * Z95))
    df["se"] = se
    _check_trials(df, name)
    return df


def _check_trials(df: pd.DataFrame, name: str) -> None:
    """Every trial file reads, and names the arms and assessment times its rows ask for, before
    anything is run."""
    from ..errors import ScenarioError
    from ..trial import TrialSpec

    specs = {}
    for i, row in df.iterrows():
        where = f"{name} row {i + 2}"
        path = row["scenario_path"]
        if path not in specs:
            try:
                specs[path] = TrialSpec.load(path)
            except ScenarioError as exc:
                raise DataError(f"{where}: scenario", f"{row['scenario']}: {exc}") from None
        spec = specs[path]
        if spec.mechanisms is not None:
            raise DataError(f"{where}: scenario", f"{row['scenario']} fixes [model] mechanisms; in a comparison the "
                                                  "variant chooses them, so leave the [model] table out")
        arms = [a.name for a in spec.arms]
        for column in ("quantity", "control"):
            arm = row.get(column)
            if column == "control" and not (isinstance(arm, str) and arm.strip()):
                continue
            if arm not in arms:
                raise DataError(f"{where}: {column}", f"{arm!r} is not an arm of {row['scenario']}; arms: {', '.join(arms)}")
        if not any(abs(t - row["time [h]"]) < 1e-9 for t in spec.assessments_h):
            raise DataError(f"{where}: time", f"{row['time']!r} is not an assessment of {row['scenario']}")


#: a model rate is kept this far from 0 and 1 so that one impossible outcome costs a finite amount
RATE_FLOOR = 1e-3


def log_likelihood(row: pd.Series, model: float) -> float:
    """The log-likelihood of the row's observation given the model's value (in the row's unit).

    binomial: ``k = value * n`` responders of ``n`` with probability ``model``; normal:
    N(value; model, se)."""
    if row["likelihood"] == "binomial":
        n = float(row["n"])
        k = float(round(float(row["value"]) * n))
        p = min(max(model, RATE_FLOOR), 1.0 - RATE_FLOOR)
        return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                + k * math.log(p) + (n - k) * math.log1p(-p))
    se = float(row["se"])
    z = (float(row["value"]) - model) / se
    return -0.5 * z * z - math.log(se * math.sqrt(2 * math.pi))
