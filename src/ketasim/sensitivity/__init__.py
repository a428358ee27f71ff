"""Which parameters, at which scale, drive an outcome: local and global sensitivity analysis.

- ``local_sensitivity(scenario, ["clinical.madrs@24h"])``: normalised sensitivities
  ``theta * d output / d theta`` of model outputs to every parameter, by forward-mode autodiff
  (finite differences for parameters acting through the dose schedule or covariates).
- ``sobol(target, outputs, samples=N)``: first- and total-order Sobol' indices with bootstrap
  CIs over the parameters' plausible ranges (SALib; ``N * (D + 2)`` model runs), on model outputs
  of a scenario or endpoints of a trial (``response_rate@24h``, ``median_time_to_relapse``).
- ``morris(target, outputs, samples=N)``: Morris screening (``N * (D + 1)`` runs).
- ``parse_output_spec("clinical.madrs@24h")``: what an ``--output`` names.

Results (``SensitivityResult``) rank parameters and layers and write ``sensitivity.json``,
``manifest.json`` and ``report.html`` (``.write(folder)``). For research and teaching only.

>>> import ketasim.sensitivity as ks
>>> scenario = {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
...             "duration": "40 min"}], "simulation": {"duration": "2 h"}}
>>> r = ks.sobol(scenario, ["pk.ketamine_plasma@1h"], samples=64,
...              parameters=["pk.cl_s_ketamine", "pk.mw_ketamine"])
>>> r.ranking("pk.ketamine_plasma@1 h [ng/mL]")[0][0]
'pk.cl_s_ketamine'
"""

from .analysis import (
                       METHODS,
                       finite_difference_sensitivity,
                       load_target,
                       local_sensitivity,
                       morris,
                       sensitivity,
                       sobol,
                       sobol_indices,
                       sobol_sample,
)
from .outputs import TRIAL_ENDPOINTS, OutputSpec, SensitivityError, parse_output_spec
from .problem import ParameterSpace, parameter_space, select_parameters
from .result import SensitivityResult

__all__ = ["METHODS", "TRIAL_ENDPOINTS", "OutputSpec", "ParameterSpace", "SensitivityError", "SensitivityResult",
           "finite_difference_sensitivity", "load_target", "local_sensitivity", "morris", "parameter_space",
           "parse_output_spec", "select_parameters", "sensitivity", "sobol", "sobol_indices", "sobol_sample"]
