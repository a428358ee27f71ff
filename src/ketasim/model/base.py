"""What every biological layer offers: named states, a vector field, named outputs.

A layer is written once, as plain functions of named states ``x``, parameters ``p`` (its own under
local names, any other layer's under its full ``layer.name``; internal units), patient covariates
``c`` and inputs ``inp`` (outputs of the layers below and the dosing inputs), using the math module
``m`` it is handed. With ``m = sympy`` the engine gets symbolic expressions (for the compiled
kernel and its analytic Jacobian); with ``m = numpy`` or ``m = jax.numpy`` the same functions
evaluate arrays; with the SBML formula tracer they write the SBML export. So the biology has one
source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Variable:
    """A named quantity with a unit: a state or an output (``layer.quantity [unit]``)."""

    name: str
    unit: str
    description: str

    @property
    def label(self) -> str:
        return f"{self.name} [{self.unit}]"


class Layer(ABC):
    """A biological layer. Concrete layers are final; the system composes them."""

    #: short layer name, the prefix of its states, parameters and outputs
    name: ClassVar[str]
    #: inputs read from other layers that may be absent, with the parameter standing in for them
    optional_inputs: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def states(self) -> tuple[Variable, ...]:
        """The layer's states (local names), in internal units."""

    @abstractmethod
    def outputs(self) -> tuple[Variable, ...]:
        """The layer's outputs (local names) in their reporting units."""

    @abstractmethod
    def derivatives(self, x: Mapping[str, Any], p: Mapping[str, Any], c: Mapping[str, Any],
                    inp: Mapping[str, Any], m: Any) -> dict[str, Any]:
        """d(state)/dt for every state, in internal units per hour."""

    @abstractmethod
    def observe(self, x: Mapping[str, Any], p: Mapping[str, Any], c: Mapping[str, Any],
                inp: Mapping[str, Any], m: Any) -> dict[str, Any]:
        """Every output, in its reporting unit."""

    def readout_variables(self) -> tuple[Variable, ...]:
        """Outputs computed only for reporting (never read by other layers), e.g. fMRI measures."""
        return ()

    def readouts(self, x: Mapping[str, Any], p: Mapping[str, Any], c: Mapping[str, Any],
                 inp: Mapping[str, Any], m: Any) -> dict[str, Any]:
        """Values of ``readout_variables`` (evaluated with numpy or jax.numpy only)."""
        return {}

    def initial_state(self, p: Mapping[str, Any], c: Mapping[str, Any]) -> dict[str, Any]:
        """The state before any dose (default: all zero)."""
        return {v.name: 0.0 for v in self.states()}
