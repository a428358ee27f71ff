"""Event datasets in the NONMEM style: one row per dose or observation, patients by ``ID``.

Pharmacometric data sets (read by NONMEM, nlmixr2, Monolix, mrgsolve, Pumas) hold the columns
``ID``, ``TIME`` (h), ``EVID`` (0 observation, 1 dose), ``AMT`` (mg), ``CMT``, ``RATE`` (mg/h; an
infusion lasts AMT/RATE), ``II`` (h) and ``ADDL`` (additional doses every II), ``DV`` and ``MDV``,
and covariates. A mapping table says what the numbers mean for ketasim; the packaged default
(``ketasim/data/dataset_mapping.toml``) is overridden key by key by a user's TOML::

    [columns]            # covariate -> dataset column
    weight = "WT"        # kg
    age = "AGE"          # years
    sex = "SEX"
    [sex]                # code -> ketasim's word
    0 = "male"
    1 = "female"
    [cmt]                # compartment -> the drug and route of a dose given into it
    1 = { drug = "racemic-ketamine", route = "oral" }
    2 = { drug = "racemic-ketamine", route = "iv" }
    [dvid]               # observation type (DVID column) -> output; without DVID, `observation`
    1 = "pk.ketamine_plasma"
    observation = "pk.ketamine_plasma"

Each ID becomes one scenario (its doses, its covariates) simulated to its last row, and its
predictions (IPRED) are read at its own observation times, exactly (not interpolated). Every error
names the row (the header is row 1; comment lines starting with ``#`` are not counted) and the
column. ``SS=1`` on a dose row (within one interval II of the start; the ID's first dose row,
since SS=1 resets every compartment) starts the drug's compartments at the steady state of AMT
every II, as boluses or as infusions at RATE (``steady_state`` in a scenario), for the drugs with
linear kinetics of their own; ``SS=2`` adds such a steady state to what is there (every earlier
dose of its CMT must be a steady-state row); SS with AMT 0, RATE > 0 and no II, at the
occasion's TIME 0, is a constant infusion at steady state, running at RATE until the occasion's
last row. Unlike NONMEM, whose steady state begins at its row's TIME, ketasim continues the
regimen backwards from its first dose, so observations before a steady-state row at TIME > 0
already see the drug: put steady-state rows at TIME 0 for the same meaning in both. Ketamine cannot
start at steady state (what it leaves downstream is no sum of doses): write its earlier doses as
rows. ``EVID 2`` rows are predictions without an observation (IPRED there, DV
empty); ``EVID 3`` resets the ID to the untreated state and ``EVID 4`` resets and doses: each reset
starts a new occasion, simulated from its own start.

>>> import io, ketasim
>>> from ketasim.dataset import read_dataset
>>> table = io.StringIO("ID,TIME,EVID,AMT,CMT,RATE,DV,WT\\n1,0,1,35,2,52.5,.,70\\n1,1,0,.,2,.,150,70\\n")
>>> data = read_dataset(table)
>>> data.patients[0].scenario["dose"][0]["duration"], data.patients[0].observations["time_h"].tolist()
('0.6666666666666666 h', [1.0])
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from .errors import ScenarioError
from .scenario import MAX_AMOUNT

REQUIRED = ("ID", "TIME")
KNOWN = ("ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "DV", "MDV", "DVID", "NAME")


class DatasetError(ScenarioError):
    """A data set row or column that cannot be read; names both."""

    def __init__(self, row: int | None, column: str, message: str):
        where = f"row {row}, column {column}" if row is not None else f"column {column}"
        super().__init__(where, message)


@dataclass(frozen=True)
class DatasetPatient:
    """One ID, or one occasion of it after a reset (EVID 3 or 4): its scenario (doses, covariates,
    duration; times from the occasion's start) and its observation rows (``time_h`` on the file's
    clock)."""

    id: Any
    scenario: dict[str, Any]
    observations: pd.DataFrame  # row, time_h, output, dv (NaN if absent)
    rows: tuple[int, ...] = field(default=())
    start_h: float = 0.0  # the file's TIME where the occasion starts (its reset)
    occasion: int = 1

    @property
    def simulation_times(self) -> np.ndarray:
        """The observations' times on the scenario's clock (from the occasion's start)."""
        return self.observations["time_h"].to_numpy(dtype=float) - self.start_h


@dataclass(frozen=True)
class Dataset:
    patients: tuple[DatasetPatient, ...]
    mapping: Mapping[str, Any]
    source: str
    #: the table as read (text cells, upper-case column names); row r of the file is ``table.iloc[r - 2]``
    table: pd.DataFrame | None = None

    def describe(self) -> list[dict[str, Any]]:
        """Per ID: doses by drug and route, observations by output, covariates (what `dataset check` prints)."""
        out = []
        for p in self.patients:
            doses: dict[str, int] = {}
            for d in p.scenario["dose"]:
                key = f"{d['drug']} {d['route']}"
                doses[key] = doses.get(key, 0) + len(_times(d))
            out.append({"id": p.id, "occasion": p.occasion, "start [h]": p.start_h, "doses": doses,
                        "observations": p.observations["output"].value_counts().to_dict(),
                        "patient": p.scenario.get("patient", {}),
                        "duration [h]": float(p.scenario["simulation"]["duration"].split()[0])})
        return out


def load_mapping(path: str | Path | None = None) -> dict[str, Any]:
    """The packaged mapping, with the tables of ``path`` (TOML) replacing its keys."""
    text = resources.files("ketasim").joinpath("data/dataset_mapping.toml").read_text()
    mapping = tomllib.loads(text)
    if path is not None:
        try:
            user = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError("--mapping", f"{path}: {exc}") from None
        unknown = sorted(set(user) - set(mapping))
        if unknown:
            raise ScenarioError("--mapping", f"unknown table(s) {', '.join(unknown)}; allowed: {', '.join(mapping)}")
        for table, values in user.items():
            mapping[table] = {**mapping[table], **{str(k): v for k, v in values.items()}}
    return mapping


def _number(value, row: int, column: str, *, required: bool = False, low: float = -math.inf) -> float:
    """A numeric cell ('.' and empty are missing, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in ("", "."):
        if required:
            raise DatasetError(row, column, "a number is needed here")
        return math.nan
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DatasetError(row, column, f"{value!r} is not a number") from None
    if not math.isfinite(x) or x < low:
        raise DatasetError(row, column, f"{value!r} must be a finite number >= {low:g}")
    return x


def read_dataset(source: str | Path | IO[str], mapping: Mapping[str, Any] | None = None) -> Dataset:
    """Read and check an event data set (CSV); see the module's description."""
    mapping = mapping or load_mapping()
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False, comment="#")
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ScenarioError("dataset", f"cannot read {source}: {exc}") from None
    table.columns = [c.strip().upper() for c in table.columns]
    for column in REQUIRED:
        if column not in table.columns:
            raise DatasetError(None, column, f"needed; the data set has {', '.join(table.columns)}")
    if "SS" in table.columns:
        for i, v in enumerate(table["SS"]):
            if str(v).strip() not in ("", ".", "0", "1", "2"):
                raise DatasetError(i + 2, "SS", f"{v!r}: allowed are 0, 1 (steady state of the regimen AMT every "
                                                "II) and 2 (that steady state added to an earlier one)")
    covariates = {k: v.upper() for k, v in mapping["columns"].items()}
    patients = []
    for pid, rows in table.groupby("ID", sort=False):
        patients += _occasions(pid, rows, mapping, covariates)
    if not patients:
        raise DatasetError(None, "ID", "no rows")
    return Dataset(patients=tuple(patients), mapping=mapping, source=str(source), table=table)


def _evid(r, rows: pd.DataFrame, row: int) -> float:
    amt = _number(r.get("AMT"), row, "AMT", low=0.0) if "AMT" in rows else math.nan
    evid = _number(r.get("EVID"), row, "EVID") if "EVID" in rows else (1.0 if amt > 0 else 0.0)
    if evid not in (0.0, 1.0, 2.0, 3.0, 4.0):
        raise DatasetError(row, "EVID", f"{r.get('EVID')!r}: allowed are 0 (observation), 1 (dose), 2 (a prediction "
                                        "without an observation), 3 (reset) and 4 (reset and dose)")
    return evid


def _occasions(pid, rows: pd.DataFrame, mapping, covariates) -> list[DatasetPatient]:
    """An ID's rows split at its resets (EVID 3, and 4 which then doses): each occasion starts from
    the untreated state at the reset's time, as NONMEM resets every compartment."""
    parts, start, current, last_time = [], 0.0, [], -math.inf
    for index, r in rows.iterrows():
        row = int(index) + 2  # the header is row 1
        time = _number(r["TIME"], row, "TIME", required=True, low=0.0)
        if time < last_time:
            raise DatasetError(row, "TIME", f"{time:g} h comes before the previous row of ID {pid} ({last_time:g} h); "
                                            "times must not decrease within an ID")
        last_time = time
        evid = _evid(r, rows, row)
        if evid in (3.0, 4.0):
            parts.append((start, current))
            start, current = time, []
        if evid != 3.0:  # the reset itself holds nothing to simulate
            current.append(index)
    parts.append((start, current))
    kept = [(start, index) for start, index in parts if index]
    return [_patient(pid, rows.loc[index], mapping, covariates, start, k + 1) for k, (start, index) in enumerate(kept)]


def _patient(pid, rows: pd.DataFrame, mapping, covariates, start: float = 0.0, occasion: int = 1) -> DatasetPatient:
    doses, observations, seen = [], [], set()
    cmt_map, dvid_map = mapping["cmt"], mapping["dvid"]
    for index, r in rows.iterrows():
        row = int(index) + 2  # the header is row 1
        time = _number(r["TIME"], row, "TIME", required=True, low=0.0) - start  # on the occasion's clock
        amt = _number(r.get("AMT"), row, "AMT", low=0.0) if "AMT" in rows else math.nan
        evid = 1.0 if _evid(r, rows, row) == 4.0 else _evid(r, rows, row)  # EVID 4: the occasion's first dose
        if evid == 1.0:
            ss = str(r.get("SS", "")).strip() if "SS" in rows else ""
            rate = _number(r.get("RATE"), row, "RATE", low=0.0) if "RATE" in rows else math.nan
            ii = _number(r.get("II"), row, "II", low=0.0) if "II" in rows else math.nan
            constant = ss in ("1", "2") and rate > 0 and not ii > 0  # NONMEM's steady-state constant infusion
            if constant and not amt > 0:  # AMT 0 (or none): runs at RATE until the occasion's last row
                amt = float(rate * (pd.to_numeric(rows["TIME"], errors="coerce").max() - start - time))
                if not amt > 0:
                    raise DatasetError(row, "RATE", "a constant infusion at steady state (SS=1, AMT 0, RATE > 0, no II) "
                                                    "runs until the ID's (occasion's) last row; there is no row after it")
                if amt > MAX_AMOUNT["mg"]:
                    raise DatasetError(row, "RATE", f"the constant infusion gives {amt:g} mg to the ID's (occasion's) "
                                                    f"last row, above the largest allowed amount ({MAX_AMOUNT['mg']:g} mg)")
            elif constant:
                raise DatasetError(row, "AMT", f"a constant infusion at steady state (SS={ss}, RATE > 0, no II) takes "
                                               "AMT 0: it runs at RATE until the ID's (occasion's) last row")
            if not amt > 0:
                raise DatasetError(row, "AMT", "a dose row (EVID 1) needs an amount > 0 [mg]")
            cmt = str(r.get("CMT", "")).strip()
            if cmt not in cmt_map:
                raise DatasetError(row, "CMT", f"{cmt!r} is not a dosing compartment of the mapping; allowed: "
                                               f"{', '.join(sorted(cmt_map))} (override with --mapping)")
            addl = _number(r.get("ADDL"), row, "ADDL", low=0.0) if "ADDL" in rows else math.nan
            n_extra = 0 if math.isnan(addl) else int(addl)
            if n_extra and not ii > 0:
                raise DatasetError(row, "II", "ADDL repeats need an interval II > 0 [h]")
            key = (time, cmt, amt, rate)
            if key in seen:
                raise DatasetError(row, "TIME", f"a duplicate dose row of ID {pid} (same time, CMT, AMT and RATE)")
            seen.add(key)
            dose = {"drug": cmt_map[cmt]["drug"], "route": cmt_map[cmt]["route"], "amount": f"{amt!r} mg",
                    "at": [f"{time + k * ii!r} h" for k in range(n_extra + 1)] if n_extra else [f"{time!r} h"]}
            if rate > 0:
                dose["duration"] = f"{amt / rate!r} h"
            if constant:
                _check_steady_state_order(row, ss, cmt, dose, doses)
                dose["steady_state"] = True
            elif ss in ("1", "2"):
                dose = _steady_state_dose(dose, row, time, ii, n_extra, ss, cmt, doses)
            doses.append((row, dose))
        else:
            mdv = _number(r.get("MDV"), row, "MDV") if "MDV" in rows else 0.0
            dvid = _text(r, rows, "DVID")
            named = _text(r, rows, "NAME")
            output = dvid_map.get(dvid) if dvid else (named or dvid_map.get("observation"))
            if output is None:
                raise DatasetError(row, "DVID", f"{dvid!r} has no output in the mapping; allowed: "
                                                f"{', '.join(k for k in dvid_map if k != 'observation')}")
            if named and named != output:
                raise DatasetError(row, "NAME", f"{named!r} is not {output!r}, the output of DVID {dvid}")
            if named and named not in _output_names():
                raise DatasetError(row, "NAME", f"{named!r} is not a ketasim output (`layer.quantity`, e.g. "
                                                "pk.ketamine_plasma; all of them in docs/model.md)")
            # EVID 2: the model's prediction there, no observation (its DV, if any, is not one)
            dv = _number(r.get("DV"), row, "DV") if "DV" in rows and mdv != 1.0 and evid == 0.0 else math.nan
            observations.append({"row": row, "time_h": time + start, "output": output, "dv": dv})
    patient = _covariates(rows, covariates, mapping)
    end = max([o["time_h"] - start for o in observations]
              # a dose must come before the end: a row that only doses still gets a moment after it
              + [t + float(d.get("duration", "0 h").split()[0]) + 1e-3 for _, d in doses for t in _times(d)])
    duration = f"{max(end, 1e-3)!r} h"
    scenario = {"dose": [d for _, d in doses], "simulation": {"duration": duration, "output_every": duration}}
    if patient:
        scenario["patient"] = patient
    from .scenario import Scenario

    try:
        Scenario.from_dict(scenario)
    except ScenarioError as exc:  # a dose or covariate the model refuses: name its row and column
        raise DatasetError(*_row_and_column(exc.field, doses, rows, covariates),
                           f"ID {pid}: {str(exc).split(': ', 1)[-1]}") from None
    return DatasetPatient(id=_plain(pid), scenario=scenario, observations=pd.DataFrame(
        observations, columns=["row", "time_h", "output", "dv"]), rows=tuple(int(i) + 2 for i in rows.index),
        start_h=start, occasion=occasion)


def _text(r, rows: pd.DataFrame, column: str) -> str:
    """A text cell; '' where the column is absent or the cell is empty or '.'."""
    value = str(r.get(column, "")).strip() if column in rows else ""
    return "" if value == "." else value


@lru_cache(maxsize=1)
def _output_names() -> tuple[str, ...]:
    from .model.system import default_model

    return default_model().output_names


def _times(dose: Mapping[str, Any]) -> tuple[float, ...]:
    """A dose line's times (h), from ``at`` or ``start``/``every``/``count``."""
    from .scenario import parse_times

    return parse_times(dose, "dose")


def _steady_state_dose(dose: dict, row: int, time: float, ii: float, n_extra: int, ss: str, cmt: str,
                       earlier: list) -> dict:
    """An ``SS=1`` or ``SS=2`` row as a scenario line: AMT every II (a bolus, or an infusion at RATE)
    given since long before, the row's dose its first in the simulation (ketasim's ``steady_state``,
    which sets the drug's compartments at time 0, so the row must come within one interval of the
    start). SS=1 resets every compartment, as in NONMEM: it must be the ID's first dose row. SS=2
    adds its steady state to what is there (superposition, right for the linear kinetics that
    steady-state drugs have), so every earlier dose of its CMT must be a steady-state row too. Unlike
    NONMEM, where a steady state begins at its row's TIME, ketasim continues the regimen backwards
    from its first dose: observations before a steady-state row at TIME > 0 already see the drug."""
    if not ii > 0:
        raise DatasetError(row, "II", f"a steady-state row (SS={ss}) needs its interval II > 0 [h] (a constant "
                                      "infusion: SS=1, AMT 0, RATE > 0)")
    if time >= ii:
        raise DatasetError(row, "SS", f"a steady-state row must come within one interval of the start "
                                      f"(TIME {time:g} h < II {ii:g} h)")
    _check_steady_state_order(row, ss, cmt, dose, earlier)
    line = {k: v for k, v in dose.items() if k != "at"}
    return {**line, "start": f"{time!r} h", "every": f"{ii!r} h", "count": n_extra + 1, "steady_state": True}


def _check_steady_state_order(row: int, ss: str, cmt: str, dose: dict, earlier: list) -> None:
    """SS=1 resets every compartment (NONMEM): it must be the ID's first dose row. SS=2 adds to what is
    there, which ketasim holds as a sum of steady states: every earlier dose of its CMT must be one."""
    if ss == "1" and earlier:
        raise DatasetError(row, "SS", "SS=1 resets every compartment (NONMEM), which would discard the doses before "
                                      "it: it must be the ID's first dose row (SS=2 adds a steady state)")
    same = [d for _, d in earlier if d["drug"] == dose["drug"] and d["route"] == dose["route"]]
    if ss == "2" and any(not d.get("steady_state") for d in same):
        raise DatasetError(row, "SS", f"SS=2 adds to the steady state of earlier steady-state rows; CMT {cmt} of "
                                      "this ID has an ordinary dose before it")


#: the data set column behind each field of a dose
_DOSE_COLUMNS = {"amount": "AMT", "duration": "RATE", "route": "CMT", "drug": "CMT", "at": "TIME",
                 "steady_state": "SS", "start": "TIME", "every": "II"}


def _row_and_column(field: str, doses: list, rows: pd.DataFrame, covariates: Mapping[str, str]) -> tuple[int, str]:
    """The row and column of the data set behind a scenario field (``dose[2].amount``, ``patient.weight``)."""
    first_row = int(rows.index[0]) + 2
    if field.startswith("patient."):  # patient.comedications[1] -> the comedications column
        return first_row, covariates.get(field.split(".", 1)[1].split("[")[0], field)
    if field.startswith("dose[") and doses:
        index = int(field[5:field.index("]")])
        part = field.split(".", 1)[1] if "." in field else "amount"
        return doses[min(index, len(doses) - 1)][0], _DOSE_COLUMNS.get(part, field)
    return (doses[0][0] if doses else first_row), field


def _covariates(rows: pd.DataFrame, covariates: Mapping[str, str], mapping) -> dict[str, str]:
    """The patient's covariates from their columns; each must be constant within the ID."""
    patient: dict[str, Any] = {}
    units = {"weight": "kg", "age": "y", "il6": "pg/mL"}
    for name, column in covariates.items():
        if column not in rows:
            continue
        values = {str(v).strip() for v in rows[column] if str(v).strip() not in ("", ".")}
        if len(values) > 1:
            raise DatasetError(int(rows.index[0]) + 2, column, f"{name} changes within the ID ({', '.join(sorted(values))}); "
                                                             "time-varying covariates are not supported")
        if not values:
            continue
        value = values.pop()
        if name in units:
            patient[name] = f"{_number(value, int(rows.index[0]) + 2, column)!r} {units[name]}"
        elif name == "baseline_madrs":
            patient[name] = _number(value, int(rows.index[0]) + 2, column)
        elif name == "comedications":  # checked against ketasim's list with the scenario
            patient[name] = [d.strip() for d in value.split(";") if d.strip()]
        else:
            codes = mapping.get(name, {})
            if codes and value not in codes:
                raise DatasetError(int(rows.index[0]) + 2, column, f"{value!r} is not a code of the mapping; "
                                                                 f"allowed: {', '.join(codes)}")
            patient[name] = codes.get(value, value)
    return patient


def _plain(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def predict(dataset: Dataset, params=None, mechanisms=None) -> pd.DataFrame:
    """Every observation row with the model's individual prediction (IPRED) at its exact time."""
    from .engine import STATUS_MESSAGES, build_problem, solve
    from .model.mechanisms import with_mechanisms
    from .model.system import default_model
    from .params import ParameterSet, load_parameters
    from .scenario import Scenario
    from .simulate import observe

    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    params = with_mechanisms(params, mechanisms)
    model = default_model()
    units = {v.name: v.unit for v in model.outputs}
    frames = []
    for p in dataset.patients:
        obs = p.observations
        if obs.empty:
            continue
        times = np.unique(p.simulation_times)
        problem = build_problem(Scenario.from_dict(p.scenario), params, model, t_out=times)
        states, status, _ = solve(problem)
        outputs = observe(model, states[0], problem.parameter_names, problem.theta[0])
        at = np.searchsorted(times, p.simulation_times)
        ipred = np.array([outputs[o][k] for o, k in zip(obs["output"], at)], dtype=float)
        frames.append(pd.DataFrame({"ID": p.id, "row": obs["row"], "TIME [h]": obs["time_h"], "output": obs["output"],
                                    "unit": [units[o] for o in obs["output"]], "DV": obs["dv"], "IPRED": ipred,
                                    "status": STATUS_MESSAGES[int(status[0])]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["ID", "row", "TIME [h]", "output", "unit", "DV", "IPRED", "status"])


# ---------------------------------------------------------------------- event data sets out
def _cmt_of(mapping, drug: str, route: str, where: str) -> str:
    for cmt, target in mapping["cmt"].items():
        if target["drug"] == drug and target["route"] == route:
            return cmt
    raise ScenarioError(where, f"{drug} by {route} has no compartment in the mapping's [cmt]; add one with --mapping")


def _code_of(mapping, name: str, word: str) -> str:
    codes = mapping.get(name, {})
    return next((code for code, w in codes.items() if w == word), word) if codes else word


def simulation_events(scenario, result, mapping: Mapping[str, Any] | None = None, seed: int = 0,
                      patient_id: int = 1) -> pd.DataFrame:
    """One simulated patient as an event table: dose rows (EVID 1, AMT [mg], CMT, RATE [mg/h]) and,
    for every output with a DVID and an error model in the mapping that is not zero throughout, an
    observation row at each output time with IPRED and DV = IPRED (1 + p e1) + a e2 (standard normal e, seeded). Reading the table
    back with ``read_dataset`` gives the same doses, covariates and predictions."""
    from .scenario import Scenario

    mapping = mapping or load_mapping()
    scenario = Scenario.load(scenario)
    if scenario.therapies:
        raise ScenarioError("therapy", "psychotherapy sessions have no place in an event data set; not written")
    patient = scenario.patient
    from .scenario import Patient

    for name in ("course", "plasticity_responsive"):
        if getattr(patient, name) != getattr(Patient(), name):
            raise ScenarioError(f"patient.{name}", "has no column in the mapping yet, so the data set could not "
                                                   "reproduce this patient; not written")
    rows = []
    for i, dose in enumerate(scenario.doses):
        if dose.amount_unit == "fraction" or dose.amount <= 0:
            raise ScenarioError(f"dose[{i}]", f"{dose.drug} ({dose.route}) is not dosed in mg; not written")
        cmt = _cmt_of(mapping, dose.drug, dose.route, f"dose[{i}]")
        amt = dose.amount_mg(patient.weight_kg)
        row = {"ID": patient_id, "EVID": 1, "AMT": amt, "CMT": cmt,
               "RATE": amt / dose.duration_h if dose.duration_h else 0.0, "DV": np.nan, "MDV": 1, "DVID": np.nan,
               "IPRED": np.nan}
        if dose.steady_state:
            rows.append({**row, **_steady_state_row(dose, amt, scenario.duration_h, f"dose[{i}]")})
            continue
        rows += [{**row, "TIME": t} for t in dose.times_h]
    rng = np.random.default_rng(seed)
    for dvid, output in mapping["dvid"].items():
        if dvid == "observation" or output not in result.outputs or output not in mapping["error"]:
            continue
        error = mapping["error"][output]
        ipred = np.asarray(result[output], dtype=float)
        if not np.any(ipred):  # e.g. SSRI plasma without an SSRI: nothing there to measure
            continue
        dv = ipred * (1.0 + error["proportional"] * rng.standard_normal(ipred.size)) \
            + error["additive"] * rng.standard_normal(ipred.size)
        rows += [{"ID": patient_id, "TIME": float(t), "EVID": 0, "AMT": np.nan, "CMT": np.nan, "RATE": np.nan,
                  "DV": float(v), "MDV": 0, "DVID": dvid, "IPRED": float(p)} for t, p, v in zip(result.times_h, ipred, dv)]
    table = pd.DataFrame(rows)
    _set_covariates(table, mapping, patient.weight_kg, patient.age_y, patient.sex, patient.baseline_madrs,
                    patient.cyp2b6, patient.cyp3a4, patient.comedications, patient.bdnf_val66met,
                    patient.inflammation, patient.il6_pg_ml)
    # doses before observations at the same time, as NONMEM orders them
    return _number_steady_states(table, ["TIME"])


def _steady_state_row(dose, amt, end_h: float, where: str) -> dict:
    """The SS, II and ADDL of a regimen given since long before the start (one dose row for all of
    it); a constant infusion is NONMEM's AMT 0 at RATE, running to the ID's last row (``end_h``)."""
    constant = dose.constant_infusion
    if constant and dose.times_h[0] + dose.duration_h < end_h - 1e-9:
        raise ScenarioError(f"{where}.duration", "a constant infusion at steady state that stops before the end "
                                                 "has no event-table form; not written")
    return {"TIME": dose.times_h[0], "AMT": 0.0 if constant else amt, "SS": 1,
            "II": 0.0 if constant else dose.interval_h, "ADDL": len(dose.times_h) - 1}


def _number_steady_states(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The table sorted by ``order`` (doses before observations at the same time, as NONMEM orders
    them, and steady-state doses before other doses), with SS as NONMEM reads it: 1 on an ID's first
    dose row when it is a steady-state row (SS=1 resets every compartment), 2 on any other
    steady-state row (it adds to what is there); II and ADDL 0 on the other rows."""
    has_ss = "SS" in table.columns
    table = (table.assign(_steady=table["SS"].notna() if has_ss else False)
             .sort_values([*order, "EVID", "_steady"], ascending=[True] * len(order) + [False, False], kind="stable")
             .reset_index(drop=True))
    steady = table.pop("_steady")
    if not has_ss:
        return table
    first_dose = table.index.isin(table[table["EVID"] == 1].groupby("ID", sort=False).head(1).index)
    table["SS"] = np.select([steady & first_dose, steady], [1, 2], 0).astype(int)
    table["II"] = table["II"].fillna(0.0)
    table["ADDL"] = table["ADDL"].fillna(0).astype(int)
    return table


def write_events(table: pd.DataFrame, path: str | Path) -> None:
    """The event table as CSV, missing values as '.', the disclaimer on the first line (a # comment)."""
    from .output import write_csv_with_disclaimer

    write_csv_with_disclaimer(table, path, na_rep=".")


def _set_covariates(table: pd.DataFrame, mapping, weight, age, sex, baseline_madrs, cyp2b6, cyp3a4,
                    comedications=(), bdnf_val66met="val/val", inflammation="normal", il6_pg_ml=None) -> None:
    """The mapping's covariate columns (values or per-row Series); sex and the BDNF genotype written
    as the mapping's codes, co-medications joined by ";", the inflammation status left out ('.')
    where an IL-6 level is given instead."""
    columns = mapping["columns"]

    def coded(value, word):
        return value.map(lambda w: _code_of(mapping, word, w)) if isinstance(value, pd.Series) \
            else _code_of(mapping, word, value)

    def joined(drugs):
        return ";".join(drugs) if len(drugs) else np.nan

    comed = comedications.map(joined) if isinstance(comedications, pd.Series) else joined(comedications)
    il6 = np.nan if il6_pg_ml is None else il6_pg_ml
    for name, value in (("weight", weight), ("age", age), ("sex", coded(sex, "sex")), ("baseline_madrs", baseline_madrs),
                        ("cyp2b6", cyp2b6), ("cyp3a4", cyp3a4), ("comedications", comed),
                        ("bdnf_val66met", coded(bdnf_val66met, "bdnf_val66met")),
                        ("inflammation", np.nan if il6_pg_ml is not None else inflammation), ("il6", il6)):
        if name in columns:
            table[columns[name]] = value


def trial_events(spec, patients: pd.DataFrame, mapping: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """A virtual trial as an event table: per patient (``ID`` numbered in table order; ``PATIENT`` is
    ketasim's id, ``SEQUENCE`` its arm or sequence) the dose rows of its whole schedule (background
    and run-in included), and MADRS observation rows at each period's baseline and assessments on the
    simulation's clock: DV the rated MADRS, IPRED the model's. Covariates from the patients table.
    Concentrations are not in a trial's patients table and are not written."""
    mapping = mapping or load_mapping()
    madrs_dvid = next((k for k, v in mapping["dvid"].items() if v == "clinical.madrs" and k != "observation"), None)
    if madrs_dvid is None:
        raise ScenarioError("--mapping", "the [dvid] table needs a code for clinical.madrs to write a trial")
    sequences = {seq.name: seq for seq in spec.sequences}
    frames = []
    first = patients.drop_duplicates("patient")
    ids = {p: i + 1 for i, p in enumerate(first["patient"])}
    for name, group in patients.groupby("sequence", sort=False):
        seq = sequences[name]
        who = group.drop_duplicates("patient")
        weight = who["weight [kg]"].to_numpy(dtype=float)
        dose_rows = []
        from .trial import adaptive

        governed = adaptive.plan(spec, seq)  # doses decided per patient by rules: from dose_decisions
        ruled = {(s.line, s.time_h) for s in governed.slots} if governed else set()
        for i, dose in enumerate(seq.scenario.doses):
            if dose.amount_unit == "fraction" or dose.amount <= 0:
                continue  # placebo and saline carry no amount; gases are not dosed in mg
            cmt = _cmt_of(mapping, dose.drug, dose.route, f"sequence {name!r}: dose[{i}]")
            amt = dose.amount_mg(weight)  # per patient for mg/kg, else one amount for all
            rate = amt / dose.duration_h if dose.duration_h else 0.0
            if dose.steady_state:  # a background regimen since long before: one row
                dose_rows.append(pd.DataFrame({"PATIENT": who["patient"].to_numpy(), "EVID": 1, "CMT": cmt,
                                               "RATE": rate, "MDV": 1, **_steady_state_row(
                                                   dose, amt, seq.scenario.duration_h,
                                                   f"sequence {name!r}: dose[{i}]")}))
                continue
            for t in dose.times_h:
                if (i, t) in ruled:
                    continue
                dose_rows.append(pd.DataFrame({"PATIENT": who["patient"].to_numpy(), "TIME": t, "EVID": 1, "AMT": amt,
                                               "CMT": cmt, "RATE": rate, "MDV": 1}))
        if governed:
            per_period = group.drop_duplicates(["patient", "period"])
            given = [g for g in adaptive.given_doses(governed, per_period["dose_decisions"].to_numpy(),
                                                     per_period["patient"].to_numpy(), per_period["period"].to_numpy())
                     if g[2] > 0]
            if given:
                patient, t, amt, line = map(np.asarray, zip(*given))
                lines = {i: seq.scenario.doses[i] for i in set(line.tolist())}
                cmt = {i: _cmt_of(mapping, d.drug, d.route, f"sequence {name!r}: dose[{i}]") for i, d in lines.items()}
                hours = np.array([lines[i].duration_h or 0.0 for i in line])
                dose_rows.append(pd.DataFrame({
                    "PATIENT": patient, "TIME": t.astype(float), "EVID": 1, "AMT": amt.astype(float),
                    "CMT": [cmt[i] for i in line], "MDV": 1,
                    "RATE": np.divide(amt.astype(float), hours, out=np.zeros(len(hours)), where=hours > 0)}))
        ok = (group["status"] == "ok").to_numpy()
        start = group["period"].map({p + 1: period.start_h for p, period in enumerate(seq.periods)}).to_numpy(dtype=float)
        baseline_time = np.full(len(group), seq.baseline_h) if seq.baseline_h is not None else start
        base = group.drop_duplicates(["patient", "period"])
        at = group.index.get_indexer(base.index)  # positions of each patient's period baselines in the group
        observations = [
            pd.DataFrame({"PATIENT": base["patient"].to_numpy(), "TIME": baseline_time[at],
                          "EVID": 0, "DV": base["baseline_madrs [points]"].to_numpy(dtype=float),
                          "IPRED": base["baseline_madrs_true [points]"].to_numpy(dtype=float),
                          "MDV": np.where(ok[at], 0, 1), "DVID": madrs_dvid}),
            pd.DataFrame({"PATIENT": group["patient"].to_numpy(), "TIME": start + group["assessment [h]"].to_numpy(),
                          "EVID": 0, "DV": group["madrs [points]"].to_numpy(dtype=float),
                          "IPRED": group["madrs_model [points]"].to_numpy(dtype=float),
                          "MDV": np.where(ok, 0, 1), "DVID": madrs_dvid})]
        table = pd.concat(dose_rows + observations, ignore_index=True)
        table["SEQUENCE"] = name
        frames.append(table)
    events = pd.concat(frames, ignore_index=True)
    covariates = first.set_index("patient")

    def per_row(column):
        return events["PATIENT"].map(covariates[column])

    _set_covariates(events, mapping, per_row("weight [kg]"), per_row("age [y]"), per_row("sex"),
                    per_row("baseline_madrs_true [points]"), per_row("cyp2b6"), per_row("cyp3a4"),
                    per_row("comedications"), per_row("bdnf_val66met"), per_row("inflammation"))
    events.insert(0, "ID", events["PATIENT"].map(ids))
    order = ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "DV", "MDV", "DVID", "IPRED"]
    events = events[order + [c for c in events.columns if c not in order]]
    return _number_steady_states(events, ["ID", "TIME"])
