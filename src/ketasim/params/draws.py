"""Parameter uncertainty for trials: posterior draws or a fit's covariance, as parameter sets.

``ketasim trial`` and ``ketasim power`` take ``--params-draws FILE``:

* a draws table (``draws.parquet`` of ``ketasim fit --bayes``, or a CSV with the same columns):
  optional ``chain`` and ``draw``, then one column per parameter named ``"layer.name [unit]"`` in
  that unit, one row per draw; or
* a ``fit.json`` of ``ketasim fit``: its ``covariance_log_shift`` is sampled (log-shifts multivariate
  normal around the estimate; value = the parameter's value before the fit x exp(shift)); a parameter
  the profile found not identifiable has no covariance and is held at its estimate, which the
  summary states.

Each block of patients (a trial) or each replicate (a power analysis) runs with one draw, chosen
from the trial's seed, so that the run is reproducible. A draw outside a parameter's declared range
is moved to the range's end and counted.

>>> import pandas as pd, ketasim
>>> from ketasim.params.draws import ParameterDraws
>>> table = pd.DataFrame({"pk.cl_s_ketamine [L/h]": [80.0, 95.0, 110.0]})
>>> draws = ParameterDraws.from_table(table, ketasim.load_parameters(), source="example")
>>> sets = draws.parameter_sets(ketasim.load_parameters(), count=2, seed=1)
>>> [80.0 <= s["pk.cl_s_ketamine"].value <= 110.0 for s in sets]
[True, True]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ParameterError
from . import ParameterSet

#: the random stream of draw choices (apart from the patients' streams under the same seed)
DRAW_STREAM = 104_729
COLUMN = re.compile(r"^(?P<name>[A-Za-z0-9_.]+) \[(?P<unit>[^\]]*)\]$")


@dataclass(frozen=True)
class ParameterDraws:
    """Draws of some parameters, in their file units: ``values`` (draws, names) or a covariance."""

    names: tuple[str, ...]
    source: str
    kind: str  # "posterior draws" or "covariance"
    values: np.ndarray | None = None  # (draws, names), file units
    center: np.ndarray | None = None  # covariance: log-shift estimate per name
    base: np.ndarray | None = None  # covariance: the value before the fit per name (file unit)
    covariance: np.ndarray | None = None  # covariance of the log-shifts (identifiable names only)
    fixed: tuple[str, ...] = ()  # covariance: names held at their estimate (not identifiable)

    @classmethod
    def of(cls, source: ParameterDraws | str | Path, params: ParameterSet) -> ParameterDraws:
        """``source`` itself if already read, else ``load`` it."""
        return source if isinstance(source, cls) else cls.load(source, params)

    @classmethod
    def load(cls, path: str | Path, params: ParameterSet) -> ParameterDraws:
        path = Path(path)
        if not path.is_file():
            raise ParameterError(f"--params-draws: {path} is not a file")
        suffix = path.suffix.lower()
        if suffix == ".json":
            return cls.from_fit(json.loads(path.read_text()), params, source=str(path))
        if suffix == ".parquet":
            table = pd.read_parquet(path)
        elif suffix == ".csv":
            table = pd.read_csv(path)
        else:
            raise ParameterError(f"--params-draws: {path.name}: allowed are a draws table (.parquet or .csv, as "
                                 "`ketasim fit --bayes` writes) or a fit.json with a covariance")
        return cls.from_table(table, params, source=str(path))

    @classmethod
    def from_table(cls, table: pd.DataFrame, params: ParameterSet, source: str) -> ParameterDraws:
        columns = [c for c in table.columns if c not in ("chain", "draw")]
        if not columns or table.empty:
            raise ParameterError(f"--params-draws: {source} has no draws (columns 'layer.name [unit]', one row per draw)")
        names, values = [], []
        for column in columns:
            match = COLUMN.match(str(column))
            if not match:
                raise ParameterError(f"--params-draws: column {column!r} must be 'layer.name [unit]', e.g. "
                                     "'pk.cl_s_ketamine [L/h]'")
            name, unit = match["name"], match["unit"]
            if name not in params:
                raise ParameterError(f"--params-draws: column {column!r}: unknown parameter {name!r}")
            x = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
            if not np.all(np.isfinite(x)):
                raise ParameterError(f"--params-draws: column {column!r} has missing or non-numeric values")
            if unit != params[name].unit:
                raise ParameterError(f"--params-draws: column {column!r}: give {name} in its file unit "
                                     f"[{params[name].unit}], as `ketasim fit --bayes` writes it")
            values.append(x)
            names.append(name)
        if len(set(names)) != len(names):
            raise ParameterError(f"--params-draws: {source} names a parameter twice")
        return cls(names=tuple(names), source=source, kind="posterior draws", values=np.column_stack(values))

    @classmethod
    def from_fit(cls, fit: dict[str, Any], params: ParameterSet, source: str) -> ParameterDraws:
        cov = fit.get("covariance_log_shift") if isinstance(fit, dict) else None
        if not cov:
            raise ParameterError(f"--params-draws: {source} has no covariance_log_shift (a fit.json of `ketasim fit`)")
        names = tuple(cov["parameters"])
        unknown = [n for n in names if n not in params]
        if unknown:
            raise ParameterError(f"--params-draws: {source}: unknown parameter(s) {', '.join(unknown)}")
        matrix = np.array([[np.nan if v is None else v for v in row] for row in cov["matrix"]], dtype=float)
        estimates = fit["estimates"]
        center = np.array([estimates[n]["log_shift"] for n in names], dtype=float)
        base = np.array([estimates[n]["prior_value"] for n in names], dtype=float)
        fixed = tuple(n for k, n in enumerate(names) if not np.isfinite(matrix[k, k]))
        return cls(names=names, source=source, kind="covariance", center=center, base=base, covariance=matrix,
                   fixed=fixed)

    def parameter_sets(self, params: ParameterSet, count: int, seed: int) -> list[ParameterSet]:
        """``count`` parameter sets, each ``params`` with one draw (chosen or sampled from ``seed``)."""
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(DRAW_STREAM,)))
        values = self._values(rng, count)
        sets = []
        for row in values:
            changes = {}
            for name, value in zip(self.names, row):
                low, high = params[name].range
                changes[name.replace(".", "__")] = float(min(max(value, low), high))
            sets.append(params.replace(**changes))
        return sets

    def outside_range(self, params: ParameterSet, sets: list[ParameterSet]) -> int:
        """How many of the drawn values were moved to a range's end (the sets hold the moved values)."""
        count = 0
        for s in sets:
            for name in self.names:
                low, high = params[name].range
                count += int(s[name].value in (low, high))
        return count

    def _values(self, rng: np.random.Generator, count: int) -> np.ndarray:
        if self.kind == "posterior draws":
            n = self.values.shape[0]
            rows = rng.choice(n, size=count, replace=count > n)
            return self.values[rows]
        known = [k for k, n in enumerate(self.names) if n not in self.fixed]
        shifts = np.tile(self.center, (count, 1))
        if known:
            sub = self.covariance[np.ix_(known, known)]
            shifts[:, known] = rng.multivariate_normal(self.center[known], sub, size=count, method="eigh")
        return self.base * np.exp(shifts)

    def describe(self) -> dict[str, Any]:
        out = {"source": self.source, "kind": self.kind, "parameters": list(self.names)}
        if self.values is not None:
            out["draws_available"] = int(self.values.shape[0])
        if self.fixed:
            out["held_at_estimate"] = list(self.fixed)
        return out
