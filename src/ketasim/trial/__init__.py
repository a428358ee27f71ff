"""Virtual clinical trials: designs, a population per arm, endpoints with confidence intervals.

>>> import ketasim
>>> trial = {"trial": {"name": "demo", "seed": 1, "assessments": ["24 h"]},
...          "population": {"n": 4, "preset": "treatment-resistant"},
...          "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv",
...                                                  "amount": "0.5 mg/kg", "duration": "40 min"}]},
...                  {"name": "saline", "dose": [{"drug": "saline", "route": "iv", "duration": "40 min"}]}]}
>>> result = ketasim.run_trial(trial)
>>> sorted(result.summary["arms"]), len(result.patients)
(['ketamine', 'saline'], 8)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine import SolverSettings
from ..errors import ScenarioError
from ..model.mechanisms import active, with_mechanisms
from ..params import ParameterSet, load_parameters
from ..params.draws import ParameterDraws
from ..population.spec import MAX_PATIENTS
from ..result import DISCLAIMER
from .design import DESIGNS, TrialSpec
from .run import TRIAL_SETTINGS, ProgressCallback, blocks_needed, run_chunks
from .summary import parameter_uncertainty, trial_summary

#: patients per parameter draw in a trial run with parameter uncertainty
DEFAULT_DRAW_BLOCK = 50


@dataclass(frozen=True)
class TrialResult:
    """The patients table (one row per patient, period and assessment), the summary and a manifest."""

    spec: TrialSpec
    patients: pd.DataFrame
    summary: dict[str, Any]
    manifest: dict[str, Any]

    def _repr_html_(self) -> str:
        """Jupyter: per arm and assessment, the mean MADRS change with its 95 % CI and the response
        rate, then the disclaimer."""
        import html

        def f(x, scale=1.0):
            return "n/a" if x is None else f"{x * scale:.3g}"

        rows = []
        for arm, s in self.summary["arms"].items():
            for a in s["assessments"]:
                change, response = a["madrs_change [points]"], a["response_rate"]
                rows.append(f"<tr><td>{html.escape(arm)}</td><td>{a['assessment [h]']:g}</td><td>{a['n']}</td>"
                            f"<td>{f(change['mean'])} ({f(change['lower'])} to {f(change['upper'])})</td>"
                            f"<td>{f(response['estimate'], 100.0)}</td></tr>")
        p = self.summary["patients"]
        return (f"<div><strong>ketasim virtual trial: {html.escape(self.spec.name)}</strong> "
                f"({html.escape(self.spec.design)}; {p['simulated']} patients, {p['failed']} not finished)"
                "<table><tr><th>arm</th><th>assessment [h]</th><th>n</th><th>MADRS change [points] (95 % CI)</th>"
                f"<th>response [%]</th></tr>{''.join(rows)}</table>"
                f"<p style='font-size:.8em'>{html.escape(DISCLAIMER)}</p></div>")

    def write(self, folder: str | Path, report: bool = True, events: pd.DataFrame | None = None) -> Path:
        """``patients.parquet``, ``summary.json``, ``manifest.json`` and ``report.html``, atomically;
        ``events`` (``ketasim.dataset.trial_events``) as ``dataset.csv``."""
        from ..output import atomic_folder

        with atomic_folder(folder) as tmp:
            if events is not None:
                from ..dataset import write_events

                write_events(events, tmp / "dataset.csv")
            _write_parquet(self.patients, tmp / "patients.parquet")
            (tmp / "summary.json").write_text(json.dumps(self.summary, indent=2))
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str))
            if report:
                from .report import write_trial_report

                write_trial_report(self, tmp)
        return Path(folder)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """The patients table with the disclaimer and the ketasim version in the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), b"ketasim.disclaimer": DISCLAIMER.encode(),
                b"ketasim.version": _version().encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def run_trial(trial: str | Path | Mapping[str, Any] | TrialSpec, *, params: ParameterSet | str | Path | None = None,
              chunk_size: int | None = None, workers: int | None = None, scheduler: str | None = None,
              settings: SolverSettings = TRIAL_SETTINGS, progress: ProgressCallback | None = None,
              mechanisms: Sequence[str] | None = None, params_draws: ParameterDraws | str | Path | None = None,
              draw_block: int = DEFAULT_DRAW_BLOCK) -> TrialResult:
    """Run a virtual trial (a TOML path, a dict or a ``TrialSpec``).

    ``mechanisms`` names the hypotheses the model includes (``ketasim mechanisms``); it overrides the
    file's ``[model] mechanisms``; neither given, the calibrated set.

    ``params_draws`` (``ketasim.params.draws``: posterior draws or a fit's covariance) gives each
    block of ``draw_block`` patients of every sequence one parameter draw, the same block number
    sharing it across arms; the summary then separates parameter uncertainty from between-patient
    variability (``parameter_uncertainty``).

    ``workers`` starts a local Dask cluster of that many processes; ``scheduler`` (``tcp://host:port``)
    uses an existing one. Either way the result equals the single-process run (same seed).
    """
    spec = TrialSpec.load(trial)
    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    params = with_mechanisms(params, mechanisms if mechanisms is not None else spec.mechanisms)
    draws, per_block, block = None, params, None
    if params_draws is not None:
        if isinstance(draw_block, bool) or not isinstance(draw_block, int) or not 2 <= draw_block <= MAX_PATIENTS:
            raise ScenarioError("draw_block", f"{draw_block!r} must be a whole number of patients, 2..{MAX_PATIENTS}")
        draws = ParameterDraws.of(params_draws, params)
        per_block = draws.parameter_sets(params, blocks_needed(spec, draw_block), spec.seed)
        block = draw_block
    started = _dt.datetime.now(_dt.timezone.utc)
    with _dask_client(workers, scheduler) as client:
        patients = run_chunks(spec, per_block, chunk_size=chunk_size, settings=settings, client=client,
                              progress=progress, draw_block=block)
    finished = _dt.datetime.now(_dt.timezone.utc)
    manifest = {
        "ketasim_version": _version(), "created": finished.isoformat(timespec="seconds"),
        "wall_time [s]": (finished - started).total_seconds(), "python": platform.python_version(),
        "trial_source": dict(spec.raw), "parameter_set_sha256": params.digest(),
        "mechanisms": list(active(params)),
        "solver": {"method": "Rodas4 (Hairer & Wanner), analytic Jacobian", "rtol": settings.rtol,
                   "atol": settings.atol, "h_max_h": settings.h_max},
        "execution": {"chunk_size": chunk_size or "automatic", "workers": workers, "scheduler": scheduler},
        "disclaimer": DISCLAIMER,
    }
    summary = trial_summary(spec, patients)
    if draws is not None:
        manifest["parameter_draws"] = {**draws.describe(), "draw_block": block}
        summary["parameter_uncertainty"] = {
            **draws.describe(), "draw_block [patients]": block, "blocks": len(per_block),
            "values_moved_to_range_ends": draws.outside_range(params, per_block),
            **parameter_uncertainty(spec, patients, block)}
    return TrialResult(spec=spec, patients=patients, summary=summary, manifest=manifest)


@contextmanager
def _dask_client(workers: int | None, scheduler: str | None):
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None and scheduler is not None:
        raise ValueError("give either workers (a local Dask cluster) or scheduler (an existing one), not both")
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    if not 1 <= workers <= 256:
        raise ValueError(f"workers={workers!r} must be in 1..256")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"NUMBA_NUM_THREADS": str(threads)}) as cluster, Client(cluster) as client:
        yield client


def _version() -> str:
    from ..simulate import _version as v

    return v()


__all__ = ["DESIGNS", "TrialResult", "TrialSpec", "run_trial"]
