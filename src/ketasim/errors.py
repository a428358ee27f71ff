"""Errors a user can act on: each names the field, the value and what is allowed."""

from __future__ import annotations


class KetasimError(Exception):
    """Base class of every error ketasim raises on purpose."""


class ScenarioError(KetasimError, ValueError):
    """A scenario (file, dict or CLI flags) is malformed or out of range.

    ``field`` is the dotted path of the offending entry (``dose[0].amount``).
    """

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class ParameterError(KetasimError, ValueError):
    """A parameter file entry is malformed (missing key, unknown unit, bad source)."""


class ParameterRangeError(ParameterError):
    """A parameter value lies outside its declared plausible range."""


class SolverError(KetasimError, RuntimeError):
    """The integrator could not finish a patient (per-patient status carries the reason)."""
