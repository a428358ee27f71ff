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


def _quantity_word(unit: str) -> str:
    """An axis word for a unit (the unit itself is always shown in brackets)."""
    return {"ng/mL": "concentration", "uM": "concentration", "points": "score", "fraction": "fraction",
            "mmHg": "pressure", "pg/mL": "concentration", "h": "time"}.get(unit, "value")


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

    def plot(self, *names: str, log_y: bool = False, ax=None):
        """Outputs or states against time, their unit on the y axis (``pk.ketamine_plasma`` if none is
        named); ``log_y`` for log concentrations (values <= 0 left out). Every name must share one unit.
        Returns the matplotlib Axes.

        >>> import ketasim
        >>> res = ketasim.simulate({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "35 mg"}],
        ...                         "simulation": {"duration": "6 h", "output_every": "10 min"}})
        >>> ax = res.plot("pk.s_ketamine_plasma", "pk.r_ketamine_plasma", log_y=True)
        >>> ax.get_ylabel(), ax.get_yscale()
        ('concentration [ng/mL]', 'log')
        """
        if ax is None:
            import matplotlib.pyplot as plt  # the user's backend (inline in Jupyter)

            _, ax = plt.subplots(figsize=(7, 3.2))
        names = names or ("pk.ketamine_plasma",)
        units = {n: self.unit(n) for n in names}
        if len(set(units.values())) > 1:
            shown = ", ".join(f"{n} [{u}]" for n, u in units.items())
            raise ValueError(f"plot: {shown} have different units; plot them on separate axes")
        unit = units[names[0]]
        for name in names:
            y = np.asarray(self[name], dtype=float)
            keep = y > 0 if log_y else np.isfinite(y)
            ax.plot(self.times_h[keep], y[keep], label=f"{name} [{unit}]", lw=1.5)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("time [h]")
        ax.set_ylabel(f"{_quantity_word(unit)} [{unit}]")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        return ax

    def _repr_html_(self) -> str:
        """Jupyter: status, a small figure (plasma ketamine on a log scale and, with the clinical layer,
        MADRS) and the key numbers, with the disclaimer."""
        import base64
        import html
        import io

        from matplotlib.figure import Figure  # no pyplot: the notebook's figures and backend stay as they are

        panels = ["pk.ketamine_plasma"] + (["clinical.madrs"] if "clinical.madrs" in self.outputs else [])
        fig = Figure(figsize=(4.2 * len(panels), 2.6))
        for ax, name in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
            self.plot(name, log_y=name.startswith("pk."), ax=ax)
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=90)
        e = exposure(self.times_h, self.outputs["pk.ketamine_plasma"])
        rows = [("status", self.status), ("duration [h]", f"{self.times_h[-1]:g}"),
                ("ketamine Cmax [ng/mL]", f"{e['cmax']:.4g}"), ("ketamine Tmax [h]", f"{e['tmax_h']:.3g}"),
                ("ketamine AUC to the end [ng/mL*h]", f"{e['auc']:.4g}")]
        if "clinical.madrs" in self.outputs:
            rows.append(("MADRS at the start [points]", f"{self.outputs['clinical.madrs'][0]:.3g}"))
            if self.times_h[-1] >= 24.0:
                rows.append(("MADRS at 24 h [points]", f"{self.at('clinical.madrs', 24.0):.3g}"))
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                        for k, v in rows)
        return (f"<div><strong>ketasim simulation</strong><table>{table}</table>"
                f"<img alt='plasma ketamine and MADRS' src='data:image/png;base64,{base64.b64encode(png.getvalue()).decode()}'>"
                f"<p style='font-size:.8em'>{html.escape(DISCLAIMER)}</p></div>")

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
