"""The biology, one module per layer; ``system`` composes them into one vector field."""

from .base import Layer, Variable
from .system import COVARIATES, DOSING_INPUTS, Model, default_model

__all__ = ["COVARIATES", "DOSING_INPUTS", "Layer", "Model", "Variable", "default_model"]
