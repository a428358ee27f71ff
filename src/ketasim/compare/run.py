"""Running every variant on every experiment, and scoring them.

For each variant (calibrated first, ``variants.fit_variant``) every row of the experiments table is
predicted by running its virtual trial (``calibrate.targets.model_value``: the same metrics as the
calibration checks) and scored by the row's log-likelihood. Per variant: the summed
log-likelihood, AIC = 2k - 2 log L and BIC = k ln(N) - 2 log L, where k counts the variant's own
gains (every route in it brings one coupling strength set by calibration; the common factor fitted
to Murrough 2013 rescales them and adds no freedom of its own; a modulator without a gain adds
none) and N the observations, and the Akaike weights.
A row is *explained* by a variant when the prediction lies in the observation's 95 % interval; an
experiment when all its rows are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..params import ParameterSet, load_parameters
from ..result import DISCLAIMER
from .experiments import load_experiments, log_likelihood, shipped_experiments
from .variants import GainFit, Variant, default_variants, fit_variant, route_gains


@dataclass(frozen=True)
class ComparisonResult:
    """``rows``: one per variant and observation; ``variants``: one per variant with its scores;
    ``fits``: how each variant was calibrated; ``manifest``: what was run."""

    rows: pd.DataFrame
    variants: pd.DataFrame
    fits: tuple[GainFit, ...]
    manifest: dict[str, Any]

    def experiments(self) -> pd.DataFrame:
        """One row per experiment: the variants that explain it (all rows within the 95 % interval)."""
        out = []
        for experiment, rows in self.rows.groupby("experiment", sort=False):
            explained = [v for v, r in rows.groupby("variant", sort=False) if bool(r["within"].all())]
            first = rows.iloc[0]
            out.append({"experiment": experiment, "finding": first["finding"], "source": first["source"],
                        "explained_by": explained, "explained_by_none": not explained})
        return pd.DataFrame(out)

    def as_dict(self) -> dict[str, Any]:
        return {"variants": self.variants.to_dict(orient="records"),
                "fits": [f.as_dict() for f in self.fits],
                "experiments": self.experiments().to_dict(orient="records"),
                "rows": self.rows.to_dict(orient="records"),
                "manifest": self.manifest, "disclaimer": DISCLAIMER}

    def write(self, folder: str | Path) -> Path:
        """``compare.json``, ``compare.csv`` (one row per variant and observation), ``variants.csv``,
        ``manifest.json`` (which marks the folder as a ketasim result, so that the command may write
        it again) and ``report.html``, atomically."""
        from ..output import atomic_folder
        from .report import write_compare_report

        with atomic_folder(folder) as tmp:
            (tmp / "compare.json").write_text(json.dumps(self.as_dict(), indent=2, default=_json_default))
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=_json_default))
            self.rows.to_csv(tmp / "compare.csv", index=False)
            self.variants.to_csv(tmp / "variants.csv", index=False)
            write_compare_report(self, tmp / "report.html")
        return Path(folder)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)


def compare(variants: Sequence[Variant] | None = None, experiments: str | Path | None = None, *,
            params: ParameterSet | str | Path | None = None, fit: bool = True,
            progress: Callable[[str], None] | None = None) -> ComparisonResult:
    """Predict every experiment under every variant and score the predictions.

    ``variants`` default to ``default_variants()``; ``experiments`` to the shipped table; ``fit=False``
    keeps each variant's gains as they are in ``params`` instead of calibrating them first.
    """
    from ..calibrate.targets import model_value

    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    variants = tuple(variants) if variants is not None else default_variants()
    path = Path(experiments) if experiments is not None else shipped_experiments()
    table = load_experiments(path)
    fits, records = [], []
    for variant in variants:
        if fit:
            gain_fit = fit_variant(variant, params, progress=progress)
        else:
            from ..model.mechanisms import with_mechanisms

            gain_fit = GainFit(variant=variant, factor=1.0, gains={}, target=math.nan, model=math.nan, reached=None,
                               factor_range=(1.0, 1.0), evaluations=0, note="gains not fitted",
                               params=with_mechanisms(params, variant.mechanisms))
        fits.append(gain_fit)
        for _, row in table.iterrows():
            if progress is not None:
                progress(f"{variant.name}: {row['experiment']} ({row['quantity']}, {row['metric']})")
            model = model_value(row, gain_fit.params)
            records.append({
                "variant": variant.name, "experiment": row["experiment"], "trial": row["scenario"], "arm": row["quantity"],
                "metric": row["metric"], "time": row.get("time", ""), "unit": row["unit"],
                "observed": float(row["value"]), "low": float(row["low"]), "high": float(row["high"]),
                "model": model, "within": bool(row["low"] <= model <= row["high"]),
                "log_likelihood": log_likelihood(row, model), "likelihood": row["likelihood"],
                "grade": row["grade"], "finding": row.get("finding", ""), "source": row["source"]})
    rows = pd.DataFrame(records)
    manifest = {"command": "ketasim compare", "experiments": str(path), "parameter_set_sha256": params.digest(),
                "fitted": fit, "variants": {v.name: list(v.mechanisms) for v in variants}, "disclaimer": DISCLAIMER}
    return ComparisonResult(rows, score(rows, fits), tuple(fits), manifest)


def score(rows: pd.DataFrame, fits: Sequence[GainFit]) -> pd.DataFrame:
    """Per variant: observations explained, summed log-likelihood, k, AIC, BIC, Akaike weight; best first."""
    n_obs = int(rows.groupby("variant").size().iloc[0])
    out = []
    for f in fits:
        r = rows[rows["variant"] == f.variant.name]
        log_l = float(r["log_likelihood"].sum())
        k = len(route_gains(f.variant.mechanisms))
        out.append({"variant": f.variant.name, "mechanisms": "+".join(f.variant.mechanisms),
                    "reaches_fit_target": f.reached, "fitted_factor": f.factor,
                    "explained [rows]": int(r["within"].sum()), "observations": n_obs,
                    "log_likelihood": log_l, "k": k, "aic": 2 * k - 2 * log_l, "bic": k * math.log(n_obs) - 2 * log_l})
    table = pd.DataFrame(out).sort_values("aic", kind="stable").reset_index(drop=True)
    delta = table["aic"] - table["aic"].min()
    weights = np.exp(-0.5 * delta)
    table["delta_aic"] = delta
    table["akaike_weight"] = weights / weights.sum()
    return table
