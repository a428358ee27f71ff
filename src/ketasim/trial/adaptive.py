"""Carrying out adaptive dosing rules: a batch integrated session by session, each session's dose
decided per patient from the state the integration has reached.

Between two decision times (the governed sessions, and the slots of delayed doses) the engine
integrates the batch as it does any trial; at a decision time the rules (``ketasim.trial.rules``)
read each patient's pre-dose state and the post-dose window of the previous administration, set the
session's amount for that patient (or none), and the integration goes on from the states it stopped
at. Doses enter as the sequence's schedule with the governed administrations taken out (the base)
plus, per administration and patient, its clinic contact (when given) and its drug part times the
decided amount. The schedule is linear in the amount, so the schedule of one administration,
built once, serves every patient and every amount.

A rule that never fires gives the trial without rules, within the trials' tolerance (the restarts
take fresh first steps; ``tests/test_trial_adaptive.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..dosing import Schedules, build_schedules, total_amount_mg
from ..engine import Problem, SolverSettings, solve
from ..scenario import Dose, Scenario
from ..simulate import observe_batch
from .design import Sequence, TrialSpec
from .rules import ArmRules, session_window

#: what happened at a planned session
GIVEN, TITRATED, HELD, DELAYED, STOPPED = 0, 1, 2, 3, 4
_EPS = 1e-9


@dataclass(frozen=True)
class Slot:
    """A time at which a governed dose may be given: a planned session, or the delayed slot after it."""

    period: int
    session: int  # 0-based index of the planned session in its period
    time_h: float  # simulation time
    line: int  # the governed dose line in the sequence's scenario
    delayed: bool = False


@dataclass(frozen=True)
class Plan:
    """A schedule's governed administrations and the schedule without them."""

    slots: tuple[Slot, ...]  # in time order
    rules: tuple[ArmRules | None, ...]  # per period
    starts_h: tuple[float, ...]  # each period's start (simulation h)
    scenario: Scenario  # the whole schedule as written
    base: Scenario  # without the governed administrations

    def extra_grid_times(self) -> set[float]:
        """Times the output grid needs beyond the planned sessions' windows: the windows of delayed
        slots (from ``offsets``) are added by the timeline; here the concentration readings."""
        out = set()
        for s in self.slots:
            target = self.rules[s.period].target
            if target is not None:
                out.add(s.time_h + target.measured_h)
        return out

    @property
    def delayed_times(self) -> list[float]:
        return [s.time_h for s in self.slots if s.delayed]

    def session_times(self) -> list[float]:
        """Every slot's time, planned and delayed: where a post-dose window starts."""
        return [s.time_h for s in self.slots]


def plan(spec: TrialSpec, seq: Sequence) -> Plan | None:
    """The governed administrations of ``seq`` (None when none of its arms has rules)."""
    arms = {a.name: a for a in spec.arms}
    return governed(seq.scenario, [(p.start_h, arms[p.arm].rules) for p in seq.periods])


def governed(scenario: Scenario, periods: list[tuple[float, ArmRules | None]]) -> Plan | None:
    """The administrations of ``scenario`` that the rules of each period (start h, rules) govern."""
    rules = tuple(r for _, r in periods)
    if not any(rules):
        return None
    slots, taken = [], {}
    for p, (start, r) in enumerate(periods):
        if r is None:
            continue
        for k, t_rel in enumerate(r.sessions_h):
            t = start + t_rel
            line = _line_of(scenario, r.drug, t)
            taken.setdefault(line, set()).add(t)
            slots.append(Slot(p, k, t, line))
            if r.delay_h:
                slots.append(Slot(p, k, t + r.delay_h, line, delayed=True))
    doses = []
    for i, d in enumerate(scenario.doses):
        left = tuple(t for t in d.times_h if t not in taken.get(i, ()))
        if left:
            doses.append(replace(d, times_h=left))
    return Plan(slots=tuple(sorted(slots, key=lambda s: s.time_h)), rules=rules,
                starts_h=tuple(start for start, _ in periods), scenario=scenario,
                base=replace(scenario, doses=tuple(doses)))


def _line_of(scenario: Scenario, drug: str, t: float) -> int:
    """The last dose line of ``drug`` given at ``t`` (an arm's own line comes after background ones)."""
    found = [i for i, d in enumerate(scenario.doses) if d.drug == drug and t in d.times_h]
    if not found:
        raise AssertionError(f"no {drug} dose at {t} h in the sequence's scenario")
    return found[-1]


# ---------------------------------------------------------------------- schedules by administration
@dataclass
class _Administration:
    """One slot's part of the schedule, per patient: what any administration adds (the clinic
    contact) and what each unit of the planned amount adds."""

    seg: int  # the segment of the union grid where it starts
    seg_end: int  # the first segment after its infusion
    contact: np.ndarray  # (n, n_states)
    drug_jump: np.ndarray  # (n, n_states) at the planned amount
    drug_rate: np.ndarray  # (n, n_inputs) at the planned amount


def _administration(line: Dose, t: float, duration_h: float, model, params, weight_kg: np.ndarray,
                    bounds: np.ndarray) -> _Administration:
    def schedules(amount: float) -> Schedules:
        return build_schedules(Scenario(doses=(replace(line, times_h=(t,), amount=amount),), duration_h=duration_h),
                               model, params, weight_kg)

    full = schedules(line.amount)
    j = int(np.searchsorted(full.bounds, t))
    if line.amount > 0:  # the part linear in the amount: twice the difference to half of it
        drug_jump = 2.0 * (full.jumps[:, j] - schedules(line.amount / 2.0).jumps[:, j])
    else:
        drug_jump = np.zeros_like(full.jumps[:, j])
    end = t + line.duration_h if line.duration_h else t
    seg = int(np.searchsorted(bounds, t))
    seg_end = int(np.searchsorted(bounds, min(end, bounds[-1]))) if line.duration_h else seg + 1
    return _Administration(seg=seg, seg_end=seg_end, contact=full.jumps[:, j] - drug_jump, drug_jump=drug_jump,
                           drug_rate=full.rates[:, j].copy())


def _on_bounds(s: Schedules, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rates, jumps) of ``s`` on the finer segments of ``bounds`` (which contain all of ``s``'s)."""
    rates = s.rates[:, np.searchsorted(s.bounds, bounds[:-1], side="right") - 1]
    pos = np.searchsorted(bounds, s.bounds[:-1])
    jumps = np.zeros((s.jumps.shape[0], bounds.size - 1, s.jumps.shape[2]))
    jumps[:, pos] = s.jumps
    return rates, jumps


# ---------------------------------------------------------------------- decisions
@dataclass
class Decisions:
    """What the rules decided, per period with rules: ``code`` and ``amount_mg`` (n, sessions) per
    planned session, and when a patient stopped (h from the period's start; NaN: never)."""

    code: dict[int, np.ndarray] = field(default_factory=dict)
    amount_mg: dict[int, np.ndarray] = field(default_factory=dict)
    stopped_at_h: dict[int, np.ndarray] = field(default_factory=dict)
    #: (n, slots) whether each slot's dose was given, in ``Plan.slots`` order
    given: np.ndarray | None = None


class _Readings:
    """Post-dose readings of an administration, computed once per slot when a rule first needs them."""

    def __init__(self, model, states: np.ndarray, problem: Problem, grid: np.ndarray, plan_: Plan):
        self.model, self.states, self.problem, self.grid, self.plan = model, states, problem, grid, plan_
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    def of(self, s: int) -> dict[str, np.ndarray]:
        if s not in self._cache:
            slot = self.plan.slots[s]
            t = slot.time_h
            window = session_window(self.grid, t)
            target = self.plan.rules[slot.period].target
            wanted = ("clinical.cadss", "clinical.sbp") + ((target.output,) if target else ())
            out = observe_batch(self.model, self.states[:, window], self.problem.parameter_names, self.problem.theta,
                                wanted, readouts=False)
            reading = {"cadss_peak": out["clinical.cadss"].max(axis=1),
                       "sbp_rise": out["clinical.sbp"].max(axis=1) - out["clinical.sbp"][:, 0]}
            if target:
                at = int(np.argmin(np.abs(self.grid[window] - (t + target.measured_h))))
                reading["concentration"] = out[target.output][:, at]
            self._cache[s] = reading
        return self._cache[s]

    def at(self, slots: np.ndarray, name: str) -> np.ndarray:
        """Per patient the reading of slot ``slots[i]`` (NaN where -1)."""
        out = np.full(slots.shape[0], np.nan)
        for s in np.unique(slots[slots >= 0]):
            rows = slots == s
            out[rows] = self.of(int(s))[name][rows]
        return out


class _Rulebook:
    """The rules' memory per patient (titrated, stopped, the amount a target rule reached) and the
    decision at each slot."""

    def __init__(self, plan_: Plan, endpoints, grid: np.ndarray, baselines, model, problem: Problem,
                 states: np.ndarray, readings: _Readings, weight_kg: np.ndarray):
        self.plan, self.endpoints, self.grid, self.baselines = plan_, endpoints, grid, baselines
        self.model, self.problem = model, problem
        self.doses = plan_.scenario.doses
        self.states, self.readings, self.weight_kg, self.n = states, readings, weight_kg, weight_kg.shape[0]
        self.decisions = Decisions()
        self._period: dict[int, dict[str, np.ndarray]] = {}
        self._delayed: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}  # (give, factor) decided earlier

    def _memory(self, p: int, t: float, y: np.ndarray) -> dict[str, np.ndarray]:
        """A period's memory, started at its first session (``t``, pre-dose states ``y``)."""
        if p not in self._period:
            k = len(self.plan.rules[p].sessions_h)
            at = self.baselines[p]
            # a baseline at the first session's time is its pre-dose state
            base = self._madrs(y if self.grid[at] >= t - _EPS else self.states[:, at])
            self.decisions.code[p] = np.full((self.n, k), STOPPED, dtype=np.int8)
            self.decisions.amount_mg[p] = np.zeros((self.n, k))
            self.decisions.stopped_at_h[p] = np.full(self.n, np.nan)
            line = next(s.line for s in self.plan.slots if s.period == p)
            self._period[p] = {
                "baseline": base, "titrated": np.zeros(self.n, dtype=bool), "stopped": np.zeros(self.n, dtype=bool),
                "run": np.zeros(self.n, dtype=int),
                # the slot of each session's administration (-1: none); slots are in time order, so
                # the latest administration is the row's largest
                "admin": np.full((self.n, k), -1),
                # the amount (the governed dose's unit) decided for the next session, and the one given last
                "amount": np.full(self.n, self.doses[line].amount), "given": np.full(self.n, np.nan)}
        return self._period[p]

    def _madrs(self, y: np.ndarray) -> np.ndarray:
        out = observe_batch(self.model, y[:, None], self.problem.parameter_names, self.problem.theta,
                            ("clinical.madrs",), readouts=False)
        return out["clinical.madrs"][:, 0]

    def decide(self, s: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(given (n,), factor of the planned amount (n,)) at slot ``s``; ``y`` the pre-dose states."""
        slot = self.plan.slots[s]
        p, k = slot.period, slot.session
        mem = self._memory(p, slot.time_h, y)
        if slot.delayed:  # decided at the planned session
            give, factor = self._delayed.pop((p, k))
            self._record(p, k, s, give, factor, mem)
            return give, factor
        rules, ep = self.plan.rules[p], self.endpoints
        planned = self.doses[slot.line].amount
        active = ~mem["stopped"]
        madrs = self._madrs(y)
        fall = 1.0 - madrs / np.maximum(mem["baseline"], 1e-9)
        if rules.stop and k >= 1:
            met = fall >= ep.response_fall if rules.stop.on == "response" else madrs <= ep.remission_at_most
            mem["run"] = np.where(active, np.where(met, mem["run"] + 1, 0), mem["run"])
            newly = active & (mem["run"] >= rules.stop.consecutive)
            mem["stopped"] |= newly
            self.decisions.stopped_at_h[p][newly] = slot.time_h - self.plan.starts_h[p]
            active &= ~newly
        factor = np.ones(self.n)
        if rules.titrate and k + 1 >= rules.titrate.from_session:
            tr = rules.titrate
            threshold = ep.response_fall if tr.if_madrs_fall_below is None else tr.if_madrs_fall_below
            mem["titrated"] |= active & (fall < threshold) & self._tolerated(mem["admin"].max(axis=1), tr)
            factor = np.where(mem["titrated"], tr.to / planned, 1.0)
        if rules.target and k >= 1:  # linear kinetics: the amount that would have given the target
            tg = rules.target
            measured = self.readings.at(mem["admin"].max(axis=1), "concentration")
            ok = active & np.isfinite(measured) & (measured > 0)
            # from the last amount given and its own reading: a held session leaves both as they were,
            # so the correction is not applied twice
            scaled = mem["given"] * tg.target_ng_ml / np.where(ok, measured, 1.0)
            mem["amount"] = np.where(ok, np.clip(scaled, tg.min_amount, tg.max_amount), mem["amount"])
            factor = mem["amount"] / planned
        held = np.zeros(self.n, dtype=bool)
        if rules.hold and k >= 1:  # on the previous session's own administration, if it had one
            previous = mem["admin"][:, k - 1]
            hit = np.zeros(self.n, dtype=bool)
            if rules.hold.if_cadss_at_least is not None:
                hit |= self.readings.at(previous, "cadss_peak") >= rules.hold.if_cadss_at_least
            if rules.hold.if_sbp_rise_at_least is not None:
                hit |= self.readings.at(previous, "sbp_rise") >= rules.hold.if_sbp_rise_at_least
            held = active & hit
        give = active & ~held
        delaying = rules.hold is not None and rules.hold.action == "delay"
        given_code = np.where(mem["titrated"], TITRATED, GIVEN)
        self.decisions.code[p][:, k] = np.where(give, given_code,
                                                np.where(held, DELAYED if delaying else HELD, STOPPED))
        self._record(p, k, s, give, factor, mem)
        if delaying:
            self._delayed[(p, k)] = (held, factor)
        return give, factor

    def _record(self, p: int, k: int, s: int, give: np.ndarray, factor: np.ndarray, mem) -> None:
        line = self.doses[self.plan.slots[s].line]
        mg = np.nan if line.amount_unit == "fraction" else line.amount_mg(self.weight_kg)
        self.decisions.amount_mg[p][:, k] = np.where(give, factor * mg, self.decisions.amount_mg[p][:, k])
        mem["given"] = np.where(give, factor * line.amount, mem["given"])
        mem["admin"][:, k] = np.where(give, s, mem["admin"][:, k])

    def _tolerated(self, last: np.ndarray, tr) -> np.ndarray:
        ok = last >= 0
        if tr.if_cadss_below is not None:
            ok &= self.readings.at(last, "cadss_peak") < tr.if_cadss_below
        if tr.if_sbp_rise_below is not None:
            ok &= self.readings.at(last, "sbp_rise") < tr.if_sbp_rise_below
        return ok


def solve_adaptive(chunk, settings: SolverSettings):
    """(states, status, steps, decisions) of a prepared trial chunk whose sequence has rules."""
    return integrate(chunk.plan, chunk.problem, chunk.model, chunk.timeline.times, chunk.timeline.baseline,
                     chunk.spec.endpoints, chunk.cohort.parameters, chunk.cohort.patients.weight_kg, settings)


def integrate(plan_: Plan, problem: Problem, model, grid: np.ndarray, baselines, endpoints, params,
              weight_kg: np.ndarray, settings: SolverSettings, backend: str = "cpu"):
    """(states on ``grid``, status, steps, decisions) of ``problem`` (its schedule as written, on
    ``grid``) dosed by ``plan_``'s rules; ``baselines`` holds each period's baseline grid index and
    ``endpoints`` the response and remission criteria (``Endpoints``)."""
    n, duration = problem.n_patients, plan_.scenario.duration_h
    extra = set()
    for s in plan_.slots:
        if s.delayed:  # a delayed dose starts (and an infusion of it ends) between the planned events
            extra |= {s.time_h, s.time_h + (plan_.scenario.doses[s.line].duration_h or 0.0)}
    bounds = np.array(sorted(set(problem.seg_t[0].tolist()) | {t for t in extra if t < duration}))
    base = build_schedules(plan_.base, model, params, weight_kg)
    base_u, base_j = _on_bounds(base, bounds)
    adm = [_administration(plan_.scenario.doses[s.line], s.time_h, duration, model, params, weight_kg, bounds)
           for s in plan_.slots]
    n_slots = len(plan_.slots)
    factor = np.zeros((n, n_slots))
    given = np.zeros((n, n_slots), dtype=bool)
    states = np.full((n, grid.size, problem.y0.shape[1]), np.nan)
    status = np.zeros(n, dtype=np.int64)
    steps = np.zeros(n, dtype=np.int64)
    readings = _Readings(model, states, problem, grid, plan_)
    rulebook = _Rulebook(plan_, endpoints, grid, baselines, model, problem, states, readings, weight_kg)
    y = problem.y0.copy()
    edges = sorted({0.0, duration, *(s.time_h for s in plan_.slots)})
    for a, b in zip(edges[:-1], edges[1:]):
        for s in (i for i, slot in enumerate(plan_.slots) if slot.time_h == a):
            give, f = rulebook.decide(s, y)
            given[:, s], factor[:, s] = give, np.where(give, f, 0.0)
        i0, i1 = int(np.searchsorted(bounds, a)), int(np.searchsorted(bounds, b))
        seg_u, seg_j = base_u[:, i0:i1].copy(), base_j[:, i0:i1].copy()
        for s, ad in enumerate(adm):
            if i0 <= ad.seg < i1:
                seg_j[:, ad.seg - i0] += given[:, s, None] * ad.contact + factor[:, s, None] * ad.drug_jump
            low, high = max(ad.seg, i0), min(ad.seg_end, i1)
            if low < high:
                seg_u[:, low - i0:high - i0] += (factor[:, s, None] * ad.drug_rate)[:, None, :]
        last = b >= duration
        idx = np.flatnonzero((grid >= a - _EPS) & ((grid < b - _EPS) | last))
        t_out = grid[idx] if last else np.append(grid[idx], b)
        part = Problem(model, problem.parameter_names, y, problem.theta,
                       np.ascontiguousarray(np.broadcast_to(bounds[i0:i1 + 1], (n, i1 - i0 + 1))), seg_u, seg_j,
                       t_out, np.zeros(n))
        out, st, ns = solve(part, settings, backend)
        states[:, idx] = out[:, :idx.size]
        y = out[:, -1].copy()
        status = np.where(status == 0, st, status)
        steps += ns
    decisions = rulebook.decisions
    decisions.given = given
    return states, status, steps, decisions


# ---------------------------------------------------------------------- reading the trial
class GivenSessions:
    """The session each assessment reports, per patient: the last administration actually given
    before it (a held dose leaves none; a delayed one is read at its own time). Periods without
    rules are read as written (``fallback``)."""

    def __init__(self, spec: TrialSpec, seq: Sequence, tl, plan_: Plan, given: np.ndarray, fallback):
        self.spec, self.seq, self.tl, self.plan, self.given, self.fallback = spec, seq, tl, plan_, given, fallback

    def _reported(self, p: int, t_assess: float) -> np.ndarray:
        """Per patient the slot of the last administration of period ``p`` before ``t_assess`` (-1: none)."""
        choice = np.full(self.given.shape[0], -1)
        for s, slot in enumerate(self.plan.slots):
            if slot.period == p and slot.time_h < t_assess - _EPS:
                choice = np.where(self.given[:, s], s, choice)
        return choice

    def read(self, values: np.ndarray, p: int, how: str) -> np.ndarray:
        """(n, n_assess): ``SESSION_STATS[how]`` over each patient's reported session window."""
        from .run import SESSION_STATS, WHOLE_WINDOW

        if self.plan.rules[p] is None:
            return self.fallback.read(values, p, how)
        times = self.tl.times
        out = np.full((values.shape[0], len(self.spec.assessments_h)), np.nan)
        for j, a in enumerate(self.spec.assessments_h):
            t_assess = self.seq.periods[p].start_h + a
            choice = self._reported(p, t_assess)
            for s in np.unique(choice[choice >= 0]):
                t = self.plan.slots[int(s)].time_h
                window = session_window(times, t, math.inf if how in WHOLE_WINDOW else t_assess)
                rows = choice == s
                out[rows, j] = SESSION_STATS[how](values[rows][:, window], times[window])
        return out


#: the patients table's columns of adaptive dosing (per patient and period, repeated per assessment)
DECISION_COLUMNS = ("doses_given [count]", "doses_held [count]", "doses_delayed [count]", "doses_titrated [count]",
                    "doses_stopped [count]", "dose_total [mg]", "stopped_at [h]", "dose_decisions")


def _written_total_mg(spec: TrialSpec, arm_name: str, weight_kg: np.ndarray) -> tuple[int, np.ndarray]:
    """(administrations, total mg per patient) of an arm's doses as written."""
    arm = next(a for a in spec.arms if a.name == arm_name)
    doses = Scenario.from_dict({"dose": list(arm.doses), "simulation": {"duration": "104 w"}}).doses
    return sum(len(d.times_h) for d in doses), total_amount_mg(doses, weight_kg)


def _tokens(code: np.ndarray, amount_mg: np.ndarray, delay_h: float) -> list[str]:
    """Each patient's sessions in a few words: "56 mg|84 mg|held|84 mg +24 h|stopped" (amounts to six
    significant digits; ``given_doses`` reads them back)."""
    mg = np.char.mod("%.6g mg", amount_mg)
    words = np.where(code == HELD, "held", np.where(code == STOPPED, "stopped", mg)).astype(object)
    delayed = code == DELAYED
    words[delayed] = np.char.add(mg[delayed], f" +{delay_h:g} h")
    return ["|".join(row) for row in words]


def decision_columns(spec: TrialSpec, seq: Sequence, plan_: Plan | None, decisions: Decisions | None,
                     patients) -> dict[str, np.ndarray]:
    """``DECISION_COLUMNS`` for a chunk's rows (its periods one after another, as ``_rows`` lays them)."""
    n, n_assess = len(patients), len(spec.assessments_h)
    parts: dict[str, list[np.ndarray]] = {c: [] for c in DECISION_COLUMNS}
    for p, period in enumerate(seq.periods):
        rules = plan_.rules[p] if plan_ is not None else None
        if rules is None:
            count, total = _written_total_mg(spec, period.arm, patients.weight_kg)
            values = {"doses_given [count]": np.full(n, count), "dose_total [mg]": total,
                      "stopped_at [h]": np.full(n, np.nan), "dose_decisions": np.full(n, "as written", dtype=object)}
            for c in ("doses_held [count]", "doses_delayed [count]", "doses_titrated [count]", "doses_stopped [count]"):
                values[c] = np.zeros(n, dtype=int)
        else:
            code, mg = decisions.code[p], decisions.amount_mg[p]
            values = {"doses_given [count]": np.isin(code, (GIVEN, TITRATED, DELAYED)).sum(axis=1),
                      "doses_held [count]": (code == HELD).sum(axis=1),
                      "doses_delayed [count]": (code == DELAYED).sum(axis=1),
                      "doses_titrated [count]": (code == TITRATED).sum(axis=1),
                      "doses_stopped [count]": (code == STOPPED).sum(axis=1),
                      "dose_total [mg]": mg.sum(axis=1),
                      "stopped_at [h]": decisions.stopped_at_h[p],
                      "dose_decisions": np.array(_tokens(code, mg, rules.delay_h), dtype=object)}
        for c in DECISION_COLUMNS:
            parts[c].append(np.repeat(values[c], n_assess))
    return {c: np.concatenate(v) for c, v in parts.items()}


def given_doses(plan_: Plan, decisions: np.ndarray, patients: np.ndarray, period: np.ndarray):
    """(patient, time h, amount mg, dose line) of each governed administration given, read back from
    the patients table's ``dose_decisions`` (one entry per patient and period)."""
    slots = {(s.period, s.session, s.delayed): s for s in plan_.slots}
    out = []
    for who, p, text in zip(patients, period, decisions):
        if plan_.rules[p - 1] is None:
            continue
        for k, word in enumerate(text.split("|")):
            if word in ("held", "stopped"):
                continue
            amount, _, delay = word.partition(" mg")
            slot = slots[(p - 1, k, bool(delay.strip()))]  # a delayed dose at its slot's own time
            out.append((who, slot.time_h, float(amount), slot.line))
    return out


def session_decisions(plan_: Plan, decisions: Decisions) -> list[dict]:
    """One patient's decisions, session by session (a scenario's manifest)."""
    rules = plan_.rules[0]
    words = _tokens(decisions.code[0], decisions.amount_mg[0], rules.delay_h)[0].split("|")
    return [{"planned [h]": t, "decision": w} for t, w in zip(rules.sessions_h, words)]
