"""The shape of drug liking (model/clinical.py): which Hill coefficient, given the one calibration point.

One numeric ketamine result (shram2023_ketamine_drug_liking: the typical patient's peak after IV
0.5 mg/kg over 40 min) fixes one parameter, the EC50, for any steepness ``n``. The steepness comes
from bowdle1998_dissociation_linear: in 10 volunteers held at 0, 50, 100, 150 and 200 ng/mL of
plasma ketamine, every subjective item (euphoria among them) rose linearly with the level. Carrying
that to liking, and reading the 0 ng/mL step as no effect, are assumptions. Of the candidate
coefficients, the one kept is the one whose curve through the calibration point is nearest to a
straight line over Bowdle's five steps (rms distance from the least-squares line, points). Over the
four non-zero steps alone a Hill of 1 would be the straightest, so the 0 ng/mL step decides; and no
curve can be exactly straight, since the scale ends 50 points above neutral.

>>> from ketasim.params import load_parameters
>>> p = clinical_parameters(load_parameters())
>>> distances = {n: round(distance_from_linear(p, n, *calibration_point(p)), 2) for n in (1.0, 2.5)}
>>> distances[2.5] < distances[1.0]
True
"""

from __future__ import annotations

import numpy as np

from ..model.clinical import DRUG_LIKING_NEUTRAL, DRUG_LIKING_SPAN, Clinical
from .data import load_observations, shipped_targets

#: Bowdle 1998's steady-state steps of plasma ketamine (ng/mL; racemic, S and R equal, so the level
#: dissociation reads is the plasma level at steady state)
BOWDLE_LEVELS = np.array([0.0, 50.0, 100.0, 150.0, 200.0])
#: the Hill coefficients tried
HILLS = tuple(np.arange(1.0, 4.01, 0.5))


def calibration_peak() -> float:
    """The calibration target's peak (points on the scale: 50 + 90.0 - 50.9), from the shipped table."""
    targets = load_observations(shipped_targets())
    return float(targets.loc[targets["target"] == "shram2023_ketamine_drug_liking", "value"].iloc[0])


def clinical_parameters(params) -> dict[str, float]:
    """The clinical layer's parameters by local name, as ``Clinical``'s functions read them."""
    return {k.split(".", 1)[1]: params[k].value for k in params if k.startswith("clinical.")}


def calibration_point(p: dict[str, float], peak: float | None = None) -> tuple[float, float]:
    """(felt level at the typical patient's peak, rise above neutral there) for parameters whose curve
    passes through ``peak`` (default: the calibration target's): the felt level from inverting the curve."""
    rise = (calibration_peak() if peak is None else peak) - DRUG_LIKING_NEUTRAL
    n, ec50 = p["drug_liking_hill"], p["drug_liking_ec50"]
    return ec50 * (rise / (DRUG_LIKING_SPAN - rise)) ** (1.0 / n), rise


def ec50_through(felt_peak: float, rise: float, hill: float) -> float:
    """The EC50 that puts ``felt_peak`` at ``rise`` points above neutral: S F^n / (F^n + EC50^n) = a."""
    return felt_peak * (DRUG_LIKING_SPAN / rise - 1.0) ** (1.0 / hill)


def distance_from_linear(p: dict[str, float], hill: float, felt_peak: float, rise: float) -> float:
    """Rms distance (points) of the curve of steepness ``hill`` through the calibration point from
    its least-squares straight line over Bowdle's steps, evaluated by the model's own function."""
    q = {**p, "drug_liking_hill": hill, "drug_liking_ec50": ec50_through(felt_peak, rise, hill)}
    liking = Clinical.drug_liking(q, BOWDLE_LEVELS) - DRUG_LIKING_NEUTRAL
    slope, intercept = np.polyfit(BOWDLE_LEVELS, liking, 1)
    return float(np.sqrt(np.mean((liking - (slope * BOWDLE_LEVELS + intercept)) ** 2)))
