"""PEtab problems for calibration data sets: SBML model, conditions, observables, measurements,
parameters and the problem YAML, as the ``petab`` package (format version 1) reads them.

A data set is a TOML file::

    [dataset]
    id = "racemic_infusion_targets"
    scenario = "../single_infusion.toml"       # relative to this file
    estimate = ["pk.v_central"]                 # optional: parameters to estimate

    [[observation]]
    target = "zarate2006_cmax_antidepressant_dose"
    quantity = "pk.ketamine_plasma"
    time = "40 min"
    value = 185.0
    unit = "ng/mL"
    sd = 27.75

Values and SDs are converted to the output's unit; every bad entry is refused naming the field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ScenarioError
from .model.system import default_model
from .output import atomic_folder
from .params import load_parameters
from .sbml import export_sbml, referenced_ids, sbml_id
from .scenario import Scenario, read_toml
from .units import parse_time, registry


@dataclass(frozen=True)
class Observation:
    target: str
    quantity: str
    time_h: float
    value: float
    sd: float


@dataclass(frozen=True)
class Dataset:
    id: str
    scenario: Scenario
    observations: tuple[Observation, ...]
    estimate: tuple[str, ...]


def load_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    data = read_toml(path, "data set")
    _only(data, {"dataset", "observation"}, "data set")
    head = data.get("dataset")
    if not isinstance(head, dict) or "id" not in head or "scenario" not in head:
        raise ScenarioError("dataset", "needs 'id' and 'scenario' (a scenario file relative to the data set)")
    _only(head, {"id", "scenario", "estimate", "description", "source"}, "dataset")
    _identifier(head["id"], "dataset.id")
    if not isinstance(head["scenario"], str):
        raise ScenarioError("dataset.scenario", f"{head['scenario']!r} must be a file name (text)")
    scenario = Scenario.from_toml(path.parent / head["scenario"])
    model, params = default_model(), load_parameters()
    units = {v.name: v.unit for v in model.outputs}
    estimate = tuple(head.get("estimate", ()))
    if len(set(estimate)) != len(estimate):
        raise ScenarioError("dataset.estimate", "a parameter is named twice")
    for i, name in enumerate(estimate):
        if name not in params:
            raise ScenarioError(f"dataset.estimate[{i}]", f"'{name}' is not a model parameter")
    observations = []
    for i, entry in enumerate(data.get("observation", [])):
        where = f"observation[{i}]"
        missing = [k for k in ("target", "quantity", "time", "value", "unit", "sd") if k not in entry]
        if missing:
            raise ScenarioError(where, f"lacks {', '.join(missing)}")
        _only(entry, {"target", "quantity", "time", "value", "unit", "sd", "note"}, where)
        _identifier(entry["target"], f"{where}.target")
        quantity = entry["quantity"]
        if quantity not in units:
            raise ScenarioError(f"{where}.quantity", f"'{quantity}' is not an output; e.g. pk.ketamine_plasma")
        time_h = parse_time(entry["time"], f"{where}.time")
        if not 0 <= time_h <= scenario.duration_h:
            raise ScenarioError(f"{where}.time", f"{entry['time']!r} is outside the scenario's 0..{scenario.duration_h:g} h")
        value, sd = _convert(entry["value"], entry["unit"], units[quantity], f"{where}.unit"), \
            _convert(entry["sd"], entry["unit"], units[quantity], f"{where}.unit")
        if not (math.isfinite(value) and math.isfinite(sd) and sd > 0):
            raise ScenarioError(f"{where}.sd", "value must be finite and sd a positive number")
        observations.append(Observation(entry["target"], quantity, time_h, value, sd))
    if not observations:
        raise ScenarioError("observation", "a data set needs at least one observation")
    return Dataset(head["id"], scenario, tuple(observations), estimate)


def _only(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScenarioError(where, f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")


def _identifier(value, field: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ScenarioError(field, f"{value!r} must be an identifier (letters, digits, underscores)")


def _convert(value, unit: str, target: str, field: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ScenarioError(field, f"{value!r} is not a number")
    if unit == target:
        return float(value)
    ureg = registry()
    try:
        return float(ureg.Quantity(float(value), unit).to(target).magnitude)
    except Exception:
        raise ScenarioError(field, f"'{unit}' cannot be converted to the output's unit '{target}'") from None


def write_petab(dataset_path: str | Path, out: str | Path) -> Path:
    """Write the PEtab problem of a data set into the folder ``out`` (atomically)."""
    ds = load_dataset(dataset_path)
    params = load_parameters()
    xml = export_sbml(ds.scenario, params=params)
    used = referenced_ids(xml)
    for i, name in enumerate(ds.estimate):
        if sbml_id(name) not in used:
            raise ScenarioError(f"dataset.estimate[{i}]", f"'{name}' acts only through the patient's covariates or the "
                                                           "dose schedule, which the exported model fixes; it cannot be "
                                                           "estimated from this PEtab problem")
    observables = sorted({o.quantity for o in ds.observations})
    with atomic_folder(out) as tmp:
        (tmp / "manifest.json").write_text(json.dumps({"kind": "petab problem", "dataset": ds.id,
                                                       "source": str(dataset_path)}, indent=2))
        (tmp / "model.xml").write_text(xml)
        (tmp / "conditions.tsv").write_text("conditionId\tconditionName\nscenario\t" + ds.id + "\n")
        rows = ["observableId\tobservableName\tobservableFormula\tobservableTransformation\tnoiseFormula\tnoiseDistribution"]
        for q in observables:
            oid = f"obs_{sbml_id(q)}"
            rows.append(f"{oid}\t{q}\t{sbml_id(q)}\tlin\tnoiseParameter1_{oid}\tnormal")
        (tmp / "observables.tsv").write_text("\n".join(rows) + "\n")
        rows = ["observableId\tsimulationConditionId\tmeasurement\ttime\tnoiseParameters\tdatasetId"]
        for o in ds.observations:
            rows.append(f"obs_{sbml_id(o.quantity)}\tscenario\t{o.value!r}\t{o.time_h!r}\t{o.sd!r}\t{o.target}")
        (tmp / "measurements.tsv").write_text("\n".join(rows) + "\n")
        rows = ["parameterId\tparameterName\tparameterScale\tlowerBound\tupperBound\tnominalValue\testimate"]
        for name in ds.estimate:
            p = params[name]
            low, high = (p.range[0] * p.internal / p.value, p.range[1] * p.internal / p.value) if p.value else p.range
            scale = "log10" if low > 0 else "lin"
            rows.append(f"{sbml_id(name)}\t{name}\t{scale}\t{low!r}\t{high!r}\t{p.internal!r}\t1")
        if len(rows) == 1:  # PEtab needs a parameter table; a fixed entry keeps it valid
            first = next(iter(params))
            rows.append(f"{sbml_id(first)}\t{first}\tlin\t{params.value(first)!r}\t{params.value(first)!r}\t"
                        f"{params.value(first)!r}\t0")
        (tmp / "parameters.tsv").write_text("\n".join(rows) + "\n")
        (tmp / "problem.yaml").write_text(
            "format_version: 1\nparameter_file: parameters.tsv\nproblems:\n"
            "  - sbml_files: [model.xml]\n    condition_files: [conditions.tsv]\n"
            "    measurement_files: [measurements.tsv]\n    observable_files: [observables.tsv]\n")
    return Path(out)
