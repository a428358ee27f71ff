"""Writing a simulation's results folder atomically: complete, or not there at all."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .result import SimulationResult


@contextmanager
def atomic_folder(target: str | Path):
    """Yield a temporary sibling folder; on success it replaces ``target``, on error it vanishes."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        old = target.with_name(f".{target.name}.old-{tmp.name[-8:]}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def write_results(result: SimulationResult, folder: str | Path, report: bool = True) -> Path:
    """timeseries.csv/.parquet, summary.json, manifest.json and (optionally) report.html + PNGs."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        df = result.to_dataframe()
        df.to_csv(tmp / "timeseries.csv", index=False)
        df.to_parquet(tmp / "timeseries.parquet", index=False)
        (tmp / "summary.json").write_text(json.dumps(result.summary(), indent=2))
        (tmp / "manifest.json").write_text(json.dumps(result.manifest, indent=2, default=str))
        if report:
            from .report import write_report

            write_report(result, tmp)
    return folder
