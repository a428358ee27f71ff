"""From the patients table to the trial's endpoints: per arm, per assessment and between arms.

Only patients the solver finished (``status == "ok"``) and who were randomised enter the
statistics; failed patients are counted, with their reasons, never dropped silently. The statistics
are reduced chunk by chunk (``ketasim.trial.tally``); these functions reduce a whole table at once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .design import TrialSpec
from .tally import ASSESSMENT, CHANGE, MADRS, TrialTally, _num, analysed, per_patient, relapse_data


def trial_summary(spec: TrialSpec, patients: pd.DataFrame) -> dict[str, Any]:
    """Everything ``summary.json`` holds."""
    return TrialTally.of_frame(spec, patients).summary()


def parameter_uncertainty(spec: TrialSpec, patients: pd.DataFrame, draw_block: int) -> dict[str, Any]:
    """Per arm and assessment, the MADRS change split into parameter uncertainty and between-patient
    variability (``TrialTally.parameter_uncertainty``)."""
    return TrialTally.of_frame(spec, patients, draw_block).parameter_uncertainty()


__all__ = ["ASSESSMENT", "CHANGE", "MADRS", "_num", "analysed", "parameter_uncertainty", "per_patient",
           "relapse_data", "trial_summary"]
