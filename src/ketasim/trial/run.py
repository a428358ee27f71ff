"""Running a virtual trial: patients drawn, simulated in chunks, read out at the assessments.

A chunk (a range of patient indices of one sequence) is a pure function of the trial, the parameter
set and the indices, so chunks can run in any order, in this process or on Dask workers, and the
patients table is the same bit for bit. Memory stays flat in N: a chunk's states are reduced to its
rows before the next chunk starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Sequence as ListOf
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ..engine import STATUS_MESSAGES, SolverSettings, build_batch_problem, solve
from ..model.mechanisms import idle_states
from ..model.system import Model, default_model
from ..nca import auc_linear_up_log_down
from ..params import ParameterSet
from ..population import Cohort, PopulationSampler
from ..population.sample import BLOCK
from ..scenario import PatientColumns
from ..simulate import observe_batch
from . import adaptive, ketamine_use
from .design import Sequence, TrialSpec, session_starts
from .discharge import ready_after
from .rules import SESSION_OFFSETS_H, SESSION_WINDOW_H, session_window

#: tolerances for trials: the loosest found that keeps every virtual patient's MADRS within 0.01
#: points of a tight reference with the population's full parameter variability. Chosen on 2,048
#: treatment-resistant patients, one IV infusion, 28 d (reference rtol 1e-10): at most 9.4e-3 points at
#: rtol 5e-4, atol 1e-7; 8.6e-3 at atol 1e-10 (20 % more steps); 3.3e-2 at rtol 1e-3. As the model grew
#: (more states, the potentiation taken by capture) rtol 5e-4 drifted to 1.2-1.3e-2 points, one
#: assessment in 14,000 above 0.01; rechecked 2026-12-03 (2,000 patients, reference rtol 1e-11): rtol
#: 5e-4 1.27e-2 points (81.4 steps a patient), 4e-4 1.06e-2 (84.4), 3e-4 7.2e-3 (88.4), so 3e-4. It
#: also brings the session peaks close to the reference (CADSS 1.3e-2 -> 1.7e-3 points, SBP rise
#: 5.2e-2 -> 2.4e-3 mmHg). ``benchmarks/trial_throughput.py`` checks every model column of the patients
#: table on that trial and on a multi-dose one ("trial tolerance"). atol applies in the internal units
#: (uM, umol, ng/mL for IL-6 at ~3e-3, points, fold): 1e-7 lies far below what any readout resolves.
#: Steps may reach 48 h (a 24-h cap cost 11 % more steps for no accuracy): with steps up to a week
#: the cubic interpolation between step ends reached 0.013 points at assessments weeks after the last
#: of eight nasal doses, 0.006 with 48 h. Each chunk's switched-off mechanisms' private states are
#: solved at ``loose_factor`` (10) times these (``chunk_settings``): 79.5 steps a patient instead of
#: 88.4, MADRS 6.7e-3 points from the reference on the same 2,000 patients. atol is a concentration
#: (uM); the drug amounts (umol: depots, compartments, ``Model.amount_states``) are held to the amount
#: that is atol in ketamine's central volume (``pk.v_central``, 101 L at 70 kg; amount_volume 100 L),
#: not to 1e-7 umol, which in that volume is 1e-9 uM: days after a dose the drug's deep-compartment
#: and metabolite tails set the steps at 1e-7 umol while no output resolves them. 76.2 steps a patient
#: instead of 79.5 (1,024 patients); on the 2,000 patients above MADRS 6.7e-3 (infusion) and 3.6e-3
#: (nasal course) points from the reference (6.7e-3 and 6.9e-3 with 1e-7 umol), the same 14 and 2 of
#: 14,000 ``discharge_ready_after`` rows one grid step apart
TRIAL_SETTINGS = SolverSettings(rtol=3e-4, atol=1e-7, h_max=48.0, amount_volume=100.0)
STATE_BUDGET_BYTES = 64 * 2 ** 20  # states held per chunk: about 64 MiB
IN_FLIGHT_PER_WORKER = 4  # chunks submitted ahead per Dask worker

#: columns of the patients table that hold model outputs: (column, output name, how it is read)
READOUTS = (
    ("nmda_block_interneuron_peak [fraction]", "receptor.nmda_block_interneuron", "session peak"),
    # abuse liability: the bipolar drug-liking scale's session peak (50 neutral; model/clinical.py)
    ("drug_liking_peak [points]", "clinical.drug_liking", "session peak"),
    # non-compartmental exposure of the session (ketasim.nca's conventions): from the dose to 4 h after
    # it or to the assessment, whichever comes first, on the trial's grid (5-min points for 2 h)
    ("ketamine_cmax [ng/mL]", "pk.ketamine_plasma", "session peak"),
    ("ketamine_tmax [h]", "pk.ketamine_plasma", "session tmax"),
    ("ketamine_auc_session [ng/mL*h]", "pk.ketamine_plasma", "session auc"),
    ("spine_density [fold baseline]", "plasticity.spine_density", "at assessment"),
    ("pfc_gbc [z]", "circuit.pfc_gbc", "at assessment"),
    ("il6 [pg/mL]", "inflammation.il6", "at assessment"),
)


def readouts(spec: TrialSpec) -> tuple[tuple[str, str, str], ...]:
    """``READOUTS`` and the session exposure of each ``[trial] exposure`` output:
    ``<name>_cmax``, ``<name>_tmax`` and ``<name>_auc_session`` (``pk.norketamine_plasma`` ->
    ``norketamine_cmax [ng/mL]``), by the same rules as ketamine's."""
    extra = []
    for output in spec.exposure:
        short = output.split(".", 1)[1].removesuffix("_plasma")
        extra += [(f"{short}_cmax [ng/mL]", output, "session peak"), (f"{short}_tmax [h]", output, "session tmax"),
                  (f"{short}_auc_session [ng/mL*h]", output, "session auc")]
    at = [c for c, *_ in READOUTS].index("ketamine_auc_session [ng/mL*h]") + 1  # beside ketamine's
    return READOUTS[:at] + tuple(extra) + READOUTS[at:]


@dataclass(frozen=True)
class Timeline:
    """The output grid of a sequence and where each reading lies on it."""

    times: np.ndarray  # (n_grid,) h
    baseline: np.ndarray  # (n_periods,) grid index of each period's baseline
    assessments: np.ndarray  # (n_periods, n_assess) grid indices
    sessions: list[list[np.ndarray]]  # [period][assessment] -> grid indices of the session window before it
    session_start: np.ndarray  # (n_periods, n_assess) grid index of that session's start, -1 if none
    selection: int | None  # grid index where withdrawal selection is judged

    @property
    def rated(self) -> np.ndarray:
        """Grid indices where a rater records the MADRS: baselines, assessments, selection (ascending)."""
        points = [self.baseline, self.assessments.ravel()]
        if self.selection is not None:
            points.append(np.array([self.selection]))
        return np.unique(np.concatenate(points))


def timeline(spec: TrialSpec, seq: Sequence) -> Timeline:
    """Grid: baselines, assessments, and the session offsets (peaks) after the administrations read:
    every one where dosing rules decide, else those the assessments report (``_starts_near``)."""
    period_starts = [session_starts(spec, p) for p in seq.periods]
    every = sorted({t for ts in period_starts for t in ts})
    # per period and assessment, the administration whose session the assessment reports (None: none)
    reported = [[_reported_start(ts, p.start_h + a) for a in spec.assessments_h]
                for ts, p in zip(period_starts, seq.periods)]
    ends = [t + d.duration_h for d in seq.scenario.doses if d.duration_h for t in d.times_h]
    end = seq.scenario.duration_h
    points = {0.0, *(p.start_h for p in seq.periods), *ends}
    governed = adaptive.plan(spec, seq)
    if governed is not None:  # rules read every session; delayed doses' windows, target concentrations
        starts = every + governed.delayed_times
        points |= governed.extra_grid_times()
    else:  # as written, only the sessions assessments report are read (56 daily pills: 8 windows, not 56)
        starts = _starts_near(every, {t for row in reported for t in row} - {None})
    if seq.baseline_h is not None:
        points.add(seq.baseline_h)
    if seq.selection:
        points.add(seq.selection[0])
    points |= {p.start_h + a for p in seq.periods for a in spec.assessments_h}
    for t in starts:
        points |= set(t + SESSION_OFFSETS_H)
    times = np.array(sorted(x for x in points if x <= end + 1e-9))
    times = np.minimum(times, end)

    def at(t: float) -> int:
        return int(np.argmin(np.abs(times - t)))

    baseline = np.array([at(seq.baseline_h if seq.baseline_h is not None else p.start_h) for p in seq.periods])
    assessments = np.array([[at(p.start_h + a) for a in spec.assessments_h] for p in seq.periods])
    sessions, session_start = [], np.full(assessments.shape, -1)
    for i, p in enumerate(seq.periods):
        row = []
        for j, a in enumerate(spec.assessments_h):
            t_d = reported[i][j]
            if t_d is None:
                row.append(np.zeros(0, dtype=int))
                continue
            session_start[i, j] = at(t_d)
            row.append(session_window(times, t_d, p.start_h + a))
        sessions.append(row)
    return Timeline(times=times, baseline=baseline, assessments=assessments, sessions=sessions,
                    session_start=session_start, selection=at(seq.selection[0]) if seq.selection else None)


def _starts_near(every: list[float], reported: set[float]) -> list[float]:
    """Of ``every`` administration (h), those whose post-dose points the grid needs when doses are
    given as written: each ``reported`` session, and any other whose window overlaps one of those
    (its points lie in the reported window, so the reported session is read on the same points as
    with every session on the grid)."""
    return [t for t in every if any(abs(t - r) < SESSION_WINDOW_H + 1e-9 for r in reported)]


def _reported_start(starts: list[float], t_assess: float) -> float | None:
    """The session an assessment at ``t_assess`` reports: the last of ``starts`` (ascending, h) before
    it; an assessment at the time of a dose is taken before it (a pre-dose visit). None: no session."""
    before = [t for t in starts if t < t_assess - 1e-9]
    return before[-1] if before else None


# ---------------------------------------------------------------------- one chunk
_SAMPLERS: dict[tuple[str, str], PopulationSampler] = {}
MAX_SAMPLERS = 8  # parameter draws alternate between a few sets per process


@lru_cache(maxsize=2)
def _trial_context(raw_json: str):
    """The parsed trial, the model and each sequence's timeline, kept per process (workers see many chunks)."""
    spec = TrialSpec.from_dict(json.loads(raw_json))
    return spec, default_model(), [timeline(spec, seq) for seq in spec.sequences]


def _context(raw_json: str, params: ParameterSet):
    """The trial's context and the population sampler of ``params``."""
    spec, model, timelines = _trial_context(raw_json)
    key = (raw_json, params.digest())
    if key not in _SAMPLERS:
        if len(_SAMPLERS) >= MAX_SAMPLERS:
            _SAMPLERS.pop(next(iter(_SAMPLERS)))
        _SAMPLERS[key] = PopulationSampler(spec.population, params)
    return spec, _SAMPLERS[key], model, timelines


@dataclass
class PreparedChunk:
    """A chunk's patients drawn and its arrays built: everything before the solver."""

    spec: TrialSpec
    seq: Sequence
    timeline: Timeline
    cohort: Cohort
    problem: object
    model: Model
    sampler: PopulationSampler
    start: int
    stop: int
    #: the sequence's adaptive dosing (None: doses as written)
    plan: adaptive.Plan | None = None


def prepare_chunk(raw_json: str, params: ParameterSet, seq_index: int, start: int, stop: int) -> PreparedChunk:
    spec, sampler, model, timelines = _context(raw_json, params)
    seq, tl = spec.sequences[seq_index], timelines[seq_index]
    cohort = sampler.draw_cohort(spec.seed, seq.stream, range(start, stop))
    problem = build_batch_problem(seq.scenario, cohort.patients, cohort.parameters, model, t_out=tl.times)
    return PreparedChunk(spec, seq, tl, cohort, problem, model, sampler, start, stop,
                         plan=_plans(raw_json)[seq_index])


@lru_cache(maxsize=2)
def _plans(raw_json: str) -> tuple[adaptive.Plan | None, ...]:
    spec = _trial_context(raw_json)[0]
    return tuple(adaptive.plan(spec, seq) for seq in spec.sequences)


def chunk_settings(problem, settings: SolverSettings) -> SolverSettings:
    """``settings`` with, unless it names its own, the private states of the chunk's switched-off
    mechanisms loose (``loose_factor`` times the tolerances: no column of the patients table and no
    dosing rule reads them, ``tests/test_mechanisms.py``, and no other state depends on them) and the
    model's drug amounts as ``amount_states`` (absolute tolerance ``atol * amount_volume``). What it
    saves and costs in accuracy: ``TRIAL_SETTINGS``' comment."""
    changes: dict[str, tuple[str, ...]] = {}
    if not settings.loose_states:
        idle = idle_states(problem.model.state_names, problem.parameter_names, problem.theta)
        if idle:
            changes["loose_states"] = idle
    if not settings.amount_states and problem.model.amount_states:
        changes["amount_states"] = problem.model.amount_states
    return replace(settings, **changes) if changes else settings


def per_state_tolerances(settings: SolverSettings) -> dict[str, Any]:
    """What a trial's manifest says of the states it solves at other tolerances (``chunk_settings``)."""
    return {"loose_states": "private states of the mechanisms switched off for every patient of a chunk "
                            "(ketasim.model.mechanisms.idle_states), which no column of the patients table reads",
            "loose_factor": settings.loose_factor,
            "amount_states": "drug amounts (umol; ketasim.model.Model.amount_states): absolute tolerance "
                             "atol (a concentration, uM) times amount_volume_l",
            "amount_volume_l": settings.amount_volume}


def solve_chunk(chunk: PreparedChunk, settings: SolverSettings = TRIAL_SETTINGS):
    """(states, status, steps, decisions) of a prepared chunk; decisions are None without rules."""
    settings = chunk_settings(chunk.problem, settings)
    if chunk.plan is None:
        return (*solve(chunk.problem, settings), None)
    return adaptive.solve_adaptive(chunk, settings)


def finish_chunk(chunk: PreparedChunk, solved, params: ParameterSet) -> pd.DataFrame:
    """Rows of the patients table from the solver's states (``solve_chunk``'s result)."""
    states, status, _, decisions = solved
    spec, seq, tl = chunk.spec, chunk.seq, chunk.timeline
    columns = readouts(spec)
    outputs = chunk_outputs(chunk.model, states, chunk.problem, tl, columns)
    rated = rated_madrs(outputs["clinical.madrs"], tl, rating_errors(chunk, tl))
    sessions = PlannedSessions(tl)
    if decisions is not None:
        sessions = adaptive.GivenSessions(spec, seq, tl, chunk.plan, decisions.given, sessions)
    rows = _rows(spec, seq, tl, chunk.cohort, outputs, rated, status, sessions, columns)
    extra = dict(adaptive.decision_columns(spec, seq, chunk.plan, decisions, chunk.cohort.patients)
                 if spec.adaptive else {})
    extra.update(_ketamine_use_columns(chunk, decisions))
    for column, values in extra.items():
        rows.insert(rows.columns.get_loc("status"), column, values)
    return rows


def _ketamine_use_columns(chunk: PreparedChunk, decisions) -> dict[str, np.ndarray]:
    """``ketamine_use.USE_COLUMNS`` for a chunk's rows (every row of a patient the same: use over the
    whole course): the ketamine its schedule gave or, where dosing rules decided, what they gave."""
    seq, patients = chunk.seq, chunk.cohort.patients
    given = ketamine_use.KetamineUse(len(patients))
    if decisions is None:
        given.add_written(seq.scenario.doses, patients.weight_kg)
    else:
        plan = chunk.plan
        given.add_written(plan.base.doses, patients.weight_kg)
        for s, slot in enumerate(plan.slots):
            line = plan.scenario.doses[slot.line]
            given.add(line.drug, slot.time_h, line.duration_h, decisions.amount_mg[slot.period][:, slot.session],
                      decisions.given[:, s])
    rows_per_patient = len(chunk.spec.assessments_h) * len(seq.periods)
    return {c: np.repeat(v, rows_per_patient) for c, v in given.columns().items()}


def rating_errors(chunk: PreparedChunk, tl: Timeline) -> np.ndarray:
    """(n, len(tl.rated)) what the rater adds to the latent MADRS at each rated grid point: at the
    screening (time 0) the fluctuation and error that admitted the patient, later the continuing
    fluctuation and a fresh error (``PopulationSampler.ratings``)."""
    cohort = chunk.cohort
    times = tl.times[tl.rated]
    later = times > 0.0
    errors = np.empty((len(cohort), times.size))
    errors[:, ~later] = (cohort.baseline_rating - cohort.patients.baseline_madrs)[:, None]
    errors[:, later] = chunk.sampler.ratings(chunk.spec.seed, chunk.seq.stream, range(chunk.start, chunk.stop),
                                             times[later], cohort.screening_fluctuation)
    return errors


def simulate_chunk(raw_json: str, params: ParameterSet, seq_index: int, start: int, stop: int,
                   settings: SolverSettings = TRIAL_SETTINGS) -> pd.DataFrame:
    """Rows of the patients table for patients ``start..stop-1`` of sequence ``seq_index``."""
    chunk = prepare_chunk(raw_json, params, seq_index, start, stop)
    return finish_chunk(chunk, solve_chunk(chunk, settings), params)


def rated_madrs(model_madrs: np.ndarray, tl: Timeline, errors: np.ndarray) -> np.ndarray:
    """The MADRS a rater records at each rated grid point (baselines, assessments, selection): the
    model's value plus the rater's view of the day's fluctuation and error, within the scale's 0-60
    points; elsewhere the model's value."""
    rated = model_madrs.copy()
    rated[:, tl.rated] = np.clip(model_madrs[:, tl.rated] + errors, 0.0, 60.0)
    return rated


def chunk_outputs(model: Model, states: np.ndarray, problem, tl: Timeline,
                  readout_columns: tuple[tuple[str, str, str], ...] = READOUTS) -> dict[str, np.ndarray]:
    """(n, n_grid) arrays of what the patients table reads (``readout_columns``, as ``READOUTS``): session
    outputs on the whole grid, assessment readouts only at the assessments (NaN elsewhere)."""
    session = tuple(dict.fromkeys(("clinical.madrs", "clinical.cadss", "clinical.sbp",
                                   *(name for _, name, how in readout_columns if how.startswith("session")))))
    outputs = observe_batch(model, states, problem.parameter_names, problem.theta, session, readouts=False)
    columns = np.unique(tl.assessments)
    at_assessment = tuple(name for _, name, how in readout_columns if how == "at assessment")
    values = observe_batch(model, states[:, columns], problem.parameter_names, problem.theta, at_assessment)
    for name in at_assessment:
        full = np.full(states.shape[:2], np.nan)
        full[:, columns] = values[name]
        outputs[name] = full
    return outputs


#: what a session window gives, from its values (n, k) at its times (k,) h
SESSION_STATS = {
    "session peak": lambda v, t: v.max(axis=1),
    "session start": lambda v, t: v[:, 0],
    "session tmax": lambda v, t: t[np.argmax(v, axis=1)] - t[0],
    "session auc": lambda v, t: auc_linear_up_log_down(t, v),
    # v (n, k, 2): CADSS and SBP, over the whole window whatever the assessment (WHOLE_WINDOW)
    "session discharge": lambda v, t: ready_after(t, v[..., 0], v[..., 1]),
}
#: statistics read over the session's whole window (the dose to SESSION_WINDOW_H after it), not cut at
#: an assessment that falls inside it: when a patient could leave does not depend on when a rater calls
WHOLE_WINDOW = frozenset({"session discharge"})


class PlannedSessions:
    """The session each assessment reports: the arm's last administration before it, as written."""

    def __init__(self, tl: Timeline):
        self.tl = tl

    def read(self, values: np.ndarray, p: int, how: str) -> np.ndarray:
        """(n, n_assess): ``SESSION_STATS[how]`` over each assessment's session window (NaN without one)."""
        windows = self.tl.sessions[p]
        out = np.full((values.shape[0], len(windows)), np.nan)
        for j, idx in enumerate(windows):
            if idx.size:
                if how in WHOLE_WINDOW:
                    idx = session_window(self.tl.times, self.tl.times[self.tl.session_start[p, j]])
                out[:, j] = SESSION_STATS[how](values[:, idx], self.tl.times[idx])
        return out


def relapse_course(madrs: np.ndarray, responder: np.ndarray, times: np.ndarray, threshold: float, consecutive: int,
             responded_at_start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per assessment whether relapse has occurred (MADRS >= threshold at ``consecutive`` assessments
    in a row after response); the relapse time (first of those assessments), the response time
    (first responding assessment; 0 for those responding at the start) and who ever responded
    (who is at risk of relapse)."""
    n, k = madrs.shape
    responded = responded_at_start.copy()
    response_time = np.where(responded, 0.0, np.nan)
    run = np.zeros(n, dtype=int)
    run_start = np.full(n, np.nan)
    relapsed = np.zeros(n, dtype=bool)
    relapse_time = np.full(n, np.nan)
    relapsed_by = np.zeros((n, k), dtype=bool)
    for j in range(k):
        counting = responded & ~relapsed  # assessments strictly after the one that showed response
        high = madrs[:, j] >= threshold
        run = np.where(counting, np.where(high, run + 1, 0), run)
        run_start = np.where(counting & high & (run == 1), times[j], run_start)
        new = counting & (run >= consecutive)
        relapse_time = np.where(new, run_start, relapse_time)
        relapsed |= new
        response_time = np.where(~responded & responder[:, j], times[j], response_time)
        responded |= responder[:, j]
        relapsed_by[:, j] = relapsed
    return relapsed_by, relapse_time, response_time, responded


def _rows(spec: TrialSpec, seq: Sequence, tl: Timeline, cohort: Cohort, outputs: Mapping[str, np.ndarray],
          rated: np.ndarray, status: np.ndarray, sessions: PlannedSessions,
          readout_columns: tuple[tuple[str, str, str], ...] = READOUTS) -> pd.DataFrame:
    ep = spec.endpoints
    n, n_assess = len(cohort), len(spec.assessments_h)
    ok = status == 0
    nan_if_failed = np.where(ok[:, None], 1.0, np.nan)
    madrs_all = rated * nan_if_failed
    model_madrs = outputs["clinical.madrs"] * nan_if_failed
    assess_h = np.asarray(spec.assessments_h)
    selected = np.ones(n, dtype=bool)
    if seq.selection:
        base0, at_sel = madrs_all[:, tl.baseline[0]], madrs_all[:, tl.selection]
        selected = (at_sel <= (1 - ep.response_fall) * base0) if seq.selection[1] == "responders" \
            else (at_sel <= ep.remission_at_most)
    frames = []
    for p, period in enumerate(seq.periods):
        base = madrs_all[:, tl.baseline[p]]
        madrs = madrs_all[:, tl.assessments[p]]
        responder = madrs <= (1.0 - ep.response_fall) * base[:, None]
        remitter = madrs <= ep.remission_at_most
        sbp = outputs["clinical.sbp"]
        sbp_rise = sessions.read(sbp, p, "session peak") - sessions.read(sbp, p, "session start")
        relapsed, relapse_time, response_time, at_risk = relapse_course(madrs, responder, assess_h, ep.relapse_at_least,
                                                   ep.relapse_consecutive, responded_at_start=selected & bool(seq.selection))
        columns: dict[str, Any] = {
            "arm": period.arm, "sequence": seq.name, "period": p + 1,
            "patient": np.repeat([f"{seq.stream}-{i}" for i in cohort.indices.tolist()], n_assess),
            "assessment [h]": np.tile(assess_h, n),
            "madrs [points]": madrs.ravel(),
            "madrs_model [points]": model_madrs[:, tl.assessments[p]].ravel(),
            "baseline_madrs [points]": np.repeat(base, n_assess),
            "baseline_madrs_true [points]": np.repeat(model_madrs[:, tl.baseline[p]], n_assess),
            "madrs_change [points]": (madrs - base[:, None]).ravel(),
            "cadss_peak [points]": (sessions.read(outputs["clinical.cadss"], p, "session peak") * nan_if_failed).ravel(),
            "sbp_peak_rise [mmHg]": (sbp_rise * nan_if_failed).ravel(),
            "discharge_ready_after [h]": (sessions.read(np.stack([outputs["clinical.cadss"], sbp], axis=-1), p,
                                                        "session discharge") * nan_if_failed).ravel(),
            "responder": responder.ravel(), "remitter": remitter.ravel(), "relapsed": relapsed.ravel(),
            "at_risk_of_relapse": np.repeat(at_risk, n_assess),
            "response_time [h]": np.repeat(response_time, n_assess),
            # counted from response: nobody can relapse before responding (no immortal-time bias)
            "time_to_relapse [h]": np.repeat(relapse_time - response_time, n_assess),
            "randomised": np.repeat(selected, n_assess),
        }
        for column, name, how in readout_columns:
            values = outputs[name] * nan_if_failed
            columns[column] = (sessions.read(values, p, how) if how.startswith("session")
                               else values[:, tl.assessments[p]]).ravel()
        columns.update(_covariate_columns(cohort.patients, n_assess))
        columns["status"] = np.repeat([STATUS_MESSAGES[int(s)] for s in status], n_assess)
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)


def _covariate_columns(patients: PatientColumns, n_assess: int) -> dict[str, np.ndarray]:
    def col(values):
        return np.repeat(values, n_assess)

    return {"weight [kg]": col(patients.weight_kg), "age [y]": col(patients.age_y), "sex": col(patients.sex),
            "cyp2b6": col(patients.cyp2b6), "cyp3a4": col(patients.cyp3a4),
            "bdnf_val66met": col(patients.bdnf_val66met), "inflammation": col(patients.inflammation),
            "comedications": col(np.array(patients.comedication_lists(), dtype=object))}


# ---------------------------------------------------------------------- the whole trial
@dataclass(frozen=True)
class Chunk:
    seq_index: int
    start: int
    stop: int
    #: the block of its patients (patient index // draw block): which parameter set they run with
    block: int = 0


def chunks(spec: TrialSpec, chunk_size: int | None = None, draw_block: int | None = None) -> list[Chunk]:
    """The trial's patients split into chunks (sequence by sequence, in index order). With
    ``draw_block``, no chunk straddles a block of that many patients (each block has its own
    parameter set)."""
    out = []
    for k, seq in enumerate(spec.sequences):
        size = chunk_size or default_chunk_size(spec, seq)
        block = draw_block or seq.n
        for b, low in enumerate(range(0, seq.n, block)):
            high = min(low + block, seq.n)
            out += [Chunk(k, a, min(a + size, high), b) for a in range(low, high, size)]
    return out


def blocks_needed(spec: TrialSpec, draw_block: int) -> int:
    """The number of patient blocks of ``draw_block`` in the longest sequence."""
    return max(-(-seq.n // draw_block) for seq in spec.sequences)


Parameters = ParameterSet | ListOf[ParameterSet]  # one set, or one per block of patients


def _for_chunk(params: Parameters, chunk: Chunk) -> ParameterSet:
    return params if isinstance(params, ParameterSet) else params[chunk.block]


def default_chunk_size(spec: TrialSpec, seq: Sequence, n_states: int = 68) -> int:
    n_grid = timeline(spec, seq).times.size
    # at most 1,024 per chunk, so that a trial of a few thousand patients still overlaps drawing and
    # solving (see _pipelined); whole blocks of the population sampler where memory allows
    size = max(16, min(1024, STATE_BUDGET_BYTES // (n_grid * n_states * 8)))
    return int(size // BLOCK * BLOCK or size)


ProgressCallback = Callable[[int, int], None]  # (patients done, patients in all)


def run_chunks(spec: TrialSpec, params: Parameters, *, chunk_size: int | None = None,
               settings: SolverSettings = TRIAL_SETTINGS, client=None,
               progress: ProgressCallback | None = None, draw_block: int | None = None) -> pd.DataFrame:
    """Every chunk, here or on a Dask client, assembled in the trial's order. ``params``: one set, or
    one per block of ``draw_block`` patients."""
    frames = [frame for _, frame in iter_chunks(spec, params, chunk_size=chunk_size, settings=settings, client=client,
                                                progress=progress, draw_block=draw_block)]
    return pd.concat(frames, ignore_index=True)


def iter_chunks(spec: TrialSpec, params: Parameters, *, chunk_size: int | None = None,
                settings: SolverSettings = TRIAL_SETTINGS, client=None, progress: ProgressCallback | None = None,
                draw_block: int | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
    """(index, rows) of every chunk in the trial's order, each as soon as it and those before it are
    done (a chunk that finishes early on a Dask worker waits for them)."""
    raw_json = json.dumps(spec.raw, sort_keys=True)
    todo = chunks(spec, chunk_size, draw_block)
    total = spec.n_patients
    done = 0
    waiting: dict[int, pd.DataFrame] = {}
    following = 0
    for i, frame in _execute(todo, raw_json, params, settings, client):
        waiting[i] = frame
        done += todo[i].stop - todo[i].start
        if progress:
            progress(done, total)
        while following in waiting:
            yield following, waiting.pop(following)
            following += 1


def _pipelined(todo: list[Chunk], raw_json: str, params: Parameters,
               settings: SolverSettings) -> Iterator[tuple[int, pd.DataFrame]]:
    """In one process: the compiled solver (which releases the GIL) integrates chunk k on a worker
    thread while Python draws and builds chunk k+1 and turns chunk k-1 into rows."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as solver:
        pending = None  # (index, prepared chunk, future of its solution)
        for i, c in enumerate(todo):
            chunk = prepare_chunk(raw_json, _for_chunk(params, c), c.seq_index, c.start, c.stop)
            future = solver.submit(solve_chunk, chunk, settings)
            if pending is not None:
                j, previous, solved = pending
                yield j, finish_chunk(previous, solved.result(), _for_chunk(params, todo[j]))
            pending = (i, chunk, future)
        if pending is not None:
            j, previous, solved = pending
            yield j, finish_chunk(previous, solved.result(), _for_chunk(params, todo[j]))


def _execute(todo: list[Chunk], raw_json: str, params: Parameters, settings: SolverSettings,
             client) -> Iterator[tuple[int, pd.DataFrame]]:
    if client is None:
        yield from _pipelined(todo, raw_json, params, settings)
        return
    from distributed import as_completed

    one = isinstance(params, ParameterSet)
    scattered = client.scatter(params if one else list(params), broadcast=True)

    def submit(i: int):
        c = todo[i]
        return client.submit(simulate_chunk, raw_json, scattered if one else scattered[c.block], c.seq_index, c.start,
                             c.stop, settings, pure=False)

    # a window of chunks in flight, refilled in the trial's order as each finishes: the finished ones
    # waiting for an earlier chunk (iter_chunks keeps the order) stay few, whatever the trial's size
    window = IN_FLIGHT_PER_WORKER * max(1, len(client.scheduler_info().get("workers", {})))
    futures = {submit(i): i for i in range(min(window, len(todo)))}
    following = len(futures)
    running = as_completed(futures)
    for future in running:
        index = futures.pop(future)  # released on the workers once taken: memory does not pile up there
        if following < len(todo):
            new = submit(following)
            futures[new] = following
            running.add(new)
            following += 1
        yield index, future.result()

