"""The run registry: every simulation and trial run, with its inputs, model version and results.

An embedded SQLite database (``registry.sqlite`` in the service's data folder) in WAL mode, so the
web service's threads and its worker processes can read while one of them writes. Every write is
one short transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a crash leaves either the old or the
new row, never half of one. Results themselves (Parquet, JSON, HTML) lie in files beside the
database; a row records where.

A run moves ``queued -> running -> done | failed``. Whatever was ``queued`` or ``running`` when the
service stopped is marked ``interrupted`` by :meth:`RunRegistry.mark_interrupted` at the next start,
so no run is lost or left ``running`` forever.

>>> import tempfile
>>> reg = RunRegistry(tempfile.mkdtemp())
>>> run_id = reg.create("trial", {"trial": {"name": "demo"}}, model_version="0.1.0", parameter_hash="ab")
>>> reg.get(run_id).status
'queued'
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DB_NAME = "registry.sqlite"
KINDS = ("simulation", "trial")
STATUSES = ("queued", "running", "done", "failed", "interrupted")
UNFINISHED = ("queued", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('simulation', 'trial')),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'interrupted')),
    inputs          TEXT NOT NULL,          -- the scenario or trial as JSON, as submitted
    model_version   TEXT NOT NULL,
    parameter_hash  TEXT NOT NULL,          -- SHA-256 of the parameter set (ParameterSet.digest)
    created         TEXT NOT NULL,          -- ISO 8601, UTC
    started         TEXT,
    finished        TEXT,
    progress_done   INTEGER NOT NULL DEFAULT 0,
    progress_total  INTEGER NOT NULL DEFAULT 0,
    result_path     TEXT,                   -- folder of the result files, relative to the data folder
    error           TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
"""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Run:
    """One row of the registry."""

    id: str
    kind: str
    status: str
    inputs: dict[str, Any]
    model_version: str
    parameter_hash: str
    created: str
    started: str | None
    finished: str | None
    progress_done: int
    progress_total: int
    result_path: str | None
    error: str | None

    @property
    def wall_time_s(self) -> float | None:
        """Seconds from start to finish (None while not finished)."""
        if not (self.started and self.finished):
            return None
        return (_dt.datetime.fromisoformat(self.finished) - _dt.datetime.fromisoformat(self.started)).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunRegistry:
    """The registry in ``folder`` (created if needed). Safe to use from threads and processes:
    each call opens its own connection."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        self._migrate()

    # ------------------------------------------------------------------ connection and schema
    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # autocommit mode: transactions are opened explicitly, one per write
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout = 30000")
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _migrate(self) -> None:
        with self._connect() as con:
            con.execute("PRAGMA journal_mode = WAL")  # persistent: readers never wait for the writer
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path}: registry schema {version} is newer than this ketasim "
                                   f"understands ({SCHEMA_VERSION}); upgrade ketasim")
            if version < SCHEMA_VERSION:
                con.execute("BEGIN IMMEDIATE")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    con.execute(statement)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")

    # ------------------------------------------------------------------ writes
    def create(self, kind: str, inputs: dict[str, Any], *, model_version: str, parameter_hash: str,
               status: str = "queued", total: int = 0) -> str:
        """A new run; its id (32 hex digits)."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {KINDS}")
        if status not in UNFINISHED:
            raise ValueError(f"a new run is queued or running, not {status!r}")
        run_id = uuid.uuid4().hex
        now = _now()
        with self._write() as con:
            con.execute("INSERT INTO runs (id, kind, status, inputs, model_version, parameter_hash, created, started,"
                        " progress_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, kind, status, json.dumps(inputs), model_version, parameter_hash, now,
                         now if status == "running" else None, int(total)))
        return run_id

    def mark_running(self, run_id: str) -> None:
        with self._write() as con:
            con.execute("UPDATE runs SET status = 'running', started = ? WHERE id = ? AND status = 'queued'",
                        (_now(), run_id))

    def set_progress(self, run_id: str, done: int, total: int) -> None:
        with self._write() as con:
            con.execute("UPDATE runs SET progress_done = ?, progress_total = ? WHERE id = ?", (int(done), int(total), run_id))

    def mark_done(self, run_id: str, result_path: str | None) -> None:
        with self._write() as con:
            # only a run still in progress finishes (one marked interrupted by a restart stays so)
            con.execute("UPDATE runs SET status = 'done', finished = ?, result_path = ?, progress_done = progress_total"
                        " WHERE id = ? AND status IN ('queued', 'running')", (_now(), result_path, run_id))

    def mark_failed(self, run_id: str, error: str) -> None:
        """A run that ended without a result; only an unfinished run changes (a done run stays done)."""
        with self._write() as con:
            con.execute("UPDATE runs SET status = 'failed', finished = ?, error = ? WHERE id = ? AND status IN"
                        " ('queued', 'running')", (_now(), error, run_id))

    def mark_interrupted(self) -> int:
        """At start-up: every run still queued or running belongs to a service that stopped; how many."""
        with self._write() as con:
            cur = con.execute("UPDATE runs SET status = 'interrupted', finished = ?, error = ? WHERE status IN"
                              " ('queued', 'running')", (_now(), "the service stopped before the run finished"))
            return cur.rowcount

    def prune(self, *, keep_runs: int | None = None, keep_days: float | None = None) -> list[str]:
        """Delete finished runs (done, failed, interrupted) beyond the newest ``keep_runs`` or
        finished more than ``keep_days`` ago, rows first and then their result folders; runs still
        queued or running are never touched. The ids deleted."""
        if keep_runs is None and keep_days is None:
            return []
        clauses, args = [], []
        if keep_runs is not None:
            clauses.append("id NOT IN (SELECT id FROM runs WHERE status NOT IN ('queued', 'running')"
                           " ORDER BY created DESC, id LIMIT ?)")
            args.append(int(keep_runs))
        if keep_days is not None:
            cutoff = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=float(keep_days))
            clauses.append("COALESCE(finished, created) < ?")
            args.append(cutoff.isoformat(timespec="milliseconds"))
        with self._write() as con:
            rows = con.execute(f"SELECT id, result_path FROM runs WHERE status NOT IN ('queued', 'running') AND "
                               f"({' OR '.join(clauses)})", args).fetchall()
            con.executemany("DELETE FROM runs WHERE id = ?", [(r["id"],) for r in rows])
        root = self.folder.resolve()
        for r in rows:  # a crash here leaves a folder without a row, which nothing serves
            target = (root / (r["result_path"] or f"runs/{r['id']}")).resolve()
            if root in target.parents:
                shutil.rmtree(target, ignore_errors=True)
        return [r["id"] for r in rows]

    # ------------------------------------------------------------------ reads
    def get(self, run_id: str) -> Run | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def list(self, *, kind: str | None = None, status: str | None = None, limit: int = 100, offset: int = 0) -> list[Run]:
        """Runs, newest first."""
        clauses, args = [], []
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as con:
            rows = con.execute(f"SELECT * FROM runs {where} ORDER BY created DESC, id LIMIT ? OFFSET ?",
                               (*args, int(limit), int(offset))).fetchall()
        return [_run(r) for r in rows]

    def count(self) -> int:
        with self._connect() as con:
            return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def _run(row: sqlite3.Row) -> Run:
    data = dict(row)
    data["inputs"] = json.loads(data["inputs"])
    return Run(**data)
