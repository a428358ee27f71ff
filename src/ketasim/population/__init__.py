"""Virtual populations: covariate distributions, presets and parameter variability.

>>> from ketasim.population import PopulationSampler, PopulationSpec, presets
>>> "treatment-resistant" in presets()
True
"""

from .sample import LINKED_PARAMETERS, Cohort, PatientParameters, PopulationSampler, VirtualPatient
from .spec import MAX_PATIENTS, Categorical, Continuous, PopulationSpec, Variability, presets

__all__ = ["LINKED_PARAMETERS", "MAX_PATIENTS", "Categorical", "Cohort", "Continuous", "PatientParameters",
           "PopulationSampler", "PopulationSpec", "Variability", "VirtualPatient", "presets"]
