"""The whole model: layers composed into one vector field over a flat, named state vector.

Each layer owns its states and parameters and reads only the outputs of the layers before it (and
the dosing inputs). ``Model`` flattens names as ``layer.local_name`` and evaluates the layers in
order, so ``derivatives`` and ``observe`` work for any math module the layers accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property, lru_cache
from typing import Any

from .base import Layer, Variable
from .circuit import Circuit
from .clinical import Clinical
from .comparators import Comparators
from .inflammation import Inflammation
from .mechanisms import SWITCH_PREFIX
from .pk import ENANTIOMERS, PK
from .plasticity import Plasticity
from .probes import Probes
from .receptor import Receptor
from .synapse import Synapse

#: patient covariates the vector field reads (numbers; categorical ones become enzyme activities)
COVARIATES: tuple[Variable, ...] = (
    Variable("patient.weight", "kg", "body weight"),
    Variable("patient.age", "h", "age (internal time unit: 1 y = 8766 h)"),
    Variable("patient.female", "1", "1 for female, 0 for male"),
    Variable("patient.cyp2b6_activity", "fold normal", "CYP2B6 activity (genotype x interacting drugs)"),
    Variable("patient.cyp3a4_hepatic_activity", "fold normal", "hepatic CYP3A4 activity"),
    Variable("patient.cyp3a4_gut_activity", "fold normal", "gut-wall CYP3A4 activity"),
    Variable("patient.baseline_madrs", "points", "MADRS before treatment"),
    Variable("patient.synaptic_density_baseline", "fraction healthy",
             "prefrontal synaptic strength before treatment (1 = healthy reference)"),
    Variable("patient.il6_baseline", "ng/mL", "plasma IL-6 before treatment (internal unit)"),
    Variable("patient.bdnf_release", "fold val/val", "activity-dependent BDNF release (Val66Met genotype)"),
    Variable("patient.lorazepam", "1", "1 when taking lorazepam"),
    Variable("patient.plasticity_responsive", "1",
             "1 when the patient's illness responds to the plasticity route, 0 when it does not"),
    Variable("patient.episodic_course", "1", "1 for an episodic course (natural recovery), 0 for a chronic one"),
)

#: exogenous inputs, piecewise constant between dose events
DOSING_INPUTS: tuple[Variable, ...] = tuple(
    Variable(f"dosing.{e}_ketamine_iv_rate", "umol/h", f"{e.upper()}-ketamine IV infusion rate")
    for e in ENANTIOMERS) + (
    Variable("dosing.midazolam_iv_rate", "umol/h", "midazolam IV infusion rate"),
    Variable("dosing.lanicemine_iv_rate", "umol/h", "lanicemine IV infusion rate"),
    Variable("dosing.traxoprodil_iv_rate", "umol/h", "traxoprodil IV infusion rate"),
    Variable("dosing.r_hnk_iv_rate", "umol/h", "(2R,6R)-hydroxynorketamine IV infusion rate"),
    Variable("dosing.nitrous_oxide_inspired", "fraction", "inspired nitrous oxide (fraction of 1 atm)"),
)


class Model:
    """An ordered composition of layers with flat, named states, parameters and outputs."""

    def __init__(self, layers: Sequence[Layer]):
        self.layers = tuple(layers)
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate layer names in {names}")

    @cached_property
    def states(self) -> tuple[Variable, ...]:
        return tuple(Variable(f"{layer.name}.{v.name}", v.unit, v.description)
                     for layer in self.layers for v in layer.states())

    @cached_property
    def state_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.states)

    @cached_property
    def amount_states(self) -> tuple[str, ...]:
        """The states that are amounts of a drug (umol), not concentrations: what
        ``SolverSettings.amount_states`` takes.

        >>> default_model().amount_states[:2]
        ('pk.s_ketamine_stomach', 'pk.s_ketamine_gut')
        """
        return tuple(v.name for v in self.states if v.unit == "umol")

    @cached_property
    def outputs(self) -> tuple[Variable, ...]:
        return tuple(Variable(f"{layer.name}.{v.name}", v.unit, v.description)
                     for layer in self.layers for v in layer.outputs() + layer.readout_variables())

    @cached_property
    def output_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.outputs)

    @cached_property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def parameter_names(self, available: Sequence[str]) -> tuple[str, ...]:
        """The parameters of the composed layers and the mechanism switches, from the names a
        ParameterSet holds."""
        prefixes = tuple(f"{name}." for name in self.layer_names) + (SWITCH_PREFIX,)
        return tuple(n for n in available if n.startswith(prefixes))

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in COVARIATES)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in DOSING_INPUTS)

    # ------------------------------------------------------------------ evaluation
    def _split(self, flat: Mapping[str, Any], layer: Layer) -> dict[str, Any]:
        prefix = f"{layer.name}."
        return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}

    def _covariates(self, theta: Mapping[str, Any]) -> dict[str, Any]:
        return {k.split(".", 1)[1]: theta[k] for k in self.covariate_names}

    def evaluate(self, y: Mapping[str, Any], theta: Mapping[str, Any], u: Mapping[str, Any],
                 m: Any, want_derivatives: bool = True,
                 want_readouts: bool | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """(derivatives, outputs), both keyed by full names, for states ``y`` and parameters ``theta``.

        Readouts (reporting-only outputs) are computed when ``want_readouts`` is true; by default
        only when ``want_derivatives`` is false.
        """
        if want_readouts is None:
            want_readouts = not want_derivatives
        c = self._covariates(theta)
        available: dict[str, Any] = dict(u)
        dy: dict[str, Any] = {}
        for layer in self.layers:
            p = self.layer_parameters(layer, theta)
            x = self._split(y, layer)
            inp = dict(available)
            for name, stand_in in layer.optional_inputs.items():
                inp.setdefault(name, p[stand_in])
            if want_derivatives:
                for k, v in layer.derivatives(x, p, c, inp, m).items():
                    dy[f"{layer.name}.{k}"] = v
            for k, v in layer.observe(x, p, c, inp, m).items():
                available[f"{layer.name}.{k}"] = v
            if want_readouts:
                for k, v in layer.readouts(x, p, c, inp, m).items():
                    available[f"{layer.name}.{k}"] = v
        outputs = {name: available[name] for name in self.output_names if name in available}
        return dy, outputs

    def layer_parameters(self, layer: Layer, theta: Mapping[str, Any]) -> dict[str, Any]:
        """What ``layer`` sees as ``p``: every parameter by full name, its own also by local name."""
        return {**theta, **self._split(theta, layer)}

    def derivatives(self, y, theta, u, m) -> dict[str, Any]:
        return self.evaluate(y, theta, u, m)[0]

    def observe(self, y, theta, u, m, readouts: bool = True) -> dict[str, Any]:
        """Every output; ``readouts=False`` leaves out the reporting-only ones (cheaper)."""
        return self.evaluate(y, theta, u, m, want_derivatives=False, want_readouts=readouts)[1]

    def states_read_by(self, outputs: Sequence[str], parameter_names: Sequence[str]) -> frozenset[str]:
        """The states from which ``outputs`` (not readouts) are computed: the layers' own equations
        evaluated once on sympy symbols, so the answer is exact, not sampled.

        >>> from ketasim.model import default_model
        >>> from ketasim.params import load_parameters
        >>> model = default_model()
        >>> names = model.parameter_names(tuple(load_parameters())) + model.covariate_names
        >>> sorted(model.states_read_by(["clinical.madrs"], names))
        ['clinical.severity']
        """
        return _states_read_by(self, tuple(outputs), tuple(parameter_names))

    def initial_state(self, theta: Mapping[str, Any]) -> dict[str, Any]:
        c = self._covariates(theta)
        out = {}
        for layer in self.layers:
            for k, v in layer.initial_state(self.layer_parameters(layer, theta), c).items():
                out[f"{layer.name}.{k}"] = v
        return out


@lru_cache(maxsize=64)
def _states_read_by(model: Model, outputs: tuple[str, ...], parameter_names: tuple[str, ...]) -> frozenset[str]:
    import sympy as sp

    y = {name: sp.Symbol(f"y_{i}", real=True) for i, name in enumerate(model.state_names)}
    theta = {name: sp.Symbol(f"p_{j}", real=True) for j, name in enumerate(parameter_names)}
    u = {name: sp.Symbol(f"u_{k}", real=True) for k, name in enumerate(model.input_names)}
    observed = model.observe(y, theta, u, sp, readouts=False)
    unknown = [o for o in outputs if o not in observed]
    if unknown:
        raise ValueError(f"not outputs of the model (or readouts, which are not traced): {', '.join(unknown)}")
    symbols = {v: name for name, v in y.items()}
    return frozenset(symbols[v] for o in outputs for v in sp.sympify(observed[o]).free_symbols if v in symbols)


def default_model() -> Model:
    """The whole chain, from dose to depression score, in the order layers read each other."""
    return Model([PK(), Comparators(), Probes(), Inflammation(), Receptor(), Synapse(), Plasticity(), Circuit(), Clinical()])
