"""Visual predictive check: an event data set's observations against the model population's spread.

For each ID of the data set, ``replicates`` virtual patients receive that ID's doses at its
covariates, with the model's between-patient variability in every parameter (the population
sampler's draws, the same as in trials) and the mapping's residual error added at each
observation. Observations are binned by time (each distinct time its own bin when there are few,
otherwise bins holding equal numbers of observations); per bin and output the observed 5th, 50th and
95th percentiles are set against the 95 % interval, over replicates, of the same percentiles of
the simulated study. Covariates the data set does not give (genotypes, inflammation) stay at
ketasim's defaults, so a VPC of such a study shows less spread than a population that varies in
them.

``prediction_corrected`` (Bergstrand M et al., AAPS J 2011;13:143-151): each observed and simulated
value is multiplied by the median population prediction of its bin over its own population
prediction (PRED: the ID's design at its covariates with the typical parameters, no residual
error), so that what differs between the designs in a bin (doses, routes, covariates, times within
it) no longer widens the percentiles, and the check looks at the variability the model adds.

>>> import io, ketasim
>>> from ketasim.dataset import read_dataset
>>> from ketasim.vpc import vpc
>>> data = read_dataset(io.StringIO("ID,TIME,EVID,AMT,CMT,DV\\n1,0,1,35,2,.\\n1,1,0,.,.,40\\n1,4,0,.,.,12\\n"))
>>> result = vpc(data, replicates=20)
>>> list(result.bins["output"].unique()), len(result.bins)
(['pk.ketamine_plasma'], 2)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .dataset import Dataset
from .errors import ScenarioError

PERCENTILES = (5.0, 50.0, 95.0)
#: at most this many distinct observation times are binned one time per bin
MAX_TIME_BINS = 12


@dataclass(frozen=True)
class VPCResult:
    """Per output and bin: observed percentiles and the simulated percentiles' 95 % intervals."""

    bins: pd.DataFrame
    replicates: int
    source: str
    prediction_corrected: bool = False

    @property
    def inside(self) -> pd.Series:
        """Per bin and percentile, whether the observed one lies in the simulated 95 % interval."""
        return self.bins[[c for c in self.bins.columns if c.endswith("_inside")]].stack()

    def write(self, folder: str | Path) -> Path:
        """``vpc.csv``, ``vpc.json`` and ``report.html`` (a figure per output), atomically."""
        from .output import atomic_folder, write_csv_with_disclaimer
        from .result import DISCLAIMER

        with atomic_folder(folder) as tmp:
            write_csv_with_disclaimer(self.bins, tmp / "vpc.csv")
            (tmp / "vpc.json").write_text(json.dumps({"disclaimer": DISCLAIMER, "dataset": self.source,
                                                      "replicates": self.replicates,
                                                      "prediction_corrected": self.prediction_corrected,
                                                      "bins": json.loads(self.bins.to_json(orient="records"))},
                                                     indent=2))
            _write_report(self, tmp)
        return Path(folder)


def _bin_edges(times: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each time: one bin per distinct time when there are few, else equal-count bins."""
    distinct = np.unique(times)
    if distinct.size <= MAX_TIME_BINS:
        return np.searchsorted(distinct, times)
    edges = np.unique(np.quantile(times, np.linspace(0.0, 1.0, n_bins + 1)))
    return np.clip(np.searchsorted(edges, times, side="right") - 1, 0, edges.size - 2)


def vpc(dataset: Dataset, params=None, replicates: int = 200, seed: int = 0, n_bins: int = 8,
        mechanisms=None, stratify: str | None = None, prediction_corrected: bool = False) -> VPCResult:
    """Simulate the data set's design ``replicates`` times and compare percentiles (see the module).
    ``stratify`` names a column of the data set (a covariate, a study or arm code): each of its
    values gets its own bins and figure; ``prediction_corrected`` gives a prediction-corrected VPC."""
    from .study import simulate_study

    if isinstance(replicates, bool) or not isinstance(replicates, int) or not 20 <= replicates <= 10_000:
        raise ScenarioError("replicates", f"{replicates!r} must be a whole number in 20..10000")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or not 2 <= n_bins <= 50:
        raise ScenarioError("bins", f"{n_bins!r} must be a whole number in 2..50")
    study = simulate_study(dataset, params, replicates=replicates, seed=seed, mechanisms=mechanisms,
                           stratify=stratify, typical=prediction_corrected)
    observed, simulated, pred = study.observed, study.dv, study.pred
    records = []
    for (output, stratum), group in observed.groupby(["output", "stratum"], sort=False):
        index = group.index.to_numpy()
        times = group["time_h"].to_numpy(dtype=float)
        bins = _bin_edges(times, n_bins)
        for b in np.unique(bins):
            inside = index[bins == b]
            dv = observed.loc[inside, "dv"].to_numpy(dtype=float)
            values = simulated[:, inside]
            if prediction_corrected:  # Bergstrand 2011: Y x median(PRED in the bin) / PRED
                p = np.where(pred[inside] > 0, pred[inside], np.nan)
                factor = np.nanmedian(p) / p
                dv, values = dv * factor, values * factor
            dv = dv[np.isfinite(dv)]
            sim = np.nanpercentile(values, PERCENTILES, axis=1)  # (3, replicates)
            record: dict[str, Any] = {"output": output, "stratum": stratum, "bin": int(b),
                                      "time_low [h]": float(times[bins == b].min()),
                                      "time_high [h]": float(times[bins == b].max()),
                                      "time_median [h]": float(np.median(times[bins == b])),
                                      "observations": int(dv.size)}
            for q, s in zip(PERCENTILES, sim):
                tag = f"p{q:g}"
                record[f"observed_{tag}"] = float(np.percentile(dv, q)) if dv.size else np.nan
                low, mid, high = np.percentile(s, [2.5, 50.0, 97.5])
                record[f"simulated_{tag}_low"], record[f"simulated_{tag}_median"], record[f"simulated_{tag}_high"] = (
                    float(low), float(mid), float(high))
                observed_q = record[f"observed_{tag}"]
                record[f"observed_{tag}_inside"] = bool(low <= observed_q <= high) if dv.size else None
            records.append(record)
    return VPCResult(bins=pd.DataFrame(records), replicates=replicates, source=dataset.source,
                     prediction_corrected=prediction_corrected)


def figures(result: VPCResult) -> list[tuple[str, str]]:
    """One figure per output and stratum: (caption, PNG as base64), for a report page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .model.system import default_model
    from .plots import png_base64

    units = {v.name: v.unit for v in default_model().outputs}
    out = []
    for (output, stratum), g in result.bins.groupby(["output", "stratum"], sort=False):
        fig, ax = plt.subplots(figsize=(8, 3.4))
        t = g["time_median [h]"].to_numpy()
        for q, colour in zip(PERCENTILES, ("tab:blue", "tab:red", "tab:blue")):
            tag = f"p{q:g}"
            ax.fill_between(t, g[f"simulated_{tag}_low"], g[f"simulated_{tag}_high"], color=colour, alpha=0.2,
                            label=f"simulated {tag}: 95 % interval")
            ax.plot(t, g[f"observed_{tag}"], marker="o", color=colour, label=f"observed {tag}")
        ax.set_xlabel("time [h]")
        corrected = "prediction-corrected " if result.prediction_corrected else ""
        ax.set_ylabel(f"{corrected}{output} [{units.get(output, '')}]")
        where = "" if stratum == "all" else f", {stratum}"
        kind = "Prediction-corrected VPC" if result.prediction_corrected else "Visual predictive check"
        ax.set_title(f"{kind}: {output}{where} ({result.replicates} replicates)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        out.append((output if stratum == "all" else f"{output}, {stratum}", png_base64(fig)))
    return out


def summary_html(result: VPCResult) -> str:
    """The report's paragraph and figures (escaped HTML), shared by ``ketasim vpc`` and the fit report."""
    import html

    imgs = "\n".join(f"<figure><img alt='{html.escape(o)}' src='data:image/png;base64,{b}'>"
                     f"<figcaption>{html.escape(o)}</figcaption></figure>" for o, b in figures(result))
    inside = result.inside
    kind = ("Prediction-corrected VPC (Bergstrand 2011): values scaled by their bin's median population prediction "
            "over their own. " if result.prediction_corrected else "")
    return (f"<p>{kind}Data set {html.escape(result.source)}; {result.replicates} simulated replicates of its design. "
            f"Observed percentiles inside the simulated 95 % intervals: {int(inside.sum())} of {int(inside.size)}.</p>"
            f"{imgs}")


def _write_report(result: VPCResult, folder: Path) -> None:
    from .trial.report import _write_page

    body = (summary_html(result)
            + f"<h2>Bins</h2>{result.bins.to_html(index=False, float_format=lambda x: f'{x:.4g}')}")
    _write_page(folder, "ketasim visual predictive check", "A VPC compares a data set with a model population; it "
                                                           "says nothing about what any person should receive.", body)
