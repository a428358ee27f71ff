"""Simulation results: labelled outputs with units, summaries, and exports (xarray, pandas)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .model.base import Variable

#: the species ``summary()`` reports Cmax, Tmax and AUC for
SUMMARY_SPECIES = ("pk.ketamine_plasma", "pk.s_ketamine_plasma", "pk.r_ketamine_plasma",
                   "pk.norketamine_plasma", "pk.s_norketamine_plasma", "pk.r_norketamine_plasma",
                   "pk.dhnk_plasma", "pk.hnk_plasma", "pk.ketamine_brain")


def auc_unit(unit: str) -> str:
    return f"{unit}*h"


def exposure(times_h: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Cmax, Tmax (h) and trapezoidal AUC (unit*h) of one time course."""
    i = int(np.argmax(values))
    return {"cmax": float(values[i]), "tmax_h": float(times_h[i]),
            "auc": float(np.sum(np.diff(times_h) * (values[1:] + values[:-1]) / 2.0))}


@dataclass(frozen=True)
class SimulationResult:
    """One patient's time course: every output (reporting units) and state (internal units)."""

    times_h: np.ndarray
    outputs: Mapping[str, np.ndarray]
    output_vars: tuple[Variable, ...]
    states: Mapping[str, np.ndarray]
    state_vars: tuple[Variable, ...]
    status: str = "ok"
    steps: int = 0
    manifest: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.outputs:
            return self.outputs[name]
        if name in self.states:
            return self.states[name]
        raise KeyError(f"'{name}' is neither an output nor a state; outputs: {', '.join(self.outputs)}")

    def unit(self, name: str) -> str:
        for v in self.output_vars + self.state_vars:
            if v.name == name:
                return v.unit
        raise KeyError(name)

    def at(self, name: str, time_h: float) -> float:
        """The value of ``name`` at ``time_h`` (linear interpolation on the output grid)."""
        return float(np.interp(time_h, self.times_h, self[name]))

    def to_dataframe(self, states: bool = False):
        """A pandas DataFrame: ``time [h]`` then one column per output ``layer.quantity [unit]``."""
        import pandas as pd

        cols: dict[str, np.ndarray] = {"time [h]": self.times_h}
        for v in self.output_vars:
            cols[v.label] = self.outputs[v.name]
        if states:
            for v in self.state_vars:
                cols[v.label] = self.states[v.name]
        return pd.DataFrame(cols)

    def to_xarray(self):
        """An xarray Dataset over ``time`` (h) with units and descriptions in attributes."""
        import xarray as xr

        data = {v.name: ("time", self.outputs[v.name], {"units": v.unit, "description": v.description})
                for v in self.output_vars}
        ds = xr.Dataset(data, coords={"time": ("time", self.times_h, {"units": "h"})})
        ds.attrs.update({"status": self.status, "disclaimer": DISCLAIMER})
        return ds

    def summary(self) -> dict[str, Any]:
        """Cmax, Tmax and AUC to the end of the run for every species, with units."""
        out: dict[str, Any] = {}
        for name in SUMMARY_SPECIES:
            unit = self.unit(name)
            e = exposure(self.times_h, self.outputs[name])
            out[name] = {"cmax": {"value": e["cmax"], "unit": unit},
                         "tmax": {"value": e["tmax_h"], "unit": "h"},
                         "auc": {"value": e["auc"], "unit": auc_unit(unit)}}
        for name in ("receptor.nmda_block_interneuron", "receptor.nmda_block_pyramidal"):
            e = exposure(self.times_h, self.outputs[name])
            out[name] = {"peak": {"value": e["cmax"], "unit": "fraction"},
                         "time_of_peak": {"value": e["tmax_h"], "unit": "h"}}
        if "clinical.madrs" in self.outputs:
            out.update(chain_summary(self.times_h, self.outputs))
        out["status"] = self.status
        return out


#: times (h) at which the summary reports MADRS, when the run reaches them
MADRS_TIMES_H = {"4 h": 4.0, "24 h": 24.0, "3 d": 72.0, "7 d": 168.0, "14 d": 336.0, "28 d": 672.0}


def _value(v, unit):
    return {"value": None if v is None else float(v), "unit": unit}


def _first_time(times, mask):
    idx = np.flatnonzero(mask)
    return float(times[idx[0]]) if idx.size else None


def peak_and_return(times, values, fraction=0.1):
    """Peak rise above the starting value, its time, and the first later time the rise is below
    ``fraction`` of the peak rise. A rise within round-off of the start (no response) gives
    (0, None, None); a return not reached within the run gives None."""
    rise = values - values[0]
    i = int(np.argmax(rise))
    if not rise[i] > 1e-9 * max(1.0, abs(float(values[0]))):
        return 0.0, None, None
    return float(rise[i]), float(times[i]), _first_time(times[i:], rise[i:] < fraction * rise[i])


def chain_summary(times: np.ndarray, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Mechanistic and clinical landmarks of one time course (see the issue's summary list)."""
    out: dict[str, Any] = {}
    rise, t_peak, _ = peak_and_return(times, outputs["synapse.glutamate"])
    out["synapse.glutamate"] = {"peak_rise": _value(rise, "% baseline"), "time_of_peak": _value(t_peak, "h")}
    rise, t_peak, back = peak_and_return(times, outputs["plasticity.mtorc1"])
    out["plasticity.mtorc1"] = {"peak": _value(1.0 + rise, "fold baseline"), "time_of_peak": _value(t_peak, "h"),
                                "return_time": _value(back, "h")}
    rise, t_peak, half = peak_and_return(times, outputs["plasticity.spine_density"], fraction=0.5)
    out["plasticity.spine_density"] = {
        "peak": _value(1.0 + rise, "fold baseline"), "time_of_peak": _value(t_peak, "h"),
        "decay_half_life": _value(None if half is None or t_peak is None else half - t_peak, "h")}
    madrs = outputs["clinical.madrs"]
    baseline = float(madrs[0])
    entry = {"baseline": _value(baseline, "points")}
    for label, t in MADRS_TIMES_H.items():
        if t <= times[-1] + 1e-9:
            entry[f"at {label}"] = _value(np.interp(t, times, madrs), "points")
    # response needs a real fall (a baseline of 0 cannot respond)
    responding = (madrs <= 0.5 * baseline) & (madrs < baseline - 1e-9) if baseline > 0 else np.zeros(madrs.shape, bool)
    t_response = _first_time(times, responding)
    loss = None
    if t_response is not None:
        after = times >= t_response
        loss = _first_time(times[after], ~responding[after])
    entry["time_to_response"] = _value(t_response, "h")
    entry["time_to_loss_of_response"] = _value(loss, "h")
    out["clinical.madrs"] = entry
    out["clinical.cadss"] = {"peak": _value(outputs["clinical.cadss"].max(), "points")}
    for name in ("clinical.sbp", "clinical.dbp"):
        out[name] = {"peak_rise": _value(outputs[name].max() - outputs[name][0], "mmHg")}
    return out


DISCLAIMER = ("ketasim is a research and teaching tool. Its output is a model prediction, not "
              "medical advice, and must not be used to diagnose or treat anyone.")
