"""SBML Level 3 Version 2 export of the model and a scenario's patient and doses.

The document comes from the same layer functions as the compiled kernel: they are evaluated with a
formula-tracing math module whose values are SBML L3 formula strings. Each state becomes a
non-constant parameter with a rate rule (so amounts, concentrations and fractions keep exactly the
units the model uses); each parameter and patient covariate a constant parameter with its unit and
(as an annotation) its source; each output column of ``timeseries.csv`` an assignment rule whose
id is the column name with ``.`` replaced by ``_``. Dose events follow the engine's schedule: the state at time 0 includes the
first doses, and every later segment start is an SBML event that adds boluses and sets the IV
infusion rates.

Python needs ``python-libsbml`` (the ``sbml`` extra).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from .engine import build_problem
from .errors import KetasimError, ScenarioError
from .model.mechanisms import with_mechanisms
from .model.system import COVARIATES, DOSING_INPUTS, Model, default_model
from .params import ParameterSet, load_parameters
from .result import DISCLAIMER
from .scenario import Scenario

NAMESPACE = "https://ketasim.org/sbml-annotation/1"
_ATOM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^[0-9.]+(e[-+]?[0-9]+)?$")

#: internal unit -> (SBML unit definition id, [(kind, exponent, scale, multiplier)])
UNITS: dict[str, tuple[str, list[tuple[str, float, int, float]]]] = {
    "h": ("hour", [("second", 1, 0, 3600.0)]),
    "1/h": ("per_hour", [("second", -1, 0, 3600.0)]),
    "L": ("litre_unit", [("litre", 1, 0, 1.0)]),
    "L/h": ("litre_per_hour", [("litre", 1, 0, 1.0), ("second", -1, 0, 3600.0)]),
    "umol": ("micromole", [("mole", 1, -6, 1.0)]),
    "umol/h": ("micromole_per_hour", [("mole", 1, -6, 1.0), ("second", -1, 0, 3600.0)]),
    "uM": ("micromolar", [("mole", 1, -6, 1.0), ("litre", -1, 0, 1.0)]),
    "ng/mL": ("ng_per_mL", [("gram", 1, -6, 1.0), ("litre", -1, 0, 1.0)]),
    "pg/mL": ("pg_per_mL", [("gram", 1, -9, 1.0), ("litre", -1, 0, 1.0)]),
    "mL/ng": ("mL_per_ng", [("gram", -1, -6, 1.0), ("litre", 1, 0, 1.0)]),
    "g/mol": ("gram_per_mole", [("gram", 1, 0, 1.0), ("mole", -1, 0, 1.0)]),
    "mmHg": ("mmHg", [("kilogram", 1, 0, 133.322387415), ("metre", -1, 0, 1.0), ("second", -2, 0, 1.0)]),
    "1/min": ("per_minute", [("second", -1, 0, 60.0)]),
    "kg": ("kilogram_unit", [("kilogram", 1, 0, 1.0)]),
}


def unit_id(unit: str) -> str:
    """The SBML unit of a ketasim unit string (scores, folds and fractions are dimensionless)."""
    return UNITS[unit][0] if unit in UNITS else "dimensionless"


def sbml_id(name: str) -> str:
    """``layer.quantity`` -> ``layer_quantity``."""
    return name.replace(".", "_")


def _libsbml():
    """python-libsbml, or a one-line error naming the package (an old environment may lack it)."""
    try:
        import libsbml
    except ImportError:
        raise SBMLExportError("SBML needs python-libsbml, a dependency of ketasim that is missing from this "
                              "environment: pip install 'python-libsbml>=5.20,<6'") from None
    return libsbml


class SBMLExportError(KetasimError, RuntimeError):
    """The exported document failed libsbml's consistency checks, or could not be written."""


class _Formula:
    """An SBML L3 formula string that composes with Python arithmetic."""

    __slots__ = ("text", "tracer")

    def __init__(self, text: str, tracer: _Tracer):
        self.text, self.tracer = text, tracer

    def _wrap(self) -> str:
        return self.text if _ATOM.match(self.text) else f"({self.text})"

    @staticmethod
    def _num(v) -> str:
        text = repr(float(v))
        return f"({text})" if math.copysign(1.0, float(v)) < 0 else text  # -0.0 is bracketed too

    def _other(self, other) -> str:
        return other._wrap() if isinstance(other, _Formula) else self._num(other)

    def _op(self, left: str, op: str, right: str) -> _Formula:
        return self.tracer.make(f"{left} {op} {right}")

    def __add__(self, o):
        return self if _is(o, 0.0) else self._op(self._wrap(), "+", self._other(o))

    def __radd__(self, o):
        return self if _is(o, 0.0) else self._op(self._other(o), "+", self._wrap())

    def __sub__(self, o):
        return self if _is(o, 0.0) else self._op(self._wrap(), "-", self._other(o))

    def __rsub__(self, o):
        return self._op(self._other(o), "-", self._wrap())

    def __mul__(self, o):
        if _is(o, 0.0):
            return 0.0
        return self if _is(o, 1.0) else self._op(self._wrap(), "*", self._other(o))

    __rmul__ = __mul__

    def __truediv__(self, o):
        return self if _is(o, 1.0) else self._op(self._wrap(), "/", self._other(o))

    def __rtruediv__(self, o):
        return 0.0 if _is(o, 0.0) else self._op(self._other(o), "/", self._wrap())

    def __pow__(self, o):
        return self._op(self._wrap(), "^", self._other(o))

    def __rpow__(self, o):
        return self._op(self._other(o), "^", self._wrap())

    def __neg__(self):
        return self.tracer.make(f"-{self._wrap()}")


def _is(value, number: float) -> bool:
    return not isinstance(value, _Formula) and float(value) == number


class _Tracer:
    """The math module handed to the layers: its values are formula strings."""

    def make(self, text: str) -> _Formula:
        return _Formula(text, self)

    def symbol(self, name: str) -> _Formula:
        return _Formula(name, self)

    def _call(self, fn: str, x) -> Any:
        return self.make(f"{fn}({x.text if isinstance(x, _Formula) else _Formula._num(x)})")

    def exp(self, x):
        return self._call("exp", x)

    def log(self, x):
        return self._call("ln", x)

    def sqrt(self, x):
        return self._call("sqrt", x)

    def arctanh(self, x):
        return self._call("arctanh", x)


def _text(value) -> str:
    return value.text if isinstance(value, _Formula) else _Formula._num(value)


def export_sbml(scenario: str | Path | Mapping[str, Any] | Scenario, *, params: ParameterSet | None = None,
                model: Model | None = None, mechanisms: Sequence[str] | None = None) -> str:
    """The SBML L3V2 document (XML text) of the model with the scenario's patient and doses.

    The mechanism switches (``mechanisms``, else the scenario's ``[model]`` table, else the
    calibrated set) are parameters of the document, so one export can be switched in any tool.

    >>> xml = export_sbml({"dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg"}],
    ...                    "simulation": {"duration": "1 d"}})
    >>> 'id="pk_s_ketamine_plasma"' in xml and 'id="clinical_madrs"' in xml
    True
    """
    libsbml = _libsbml()

    scenario = Scenario.load(scenario)
    if scenario.rules is not None:
        raise ScenarioError("rule", "an SBML model holds the doses as written; adaptive rules are decided during a "
                                    "run and cannot be exported (remove [[rule]] to export the schedule as written)")
    params = params if params is not None else load_parameters()
    params = with_mechanisms(params, mechanisms if mechanisms is not None else scenario.mechanisms)
    model = model or default_model()
    problem = build_problem(scenario, params, model)
    theta = dict(zip(problem.parameter_names, problem.theta[0]))
    y_start = problem.y0[0] + problem.seg_jump[0, 0]
    tracer = _Tracer()

    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("ketasim")
    m.setName("ketasim: ketamine from dose to depression score")
    m.setNotes(f'<body xmlns="http://www.w3.org/1999/xhtml"><p>{DISCLAIMER}</p>'
               f'<p>Exported by ketasim for the scenario given; time in hours.</p></body>')
    for uid, parts in UNITS.values():
        ud = m.createUnitDefinition()
        ud.setId(uid)
        for kind, exponent, scale, multiplier in parts:
            u = ud.createUnit()
            u.setKind(libsbml.UnitKind_forName(kind))
            u.setExponent(exponent)
            u.setScale(scale)
            u.setMultiplier(multiplier)
    m.setTimeUnits("hour")
    m.setSubstanceUnits("micromole")
    m.setVolumeUnits("litre_unit")
    m.setExtentUnits("micromole")

    def parameter(pid: str, value: float, unit: str, constant: bool, annotation: str | None = None):
        par = m.createParameter()
        par.setId(pid)
        par.setValue(float(value))
        par.setUnits(unit_id(unit))
        par.setConstant(constant)
        if annotation:
            par.setAnnotation(annotation)
        return par

    units_of = {v.name: v.unit for v in COVARIATES}
    for name in problem.parameter_names:
        if name in params:
            p = params[name]
            note = (f'<ketasim:parameter xmlns:ketasim="{NAMESPACE}" name={quoteattr(name)} '
                    f'unit={quoteattr(p.internal_unit)} source={quoteattr(p.source)} '
                    f'range={quoteattr(f"{p.range[0]:g}..{p.range[1]:g} {p.unit}")} cv="{p.cv:g}"/>')
            parameter(sbml_id(name), theta[name], p.internal_unit, True, note)
        else:
            note = f'<ketasim:covariate xmlns:ketasim="{NAMESPACE}" name={quoteattr(name)}/>'
            parameter(sbml_id(name), theta[name], units_of[name], True, note)
    for i, var in enumerate(model.states):
        parameter(sbml_id(var.name), y_start[i], var.unit, False)
    for k, var in enumerate(DOSING_INPUTS):
        parameter(sbml_id(var.name), problem.seg_u[0, 0, k], var.unit, False)

    y = {n: tracer.symbol(sbml_id(n)) for n in model.state_names}
    th = {n: tracer.symbol(sbml_id(n)) for n in problem.parameter_names}
    u = {n: tracer.symbol(sbml_id(n)) for n in model.input_names}
    derivatives, outputs = model.evaluate(y, th, u, tracer)  # outputs without the reporting readouts
    outputs.update(_circuit_readouts(m, model, tracer, outputs, th, theta, problem, y_start, libsbml))

    output_rules = []
    for var in model.outputs:
        text = _text(outputs[var.name])
        if var.name in model.state_names and text == sbml_id(var.name):
            continue  # the state itself is the output column
        output_rules.append((var, text))
    for var, text in output_rules:
        parameter(sbml_id(var.name), 0.0, var.unit, False)
        _rule(m.createAssignmentRule(), sbml_id(var.name), text, libsbml)
    for name in model.state_names:
        _rule(m.createRateRule(), sbml_id(name), _text(derivatives[name]), libsbml)

    for s in range(1, problem.seg_u.shape[1]):
        t0, t1 = problem.seg_t[0, s], problem.seg_t[0, s + 1]
        if not t1 > t0:
            continue
        ev = m.createEvent()
        ev.setId(f"dose_event_{s}")
        ev.setUseValuesFromTriggerTime(True)
        trig = ev.createTrigger()
        trig.setInitialValue(False)
        trig.setPersistent(True)
        trig.setMath(libsbml.parseL3Formula(f"time >= {float(t0)!r}"))
        for i, name in enumerate(model.state_names):
            if problem.seg_jump[0, s, i] != 0.0:
                a = ev.createEventAssignment()
                a.setVariable(sbml_id(name))
                a.setMath(libsbml.parseL3Formula(f"{sbml_id(name)} + {float(problem.seg_jump[0, s, i])!r}"))
        for k, var in enumerate(DOSING_INPUTS):
            if problem.seg_u[0, s, k] != problem.seg_u[0, s - 1, k]:
                a = ev.createEventAssignment()
                a.setVariable(sbml_id(var.name))
                a.setMath(libsbml.parseL3Formula(repr(float(problem.seg_u[0, s, k]))))

    errors = [doc.getError(i) for i in range(doc.checkConsistency())
              if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errors:
        raise SBMLExportError("the exported SBML is not consistent: "
                              + "; ".join(e.getMessage().strip() for e in errors[:5]))
    return libsbml.writeSBMLToString(doc)


#: relaxation rate (1/h) of the covariance states that carry the circuit's stationary covariance
COVARIANCE_RELAXATION_PER_H = 1.0e5


def _circuit_readouts(m, model, tracer, outputs, th, theta, problem, y_start, libsbml) -> dict[str, Any]:
    """The circuit's fMRI readouts for SBML: covariance states relaxing fast to the Lyapunov solution.

    Simulators such as libRoadRunner inline assignment rules, so the exact elimination (whose
    sub-expressions are shared many times) would blow up; the Lyapunov differential equation
    dS/dt = k (A S + S A' + I) keeps S at the stationary covariance of the current A, with a lag of
    order (rate of change of A) / k, i.e. relative errors below 1e-5 for k = 1e5 per hour.
    """
    from .model.circuit import Circuit, connectivity_readouts, lyapunov_rate, stationary_covariance
    from .simulate import observe as observe_numeric

    circuit = next((layer for layer in model.layers if isinstance(layer, Circuit)), None)
    if circuit is None:
        return {}
    strength = outputs["circuit.prefrontal_strength"]
    a = circuit.effective_connectivity(model.layer_parameters(circuit, th), strength, tracer)
    start = observe_numeric(model, y_start[None, :], problem.parameter_names, problem.theta[0])
    a0 = circuit.effective_connectivity(model.layer_parameters(circuit, theta), start["circuit.prefrontal_strength"][0],
                                       np)
    s0 = stationary_covariance(a0)
    n = len(a)
    s = [[tracer.symbol(f"circuit_covariance_{min(i, j)}_{max(i, j)}") for j in range(n)] for i in range(n)]
    for (i, j), rate in lyapunov_rate(a, s).items():
        name = f"circuit_covariance_{i}_{j}"
        par = m.createParameter()
        par.setId(name)
        par.setValue(float(s0[i][j]))
        par.setUnits("dimensionless")
        par.setConstant(False)
        _rule(m.createRateRule(), name, f"{COVARIANCE_RELAXATION_PER_H!r} * ({_text(rate)})", libsbml)
    return {f"circuit.{k}": v for k, v in connectivity_readouts(s, tracer).items()}


def _rule(rule, variable: str, formula: str, libsbml) -> None:
    rule.setVariable(variable)
    math = libsbml.parseL3Formula(formula)
    if math is None:
        raise SBMLExportError(f"cannot parse the formula of {variable}: {libsbml.getLastParseL3Error()}")
    rule.setMath(math)


def referenced_ids(xml: str) -> set[str]:
    """Every identifier the document's rules, event triggers and event assignments read."""
    libsbml = _libsbml()

    model = libsbml.readSBMLFromString(xml).getModel()
    maths = [model.getRule(i).getMath() for i in range(model.getNumRules())]
    for i in range(model.getNumEvents()):
        ev = model.getEvent(i)
        maths.append(ev.getTrigger().getMath())
        maths.extend(ev.getEventAssignment(k).getMath() for k in range(ev.getNumEventAssignments()))
    names: set[str] = set()
    stack = [m for m in maths if m is not None]
    while stack:
        node = stack.pop()
        if node.getType() == libsbml.AST_NAME:
            names.add(node.getName())
        stack.extend(node.getChild(k) for k in range(node.getNumChildren()))
    return names


def consistency_report(xml: str) -> list[tuple[str, str]]:
    """(severity, message) of every libsbml consistency finding (units included)."""
    libsbml = _libsbml()

    doc = libsbml.readSBMLFromString(xml)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, True)
    n = doc.checkConsistency()
    return [(doc.getError(i).getSeverityAsString(), doc.getError(i).getMessage().strip()) for i in range(n)]


def write_sbml(scenario, path: str | Path, **kwargs) -> Path:
    """Write the document atomically (a temporary file renamed into place)."""
    path = Path(path)
    if path.is_dir():
        raise SBMLExportError(f"--out {path}: is a folder; give a file name such as model.xml")
    xml = export_sbml(scenario, **kwargs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(xml)
        os.replace(tmp, path)
    except OSError as exc:
        raise SBMLExportError(f"--out {path}: cannot write: {exc.strerror or exc}") from None
    return path
