"""The parameter registry: every model constant with value, unit, range, variability and source.

Parameters live in TOML files beside this module, one per biological layer. Each entry::

    [cl_s_ketamine]
    value = 89.0
    unit = "L/h"
    range = [60.0, 130.0]
    cv = 0.13
    source = "SPRAVATO (esketamine) US prescribing information, section 12.3"
    description = "systemic clearance of S-ketamine, 70 kg adult, normal enzyme activity"

``source`` is a citation, or starts with ``calibrated:`` followed by the calibration target ids,
or with ``assumption:`` followed by the reasoning. Loading converts every value once into the
internal units (``ketasim.units.INTERNAL_UNITS``), checks the range, and returns an immutable
``ParameterSet``; ``replace()`` returns a new set.

>>> from ketasim.params import load_parameters
>>> params = load_parameters()
>>> params["pk.cl_s_ketamine"].unit
'L/h'
>>> round(params.value("receptor.ki_s_ketamine"), 3)
0.3
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..errors import ParameterError, ParameterRangeError
from ..units import to_internal

_REQUIRED = ("value", "unit", "range", "cv", "source", "description")
_SOURCE_KINDS = ("calibrated:", "assumption:")


@dataclass(frozen=True)
class Parameter:
    """One model constant. ``value``/``unit`` as written in the file; ``internal`` in model units."""

    name: str
    value: float
    unit: str
    range: tuple[float, float]
    cv: float
    source: str
    description: str
    internal: float = field(default=0.0)
    internal_unit: str = field(default="")

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def provenance(self) -> str:
        """'calibrated', 'assumption' or 'literature'."""
        for kind in _SOURCE_KINDS:
            if self.source.startswith(kind):
                return kind[:-1]
        return "literature"


def _make_parameter(name: str, entry: Mapping, where: str) -> Parameter:
    if not isinstance(entry, Mapping):
        raise ParameterError(f"{where}: '{name}' must be a table with keys {', '.join(_REQUIRED)}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise ParameterError(f"{where}: '{name}' lacks {', '.join(missing)}")
    unknown = sorted(set(entry) - set(_REQUIRED))
    if unknown:
        raise ParameterError(f"{where}: '{name}' has unknown keys {', '.join(unknown)}")
    value, low_high, cv = entry["value"], entry["range"], entry["cv"]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ParameterError(f"{where}: '{name}'.value must be a number, got {value!r}")
    if (not isinstance(low_high, list) or len(low_high) != 2
            or not all(isinstance(v, (int, float)) for v in low_high) or low_high[0] > low_high[1]):
        raise ParameterError(f"{where}: '{name}'.range must be [low, high] with low <= high")
    if not isinstance(cv, (int, float)) or cv < 0:
        raise ParameterError(f"{where}: '{name}'.cv must be a number >= 0, got {cv!r}")
    source = str(entry["source"]).strip()
    if not source:
        raise ParameterError(f"{where}: '{name}'.source is empty; cite a paper, or write "
                             "'calibrated: <target id>' or 'assumption: <why>'")
    try:
        internal, internal_unit = to_internal(float(value), str(entry["unit"]))
    except Exception as exc:
        raise ParameterError(f"{where}: '{name}'.unit '{entry['unit']}' is not usable: {exc}") from None
    param = Parameter(name=name, value=float(value), unit=str(entry["unit"]),
                      range=(float(low_high[0]), float(low_high[1])), cv=float(cv), source=source,
                      description=str(entry["description"]), internal=internal,
                      internal_unit=internal_unit)
    _check_range(param)
    return param


def _check_range(param: Parameter) -> None:
    low, high = param.range
    if not low <= param.value <= high:
        raise ParameterRangeError(
            f"{param.name}={param.value:g} {param.unit} is outside {low:g}..{high:g} {param.unit}")


class ParameterSet(Mapping[str, Parameter]):
    """An immutable, validated set of parameters keyed by ``layer.name``."""

    def __init__(self, parameters: Mapping[str, Parameter]):
        self._params = MappingProxyType(dict(sorted(parameters.items())))
        from ..model.constraints import violations  # the model states what combinations it needs

        problems = violations({name: p.internal for name, p in self._params.items()})
        if problems:
            raise ParameterRangeError("; ".join(problems))
        self._digest: str | None = None

    def __reduce__(self):  # picklable (mapping proxies are not), so sets travel to worker processes
        return (ParameterSet, (dict(self._params),))

    def __getitem__(self, name: str) -> Parameter:
        try:
            return self._params[name]
        except KeyError:
            raise ParameterError(f"unknown parameter '{name}'") from None

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def value(self, name: str) -> float:
        """The value of ``name`` in internal model units."""
        return self[name].internal

    def internal_values(self) -> dict[str, float]:
        return {name: p.internal for name, p in self._params.items()}

    def replace(self, **values: float) -> ParameterSet:
        """A new set with some values changed (in the file's unit); ranges are checked.

        Names use ``__`` for the dot: ``params.replace(pk__cl_s_ketamine=95.0)``.
        """
        new = dict(self._params)
        for key, val in values.items():
            name = key.replace("__", ".")
            old = self[name]
            internal, _ = to_internal(float(val), old.unit)
            updated = dc_replace(old, value=float(val), internal=internal)
            _check_range(updated)
            new[name] = updated
        return ParameterSet(new)

    def replace_cv(self, **cvs: float) -> ParameterSet:
        """A new set with some between-patient CVs changed (``__`` for the dot, as in ``replace``)."""
        new = dict(self._params)
        for key, cv in cvs.items():
            name = key.replace("__", ".")
            if not cv >= 0.0:
                raise ParameterError(f"{name}: cv {cv!r} must be >= 0")
            new[name] = dc_replace(self[name], cv=float(cv))
        return ParameterSet(new)

    def digest(self) -> str:
        """SHA-256 of the internal values, CVs and ranges (populations draw from all three), so a
        result can name the exact parameter set."""
        if self._digest is None:  # immutable: computed once (trials ask per chunk)
            payload = json.dumps({n: [p.internal, p.cv, list(p.range)] for n, p in self._params.items()},
                                 sort_keys=True).encode()
            self._digest = hashlib.sha256(payload).hexdigest()
        return self._digest

    def citations(self) -> dict[str, list[str]]:
        """Each distinct source with the parameters that use it."""
        out: dict[str, list[str]] = {}
        for name, p in self._params.items():
            out.setdefault(p.source, []).append(name)
        return out


class ParameterColumns:
    """Parameter values that differ between patients: one row per patient, one column per name
    (internal units), read like a ``ParameterSet`` whose ``value(name)`` is an (n,) column.

    >>> cols = ParameterColumns(("pk.a", "pk.b"), np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> cols.value("pk.b").tolist(), len(cols), list(cols)
    ([2.0, 4.0], 2, ['pk.a', 'pk.b'])
    """

    def __init__(self, names: tuple[str, ...], values: np.ndarray):
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(f"values must have shape (patients, {len(names)}), not {values.shape}")
        self.names, self.values = tuple(names), values
        self._position = {n: i for i, n in enumerate(self.names)}

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return self.values.shape[0]

    def value(self, name: str) -> np.ndarray:
        """(n,) values of ``name``, one per patient."""
        return self.values[:, self._position[name]]

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """(n, len(names)) values of ``names``."""
        return self.values[:, [self._position[n] for n in names]]

    def row(self, r: int) -> dict[str, float]:
        return dict(zip(self.names, self.values[r].tolist()))

    def take(self, rows) -> ParameterColumns:
        return ParameterColumns(self.names, self.values[rows])


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read the parameter file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ParameterError(f"{path}: the parameter file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"{path}: malformed TOML: {exc}") from None


def load_parameter_file(path: str | Path, layer: str | None = None) -> dict[str, Parameter]:
    path = Path(path)
    data = _read_toml(path)
    layer = layer or path.stem
    return {f"{layer}.{name}": _make_parameter(f"{layer}.{name}", entry, str(path))
            for name, entry in data.items()}


@lru_cache(maxsize=1)
def _packaged_parameters() -> ParameterSet:
    """The package's own parameter files, read once per process (a set is immutable)."""
    params: dict[str, Parameter] = {}
    folder = resources.files(__package__)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            params.update(load_parameter_file(Path(str(entry))))
    return ParameterSet(params)


def load_parameters(path: str | Path | None = None) -> ParameterSet:
    """Load the package's parameter files, or a single override file written by the user.

    An override file holds tables named ``layer.name`` (quoted keys) that replace packaged entries.
    """
    if path is None:
        return _packaged_parameters()
    params = dict(_packaged_parameters().items())
    data = _read_toml(Path(path))
    for name, entry in data.items():
        if name not in params:
            raise ParameterError(f"{path}: unknown parameter '{name}'")
        params[name] = _make_parameter(name, entry, str(path))
    return ParameterSet(params)
