"""The result of a sensitivity analysis: indices per output and parameter, JSON and a report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..result import DISCLAIMER

#: which index ranks the parameters, per method
RANK_BY = {"local": "normalised", "sobol": "ST", "morris": "mu_star"}

#: the scale of the causal chain each parameter file belongs to (DESIGN.md section 1)
SCALES = {"pk": "PK", "interactions": "PK", "comparators": "PK (comparator drugs)", "receptor": "receptor",
          "synapse": "synapse", "plasticity": "plasticity", "inflammation": "inflammation", "circuit": "circuit",
          "clinical": "clinical", "population": "clinical (rating)"}


def _json_number(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _clean(obj):
    """JSON-safe copy: NaN and infinities become null."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return _json_number(float(obj)) if hasattr(obj, "dtype") else _json_number(obj)


@dataclass
class SensitivityResult:
    """``indices[output label][parameter]`` holds the method's indices (see ``RANK_BY`` for the ranking key).

    ``outputs`` describe each analysed output (label, unit, value at the file parameters when known);
    ``parameters`` each parameter (layer, unit, file value and range, the range sampled, the method used);
    ``failures`` the runs that gave no value, each with its parameter values, and where they lie.
    """

    method: str
    target: dict[str, Any]
    outputs: list[dict[str, Any]]
    parameters: list[dict[str, Any]]
    indices: dict[str, dict[str, dict[str, Any]]]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: global methods: runs without a value (``failures.describe_failures``); empty for local
    failures: dict[str, Any] = field(default_factory=dict)

    def ranking(self, output: str) -> list[tuple[str, float]]:
        """(parameter, |index|) from the most to the least influential for ``output`` (a label)."""
        key = RANK_BY[self.method]
        scores = [(p, abs(v[key]) if v.get(key) is not None and math.isfinite(v[key]) else -1.0)
                  for p, v in self.indices[output].items()]
        return sorted(scores, key=lambda pv: -pv[1])

    def by_layer(self, output: str) -> list[dict[str, Any]]:
        """Per parameter layer: the largest index, its parameter and the sum of indices, most influential first."""
        key = RANK_BY[self.method]
        layers: dict[str, dict[str, Any]] = {}
        for p, v in self.indices[output].items():
            x = v.get(key)
            score = abs(x) if x is not None and math.isfinite(x) else 0.0
            layer = p.split(".", 1)[0]
            entry = layers.setdefault(layer, {"layer": layer, "scale": SCALES.get(layer, layer), "top": p,
                                              "max": -1.0, "sum": 0.0, "n": 0})
            entry["sum"] += score
            entry["n"] += 1
            if score > entry["max"]:
                entry["max"], entry["top"] = score, p
        return sorted(layers.values(), key=lambda e: -e["max"])

    def to_dict(self) -> dict[str, Any]:
        return _clean({"disclaimer": DISCLAIMER, "method": self.method, "rank_by": RANK_BY[self.method],
                       "target": self.target, "outputs": self.outputs, "parameters": self.parameters,
                       "settings": self.settings, "notes": self.notes, "failures": self.failures,
                       "indices": self.indices,
                       "by_layer": {o: self.by_layer(o) for o in self.indices}})

    def write(self, folder: str | Path, report: bool = True) -> Path:
        """``sensitivity.json``, ``manifest.json`` and ``report.html`` into ``folder``, atomically."""
        from ..output import atomic_folder
        from ..simulate import _version

        with atomic_folder(folder) as tmp:
            (tmp / "sensitivity.json").write_text(json.dumps(self.to_dict(), indent=2))
            manifest = {"ketasim_version": _version(), "kind": "sensitivity", "method": self.method,
                        "target": self.target, "settings": self.settings, "disclaimer": DISCLAIMER}
            (tmp / "manifest.json").write_text(json.dumps(_clean(manifest), indent=2, default=str))
            if report:
                from .report import write_report

                write_report(self, tmp)
        return Path(folder)
