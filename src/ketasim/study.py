"""Virtual replicates of an event data set's study: ``ketasim trial --dataset`` and the VPC.

Each ID (or occasion) of a data set keeps its doses, covariates and observation times; ``replicates``
virtual patients receive that design, each with the model's between-patient variability in every
parameter (the population sampler's draws, as in trials) and the mapping's residual error added at
each observation, ``DV = IPRED (1 + p e1) + a e2``. Replicate ``r`` of every ID together is one
simulated study, the data set as it might have come out again (what Simulx or PsN's SSE simulate
from a NONMEM data set). Covariates the data set does not give stay at ketasim's defaults.

>>> import io
>>> from ketasim.dataset import read_dataset
>>> data = read_dataset(io.StringIO("ID,TIME,EVID,AMT,CMT,DV\\n1,0,1,35,2,.\\n1,1,0,.,.,40\\n2,0,1,70,2,.\\n2,1,0,.,.,90\\n"))
>>> sim = simulate_study(data, replicates=20)
>>> sim.dv.shape, bool((sim.ipred[:, 1] > sim.ipred[:, 0]).mean() > 0.9)
((20, 2), True)
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

#: the simulated percentiles a summary gives per output and time
SUMMARY_PERCENTILES = (5.0, 50.0, 95.0)


@dataclass(frozen=True)
class StudySimulation:
    """Replicates of a data set's study: ``observed`` holds one row per observation row of the file
    (ID, occasion, row, time_h, sim_time, output, dv, stratum), ``ipred`` and ``dv`` one column per
    such row and one row per replicate; ``pred`` the typical patient's prediction per row (NaN
    unless asked for)."""

    dataset: Dataset
    observed: pd.DataFrame
    ipred: np.ndarray
    dv: np.ndarray
    pred: np.ndarray
    seed: int

    @property
    def replicates(self) -> int:
        return self.dv.shape[0]

    @property
    def failed_studies(self) -> int:
        """Simulated studies in which the solver did not finish some patient (their IPRED is NaN)."""
        return int(np.isnan(self.ipred).any(axis=1).sum())

    def table(self) -> pd.DataFrame:
        """Long form: one row per replicate and observation, with units."""
        from .model.system import default_model

        units = {v.name: v.unit for v in default_model().outputs}
        n = len(self.observed)
        frame = pd.DataFrame({
            "replicate": np.repeat(np.arange(1, self.replicates + 1), n),
            "ID": np.tile(self.observed["ID"].to_numpy(), self.replicates),
            "occasion": np.tile(self.observed["occasion"].to_numpy(), self.replicates),
            "row": np.tile(self.observed["row"].to_numpy(), self.replicates),
            "time [h]": np.tile(self.observed["time_h"].to_numpy(dtype=float), self.replicates),
            "output": np.tile(self.observed["output"].to_numpy(), self.replicates),
            "unit": np.tile([units.get(o, "") for o in self.observed["output"]], self.replicates),
            "IPRED": self.ipred.ravel(), "DV": self.dv.ravel()})
        frame["stratum"] = np.tile(self.observed["stratum"].to_numpy(), self.replicates)
        return frame

    def summary(self) -> pd.DataFrame:
        """Per output, stratum and observation time: the simulated DV's mean, SD and percentiles
        over replicates and IDs, the observed mean and count where the file has DVs."""
        records = []
        keys = ["output", "stratum", "time_h"]
        for (output, stratum, time), group in self.observed.groupby(keys, sort=True):
            index = group.index.to_numpy()
            sim = self.dv[:, index].ravel()
            sim = sim[np.isfinite(sim)]
            obs = group["dv"].to_numpy(dtype=float)
            obs = obs[np.isfinite(obs)]
            record: dict[str, Any] = {"output": output, "stratum": stratum, "time [h]": float(time),
                                      "ids": int(len(index)), "simulated": int(sim.size),
                                      "simulated_mean": float(sim.mean()) if sim.size else np.nan,
                                      "simulated_sd": float(sim.std(ddof=1)) if sim.size > 1 else np.nan}
            for q in SUMMARY_PERCENTILES:
                record[f"simulated_p{q:g}"] = float(np.percentile(sim, q)) if sim.size else np.nan
            record["observed"] = int(obs.size)
            record["observed_mean"] = float(obs.mean()) if obs.size else np.nan
            records.append(record)
        return pd.DataFrame(records)

    def events(self) -> pd.DataFrame:
        """The file's rows repeated per replicate (column ``REP`` first), each observation row's DV
        the simulated one and ``IPRED`` beside it: R simulated studies for NONMEM, nlmixr2 or Monolix."""
        if self.dataset.table is None:
            raise ScenarioError("--format", "nonmem needs the data set as a table (read from a file)")
        base = self.dataset.table.copy()
        if "DV" not in base.columns:
            base["DV"] = "."
        base["IPRED"] = "."
        # rows without a DV in the file (EVID 2, MDV 1) keep none: the design of what was measured stays
        measured = np.isfinite(self.observed["dv"].to_numpy(dtype=float))
        at = self.observed["row"].to_numpy() - 2
        studies = []
        for r in range(self.replicates):
            study = base.copy()
            study.iloc[at[measured], study.columns.get_loc("DV")] = [repr(float(v)) for v in self.dv[r, measured]]
            study.iloc[at, study.columns.get_loc("IPRED")] = [repr(float(v)) for v in self.ipred[r]]
            study.insert(0, "REP", r + 1)
            studies.append(study)
        return pd.concat(studies, ignore_index=True)

    def write(self, folder: str | Path, *, events: bool = False) -> Path:
        """``simulated.parquet``, ``summary.csv``, ``summary.json``, ``manifest.json``, ``report.html``
        (and ``dataset.csv`` with ``events``), atomically."""
        from .dataset import write_events
        from .output import atomic_folder, write_csv_with_disclaimer
        from .result import DISCLAIMER

        summary = self.summary()
        frames = self.events() if events else None
        with atomic_folder(folder) as tmp:
            self.table().to_parquet(tmp / "simulated.parquet", index=False)
            write_csv_with_disclaimer(summary, tmp / "summary.csv")
            (tmp / "summary.json").write_text(json.dumps({
                "disclaimer": DISCLAIMER, "dataset": self.dataset.source, "replicates": self.replicates,
                "ids": int(self.observed["ID"].nunique()), "observation_rows": len(self.observed),
                "failed_studies": self.failed_studies,
                "by_time": json.loads(summary.to_json(orient="records"))}, indent=2))
            (tmp / "manifest.json").write_text(json.dumps({
                "command": "ketasim trial --dataset", "dataset": self.dataset.source, "replicates": self.replicates,
                "seed": self.seed, "disclaimer": DISCLAIMER}, indent=2))
            if frames is not None:
                write_events(frames, tmp / "dataset.csv")
            _write_report(self, summary, tmp)
        return Path(folder)


def simulate_study(dataset: Dataset, params=None, replicates: int = 100, seed: int = 0, mechanisms=None,
                   stratify: str | None = None, typical: bool = False) -> StudySimulation:
    """``replicates`` simulated studies of the data set's design (see the module); ``stratify`` names
    a column whose value labels each row; ``typical`` also computes each row's typical-patient
    prediction (PRED)."""
    from .engine import build_batch_problem, build_problem, solve
    from .model.mechanisms import with_mechanisms
    from .model.system import default_model
    from .params import ParameterSet, load_parameters
    from .population import PopulationSampler, PopulationSpec
    from .scenario import PatientColumns, Scenario
    from .simulate import observe_batch

    if isinstance(replicates, bool) or not isinstance(replicates, int) or not 1 <= replicates <= 10_000:
        raise ScenarioError("replicates", f"{replicates!r} must be a whole number in 1..10000")
    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    params = with_mechanisms(params, mechanisms)
    errors = dataset.mapping["error"]
    observed = pd.concat([p.observations.assign(ID=p.id, occasion=p.occasion, patient=k, sim_time=p.simulation_times)
                          for k, p in enumerate(dataset.patients)], ignore_index=True)
    observed["stratum"] = "all"
    if stratify is not None:
        column = stratify.strip().upper()
        if dataset.table is None or column not in dataset.table.columns:
            allowed = ", ".join(dataset.table.columns) if dataset.table is not None else "none"
            raise ScenarioError("--stratify", f"{stratify!r} is not a column of the data set; allowed: {allowed}")
        observed["stratum"] = dataset.table[column].iloc[observed["row"].to_numpy() - 2].astype(str).to_numpy()
    missing = sorted(set(observed["output"]) - set(errors))
    if missing:
        raise ScenarioError("--mapping", f"no residual error model in [error] for {', '.join(missing)}")
    model = default_model()
    # only its parameter variability is used (the covariates are the data set's)
    sampler = PopulationSampler(PopulationSpec.from_dict({"n": 1, "preset": "healthy-volunteers"}), params)
    ipred = np.full((replicates, len(observed)), np.nan)
    simulated = np.full((replicates, len(observed)), np.nan)
    pred = np.full(len(observed), np.nan)
    for k, p in enumerate(dataset.patients):
        rows = np.flatnonzero(observed["patient"].to_numpy() == k)
        if rows.size == 0:
            continue
        times = np.unique(observed.loc[rows, "sim_time"].to_numpy(dtype=float))  # from the occasion's start
        wanted = tuple(sorted(set(observed.loc[rows, "output"])))
        scenario = Scenario.from_dict(p.scenario)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,)))
        parameters = sampler.parameter_columns(rng, replicates)
        problem = build_batch_problem(scenario, PatientColumns.of([scenario.patient] * replicates), parameters, model,
                                      t_out=times)
        states, status, _ = solve(problem)
        outputs = observe_batch(model, states, problem.parameter_names, problem.theta, wanted=wanted)
        at = np.searchsorted(times, observed.loc[rows, "sim_time"].to_numpy(dtype=float))
        if typical:
            one = build_problem(scenario, params, model, t_out=times)
            states_t, status_t, _ = solve(one)
            typical_out = observe_batch(model, states_t, one.parameter_names, one.theta, wanted=wanted)
            for j, (row, output) in enumerate(zip(rows, observed.loc[rows, "output"])):
                pred[row] = typical_out[output][0, at[j]] if status_t[0] == 0 else np.nan
        for j, (row, output) in enumerate(zip(rows, observed.loc[rows, "output"])):
            ipred[:, row] = np.where(status == 0, outputs[output][:, at[j]], np.nan)
            e = errors[output]
            simulated[:, row] = (ipred[:, row] * (1.0 + e["proportional"] * rng.standard_normal(replicates))
                                 + e["additive"] * rng.standard_normal(replicates))
    return StudySimulation(dataset=dataset, observed=observed, ipred=ipred, dv=simulated, pred=pred, seed=seed)


def _write_report(sim: StudySimulation, summary: pd.DataFrame, folder: Path) -> None:
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .model.system import default_model
    from .plots import png_base64
    from .trial.report import _write_page

    units = {v.name: v.unit for v in default_model().outputs}
    figures = []
    for (output, stratum), g in summary.groupby(["output", "stratum"], sort=False):
        fig, ax = plt.subplots(figsize=(8, 3.4))
        t = g["time [h]"].to_numpy()
        ax.fill_between(t, g["simulated_p5"], g["simulated_p95"], color="tab:blue", alpha=0.2,
                        label="simulated DV: 5-95 %")
        ax.plot(t, g["simulated_p50"], "-", color="tab:blue", label="simulated DV: median")
        rows = sim.observed[(sim.observed["output"] == output) & (sim.observed["stratum"] == stratum)]
        ax.plot(rows["time_h"], rows["dv"], ".", color="k", alpha=0.6, label="the data set's DV")
        ax.set_xlabel("time [h]")
        ax.set_ylabel(f"{output} [{units.get(output, '')}]")
        where = "" if stratum == "all" else f", {stratum}"
        ax.set_title(f"{output}{where}: {sim.replicates} simulated studies")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        figures.append((output if stratum == "all" else f"{output}, {stratum}", png_base64(fig)))
    imgs = "\n".join(f"<figure><img alt='{html.escape(o)}' src='data:image/png;base64,{b}'>"
                     f"<figcaption>{html.escape(o)}</figcaption></figure>" for o, b in figures)
    body = (f"<p>Data set {html.escape(sim.dataset.source)}: each ID's doses, covariates and observation times, "
            f"{sim.replicates} simulated studies with the model population's between-patient variability and the "
            f"mapping's residual error.</p>{imgs}<h2>By time</h2>"
            f"{summary.to_html(index=False, float_format=lambda x: f'{x:.4g}')}")
    _write_page(folder, "ketasim trial from a data set", "Simulated studies describe a model population; they say "
                                                         "nothing about what any person should receive.", body)
