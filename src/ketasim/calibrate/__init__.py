"""Calibration: observation tables, checks against the shipped targets, and fitting.

>>> from ketasim.calibrate import load_observations, shipped_targets
>>> table = load_observations(shipped_targets())
>>> {"target", "scenario", "quantity", "value", "unit"} <= set(table.columns)
True
"""

from .data import METRICS, DataError, load_observations, shipped_targets, shipped_validation
from .targets import check, validate

__all__ = ["METRICS", "DataError", "check", "load_observations", "shipped_targets", "shipped_validation", "validate"]
