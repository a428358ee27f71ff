"""The ``ketasim`` command line (Typer). Bad input exits with status 2 and a message naming the field."""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .errors import KetasimError
from .result import DISCLAIMER

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ketasim: mechanistic simulation of ketamine's antidepressant action. "
                       "For research and teaching only; not medical advice. Exit status: 0 ok, "
                       "2 bad input, 3 solver failure.")
err = Console(stderr=True, soft_wrap=True)


EXIT_BAD_INPUT = 2
EXIT_SOLVER_FAILED = 3


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code=code)


@contextmanager
def _refusals(out: Path | None = None):
    """Bad input and unwritable output folders end the command with exit 2 and a message, never a traceback."""
    try:
        yield
    except KetasimError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--out {out}: cannot write the results: {exc.strerror or exc}")
    except ValueError as exc:  # e.g. an observation time past the end of its scenario
        _fail(str(exc))


def _mechanisms_option(text: Optional[str]) -> tuple[str, ...] | None:
    """``--mechanisms a,b`` checked against the registry (exit 2 naming the option), or None."""
    from .model.mechanisms import check_mechanisms

    if text is None:
        return None
    try:
        return check_mechanisms([n.strip() for n in text.split(",") if n.strip()], "--mechanisms")
    except ValueError as exc:
        _fail(str(exc))


def _check_dask_options(workers: Optional[int], scheduler: Optional[str]) -> None:
    if workers is not None and scheduler is not None:
        _fail("give either --workers (a local Dask cluster) or --scheduler (an existing one), not both")
    if workers is not None and not 1 <= workers <= 256:
        _fail(f"--workers: {workers} must be in 1..256")


def _quick_scenario(drug: str, route: str, dose: str, infusion: Optional[str], days: float) -> dict:
    entry = {"drug": drug, "route": route, "amount": dose, "at": ["0 h"]}
    if infusion:
        entry["duration"] = infusion
    if not days > 0:
        _fail(f"--days: {days:g} must be greater than 0")
    return {"dose": [entry], "simulation": {"duration": f"{days:g} d", "output_every": "5 min"}}


@app.command()
def simulate(
    scenario: Optional[Path] = typer.Argument(None, help="scenario TOML file (or use --drug/--route/--dose)"),
    out: Path = typer.Option(..., "--out", help="results folder (replaced atomically)"),
    drug: Optional[str] = typer.Option(None, help="quick form: racemic-ketamine | esketamine | arketamine"),
    route: str = typer.Option("iv", help="quick form: iv | im | intranasal | oral | sublingual"),
    dose: Optional[str] = typer.Option(None, help='quick form: amount, e.g. "0.5 mg/kg" or "56 mg"'),
    infusion: Optional[str] = typer.Option(None, "--infusion", help='quick form: IV infusion length, e.g. "40 min"'),
    days: float = typer.Option(7.0, help="quick form: simulated days"),
    params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
    backend: str = typer.Option("cpu", help="cpu (compiled kernel) | jax"),
    mechanisms: Optional[str] = typer.Option(None, "--mechanisms",
                                             help="comma-separated hypotheses the model includes (ketasim mechanisms); "
                                                  "default: the file's [model] table, else the calibrated set"),
    dataset: Optional[Path] = typer.Option(None, "--dataset",
                                           help="a NONMEM-style event data set (CSV): every ID as dosed, predictions "
                                                "at its observation times -> predictions.csv"),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="with --dataset or --format nonmem: TOML "
                                                                   "overriding the column, CMT, DVID and error mapping"),
    format_: str = typer.Option("ketasim", "--format", help="ketasim | nonmem (also write the simulated patient as a "
                                                            "NONMEM-style event table, dataset.csv)"),
    seed: int = typer.Option(0, "--seed", help="with --format nonmem: seed of the residual error in DV"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
):
    """Simulate one scenario and write timeseries, summary, manifest and report to --out (or, with
    --dataset, every patient of an event data set and their predictions)."""
    from .engine import BACKENDS
    from .output import check_output_folder, write_results
    from .params import load_parameters
    from .scenario import Scenario
    from .simulate import simulate as run

    if scenario is not None and drug is not None:
        _fail("give a scenario file or --drug/--dose, not both")
    if format_ not in ("ketasim", "nonmem"):
        _fail(f"--format: {format_!r} is not allowed; allowed: ketasim, nonmem")
    if dataset is not None:
        if scenario is not None or drug is not None:
            _fail("--dataset: give a data set, a scenario file or --drug/--dose, one of them")
        _simulate_dataset(dataset, mapping, out, params, _mechanisms_option(mechanisms), quiet)
        return
    if backend not in BACKENDS:
        _fail(f"--backend: '{backend}' is not allowed; allowed: {', '.join(BACKENDS)}")
    chosen = _mechanisms_option(mechanisms)
    with _refusals(out):
        if scenario is not None:
            sc = Scenario.from_toml(scenario)
        elif drug is not None and dose is not None:
            sc = Scenario.from_dict(_quick_scenario(drug, route, dose, infusion, days))
        else:
            _fail("give a scenario file, or --drug and --dose for the quick form")
        parameter_set = load_parameters(params)
        check_output_folder(out)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=err, disable=quiet, transient=True) as progress:
            task = progress.add_task("simulating (first run compiles the kernel)", total=2)
            result = run(sc, params=parameter_set, backend=backend, mechanisms=chosen)
            if result.status != "ok":
                _fail(f"the solver did not finish ({result.status}); nothing was written", EXIT_SOLVER_FAILED)
            progress.update(task, advance=1, description="writing results and report")
            events = None
            if format_ == "nonmem":
                from .dataset import load_mapping, simulation_events

                events = simulation_events(sc, result, load_mapping(mapping), seed=seed)
            write_results(result, out, events=events)
            progress.update(task, advance=1)
    if not quiet:
        extra = ", dataset.csv" if format_ == "nonmem" else ""
        err.print(f"wrote {out}/ (timeseries.csv, timeseries.parquet, summary.json, manifest.json, report.html{extra})")
        err.print(f"[dim]{DISCLAIMER}[/]")


@app.command()
def trial(
    trial_file: Optional[Path] = typer.Argument(None, metavar="TRIAL", help="trial TOML file ([trial], [population], "
                                                                           "[[arm]]); or --dataset instead"),
    out: Path = typer.Option(..., "--out", help="results folder (replaced atomically)"),
    params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
    workers: Optional[int] = typer.Option(None, help="start a local Dask cluster with this many worker processes"),
    scheduler: Optional[str] = typer.Option(None, help="run on an existing Dask cluster, e.g. tcp://host:8786"),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="patients per chunk (default: by memory)"),
    mechanisms: Optional[str] = typer.Option(None, "--mechanisms",
                                             help="comma-separated hypotheses the model includes (ketasim mechanisms); "
                                                  "default: the file's [model] table, else the calibrated set"),
    params_draws: Optional[Path] = typer.Option(None, "--params-draws",
                                                help="parameter uncertainty: draws.parquet of `ketasim fit --bayes` "
                                                     "(or a CSV like it) or a fit.json with a covariance"),
    draw_block: int = typer.Option(50, "--draw-block", help="patients per parameter draw (with --params-draws)"),
    format_: str = typer.Option("ketasim", "--format", help="ketasim | nonmem (also write the study as a "
                                                            "NONMEM-style event table, dataset.csv)"),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="with --format nonmem or --dataset: TOML "
                                                                   "overriding the CMT, DVID and column mapping"),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="instead of TRIAL: simulate an event data set's "
                                                                   "study (each ID as dosed) --replicates times"),
    replicates: int = typer.Option(100, "--replicates", help="with --dataset: simulated studies"),
    seed: int = typer.Option(0, "--seed", help="with --dataset: seed of the patients and residual errors"),
    stratify: Optional[str] = typer.Option(None, "--stratify", help="with --dataset: a column whose values are "
                                                                   "summarised apart (an arm or study code)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
):
    """Run a virtual clinical trial; write patients.parquet, summary.json, manifest.json and report.html.
    With --dataset instead of TRIAL: simulated studies of the data set's design (simulated.parquet,
    summary.csv/json, report.html; dataset.csv with --format nonmem)."""
    from .output import check_output_folder
    from .params import load_parameters
    from .trial import TrialSpec, run_trial, stream_trial

    if (trial_file is None) == (dataset is None):
        _fail("TRIAL: give a trial file or --dataset FILE, not both" if dataset is not None else
              "TRIAL: give a trial file, or an event data set with --dataset")
    if dataset is not None:
        unused = [flag for flag, value in (("--workers", workers), ("--scheduler", scheduler), ("--chunk-size", chunk_size),
                                           ("--params-draws", params_draws)) if value is not None]
        if unused:
            _fail(f"--dataset: {', '.join(unused)} apply to trial files only")
        _trial_dataset(dataset, out, params, mapping, replicates, seed, stratify, format_, mechanisms, quiet)
        return
    if replicates != 100 or seed != 0 or stratify is not None:
        _fail("--replicates, --seed, --stratify: only with --dataset (a trial file has its own seed)")
    _check_dask_options(workers, scheduler)
    if chunk_size is not None and not 1 <= chunk_size <= 100_000:
        _fail(f"--chunk-size: {chunk_size} must be in 1..100000")
    if format_ not in ("ketasim", "nonmem"):
        _fail(f"--format: {format_!r} is not allowed; allowed: ketasim, nonmem")
    chosen = _mechanisms_option(mechanisms)
    with _refusals(out):
        spec = TrialSpec.load(trial_file)
        parameter_set = load_parameters(params)
        check_output_folder(out)
        options = dict(params=parameter_set, chunk_size=chunk_size, workers=workers, scheduler=scheduler,
                       mechanisms=chosen, params_draws=params_draws, draw_block=draw_block)
        with _patients_progress(f"trial '{spec.name}'", quiet) as (progress, task, report):
            if format_ == "nonmem":  # the event table is made from the whole patients table
                from .dataset import load_mapping, trial_events

                result = run_trial(spec, progress=report, **options)
                progress.update(task, description="writing results and report")
                result.write(out, events=trial_events(spec, result.patients, load_mapping(mapping)))
            else:  # each chunk to patients.parquet and the summary as it comes: memory flat in patients
                result = stream_trial(spec, out, progress=report, **options)
    if not quiet:
        p = result.summary["patients"]
        extra = ", dataset.csv" if format_ == "nonmem" else ""
        err.print(f"wrote {out}/ (patients.parquet, summary.json, manifest.json, report.html{extra}): {p['simulated']} patients, "
                  f"{p['failed']} not finished by the solver")
        err.print(f"[dim]{DISCLAIMER}[/]")


def _trial_dataset(path: Path, out: Path, params: Optional[Path], mapping: Optional[Path], replicates: int, seed: int,
                   stratify: Optional[str], format_: str, mechanisms: Optional[str], quiet: bool) -> None:
    """``trial --dataset``: the data set's study simulated ``replicates`` times (``ketasim.study``)."""
    from .dataset import load_mapping, read_dataset
    from .output import check_output_folder
    from .params import load_parameters
    from .study import simulate_study

    if format_ not in ("ketasim", "nonmem"):
        _fail(f"--format: {format_!r} is not allowed; allowed: ketasim, nonmem")
    if not 1 <= replicates <= 10_000:
        _fail(f"--replicates: {replicates} must be in 1..10000")
    chosen = _mechanisms_option(mechanisms)
    with _refusals(out):
        check_output_folder(out)
        data = read_dataset(path, load_mapping(mapping))
        parameter_set = load_parameters(params)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True, disable=quiet) as progress:
            progress.add_task(f"{replicates} simulated studies of {len(data.patients)} IDs", total=None)
            sim = simulate_study(data, parameter_set, replicates=replicates, seed=seed, mechanisms=chosen,
                                 stratify=stratify)
            sim.write(out, events=format_ == "nonmem")
    if not quiet:
        extra = ", dataset.csv" if format_ == "nonmem" else ""
        err.print(f"wrote {out}/ (simulated.parquet, summary.csv, summary.json, manifest.json, report.html{extra}): "
                  f"{replicates} studies of {len(data.patients)} IDs, {sim.failed_studies} with a patient not finished "
                  "by the solver")
        err.print(f"[dim]{DISCLAIMER}[/]")


def _simulate_dataset(path: Path, mapping: Optional[Path], out: Path, params: Optional[Path], mechanisms, quiet: bool):
    """``simulate --dataset``: predictions.csv (every observation row with IPRED) and manifest.json."""
    from .dataset import load_mapping, predict, read_dataset
    from .output import atomic_folder, check_output_folder, write_csv_with_disclaimer
    from .params import load_parameters
    from .simulate import _version

    with _refusals(out):
        data = read_dataset(path, load_mapping(mapping))
        parameter_set = load_parameters(params)
        check_output_folder(out)
        table = predict(data, parameter_set, mechanisms)
        failed = sorted(set(table.loc[table["status"] != "ok", "ID"].tolist()))
        with atomic_folder(out) as tmp:
            write_csv_with_disclaimer(table, tmp / "predictions.csv")
            (tmp / "manifest.json").write_text(json.dumps({
                "ketasim_version": _version(), "dataset": str(path), "mapping": data.mapping,
                "patients": data.describe(), "parameter_set_sha256": parameter_set.digest(),
                "not_finished_by_the_solver": failed, "disclaimer": DISCLAIMER}, indent=2, default=str))
    if not quiet:
        err.print(f"wrote {out}/ (predictions.csv, manifest.json): {len(data.patients)} patients, {len(table)} "
                  f"observations, {len(failed)} patients not finished by the solver")
        err.print(f"[dim]{DISCLAIMER}[/]")


@app.command("vpc")
def vpc_command(
    path: Path = typer.Argument(..., metavar="DATA", help="event data set (CSV) with observation rows"),
    out: Path = typer.Option(..., "--out", help="results folder (replaced atomically)"),
    replicates: int = typer.Option(200, "--replicates", help="simulated replicates of the study's design (20..10000)"),
    bins: int = typer.Option(8, "--bins", help="time bins when there are more than 12 distinct times"),
    seed: int = typer.Option(0, "--seed", help="seed of the virtual patients and residual errors"),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="TOML overriding the CMT, DVID, error mapping"),
    params: Optional[Path] = typer.Option(None, help="parameter override file (TOML), e.g. a fit's params.toml"),
    mechanisms: Optional[str] = typer.Option(None, "--mechanisms", help="comma-separated hypotheses the model includes"),
    stratify: Optional[str] = typer.Option(None, "--stratify", help="a data set column: bins and a figure per value"),
    pred_corrected: bool = typer.Option(False, "--pred-corrected", help="prediction-corrected VPC (Bergstrand 2011): "
                                                                        "values scaled by the bin's median PRED over "
                                                                        "their own"),
):
    """Visual predictive check: the data set's observed percentiles against the model population's
    (vpc.csv, vpc.json, report.html)."""
    from .dataset import load_mapping, read_dataset
    from .output import check_output_folder
    from .params import load_parameters
    from .vpc import vpc

    chosen = _mechanisms_option(mechanisms)
    with _refusals(out):
        data = read_dataset(path, load_mapping(mapping))
        parameter_set = load_parameters(params)
        check_output_folder(out)
        result = vpc(data, parameter_set, replicates=replicates, seed=seed, n_bins=bins, mechanisms=chosen,
                     stratify=stratify, prediction_corrected=pred_corrected)
        result.write(out)
    inside = result.inside
    err.print(f"wrote {out}/ (vpc.csv, vpc.json, report.html): {int(inside.sum())} of {int(inside.size)} observed "
              "percentiles inside the simulated 95 % intervals")
    err.print(f"[dim]{DISCLAIMER}[/]")


dataset_app = typer.Typer(help="Event data sets (NONMEM style): check how ketasim reads one.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("check")
def dataset_check(
    path: Path = typer.Argument(..., metavar="FILE", help="event data set (CSV)"),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="TOML overriding the column, CMT and DVID mapping"),
):
    """Read a data set and print, per ID, the doses (drug, route), observations (output) and covariates
    ketasim takes from it; exit 2 naming the row and column of anything it cannot read."""
    from .dataset import load_mapping, read_dataset

    with _refusals():
        data = read_dataset(path, load_mapping(mapping))
    ids = len({p.id for p in data.patients})
    occasions = f" ({len(data.patients)} occasions)" if len(data.patients) > ids else ""
    typer.echo(f"{ids} patients{occasions} in {path}; mapping: CMT " + ", ".join(
        f"{k} = {v['drug']} {v['route']}" for k, v in data.mapping["cmt"].items()))
    for p in data.describe():
        doses = ", ".join(f"{n} x {k}" for k, n in p["doses"].items()) or "no doses"
        obs = ", ".join(f"{n} x {k}" for k, n in p["observations"].items()) or "no observations"
        covariates = ", ".join(f"{k} {v}" for k, v in p["patient"].items()) or "default covariates"
        occasion = f" occasion {p['occasion']} (from {p['start [h]']:g} h)" if p["start [h]"] or p["occasion"] > 1 else ""
        typer.echo(f"ID {p['id']}{occasion}: {doses}; {obs}; {covariates}; simulated to {p['duration [h]']:g} h")


def _patients_progress(description: str, quiet: bool):
    """A progress bar of simulated patients with their rate: (progress, task, callback(done, total))."""
    return _progress_bar(description, "patients", quiet)


@contextmanager
def _progress_bar(description: str, unit: str, quiet: bool):
    """A progress bar of ``unit`` done with their rate: (progress, task, callback(done, total))."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn(f"{{task.fields[rate]}} {unit}/s"), TimeRemainingColumn(), TimeElapsedColumn(),
                  console=err, disable=quiet, transient=True) as progress:
        task = progress.add_task(description, total=None, rate="-")
        started = time.perf_counter()

        def report(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

        yield progress, task, report


def _sample_sizes(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        _fail(f"--n: {text!r} must be whole numbers separated by commas, e.g. 20,40,80,160")


@app.command()
def power(
    trial_file: Path = typer.Argument(..., metavar="TRIAL", help="trial TOML file with a [trial.success] table"),
    n: str = typer.Option(..., "--n", help="sample sizes, comma-separated (patients per arm; patients in all for a "
                                           "crossover or randomised-withdrawal trial)"),
    replicates: int = typer.Option(..., "--replicates", help="replicate trials per sample size"),
    out: Path = typer.Option(..., "--out", help="results folder (replaced atomically)"),
    target: float = typer.Option(0.8, "--target", help="the power whose smallest sample size is reported"),
    params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
    workers: Optional[int] = typer.Option(None, help="start a local Dask cluster with this many worker processes"),
    scheduler: Optional[str] = typer.Option(None, help="run on an existing Dask cluster, e.g. tcp://host:8786"),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="patients per chunk (default: by memory)"),
    mechanisms: Optional[str] = typer.Option(None, "--mechanisms", help="comma-separated hypotheses the model includes"),
    params_draws: Optional[Path] = typer.Option(None, "--params-draws",
                                                help="one parameter draw per replicate: draws.parquet of `ketasim fit "
                                                     "--bayes` (or a CSV like it) or a fit.json with a covariance"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
):
    """Power of a trial design over replicate virtual trials; write power.json, power.parquet, manifest.json
    and report.html."""
    from .output import check_output_folder
    from .params import load_parameters
    from .trial import TrialSpec
    from .trial.power import power as run_power

    _check_dask_options(workers, scheduler)
    if chunk_size is not None and not 1 <= chunk_size <= 100_000:
        _fail(f"--chunk-size: {chunk_size} must be in 1..100000")
    sizes = _sample_sizes(n)
    chosen = _mechanisms_option(mechanisms)
    with _refusals(out):
        spec = TrialSpec.load(trial_file)
        parameter_set = load_parameters(params)
        check_output_folder(out)
        with _patients_progress(f"power of '{spec.name}'", quiet) as (progress, task, report):
            result = run_power(spec, n=sizes, replicates=replicates, params=parameter_set, target=target,
                               chunk_size=chunk_size, workers=workers, scheduler=scheduler, progress=report,
                               mechanisms=chosen, params_draws=params_draws)
            progress.update(task, description="writing results and report")
            result.write(out)
    if not quiet:
        summary = result.summary
        for row in summary["sample_sizes"]:
            pw = row["power"]
            out_line = (f"n = {row['n']:>6}: power {pw['estimate']:.3f} ({pw['lower']:.3f}-{pw['upper']:.3f}), "
                        f"{row['successes']}/{row['replicates']} replicates succeed")
            err.print(escape(out_line))
        smallest = summary["smallest_n_reaching_target"]
        err.print(f"smallest n reaching power {target:g}: {smallest if smallest is not None else 'none of those given'}")
        err.print(f"wrote {out}/ (power.json, power.parquet, manifest.json, report.html)")
        err.print(f"[dim]{DISCLAIMER}[/]")


@app.command()
def optimise(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="optimisation spec (TOML: [optimise], [population], "
                                                             "[regimen], [caps], [label])"),
    out: Path = typer.Option(..., "--out", help="results folder (replaced atomically)"),
    params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
):
    """Search a regimen space for the best endpoint of a virtual population within safety caps, and compare
    it with the label regimen on the same patients; write optimise.json, candidates.parquet, manifest.json
    and report.html."""
    from .output import check_output_folder
    from .params import load_parameters
    from .trial.optimise import OptimiseSpec
    from .trial.optimise import optimise as run_optimise

    with _refusals(out):
        spec = OptimiseSpec.load(spec_file)
        parameter_set = load_parameters(params)
        check_output_folder(out)
        with _progress_bar(f"optimising '{spec.name}'", "regimens", quiet) as (progress, task, report):
            result = run_optimise(spec, params=parameter_set, progress=report)
            progress.update(task, description="writing results and report")
            result.write(out)
    if not quiet:
        summary = result.summary
        err.print(escape(f"{summary['evaluated']} regimens evaluated, {summary['feasible']} within every cap; "
                         f"objective: {summary['objective']}"))
        for name in ("best", "label"):
            entry = summary[name]
            if entry:
                regimen = ", ".join(f"{k} {entry[k]:g}" for k in entry if k.startswith(("amount [", "every [", "count",
                                                                                        "therapy_start")))
                err.print(escape(f"{name}: {regimen}: objective {entry['objective']:.3g}"
                                 f"{'' if entry['feasible'] else ' (breaks a cap)'}"))
        if summary["best"] is None:
            err.print(escape(summary["why_none"]))
        err.print(f"wrote {out}/ (optimise.json, candidates.parquet, manifest.json, report.html)")
        err.print(f"[dim]{DISCLAIMER}[/]")


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="address to listen on"),
          port: int = typer.Option(8000, help="port to listen on"),
          data: Path = typer.Option(Path("ketasim-data"), "--data", help="folder of the run registry and its results"),
          max_patients: int = typer.Option(2000, "--max-patients", help="largest trial (patients in all) the service runs"),
          workers: int = typer.Option(1, "--workers", help="trials run at once, each in its own worker process"),
          scheduler: Optional[str] = typer.Option(None, help="run trial chunks on this Dask cluster, e.g. tcp://host:8786"),
          token: Optional[str] = typer.Option(None, "--token", envvar="KETASIM_TOKEN", show_envvar=True,
                                              help="require 'Authorization: Bearer TOKEN' on the API (16+ characters)"),
          allow_anonymous: bool = typer.Option(False, "--allow-anonymous",
                                               help="listen on a non-loopback address without a token (e.g. behind "
                                                    "an authenticating proxy on another host)"),
          keep_runs: Optional[int] = typer.Option(None, "--keep-runs", help="keep only the newest N finished runs"),
          keep_days: Optional[float] = typer.Option(None, "--keep-days", help="delete finished runs older than D days"),
          keep_simulations: bool = typer.Option(False, "--keep-simulations",
                                                help="also store each page simulation's time series (default: "
                                                     "answered, recorded in the registry, not stored)"),
          data_quota_mb: Optional[float] = typer.Option(None, "--data-quota-mb",
                                                        help="refuse runs that write files (507) once the data folder "
                                                             "holds this many MB")):
    """Start the web service: the page at / and the JSON API (OpenAPI schema at /openapi.json)."""
    import ipaddress
    import logging

    import uvicorn

    from .web import create_app

    if not 1 <= port <= 65535:
        _fail(f"--port: {port} must be in 1..65535")
    if not 1 <= max_patients <= 1_000_000:
        _fail(f"--max-patients: {max_patients} must be in 1..1000000")
    if not 1 <= workers <= 64:
        _fail(f"--workers: {workers} must be in 1..64")
    if keep_runs is not None and keep_runs < 1:
        _fail(f"--keep-runs: {keep_runs} must be at least 1")
    if keep_days is not None and not 0 < keep_days <= 36500:
        _fail(f"--keep-days: {keep_days:g} must be more than 0 (and at most 36500)")
    if data_quota_mb is not None and not data_quota_mb > 0:
        _fail(f"--data-quota-mb: {data_quota_mb:g} must be more than 0")
    if token is not None and len(token) < 16:
        _fail("--token: must have at least 16 characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and token is None and not allow_anonymous:
        _fail(f"--host {host}: another machine could reach the service without a token; give --token (or "
              "KETASIM_TOKEN), or --allow-anonymous behind an authenticating proxy (docs/web.md)")
    try:
        web_app = create_app(data, max_patients=max_patients, scheduler=scheduler, trial_workers=workers, token=token,
                             keep_runs=keep_runs, keep_days=keep_days, keep_simulations=keep_simulations,
                             data_quota_mb=data_quota_mb)
    except (OSError, RuntimeError) as exc:
        _fail(f"--data {data}: cannot open the run registry: {exc}")
    err.print(f"ketasim web service on http://{host}:{port}/ (runs kept in {data}/"
              f"{'; API needs the token' if token else ''})")
    if token:
        err.print(f"open http://{host}:{port}/#token=... (the page keeps the token for the browser tab)")
    err.print(f"[dim]{DISCLAIMER}[/]")
    # our request log instead of uvicorn's access log, which would print query strings (a ?token=)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    requests_log = logging.getLogger("ketasim.web.requests")
    requests_log.addHandler(handler)
    requests_log.setLevel(logging.INFO)
    # idle keep-alive connections stay open 75 s (nginx's default), not uvicorn's 5 s: a client that
    # pauses longer than the server's timeout races the close and sees a dropped connection
    uvicorn.run(web_app, host=host, port=port, log_level="info", access_log=False, timeout_keep_alive=75)


@app.command()
def sensitivity(
    target: Path = typer.Argument(..., metavar="SCENARIO_OR_TRIAL", help="scenario TOML, or trial TOML ([trial] table)"),
    output: list[str] = typer.Option(..., "--output", help="layer.quantity@TIME (e.g. clinical.madrs@24h) for a "
                                     "scenario; [arm:]response_rate@T, remission_rate@T, madrs_change@T or "
                                     "median_time_to_relapse for a trial; repeat for more"),
    out: Path = typer.Option(..., "--out", help="results folder (replaced atomically)"),
    method: str = typer.Option("local", help="local (autodiff, scenarios) | sobol | morris"),
    samples: Optional[int] = typer.Option(None, help="sobol: base samples N (N*(D+2) runs; a power of 2 is best; "
                                          "default 1024); morris: trajectories (N*(D+1) runs; default 50)"),
    parameters: Optional[str] = typer.Option(None, help="comma-separated parameter names and/or layers "
                                             "(default: every parameter with a range)"),
    distribution: str = typer.Option("auto", help="auto (log-uniform for ranges spanning 10x) | uniform | log-uniform"),
    n_per_arm: int = typer.Option(50, "--n-per-arm", help="trials: patients per arm in the trial each sample runs"),
    seed: int = typer.Option(0, help="sampling and bootstrap seed"),
    params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
    workers: Optional[int] = typer.Option(None, help="start a local Dask cluster with this many worker processes"),
    scheduler: Optional[str] = typer.Option(None, help="run on an existing Dask cluster, e.g. tcp://host:8786"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
    resume: bool = typer.Option(False, "--resume", help="sobol/morris: continue an interrupted run from the "
                                "checkpoint kept next to --out (OUT.checkpoint.npz)"),
):
    """Which parameters drive an outcome: local (autodiff), Sobol or Morris; writes sensitivity.json and report.html.

    Global runs keep finished runs in OUT.checkpoint.npz as they go (removed once the results are
    written); after an interruption, the same command with --resume continues where it stopped."""
    from rich.progress import BarColumn, MofNCompleteColumn

    from .output import check_output_folder
    from .params import load_parameters
    from .sensitivity import METHODS, load_target, parse_output_spec
    from .sensitivity import sensitivity as run_sensitivity
    from .sensitivity.failures import failure_sentences

    if method not in METHODS:
        _fail(f"--method: '{method}' is not allowed; allowed: {', '.join(METHODS)}")
    _check_dask_options(workers, scheduler)
    if method == "local" and (samples is not None or workers is not None or scheduler is not None or resume):
        _fail("--samples/--workers/--scheduler/--resume apply to --method sobol or morris, not local")
    checkpoint = out.parent / f"{out.name}.checkpoint.npz"
    if resume and not checkpoint.is_file():
        _fail(f"--resume: no checkpoint at {checkpoint}; run without --resume to start")
    with _refusals(out):
        specs = [parse_output_spec(o) for o in output]
        kind, spec = load_target(target)
        parameter_set = load_parameters(params)
        check_output_folder(out)
        kwargs = {"params": parameter_set, "parameters": parameters.split(",") if parameters else None}
        if method != "local":
            kwargs.update(samples=samples if samples is not None else (1024 if method == "sobol" else 50), seed=seed,
                          n_per_arm=n_per_arm, distribution=distribution, workers=workers, scheduler=scheduler,
                          checkpoint=checkpoint, resume=resume)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=quiet, transient=True) as progress:
            what = "model runs" if kind == "scenario" else f"trials of {n_per_arm} patients per arm"
            task = progress.add_task(f"{method} ({what}; the first run compiles)", total=None)
            if method != "local":
                kwargs["progress"] = lambda done, total: progress.update(task, completed=done, total=total)
            try:
                result = run_sensitivity(spec, specs, method=method, **kwargs)
            except KeyboardInterrupt:
                if method != "local" and checkpoint.is_file():
                    _fail(f"interrupted: the finished runs are kept in {checkpoint}; the same command with --resume "
                          "continues from them", code=130)
                raise
            progress.update(task, description="writing results and report")
            result.write(out)
            if method != "local":
                checkpoint.unlink(missing_ok=True)
    if not quiet:
        for line in failure_sentences(result.failures)[:3]:
            err.print(escape(line))
        first = result.outputs[0]["label"]
        top = ", ".join(p for p, _ in result.ranking(first)[:3])
        err.print(escape(f"wrote {out}/ (sensitivity.json, manifest.json, report.html); most influential for {first}: {top}"))
        err.print(f"[dim]{DISCLAIMER}[/]")


@app.command()
def fit(
    data: Optional[list[Path]] = typer.Argument(None, metavar="DATA...", help="observation tables (CSV or Parquet)"),
    parameters: str = typer.Option(..., "--params", help="comma-separated parameters to fit, e.g. pk.cl_s_ketamine,pk.v_central"),
    out: Path = typer.Option(..., "--out", help="results folder (replaced atomically)"),
    map_: bool = typer.Option(False, "--map", help="maximum a posteriori with priors from the parameter files' ranges"),
    bayes_: bool = typer.Option(False, "--bayes", help="also sample the posterior with NUTS (numpyro)"),
    starts: int = typer.Option(4, help="starting points of the multi-start optimisation (not with --hierarchical, "
                                       "which starts from the file values)"),
    seed: int = typer.Option(0, help="seed of the starting points and of NUTS"),
    samples: int = typer.Option(500, help="NUTS: samples per chain (as many warm-up steps)"),
    base: Optional[Path] = typer.Option(None, "--base-params", help="parameter override file to start from"),
    between_study: bool = typer.Option(False, "--between-study",
                                       help="random effects: a between-study variance for rows sharing a 'group' "
                                            "(Paule-Mandel), so disagreeing studies are reconciled, not picked"),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="an event data set (NONMEM style): its DV rows, "
                                                                   "each ID dosed as its rows say (pooled fit)"),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="with --dataset: TOML overriding the mapping"),
    only: Optional[str] = typer.Option(None, "--outputs", help="comma-separated outputs whose rows are fitted "
                                                               "(default: every row), e.g. pk.ketamine_plasma"),
    hierarchical: bool = typer.Option(False, "--hierarchical",
                                      help="mixed effects: typical values, between-patient variances of the --random "
                                           "parameters and each patient's own estimates (rows need a patient id)"),
    random: Optional[str] = typer.Option(None, "--random", help="with --hierarchical: comma-separated parameters "
                                                                "with a between-patient variance (default: all --params)"),
    vpc_replicates: Optional[int] = typer.Option(None, "--vpc-replicates",
                                                 help="with --dataset: replicates of the report's visual predictive "
                                                      "check with the fitted parameters (default 200; 0: none)"),
):
    """Fit parameters to observation tables; write fit.json, report.html and params.toml to --out
    (with --hierarchical also individual.csv; with --dataset also vpc.csv, the visual predictive check
    of the event data set with the fitted parameters, shown in the report)."""
    import json as _json

    from .calibrate.data import load_observations
    from .calibrate.fit import bayes as run_nuts
    from .calibrate.fit import build_problem, maximise_likelihood, profile_likelihood
    from .calibrate.outputs import draws_table, fit_summary, parameter_file, write_fit_report
    from .output import atomic_folder, check_output_folder
    from .params import load_parameters

    if not 1 <= starts <= 100:
        _fail(f"--starts: {starts} must be in 1..100")
    if not 10 <= samples <= 100_000:
        _fail(f"--samples: {samples} must be in 10..100000")
    names = [n.strip() for n in parameters.split(",") if n.strip()]
    data = list(data or [])
    if not data and dataset is None:
        _fail("DATA: give observation tables, or an event data set with --dataset")
    if random is not None and not hierarchical:
        _fail("--random: only with --hierarchical")
    if vpc_replicates is not None:
        if dataset is None and vpc_replicates:
            _fail("--vpc-replicates: only with --dataset (the check simulates an event data set's design)")
        if vpc_replicates != 0 and not 20 <= vpc_replicates <= 10_000:
            _fail(f"--vpc-replicates: {vpc_replicates} must be 0 (no check) or in 20..10000")
    vpc_replicates = (200 if dataset is not None else 0) if vpc_replicates is None else vpc_replicates
    if hierarchical:
        clash = [flag for flag, on in (("--map", map_), ("--bayes", bayes_), ("--between-study", between_study)) if on]
        if clash:
            _fail(f"--hierarchical: cannot be combined with {', '.join(clash)}")
        from .calibrate.hierarchical import check_random

        with _refusals():  # before the model compiles
            random_names = check_random(names, names if random is None else
                                        [r.strip() for r in random.split(",") if r.strip()])
    with _refusals(out), tempfile.TemporaryDirectory(prefix="ketasim-fit-") as scratch:
        check_output_folder(out)
        parameter_set = load_parameters(base)
        import pandas as pd

        # which file each row came from: a hierarchical fit keeps patient 1 of two files apart
        tables = [load_observations(path).assign(source_table=str(path)) for path in data]
        events = None
        if dataset is not None:  # each ID a scenario of its own next to a table of its DV rows
            from .calibrate.data import observations_from_dataset
            from .dataset import load_mapping, read_dataset

            events = read_dataset(dataset, load_mapping(mapping))
            tables.append(load_observations(observations_from_dataset(events, scratch)).assign(source_table=str(dataset)))
            data.append(dataset)
        table = pd.concat(tables, ignore_index=True)
        if only is not None:  # as NONMEM's ACCEPT on DVID: the other rows are left out
            wanted = [o.strip() for o in only.split(",") if o.strip()]
            unknown = sorted(set(wanted) - set(table["quantity"]))
            if not wanted or unknown:
                _fail(f"--outputs: {', '.join(unknown) or 'empty'}: not among the data's outputs "
                      f"({', '.join(sorted(set(table['quantity'])))})")
            table = table[table["quantity"].isin(wanted)].reset_index(drop=True)
        check = _FitCheck(events, vpc_replicates, seed, sorted(set(table["quantity"])))
        if hierarchical:
            _fit_hierarchical(table, names, random_names, parameter_set, out, [str(p) for p in data], check)
            return
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True) as progress:
            progress.add_task("compiling the model's Jacobian (first run about a minute) and fitting", total=None)
            problem = build_problem(table, names, parameter_set, use_prior=map_)
            result = maximise_likelihood(problem, starts=starts, seed=seed, between_study=between_study)
            result.profiles = profile_likelihood(problem, result)
            posterior = run_nuts(problem, result, warmup=samples, samples=samples, seed=seed) if bayes_ else None
        files = [str(p) for p in data]
        summary = fit_summary(problem, result, parameter_set, files, posterior)
        vpc_result, vpc_html = check.run(summary, parameter_set)
        with atomic_folder(out) as tmp:
            (tmp / "fit.json").write_text(_json.dumps(summary, indent=2))
            if posterior is not None:  # every draw, for carrying parameter uncertainty into trials
                draws_table(posterior, problem, parameter_set).to_parquet(tmp / "draws.parquet", index=False)
            (tmp / "params.toml").write_text(parameter_file(summary, parameter_set, files))
            (tmp / "manifest.json").write_text(_json.dumps({"command": "ketasim fit", "data": files,
                                                            "parameters": names, "disclaimer": DISCLAIMER}, indent=2))
            check.write(vpc_result, tmp)
            write_fit_report(tmp, problem, result, summary, vpc_html)
    for name, e in summary["estimates"].items():
        flag = "" if e["identifiable"] else "  (not identifiable from these data)"
        err.print(f"{name} = {e['value']:.4g} {e['unit']} (file {e['prior_value']:.4g}){flag}")
    extra = "".join(f", {f}" for f, on in (("draws.parquet", bayes_), ("vpc.csv", vpc_result is not None)) if on)
    err.print(f"wrote {out}/ (fit.json, params.toml, report.html{extra})")


@dataclass(frozen=True)
class _FitCheck:
    """The fit report's visual predictive check: the event data set (None without --dataset), its
    replicates (0: none), seed, and the fitted outputs (the check shows only these)."""

    events: object
    replicates: int
    seed: int
    outputs: list[str]

    def run(self, summary: dict, parameter_set):
        """(VPCResult or None, the report's section)."""
        from .calibrate.outputs import fitted_parameters, vpc_section

        if self.events is None:
            return None, vpc_section(None, "the data are observation tables, not an event data set (--dataset), "
                                           "so there is no study design to simulate.")
        if self.replicates == 0:
            return None, vpc_section(None, "--vpc-replicates 0.")
        from .vpc import VPCResult, vpc

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      transient=True) as progress:
            progress.add_task(f"visual predictive check: {self.replicates} replicates of the data set", total=None)
            try:
                full = vpc(self.events, fitted_parameters(summary, parameter_set), replicates=self.replicates,
                           seed=self.seed)
            except KetasimError as exc:  # the fit stands without its check: say why in the report
                err.print(f"[yellow]no visual predictive check: {escape(str(exc))}[/yellow]")
                return None, vpc_section(None, f"the check could not be made: {exc}")
        bins = full.bins[full.bins["output"].isin(self.outputs)].reset_index(drop=True)
        result = VPCResult(bins=bins, replicates=full.replicates, source=full.source)
        return result, vpc_section(result)

    @staticmethod
    def write(result, folder: Path) -> None:
        if result is not None:
            from .output import write_csv_with_disclaimer

            write_csv_with_disclaimer(result.bins, folder / "vpc.csv")


def _fit_hierarchical(table, names: list[str], random: tuple[str, ...], parameter_set, out: Path, files: list[str],
                      check: _FitCheck) -> None:
    """The body of ``fit --hierarchical`` (inside ``fit``'s refusals and scratch folder)."""
    import json as _json

    from .calibrate.fit import build_problem
    from .calibrate.hierarchical import estimate, patients_of
    from .calibrate.outputs import hierarchical_summary, parameter_file, write_hierarchical_report
    from .output import atomic_folder

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("compiling the model's Jacobian (first run about a minute)", total=None)
        problem = build_problem(table, names, parameter_set)
        patients = patients_of(problem)
        progress.update(task, description=f"hierarchical fit of {len(patients)} patients")

        def report(iteration, change):
            progress.update(task, description=f"hierarchical fit of {len(patients)} patients: iteration {iteration}, "
                                              f"largest change {change:.2g}")

        result = estimate(patients, names, random, lower=problem.lower, upper=problem.upper, progress=report)
    summary = hierarchical_summary(result, parameter_set, files)
    individual = result.individual_table([parameter_set[n].value for n in names], [parameter_set[n].unit for n in names])
    vpc_result, vpc_html = check.run(summary, parameter_set)
    with atomic_folder(out) as tmp:
        (tmp / "fit.json").write_text(_json.dumps(summary, indent=2))
        individual.to_csv(tmp / "individual.csv", index=False)
        (tmp / "params.toml").write_text(parameter_file(summary, parameter_set, files))
        (tmp / "manifest.json").write_text(_json.dumps({"command": "ketasim fit --hierarchical", "data": files,
                                                        "parameters": names, "random": list(result.random),
                                                        "disclaimer": DISCLAIMER}, indent=2))
        check.write(vpc_result, tmp)
        write_hierarchical_report(tmp, patients, result, summary, individual, vpc_html)
    for name, e in summary["estimates"].items():
        spread = f", between-patient CV {e['between_patient']['cv']:.3g}" if e.get("between_patient") else ""
        err.print(f"{name} = {e['value']:.4g} {e['unit']} typical (file {e['prior_value']:.4g}){spread}")
    if not result.converged:
        err.print(f"[yellow]not converged after {result.iterations} iterations; see history in fit.json[/yellow]")
    err.print(f"wrote {out}/ (fit.json, individual.csv, params.toml, report.html{', vpc.csv' if vpc_result is not None else ''})")


def _check_table(table, id_column: str, basis_column: str) -> None:
    """Print one line per row of a ``check``/``validate`` table: published, model, accepted interval."""
    for _, r in table.iterrows():
        mark = "yes" if r["within"] else "NO"
        typer.echo(f"{r[id_column]:<36} {r['metric']:<20} {str(r['time']) if r['time'] == r['time'] else '':<7} "
                   f"published {r['published']:>8.4g}  model {r['model']:>8.4g} {r['unit']:<12} "
                   f"accepted {r['low']:>7.4g} .. {r['high']:<7.4g} within: {mark:<3}  ({r[basis_column]})")


def _ids_option(text: Optional[str], table: Path) -> Optional[list[str]]:
    """``--only``'s comma-separated ids (None: every row), each checked against ``table`` before
    anything runs: an unknown one exits 2 naming the flag and the ids the table has."""
    if text is None:
        return None
    from .calibrate import load_observations
    from .calibrate.targets import _only

    ids = [i.strip() for i in text.split(",") if i.strip()]
    try:
        _only(load_observations(table), ids)
    except KetasimError as exc:  # raised for the Python argument ``only``, which is --only here
        _fail(f"--only{str(exc)[len('only'):]}")
    return ids


def _run_check(out: Optional[Path], params: Optional[Path], compute, *, name: str, command: str, id_column: str,
               basis_column: str, count_text: str, write_report=None, mechanisms: Optional[str] = None,
               only: Optional[list[str]] = None) -> None:
    """The body of ``calibrate`` and ``validate``: ``compute(parameter_set)`` gives the table (or the
    table, the parameter set it used and manifest entries), printed a
    row per line and written (CSV, JSON, manifest and, with ``write_report(path, table, params)``, a
    report) atomically into ``out``; the last line is 'K/N <count_text>'. ``only``: the ids checked
    (None: every row), recorded in the manifest so that a partial table is known as one."""
    import json as _json

    from .model.mechanisms import active, with_mechanisms
    from .output import atomic_folder, check_output_folder
    from .params import load_parameters

    chosen = _mechanisms_option(mechanisms)
    try:
        if out is not None:
            check_output_folder(out)
        parameter_set = with_mechanisms(load_parameters(params), chosen)
        table = compute(parameter_set)
        extra = {}
        if isinstance(table, tuple):  # (table, the parameters it was computed with, what the manifest adds)
            table, parameter_set, extra = table
        _check_table(table, id_column, basis_column)
        if out is not None:
            with atomic_folder(out) as tmp:
                table.to_csv(tmp / f"{name}.csv", index=False)
                (tmp / "manifest.json").write_text(_json.dumps({"command": command, "mechanisms": list(active(parameter_set)),
                                                                 "only": only, **extra, "disclaimer": DISCLAIMER}))
                (tmp / f"{name}.json").write_text(table.to_json(orient="records", indent=2))
                if write_report is not None:
                    write_report(tmp / "report.html", table, parameter_set)
    except KetasimError as exc:
        _fail(str(exc))
    typer.echo(f"{int(table['within'].sum())}/{len(table)} {count_text}")


@app.command()
def calibrate(out: Optional[Path] = typer.Option(None, "--out", help="also write calibration.csv, .json and report.html here"),
              params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
              mechanisms: Optional[str] = typer.Option(None, "--mechanisms", help="comma-separated hypotheses "
                                                       "(ketasim mechanisms); default: the calibrated set"),
              fit_gains: bool = typer.Option(False, "--fit-gains", help="with --mechanisms: first scale the "
                                             "variant's own gains by one factor to Murrough 2013's 24-h change"),
              only: Optional[str] = typer.Option(None, "--only", help="comma-separated target ids: check these "
                                                 "alone (default: every target)")):
    """Check the model against every shipped calibration target; ends with 'K/N targets within tolerance'.

    With --mechanisms the same targets are checked for that variant, with the parameters as they are;
    add --fit-gains to calibrate the variant first the way ``ketasim compare`` does (only its own
    mechanisms' gains move, by one common factor; a variant that cannot reach the target says so)."""
    from .calibrate import check, shipped_targets
    from .calibrate.report import write_calibration_report

    if fit_gains and mechanisms is None:
        _fail("--fit-gains: give the variant with --mechanisms")
    targets = _ids_option(only, shipped_targets())  # refused before anything runs (a variant's fit too)

    def compute(p):
        if not fit_gains:
            return check(params=p, only=targets)
        from .compare.variants import Variant, fit_variant
        from .model.mechanisms import active

        fit = fit_variant(Variant("variant", active(p)), p)
        gains = ", ".join(f"{k} = {v:.4g}" for k, v in fit.gains.items()) or "none"
        typer.echo(f"fitted factor {fit.factor:.4g} on the variant's own gains ({gains}): Murrough 2013 24-h change "
                   f"{fit.model:.2f} vs {fit.target:.2f} MADRS points{'; ' + fit.note if fit.note else ''}")
        return check(params=fit.params, only=targets), fit.params, {"fitted_gains": fit.as_dict()}

    _run_check(out, params, compute, name="calibration", command="ketasim calibrate",
               id_column="target", basis_column="tolerance_basis", count_text="targets within tolerance",
               write_report=write_calibration_report, mechanisms=mechanisms, only=targets)


@app.command()
def validate(out: Optional[Path] = typer.Option(None, "--out", help="also write validation.csv and .json here"),
             params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
             mechanisms: Optional[str] = typer.Option(None, "--mechanisms", help="comma-separated hypotheses "
                                                      "(ketasim mechanisms); default: the calibrated set"),
             only: Optional[str] = typer.Option(None, "--only", help="comma-separated case ids: predict these "
                                                "alone (default: every case)")):
    """Predict every shipped validation result (never fitted); ends with 'K/N validation results within range'."""
    from .calibrate import shipped_validation
    from .calibrate import validate as run_validation

    cases = _ids_option(only, shipped_validation())
    _run_check(out, params, lambda p: run_validation(params=p, only=cases), name="validation", command="ketasim validate",
               id_column="case", basis_column="accept", count_text="validation results within range",
               mechanisms=mechanisms, only=cases)


@app.command("compare")
def compare_command(
    out: Path = typer.Option(..., "--out", help="results folder: compare.json, compare.csv, variants.csv, manifest.json, "
                                                "report.html"),
    variants: Optional[str] = typer.Option(None, "--variants", help="comma-separated variants, each 'calibrated' or "
                                           "mechanisms joined by '+' (e.g. calibrated,glun2b_eef2,disinhibition+opioid); "
                                           "default: the calibrated set, each route alone, and the calibrated set plus each "
                                           "other mechanism"),
    experiments: Optional[Path] = typer.Option(None, "--experiments", help="experiments table (CSV); default: the "
                                               "shipped discriminating experiments"),
    params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
    fit: bool = typer.Option(True, "--fit/--no-fit", help="calibrate each variant's own gains to Murrough 2013 "
                             "first (default) or keep them as they are"),
    design_file: Optional[Path] = typer.Option(None, "--design", help="design file: two hypotheses and candidate "
                                               "experiments to rank by how well they separate them")):
    """Compare hypotheses: calibrate each variant alike, predict every discriminating experiment, score them.

    Prints the variants best first (log-likelihood, AIC, BIC, Akaike weight) and, per experiment, the
    variants that explain it. The experiments are evidence, never fitted. With --design, ranks the
    design file's candidate experiments by the patients per arm needed to tell its two hypotheses apart."""
    from .compare import compare, parse_variants
    from .output import check_output_folder

    if design_file is not None:
        if variants is not None or experiments is not None:
            _fail("--design: the design file names its hypotheses and candidates; leave out --variants and --experiments")
        _design_command(design_file, out, params, fit)
        return
    with _refusals(out):
        chosen = parse_variants(variants) if variants is not None else None
        check_output_folder(out)
        with _status("comparing (first run compiles the kernel)") as say:
            result = compare(chosen, experiments, params=params, fit=fit, progress=say)
        result.write(out)
    for _, r in result.variants.iterrows():
        typer.echo(f"{r['variant']:<38} log L {r['log_likelihood']:>8.2f}  k {r['k']}  AIC {r['aic']:>7.2f}  "
                   f"weight {r['akaike_weight']:.3f}  explains {r['explained [rows]']}/{r['observations']} rows"
                   f"{_fit_remark(r['reaches_fit_target'])}")
    for _, e in result.experiments().iterrows():
        typer.echo(f"{e['experiment']:<30} explained by: {', '.join(e['explained_by']) or 'none'}")
    typer.echo(f"wrote {out}/compare.json, compare.csv, variants.csv, manifest.json and report.html")
    typer.echo(DISCLAIMER)


@contextmanager
def _status(first: str):
    """A transient spinner on stderr; yields the function that replaces its line (a long run's progress)."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task(first, total=None)
        yield lambda text: progress.update(task, description=text)


def _fit_remark(reached) -> str:
    if reached is None:
        return "  (gains not fitted)"
    return "" if reached else "  (cannot reach the fitting target)"


def _design_command(design_file: Path, out: Path, params: Optional[Path], fit: bool) -> None:
    from .compare.design import DesignSpec, design
    from .output import check_output_folder

    with _refusals(out):
        spec = DesignSpec.load(design_file)
        check_output_folder(out)
        with _status("designing (first run compiles the kernel)") as say:
            result = design(spec, params=params, fit=fit, progress=say)
        result.write(out)
    for _, r in result.table.iterrows():
        n = r["patients per arm"]
        typer.echo(f"{r['candidate']:<48} {r['preset']:<20} {r['assessment']:<6} difference "
                   f"{r['difference [MADRS points]']:>6.2f} MADRS points (SD {r['between-patient sd [MADRS points]']:.1f})"
                   f"  patients per arm: {'never' if n == float('inf') else math.ceil(n)}")
    typer.echo(f"wrote {out}/design.json, design.csv, manifest.json and report.html")
    typer.echo(DISCLAIMER)


@app.command("mechanisms")
def mechanisms_command(as_json: bool = typer.Option(False, "--json", help="machine-readable output")):
    """List the hypotheses of the antidepressant action: module, equations, sources, predictions."""
    import json as _json

    from .model.mechanisms import DEFAULT_MECHANISMS, MECHANISMS

    rows = [{"name": m.name, "title": m.title, "kind": m.kind, "calibrated_model": m.name in DEFAULT_MECHANISMS,
             "module": m.module, "switch": m.switch, "own_gain": m.gain, "needs_layers": list(m.needs_layers),
             "equations": m.equations, "sources": list(m.sources), "predicts": list(m.predicts)}
            for m in MECHANISMS.values()]
    if as_json:
        typer.echo(_json.dumps({"mechanisms": rows, "disclaimer": DISCLAIMER}, indent=2))
        return
    for r in rows:
        state = "on in the calibrated model" if r["calibrated_model"] else "off unless chosen"
        typer.echo(f"{r['name']} - {r['title']} ({r['kind']}; {state})")
        typer.echo(f"  module:    {r['module']}   switch: {r['switch']}   own gain: {r['own_gain'] or '-'}")
        typer.echo(f"  equations: {r['equations']}")
        for src in r["sources"]:
            typer.echo(f"  source:    {src}")
        for pred in r["predicts"]:
            typer.echo(f"  predicts:  {pred}")
    typer.echo("choose with [model] mechanisms = [...] in a scenario or trial file, or --mechanisms a,b")
    typer.echo(DISCLAIMER)


@app.command("nca")
def nca_command(table: Path = typer.Argument(..., help="CSV or Parquet table of concentrations (e.g. a timeseries.csv)"),
                concentration: str = typer.Option(..., "--concentration",
                                                  help="the concentration column, e.g. 'pk.ketamine_plasma [ng/mL]'; "
                                                       "several separated by ';', or 'all' (every ng/mL column)"),
                time: str = typer.Option("time [h]", "--time", help="the time column"),
                id_column: Optional[str] = typer.Option(None, "--id", help="a column naming each profile (patient)"),
                dose_times: Optional[str] = typer.Option(None, "--dose-times",
                                                         help="dosing times, e.g. '0 h,3.5 d': one NCA per interval"),
                tau: Optional[str] = typer.Option(None, "--tau", help="length of the last dosing interval, e.g. '3.5 d'"),
                out: Optional[Path] = typer.Option(None, "--out", help="write the results as CSV here")):
    """Non-compartmental analysis: Cmax, Tmax, AUClast, lambda_z, AUCinf, t1/2 (and per dosing interval
    Ctrough, AUCtau, accumulation ratio) of each profile in a table."""
    import pandas as pd

    from . import nca
    from .output import write_text_atomically
    from .units import parse_time

    with _refusals(out):
        if not table.is_file():
            raise nca.NCAError("TABLE", f"{table} is not a file")
        try:
            df = pd.read_parquet(table) if table.suffix == ".parquet" else pd.read_csv(table, comment="#")
        except (ValueError, OSError) as exc:
            raise nca.NCAError("TABLE", f"{table}: cannot read it as {'Parquet' if table.suffix == '.parquet' else 'CSV'}: "
                                        f"{exc}") from None
        doses = [parse_time(x.strip(), "--dose-times") for x in dose_times.split(",")] if dose_times else None
        tau_h = parse_time(tau, "--tau") if tau else None
        if (doses or tau_h) and nca.column_unit(time) not in ("h", ""):
            raise nca.NCAError("--time", f"{time!r}: dosing times are in hours, so the time column must be too")
        if tau_h is not None and doses is None:
            raise nca.NCAError("--tau", "needs --dose-times")
        wanted = (nca.concentration_columns(df) if concentration.strip() == "all"
                  else [c.strip() for c in concentration.split(";") if c.strip()])
        result = nca.tables(df, time=time, concentrations=wanted, id_column=id_column, dose_times=doses, tau=tau_h)
        if out is not None:  # written whole or not at all
            if out.is_dir():
                raise nca.NCAError("--out", f"{out} is a folder; give a file name such as nca.csv")
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomically(out, f"# {DISCLAIMER}\n" + result.to_csv(index=False))
    shown = [c for c in result.columns if c.split(" [")[0] in ("output", "id", "interval", "cmax", "tmax", "auc_last",
                                                                "auc_inf", "half_life", "ctrough", "accumulation_ratio")]
    typer.echo(result[shown].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if out is not None:
        err.print(f"wrote {out}")
    err.print(f"[dim]{DISCLAIMER}[/]")


@app.command()
def cite(params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)"),
         as_json: bool = typer.Option(False, "--json", help="machine-readable output")):
    """List the source of every parameter the model uses."""
    from .params import load_parameters

    try:
        parameter_set = load_parameters(params)
    except KetasimError as exc:
        _fail(str(exc))
    citations = parameter_set.citations()
    if as_json:
        typer.echo(json.dumps(citations, indent=2))
        return
    for source, names in sorted(citations.items()):
        typer.echo(source)
        for name in names:
            p = parameter_set[name]
            typer.echo(f"    {name} = {p.value:g} {p.unit}")


@app.command("export-sbml")
def export_sbml_command(scenario: Path = typer.Argument(..., help="scenario TOML file"),
                        out: Path = typer.Option(..., "--out", help="SBML file to write (e.g. model.xml)"),
                        params: Optional[Path] = typer.Option(None, help="parameter override file (TOML)")):
    """Export the model with the scenario's patient and doses as SBML Level 3 Version 2."""
    from .params import load_parameters
    from .sbml import consistency_report, write_sbml

    try:
        path = write_sbml(scenario, out, params=load_parameters(params))
        warnings = consistency_report(path.read_text())
    except KetasimError as exc:
        _fail(str(exc))
    err.print(f"wrote {path} (libsbml: 0 errors, {len(warnings)} unit and modelling-practice warnings; "
              "see docs/sbml.md)")


@app.command("export-petab")
def export_petab_command(dataset: Path = typer.Argument(..., help="data set TOML (scenario + observations)"),
                         out: Path = typer.Option(..., "--out", help="folder for the PEtab problem")):
    """Export a calibration data set as a PEtab problem (SBML, conditions, observables, measurements, parameters)."""
    from .petab import write_petab

    try:
        write_petab(dataset, out)
    except KetasimError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--out {out}: cannot write: {exc.strerror or exc}")
    err.print(f"wrote {out}/problem.yaml and its tables")


@app.command()
def schema():
    """Print the JSON Schema of scenario files."""
    from .scenario import scenario_schema

    typer.echo(json.dumps(scenario_schema(), indent=2))


def main() -> None:  # console-script entry point
    from .engine import limit_library_threads

    limit_library_threads()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
