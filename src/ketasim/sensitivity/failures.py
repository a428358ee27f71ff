"""Samples that give no value, and analyses that survive them and interruptions.

A global analysis runs the model tens of thousands of times over wide parameter ranges; some
corners of that space make the solver fail or leave an endpoint undefined (no responders, so no
relapse time). Those samples are kept, not hidden:

- ``describe_failures`` lists every failing sample (row, parameter values, the outputs without a
  value) and says where in parameter space they lie: for each parameter, how many failures sit in
  the bottom and top tenth of its sampled range against the tenth expected by chance (a one-sided
  binomial test, Bonferroni-corrected over the parameters).
- ``complete_groups`` keeps the whole sampling units (a Saltelli base sample's ``D + 2`` rows, a
  Morris trajectory's ``D + 1``) in which every run gave a value. The estimators stay valid on the
  remaining units; the indices then describe the region where the model gives a value, and the
  results say how many units were excluded.
- ``Checkpoint`` stores the outputs of finished blocks as a run goes, so an interrupted analysis
  resumes where it stopped (``--resume``) with the same result as one uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from .outputs import SensitivityError

#: how much of each range counts as its "extreme" when locating failures
EXTREME = 0.1
#: family-wise level of the test that a parameter's extremes hold more failures than chance
ALPHA = 0.01


def complete_groups(y: np.ndarray, group_rows: int) -> np.ndarray:
    """(n_rows,) True for the rows of every group of ``group_rows`` consecutive rows whose values
    are all finite (``y`` is one output's column)."""
    ok = np.isfinite(y).reshape(-1, group_rows).all(axis=1)
    return np.repeat(ok, group_rows)


def describe_failures(X_unit: np.ndarray, X_file: np.ndarray, Y: np.ndarray, names, labels) -> dict:
    """Every sample with an output without a value, and which parameters' extremes hold them.

    ``X_unit`` is the sample matrix scaled to [0, 1] per parameter on its sampling scale (log for
    log-uniform parameters), ``X_file`` the same samples in file units, ``Y`` the outputs (NaN: no
    value), ``names`` the parameters and ``labels`` the outputs.
    """
    from scipy.stats import binomtest

    missing = ~np.isfinite(Y)
    rows = np.flatnonzero(missing.any(axis=1))
    info = {"count": int(rows.size), "runs": int(len(Y)), "fraction": float(rows.size / max(len(Y), 1)),
            "per_output": {label: int(missing[:, j].sum()) for j, label in enumerate(labels)},
            "samples": [{"row": int(i), "outputs_without_value": [labels[j] for j in np.flatnonzero(missing[i])],
                         "parameters": {n: float(x) for n, x in zip(names, X_file[i])}} for i in rows],
            "where": []}
    if rows.size == 0:
        return info
    level = ALPHA / (2 * len(names))  # two ends per parameter
    for k, name in enumerate(names):
        u = X_unit[rows, k]
        for end, count in (("bottom", int(np.sum(u <= EXTREME))), ("top", int(np.sum(u >= 1.0 - EXTREME)))):
            p = binomtest(count, rows.size, EXTREME, alternative="greater").pvalue
            if p < level:
                info["where"].append({"parameter": name, "end": end, "failures_there": count,
                                      "fraction_of_failures": count / rows.size, "expected_fraction": EXTREME,
                                      "p_value": float(p)})
    info["where"].sort(key=lambda w: (w["p_value"], -w["fraction_of_failures"]))
    return info


def failure_sentences(info: dict, limit: int = 5) -> list[str]:
    """Plain statements of where the failures lie (for notes and the report)."""
    if not info["count"]:
        return []
    lines = [f"{info['count']} of {info['runs']} runs ({100 * info['fraction']:.2g} %) gave no value for at least one "
             "output (solver failure or an undefined endpoint); each is listed in sensitivity.json (failures.samples)"]
    for w in info["where"][:limit]:
        lines.append(f"{100 * w['fraction_of_failures']:.0f} % of them have {w['parameter']} in the {w['end']} "
                     f"tenth of its sampled range (10 % expected by chance; p = {w['p_value']:.2g})")
    if not info["where"]:
        lines.append("no parameter's extremes hold more of them than chance would")
    return lines


class Checkpoint:
    """Outputs of finished blocks, kept in one ``.npz`` file next to the results.

    ``fingerprint`` identifies the analysis (its samples and everything that shapes a run): a
    resumed run refuses a checkpoint written for another analysis. Saving is atomic (write, then
    rename) and at most every ``every_s`` seconds, and always on ``flush``.
    """

    def __init__(self, path: str | Path, fingerprint: str, *, resume: bool, every_s: float = 5.0):
        self.path, self.fingerprint, self.every_s = Path(path), fingerprint, every_s
        self.blocks: dict[int, np.ndarray] = {}
        self._saved_at = time.monotonic()
        self._dirty = False
        if resume:
            if not self.path.is_file():
                raise SensitivityError(f"--resume: no checkpoint at {self.path}; run without --resume to start")
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["fingerprint"]) != fingerprint:
                    raise SensitivityError(f"--resume: {self.path} was written by a different analysis (target, "
                                           "outputs, parameters, samples, seed or solver settings differ); run "
                                           "without --resume to start again")
                self.blocks = {int(k[1:]): data[k] for k in data.files if k.startswith("b")}

    @staticmethod
    def fingerprint_of(samples: np.ndarray, context: str) -> str:
        h = hashlib.sha256(np.ascontiguousarray(samples, dtype=float).tobytes())
        h.update(context.encode())
        return h.hexdigest()

    def add(self, index: int, values: np.ndarray) -> None:
        self.blocks[index] = np.asarray(values, dtype=float)
        self._dirty = True
        if time.monotonic() - self._saved_at >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp-{os.getpid()}.npz")
        np.savez(tmp, fingerprint=np.array(self.fingerprint), **{f"b{i}": v for i, v in self.blocks.items()})
        os.replace(tmp, self.path)
        self._saved_at, self._dirty = time.monotonic(), False

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
