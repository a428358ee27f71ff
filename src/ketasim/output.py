"""Writing a simulation's results folder atomically: complete, or not there at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import KetasimError
from .result import SimulationResult


class OutputFolderError(KetasimError, ValueError):
    """The output folder cannot be used (it is a file, or holds something that is not a ketasim result)."""


def check_output_folder(target: str | Path) -> Path:
    """The resolved folder, if it is new, empty, or an earlier ketasim result (has manifest.json)."""
    target = Path(target).resolve()
    if target.exists() and not target.is_dir():
        raise OutputFolderError(f"--out {target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / "manifest.json").is_file():
        raise OutputFolderError(f"--out {target}: the folder is not empty and holds no ketasim result "
                                "(manifest.json); choose a new or empty folder")
    if target.parent == target:
        raise OutputFolderError(f"--out {target}: cannot write results into the file-system root")
    return target


def write_csv_with_disclaimer(frame, path: str | Path, **to_csv) -> None:
    """A table as CSV whose first line is the disclaimer as a ``#`` comment (readers skip it with
    ``comment="#"``); ``to_csv`` goes to ``DataFrame.to_csv`` (e.g. ``na_rep``)."""
    from .result import DISCLAIMER

    with open(path, "w") as f:
        f.write(f"# {DISCLAIMER}\n")
        frame.to_csv(f, index=False, **to_csv)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a partial sibling, then a rename)."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def atomic_folder(target: str | Path):
    """Yield a temporary sibling folder; on success it replaces ``target``, on error it vanishes.

    Only a new or empty folder, or an earlier ketasim result, is ever replaced.
    """
    target = check_output_folder(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not target.exists():
        tmp.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{tmp.name[-8:]}")
    target.rename(old)
    try:
        tmp.rename(target)
    except OSError:
        old.rename(target)  # put the earlier result back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_results(result: SimulationResult, folder: str | Path, report: bool = True, events=None) -> Path:
    """timeseries.csv/.parquet, summary.json, manifest.json and (optionally) report.html + PNGs, and
    ``events`` (an event table, ``ketasim.dataset.simulation_events``) as dataset.csv."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        if events is not None:
            from .dataset import write_events

            write_events(events, tmp / "dataset.csv")
        df = result.to_dataframe()
        df.to_csv(tmp / "timeseries.csv", index=False)
        df.to_parquet(tmp / "timeseries.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(result.summary(), indent=2))
        (tmp / "manifest.json").write_text(json.dumps(result.manifest, indent=2, default=str))
        if report:
            from .report import write_report

            write_report(result, tmp)
    return folder
