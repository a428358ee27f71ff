"""Comparing hypotheses of ketamine's antidepressant action on experiments that tell them apart.

``compare`` calibrates each variant (a set of mechanisms, ``ketasim mechanisms``) the same way,
predicts every shipped discriminating experiment with it and scores the predictions; ``ketasim
compare`` is the command line. The experiments are evidence, never calibration targets.

>>> from ketasim.compare import Variant, parse_variants
>>> [v.name for v in parse_variants("calibrated,glun2b_eef2+opioid")]
['calibrated', 'glun2b_eef2+opioid']
"""

from .experiments import load_experiments, shipped_experiments
from .run import ComparisonResult, compare
from .variants import GainFit, Variant, default_variants, fit_variant, parse_variants

__all__ = ["ComparisonResult", "GainFit", "Variant", "compare", "default_variants", "fit_variant",
           "load_experiments", "parse_variants", "shipped_experiments"]
