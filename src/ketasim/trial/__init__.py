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
from dataclasses import dataclass, field
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
from .run import TRIAL_SETTINGS, ProgressCallback, blocks_needed, iter_chunks, per_state_tolerances, run_chunks
from .tally import ChunkTally, TrialTally

#: patients per parameter draw in a trial run with parameter uncertainty
DEFAULT_DRAW_BLOCK = 50


@dataclass(frozen=True)
class TrialResult:
    """The patients table (one row per patient, period and assessment), the summary and a manifest.
    A trial streamed to its folder (``stream_trial``) holds no table (``patients`` None): it is in
    ``patients.parquet`` there."""

    spec: TrialSpec
    patients: pd.DataFrame | None
    summary: dict[str, Any]
    manifest: dict[str, Any]
    #: the reduced statistics the summary and the report are made of
    tally: TrialTally | None = field(default=None, compare=False, repr=False)

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

        if self.patients is None:
            raise ValueError("this trial was streamed to its folder and holds no patients table to write")
        with atomic_folder(folder) as tmp:
            if events is not None:
                from ..dataset import write_events

                write_events(events, tmp / "dataset.csv")
            _write_parquet(self.patients, tmp / "patients.parquet")
            self._write_summaries(tmp, report)
        return Path(folder)

    def _write_summaries(self, folder: Path, report: bool) -> None:
        (folder / "summary.json").write_text(json.dumps(self.summary, indent=2))
        (folder / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str))
        if report:
            from .report import write_trial_report

            write_trial_report(self, folder)


def _arrow(frame: pd.DataFrame):
    """The patients table as Arrow, with the disclaimer and the ketasim version in its metadata."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), b"ketasim.disclaimer": DISCLAIMER.encode(),
                b"ketasim.version": _version().encode()}
    return table.replace_schema_metadata(metadata)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """The patients table with the disclaimer and the ketasim version in the file's metadata."""
    import pyarrow.parquet as pq

    pq.write_table(_arrow(frame), path)


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
    run = _Run.prepare(trial, params, mechanisms, params_draws, draw_block)
    with _dask_client(workers, scheduler) as client:
        patients = run_chunks(run.spec, run.per_block, chunk_size=chunk_size, settings=settings, client=client,
                              progress=progress, draw_block=run.block)
    tally = TrialTally.of_frame(run.spec, patients, run.block)
    return TrialResult(spec=run.spec, patients=patients, summary=run.summary(tally),
                       manifest=run.manifest(settings, chunk_size, workers, scheduler), tally=tally)


def stream_trial(trial: str | Path | Mapping[str, Any] | TrialSpec, folder: str | Path, *,
                 params: ParameterSet | str | Path | None = None, chunk_size: int | None = None,
                 workers: int | None = None, scheduler: str | None = None,
                 settings: SolverSettings = TRIAL_SETTINGS, progress: ProgressCallback | None = None,
                 mechanisms: Sequence[str] | None = None, params_draws: ParameterDraws | str | Path | None = None,
                 draw_block: int = DEFAULT_DRAW_BLOCK, report: bool = True) -> TrialResult:
    """``run_trial`` written to ``folder`` as it runs (``patients.parquet``, ``summary.json``,
    ``manifest.json``, ``report.html``, atomically): each chunk's rows go to the file and to the
    summary's tally and are dropped, so memory does not grow with the patients table (only by the few
    numbers per patient the relapse and primary analyses need). The files equal ``run_trial(...)
    .write(folder)``'s; the summary agrees to rounding (its moments are merged chunk by chunk)."""
    from ..output import atomic_folder

    run = _Run.prepare(trial, params, mechanisms, params_draws, draw_block)
    tally = TrialTally(run.spec, run.block)
    with atomic_folder(folder) as tmp, _dask_client(workers, scheduler) as client:
        with _PatientsWriter(tmp / "patients.parquet") as writer:
            for i, frame in iter_chunks(run.spec, run.per_block, chunk_size=chunk_size, settings=settings,
                                        client=client, progress=progress, draw_block=run.block):
                writer.write(frame)
                tally.add(i, ChunkTally.of(run.spec, frame, run.block))
        result = TrialResult(spec=run.spec, patients=None, summary=run.summary(tally),
                             manifest=run.manifest(settings, chunk_size, workers, scheduler), tally=tally)
        result._write_summaries(tmp, report)
    return result


@dataclass(frozen=True)
class _Run:
    """A trial's spec, parameters and draws, checked before anything runs."""

    spec: TrialSpec
    params: ParameterSet
    draws: ParameterDraws | None
    per_block: ParameterSet | list
    block: int | None
    started: _dt.datetime

    @classmethod
    def prepare(cls, trial, params, mechanisms, params_draws, draw_block) -> _Run:
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
        return cls(spec, params, draws, per_block, block, _dt.datetime.now(_dt.timezone.utc))

    def manifest(self, settings, chunk_size, workers, scheduler) -> dict[str, Any]:
        finished = _dt.datetime.now(_dt.timezone.utc)
        manifest = {
            "ketasim_version": _version(), "created": finished.isoformat(timespec="seconds"),
            "wall_time [s]": (finished - self.started).total_seconds(), "python": platform.python_version(),
            "trial_source": dict(self.spec.raw), "parameter_set_sha256": self.params.digest(),
            "mechanisms": list(active(self.params)),
            "solver": {"method": "Rodas4 (Hairer & Wanner), analytic Jacobian", "rtol": settings.rtol,
                       "atol": settings.atol, "h_max_h": settings.h_max, **per_state_tolerances(settings)},
            "execution": {"chunk_size": chunk_size or "automatic", "workers": workers, "scheduler": scheduler},
            "disclaimer": DISCLAIMER,
        }
        if self.draws is not None:
            manifest["parameter_draws"] = {**self.draws.describe(), "draw_block": self.block}
        return manifest

    def summary(self, tally: TrialTally) -> dict[str, Any]:
        summary = tally.summary()
        if self.draws is not None:
            summary["parameter_uncertainty"] = {
                **self.draws.describe(), "draw_block [patients]": self.block, "blocks": len(self.per_block),
                "values_moved_to_range_ends": self.draws.outside_range(self.params, self.per_block),
                **tally.parameter_uncertainty()}
        return summary


class _PatientsWriter:
    """``patients.parquet`` written chunk by chunk (one row group each), with the disclaimer and the
    ketasim version in the file's metadata; every chunk cast to the first one's schema."""

    def __init__(self, path: Path):
        self.path, self.writer, self.schema = path, None, None

    def __enter__(self) -> _PatientsWriter:
        return self

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            table = _arrow(frame)
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        else:
            table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self.writer.write_table(table)

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()


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
    # the scheduler's HTTP server on a free port: with None it still takes 8787, and a second cluster
    # on the machine (another run, another test process) then fails to start
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      env={"NUMBA_NUM_THREADS": str(threads)}) as cluster, Client(cluster) as client:
        yield client


def _version() -> str:
    from ..simulate import _version as v

    return v()


__all__ = ["DESIGNS", "TrialResult", "TrialSpec", "run_trial", "stream_trial"]
