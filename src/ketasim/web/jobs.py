"""Background trial jobs: each trial runs in its own worker process, so the API never waits on it.

A few dispatcher threads take queued runs in order and start one ``spawn`` process per run (a
fresh interpreter: no state shared with the server's threads, and a crash or an out-of-memory kill
takes down only that run). The worker writes its progress (patients done / total) and its outcome
to the run registry itself; the dispatcher only checks the exit code, so a worker that died
without saying why is still marked ``failed``. With a Dask scheduler address the worker process
hands the trial's chunks to that cluster (``ketasim.run_trial(scheduler=...)``).

Result files of run ``ID`` lie in ``DATA/runs/ID/``: ``patients.parquet``, ``summary.json``,
``manifest.json``, ``report.html`` (from ``TrialResult.write``) and ``figures.json`` (the curves the
page draws: MADRS trajectories and Kaplan-Meier relapse curves per arm).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNS_FOLDER = "runs"
PROGRESS_EVERY_S = 0.25  # registry writes for progress: often enough for a progress bar, no more
CHUNKS_PER_TRIAL = 20  # so progress moves in steps of about 5 %


@dataclass(frozen=True)
class TrialJob:
    data_dir: str
    run_id: str
    trial: dict[str, Any]
    scheduler: str | None = None


def result_folder(data_dir: str | Path, run_id: str) -> Path:
    return Path(data_dir) / RUNS_FOLDER / run_id


# ---------------------------------------------------------------------- in the worker process
class ProgressWriter:
    """The trial's progress callback: patients done / total into the registry, at most every 0.25 s."""

    def __init__(self, registry, run_id: str):
        self.registry, self.run_id = registry, run_id
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_EVERY_S:
            self.registry.set_progress(self.run_id, done, total)
            self._last = now


def web_chunk_size(n_patients: int) -> int:
    """Chunks small enough for a moving progress bar; results do not depend on the chunk size."""
    return max(4, min(512, math.ceil(n_patients / CHUNKS_PER_TRIAL)))


def run_trial_job(job: TrialJob) -> None:
    """The worker process's whole life: run the trial, write its files, record the outcome."""
    from ..store import RunRegistry
    from ..trial import TrialSpec, run_trial

    registry = RunRegistry(job.data_dir)
    registry.mark_running(job.run_id)
    try:
        spec = TrialSpec.from_dict(job.trial)
        registry.set_progress(job.run_id, 0, spec.n_patients)
        result = run_trial(spec, chunk_size=web_chunk_size(spec.n_patients), scheduler=job.scheduler,
                           progress=ProgressWriter(registry, job.run_id))
        folder = result_folder(job.data_dir, job.run_id)
        result.write(folder)
        write_json_atomically(folder / "figures.json", trial_figures(result))
    except Exception as exc:  # the run fails, the worker reports why; nothing else depends on it
        registry.mark_failed(job.run_id, f"{type(exc).__name__}: {exc}")
        return
    registry.mark_done(job.run_id, f"{RUNS_FOLDER}/{job.run_id}")


def write_json_atomically(path: Path, data: Any) -> None:
    from ..output import write_text_atomically

    write_text_atomically(path, json.dumps(data, allow_nan=False))


def _finite(values) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def trial_figures(result) -> dict[str, Any]:
    """Per arm: mean MADRS with 95 % CI and 10-90 % range at baseline and each assessment, and the
    Kaplan-Meier curve of relapse among responders (the same numbers as the HTML report's figures)."""
    import numpy as np

    from ..trial import statistics as st
    from ..trial.tally import TrialTally

    tally = result.tally or TrialTally.of_frame(result.spec, result.patients)
    trajectories, relapse = [], []
    for arm in (a.name for a in result.spec.arms if a.name in tally.parts["arms"]):
        tr = tally.trajectory(arm)
        trajectories.append({"arm": arm, **{k: v if k == "time [h]" else _finite(v) for k, v in tr.items()}})
        time, event = tally.relapse(arm)  # counted from response, as in the trial report
        if time.size == 0:
            continue
        km = st.kaplan_meier(time, event)
        end = float(time.max())  # the curve goes on to the end of follow-up, not just the last event
        if end > km["time"][-1]:
            km = {k: np.append(v, end if k == "time" else v[-1]) for k, v in km.items()}
        relapse.append({"arm": arm, "at_risk": int(time.size), "time [h]": _finite(km["time"]),
                        "survival [fraction]": _finite(km["survival"]), "lower [fraction]": _finite(km["lower"]),
                        "upper [fraction]": _finite(km["upper"])})
    return {"trajectories": trajectories, "relapse_free": relapse}


# ---------------------------------------------------------------------- in the server
class JobRunner:
    """Queued trial runs, started in worker processes by ``workers`` dispatcher threads."""

    def __init__(self, registry, workers: int = 1, scheduler: str | None = None):
        self.registry = registry
        self.workers = max(1, int(workers))
        self.scheduler = scheduler
        self._queue: queue.Queue[TrialJob | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._processes: dict[str, multiprocessing.Process] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def submit(self, run_id: str, trial: dict[str, Any]) -> None:
        self._start_dispatchers()
        self._queue.put(TrialJob(str(self.registry.folder), run_id, trial, self.scheduler))

    def pending(self) -> int:
        """Runs waiting for a worker or running now."""
        with self._lock:
            return self._queue.qsize() + len(self._processes)

    def _start_dispatchers(self) -> None:
        with self._lock:
            if self._threads or self._stopping:
                return
            for i in range(self.workers):
                t = threading.Thread(target=self._dispatch, name=f"ketasim-trial-dispatcher-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def _dispatch(self) -> None:
        context = multiprocessing.get_context("spawn")
        while True:
            job = self._queue.get()
            if job is None or self._stopping:
                return
            try:
                self._run(context, job)
            except Exception as exc:  # noqa: BLE001 - a failed start must not stop the dispatcher or strand the run
                try:
                    self.registry.mark_failed(job.run_id, f"the worker process could not run: {exc}")
                except Exception:  # noqa: BLE001 - the registry is unreachable; the next start marks it interrupted
                    pass

    def _run(self, context, job) -> None:
        process = context.Process(target=run_trial_job, args=(job,), name=f"ketasim-trial-{job.run_id[:8]}", daemon=True)
        with self._lock:
            self._processes[job.run_id] = process
        try:
            process.start()
            process.join()
        finally:
            with self._lock:
                self._processes.pop(job.run_id, None)
        if process.exitcode != 0 and not self._stopping:
            # the worker died without recording an outcome (killed, out of memory, crashed)
            self.registry.mark_failed(job.run_id, f"the worker process ended with exit code {process.exitcode}")

    def shutdown(self) -> None:
        """Stop taking runs and end the workers; their runs are marked interrupted at the next start."""
        with self._lock:
            self._stopping = True
            processes = list(self._processes.values())
        for _ in self._threads:
            self._queue.put(None)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)
        self.registry.mark_interrupted()
