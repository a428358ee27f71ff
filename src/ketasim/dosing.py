"""From a scenario to what the engine integrates: covariates, initial state and a dose schedule.

The schedule splits the time axis at every dose event: between two events the inputs (IV infusion
rates) are constant, and at the start of each segment boluses are added to states (IV bolus into
plasma, the other routes into their depots, with the non-available fraction booked as eliminated).
Amounts are converted here, at the boundary, from mg to umol of each enantiomer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from .errors import ScenarioError
from .model.pk import dose_fractions
from .model.system import Model
from .params import ParameterColumns
from .scenario import DRUG_ENANTIOMERS, Patient, PatientColumns, Scenario

HOURS_PER_YEAR = 8766.0
#: routes given in a clinic session (a full treatment contact); oral and sublingual doses are taken at home
SUPERVISED_ROUTES = ("iv", "im", "intranasal", "inhaled")

#: each interacting drug -> (enzyme activity covariate, parameter giving its fold activity)
COMEDICATION_EFFECTS: dict[str, tuple[tuple[str, str], ...]] = {
    "clarithromycin": (("cyp3a4_hepatic", "clarithromycin_cyp3a4_hepatic"),
                       ("cyp3a4_gut", "clarithromycin_cyp3a4_gut")),
    "itraconazole": (("cyp3a4_hepatic", "itraconazole_cyp3a4_hepatic"),
                     ("cyp3a4_gut", "itraconazole_cyp3a4_gut")),
    "grapefruit": (("cyp3a4_gut", "grapefruit_cyp3a4_gut"),),
    "ticlopidine": (("cyp2b6", "ticlopidine_cyp2b6"),),
    "rifampicin": (("cyp3a4_hepatic", "rifampicin_cyp3a4_hepatic"),
                   ("cyp3a4_gut", "rifampicin_cyp3a4_gut"), ("cyp2b6", "rifampicin_cyp2b6")),
    "lorazepam": (),  # no effect on ketamine enzymes; potentiates GABA-A receptors (synapse layer)
}
@dataclass(frozen=True)
class DrugEntry:
    """Where a non-ketamine drug's dose goes: the state a bolus or an oral dose enters, the input an
    IV infusion drives (None: no infusion), and the parameter holding its molar mass."""

    state: str
    molar_mass: str
    infusion_input: str | None = None
    #: counted in the ketamine-species mass balance of the pk layer
    in_pk_balance: bool = False


#: every dosed drug other than ketamine and the gases
DRUG_ENTRIES: dict[str, DrugEntry] = {
    "midazolam": DrugEntry("comparators.midazolam_central", "comparators.mw_midazolam", "dosing.midazolam_iv_rate"),
    "citalopram": DrugEntry("comparators.citalopram_gut", "comparators.mw_citalopram"),
    "escitalopram": DrugEntry("comparators.escitalopram_gut", "comparators.mw_escitalopram"),
    "sertraline": DrugEntry("comparators.sertraline_gut", "comparators.mw_sertraline"),
    "rapamycin": DrugEntry("comparators.rapamycin_gut", "comparators.mw_rapamycin"),
    "memantine": DrugEntry("probes.memantine_gut", "probes.mw_memantine"),
    "naltrexone": DrugEntry("probes.naltrexone_gut", "probes.mw_naltrexone"),
    "lanicemine": DrugEntry("probes.lanicemine_central", "probes.mw_lanicemine", "dosing.lanicemine_iv_rate"),
    "traxoprodil": DrugEntry("probes.traxoprodil_central", "probes.mw_traxoprodil", "dosing.traxoprodil_iv_rate"),
    "2r6r-hnk": DrugEntry("pk.r_hnk", "pk.mw_hnk", "dosing.r_hnk_iv_rate", in_pk_balance=True),
}
#: each gas -> the input carrying its inspired fraction
GAS_INPUTS = {"nitrous-oxide": "dosing.nitrous_oxide_inspired"}


def _per_patient(value, n: int) -> np.ndarray:
    """A parameter's value for each of n patients: its column, or one shared value repeated."""
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))


def _by_genotype(phenotypes: np.ndarray, parameter: str, params, reference: str = "normal") -> np.ndarray:
    """Fold activity per patient: 1 for the reference genotype, else the parameter ``<parameter>_<genotype>``."""
    n = phenotypes.shape[0]
    fold = np.ones(n)
    for phenotype in set(phenotypes.tolist()) - {reference}:
        mask = phenotypes == phenotype
        fold[mask] = _per_patient(params.value(f"{parameter}_{phenotype.replace('/', '_')}"), n)[mask]
    return fold


def enzyme_activities(patients: PatientColumns, params) -> dict[str, np.ndarray]:
    """CYP2B6 and CYP3A4 (hepatic, gut) activity per patient: genotype times every interacting drug."""
    act = {"cyp2b6": _by_genotype(patients.cyp2b6, "interactions.cyp2b6", params)}
    act["cyp3a4_hepatic"] = _by_genotype(patients.cyp3a4, "interactions.cyp3a4", params)
    act["cyp3a4_gut"] = act["cyp3a4_hepatic"].copy()
    for drug in patients.comedication_names:
        taking = patients.takes(drug)
        for enzyme, name in COMEDICATION_EFFECTS[drug]:
            act[enzyme] = np.where(taking, act[enzyme] * params.value(f"interactions.{name}"), act[enzyme])
    return act


HEALTHY_MADRS = 6.0


def il6_baseline(patients: PatientColumns, params) -> np.ndarray:
    """Baseline IL-6 per patient (internal unit ng/mL): given, or by inflammation status; 'normal' in
    depression is raised by Osimo 2020's effect size (g = 0.61) over the healthy reference."""
    n = len(patients)
    healthy = _per_patient(params.value("inflammation.il6_healthy"), n)
    depressed = healthy + params.value("inflammation.il6_depression_hedges_g") * params.value("inflammation.il6_population_sd")
    status = np.where(patients.baseline_madrs <= HEALTHY_MADRS, healthy, depressed)
    status = np.where(patients.inflammation == "low", params.value("inflammation.il6_low"), status)
    status = np.where(patients.inflammation == "high", params.value("inflammation.il6_high"), status)
    return np.where(np.isnan(patients.il6_pg_ml), status, patients.il6_pg_ml / 1000.0)


def synaptic_density_baseline(patients: PatientColumns, params) -> np.ndarray:
    """Prefrontal synaptic strength before treatment: 1 at MADRS <= 6, lower with severity."""
    deficit = params.value("circuit.synaptic_deficit_per_madrs_point") * np.maximum(patients.baseline_madrs - HEALTHY_MADRS, 0.0)
    return np.maximum(1.0 - deficit, 0.2)


def covariate_columns(patients: PatientColumns, params) -> dict[str, np.ndarray]:
    """The numeric covariates of the vector field, in internal units, one (n,) column each.

    ``params`` is a ``ParameterSet`` shared by all, or ``ParameterColumns`` with each patient's values.
    """
    act = enzyme_activities(patients, params)
    return {
        "patient.weight": patients.weight_kg.astype(np.float64),
        "patient.age": patients.age_y * HOURS_PER_YEAR,
        "patient.female": (patients.sex == "female").astype(np.float64),
        "patient.cyp2b6_activity": act["cyp2b6"],
        "patient.cyp3a4_hepatic_activity": act["cyp3a4_hepatic"],
        "patient.cyp3a4_gut_activity": act["cyp3a4_gut"],
        "patient.baseline_madrs": patients.baseline_madrs.astype(np.float64),
        "patient.synaptic_density_baseline": synaptic_density_baseline(patients, params),
        "patient.il6_baseline": il6_baseline(patients, params),
        "patient.bdnf_release": _by_genotype(patients.bdnf_val66met, "plasticity.bdnf_release", params, "val/val"),
        "patient.lorazepam": patients.takes("lorazepam").astype(np.float64),
        "patient.plasticity_responsive": patients.plasticity_responsive.astype(np.float64),
        "patient.episodic_course": (patients.course == "episodic").astype(np.float64),
    }


def covariates(patient: Patient, params) -> dict[str, float]:
    """The numeric covariates of one patient (``covariate_columns`` for a batch)."""
    return {k: float(v[0]) for k, v in covariate_columns(PatientColumns.of([patient]), params).items()}


@lru_cache(maxsize=32)
def _kernel_parameter_names(model: Model, available: tuple[str, ...]) -> tuple[str, ...]:
    return model.parameter_names(available)  # the same few sets every call: a trial asks per chunk


def parameter_matrix(model: Model, params, patients: PatientColumns) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, (n, len(names)) values) of everything the vector field reads: parameters, then covariates.

    ``params`` is shared by all patients (a ``ParameterSet``) or per patient (``ParameterColumns``).
    """
    names = _kernel_parameter_names(model, tuple(params))
    n = len(patients)
    if isinstance(params, ParameterColumns):
        shared = params.columns(names)
    else:
        shared = np.broadcast_to(np.array([params.value(x) for x in names], dtype=np.float64), (n, len(names)))
    cov = covariate_columns(patients, params)
    theta = np.concatenate([shared, np.stack([cov[c] for c in model.covariate_names], axis=1)], axis=1)
    return names + model.covariate_names, theta


def parameter_vector(model: Model, params, patient: Patient) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, values) of everything the vector field reads for one patient."""
    names, theta = parameter_matrix(model, params, PatientColumns.of([patient]))
    return names, theta[0]


@dataclass(frozen=True)
class SteadyState:
    """A regimen given since long before the start (``steady_state = true``): what its doses before
    the start left in the drug's compartments is the initial state (``steady_state_start``). Oral
    and IV doses are boluses into ``state``; an infusion runs at ``umol`` per hour for
    ``duration_h`` through ``input``; a constant infusion has no interval (``interval_h`` infinite)."""

    state: str  # the compartment its doses enter
    umol: np.ndarray  # (n,) per dose for a bolus; per hour (the rate) for an infusion
    interval_h: float
    first_h: float  # the first dose in the simulation (< interval_h)
    duration_h: float | None = None  # an infusion's length; None: a bolus
    input: str | None = None  # the input an infusion runs through

    def for_patients(self, umol: np.ndarray) -> SteadyState:
        """The same regimen with other patients' amounts."""
        return replace(self, umol=umol)


@dataclass(frozen=True)
class Schedule:
    """Piecewise-constant inputs and state jumps on segments ``[bounds[i], bounds[i+1])``."""

    bounds: np.ndarray  # (n_segments + 1,) h
    rates: np.ndarray  # (n_segments, n_inputs) umol/h
    jumps: np.ndarray  # (n_segments, n_states) umol (or the state's unit) added at segment start
    dosed_umol: float  # total drug given, for mass-balance checks
    steady_state: tuple[SteadyState, ...] = ()

    @property
    def n_segments(self) -> int:
        return len(self.bounds) - 1


@dataclass(frozen=True)
class Schedules:
    """The schedules of n patients receiving one scenario's doses: the segments are shared (the
    times are the scenario's), the amounts differ (weight-based doses, bioavailable fractions)."""

    bounds: np.ndarray  # (n_segments + 1,) h
    rates: np.ndarray  # (n, n_segments, n_inputs) umol/h
    jumps: np.ndarray  # (n, n_segments, n_states)
    dosed_umol: np.ndarray  # (n,)
    steady_state: tuple[SteadyState, ...] = ()

    def patient(self, r: int) -> Schedule:
        return Schedule(self.bounds, self.rates[r], self.jumps[r], float(self.dosed_umol[r]),
                        tuple(x.for_patients(x.umol[r:r + 1]) for x in self.steady_state))


class _LayerView(Mapping):
    """One layer's parameters by local name, read on demand (schedules need only a few)."""

    def __init__(self, params, layer: str):
        self._params, self._prefix = params, f"{layer}."

    def __getitem__(self, name: str):
        return self._params.value(self._prefix + name)

    def __iter__(self):
        return (n[len(self._prefix):] for n in self._params if n.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@lru_cache(maxsize=32)
def _indices(model: Model) -> tuple[dict[str, int], dict[str, int]]:
    """Positions of the model's states and dosing inputs (the same for every patient)."""
    return ({n: i for i, n in enumerate(model.state_names)}, {n: i for i, n in enumerate(model.input_names)})


def build_schedule(scenario: Scenario, model: Model, params) -> Schedule:
    """Dose events of ``scenario`` as segments for the engine (one patient: ``scenario.patient``)."""
    return build_schedules(scenario, model, params, np.array([scenario.patient.weight_kg])).patient(0)


def build_schedules(scenario: Scenario, model: Model, params, weight_kg: np.ndarray) -> Schedules:
    """Dose events of ``scenario`` as segments for n patients of weights ``weight_kg`` (kg) and
    parameters ``params`` (shared, or ``ParameterColumns`` with one row per patient)."""
    state_index, input_index = _indices(model)
    weight_kg = np.asarray(weight_kg, dtype=np.float64)
    n = weight_kg.shape[0]
    pk_values = _LayerView(params, "pk")
    mw = params.value("pk.mw_ketamine")
    end = scenario.duration_h

    events: list[float] = [0.0, end]
    rate_changes: list[tuple[float, int, np.ndarray]] = []  # (time, input, rate per patient)
    boluses: list[tuple[float, int, np.ndarray]] = []  # (time, state, amount per patient)
    dosed = np.zeros(n)
    contact = state_index.get("clinical.treatment_contact")  # absent in models without the clinical layer
    self_administered = params.value("clinical.contact_weight_self_administered") if contact is not None else 0.0
    therapy_signal = state_index.get("clinical.therapy_signal")
    steady: list[SteadyState] = []

    def infuse(t: float, input_name: str, umol, duration: float):
        """Zero-order input; returns the part given before the end of the run."""
        k = input_index[input_name]
        rate_changes.append((t, k, umol / duration))
        events.append(t)
        if t + duration < end:
            rate_changes.append((t + duration, k, -umol / duration))
            events.append(t + duration)
            return umol
        return umol * (end - t) / duration

    for i, dose in enumerate(scenario.doses):
        entry = DRUG_ENTRIES.get(dose.drug)
        if entry is not None and entry.state not in state_index:
            raise ScenarioError(f"dose[{i}].drug", f"{dose.drug} has no compartment in this model "
                                                   f"(layers {', '.join(model.layer_names)})")
        mg = dose.amount_mg(weight_kg) if dose.amount_unit != "fraction" else None
        if dose.steady_state:  # a drug with linear kinetics of its own, validated with the scenario
            entry = DRUG_ENTRIES[dose.drug]
            umol = _per_patient(mg * 1000.0 / params.value(entry.molar_mass), n).copy()
            if dose.duration_h is None:
                steady.append(SteadyState(entry.state, umol, dose.interval_h, dose.times_h[0]))
            else:  # infusions: the rate
                interval = math.inf if dose.constant_infusion else dose.interval_h
                steady.append(SteadyState(entry.state, umol / dose.duration_h, interval, dose.times_h[0],
                                          dose.duration_h, entry.infusion_input))
        for t in dose.times_h:
            events.append(t)
            if contact is not None:  # every administration is a treatment contact; one taken at home counts less
                boluses.append((t, contact, 1.0 if dose.route in SUPERVISED_ROUTES else self_administered))
            if dose.drug in DRUG_ENANTIOMERS:
                total_umol = mg * 1000.0 / mw
                for e, share in DRUG_ENANTIOMERS[dose.drug].items():
                    umol = total_umol * share
                    if dose.route == "iv" and dose.duration_h is not None:
                        dosed = dosed + infuse(t, f"dosing.{e}_ketamine_iv_rate", umol, dose.duration_h)
                        continue
                    dosed = dosed + umol
                    for suffix, fraction in dose_fractions(dose.route, pk_values, mg).items():
                        state = "pk.eliminated" if suffix == "eliminated" else f"pk.{e}_{suffix}"
                        boluses.append((t, state_index[state], umol * fraction))
            elif dose.drug in GAS_INPUTS:  # breathed at a constant inspired fraction
                infuse(t, GAS_INPUTS[dose.drug], dose.amount * dose.duration_h, dose.duration_h)
            elif dose.drug in DRUG_ENTRIES:
                entry = DRUG_ENTRIES[dose.drug]
                umol = mg * 1000.0 / params.value(entry.molar_mass)
                if entry.infusion_input is not None and dose.duration_h is not None:
                    given = infuse(t, entry.infusion_input, umol, dose.duration_h)
                else:
                    given = umol
                    boluses.append((t, state_index[entry.state], umol))
                if entry.in_pk_balance:
                    dosed = dosed + given
    for therapy in scenario.therapies:
        efficacy = params.value(f"clinical.therapy_efficacy_{therapy.kind}")
        for t in therapy.times_h:
            events.append(t)
            if contact is not None:
                boluses.append((t, contact, 1.0))
                boluses.append((t, therapy_signal, efficacy))

    bounds = np.array(sorted(set(events)), dtype=np.float64)
    n_seg = len(bounds) - 1
    seg_of = {float(t): i for i, t in enumerate(bounds[:-1])}
    rates = np.zeros((n, n_seg, len(input_index)))
    for t, k, r in rate_changes:
        rates[:, seg_of[float(t)]:, k] += _per_patient(r, n)[:, None]
    # an infusion's stop subtracts what its start added: clear the round-off, patient by patient and input by input
    scale = np.maximum(1.0, np.abs(rates).max(axis=1, keepdims=True, initial=0.0))
    rates[np.abs(rates) < 1e-12 * scale] = 0.0
    jumps = np.zeros((n, n_seg, len(state_index)))
    for t, k, a in boluses:
        jumps[:, seg_of[float(t)], k] += _per_patient(a, n)
    return Schedules(bounds=bounds, rates=rates, jumps=jumps, dosed_umol=_per_patient(dosed, n).copy(),
                     steady_state=tuple(steady))


def total_amount_mg(doses, weight_kg: np.ndarray) -> np.ndarray:
    """The mg every administration of ``doses`` gives in all, per patient of weights ``weight_kg``
    (gases, dosed as an inspired fraction, count nothing)."""
    total = np.zeros(np.shape(weight_kg))
    for d in doses:
        if d.amount_unit != "fraction":
            total = total + np.asarray(d.amount_mg(weight_kg)) * len(d.times_h)
    return total


def _drug_compartments(model: Model, entry_state: str) -> list[int]:
    """The states of a drug's own PK: those named like the compartment its doses enter
    (``comparators.escitalopram_gut`` -> ``comparators.escitalopram_*``)."""
    prefix = entry_state.rsplit("_", 1)[0] + "_"
    return [i for i, x in enumerate(model.state_names) if x.startswith(prefix)]


def steady_state_start(model: Model, names: tuple[str, ...], theta: np.ndarray, y0: np.ndarray,
                       regimens: tuple[SteadyState, ...]) -> np.ndarray:
    """``y0`` (n, n_states) with each regimen's compartments at its steady state at time 0, added to
    what is there (two regimens of one drug superpose, NONMEM's SS=2): the doses at first - k * tau
    (k >= 1) summed by the compartments' linear kinetics dx/dt = A x + r(t),

    - a bolus b:                 x(0) = e^{A (tau - first)} (I - e^{A tau})^-1 b
    - an infusion over D:        x(0) = e^{A (tau - first - D)} (I - e^{A tau})^-1 J,
                                 J = integral_0^D e^{A s} ds r (the state one infusion leaves)
    - a constant infusion r:     x(0) = -A^-1 r,

    with A read from the vector field, which must be linear and autonomous in the drug's
    compartments (each is probed alone from empty at two amounts, which catches a saturable term but
    not one coupling to other states), and r the infusion's input as it reaches them. The regimen is
    continued backwards from the first dose, so a first dose after time 0 has drug before it (unlike
    NONMEM's SS=1 later in a record, which resets). J comes from the exponential of the augmented
    matrix [[A, r], [0, 0]] (Van Loan 1978), so a singular A needs no inverse there."""
    from scipy.linalg import expm

    if not regimens:
        return y0
    y0 = y0.copy()
    th = {name: theta[:, j] for j, name in enumerate(names)}
    no_input = {name: 0.0 for name in model.input_names}

    def rates(y: np.ndarray, idx: list[int], u=no_input) -> np.ndarray:
        f = model.derivatives({x: y[:, i] for i, x in enumerate(model.state_names)}, th, u, np)
        return np.stack([np.broadcast_to(np.asarray(f[model.state_names[i]], dtype=np.float64), (y.shape[0],))
                         for i in idx], axis=1)

    for regimen in regimens:
        idx = _drug_compartments(model, regimen.state)
        n, k = y0.shape[0], len(idx)
        empty = y0.copy()
        empty[:, idx] = 0.0
        at_zero = rates(empty, idx)
        a = np.empty((n, k, k))
        for c, i in enumerate(idx):
            probe = empty.copy()
            probe[:, i] = 1.0
            a[:, :, c] = rates(probe, idx) - at_zero
            probe[:, i] = 3.0
            if not np.allclose(rates(probe, idx) - at_zero, 3.0 * a[:, :, c], rtol=1e-8, atol=1e-12):
                raise ValueError(f"steady_state: the kinetics of {model.state_names[i]} are not linear; "
                                 "a steady-state start needs linear kinetics")
        if regimen.duration_h is None:
            b = np.zeros((n, k, 1))
            b[:, idx.index(model.state_names.index(regimen.state)), 0] = regimen.umol
        else:  # per umol/h of the infusion input, as the vector field passes it on
            r = (rates(empty, idx, {**no_input, regimen.input: 1.0}) - at_zero)[:, :, None] * regimen.umol[:, None, None]
        tau, first = regimen.interval_h, regimen.first_h
        if math.isinf(tau):
            x = -np.linalg.solve(a, r)
        elif regimen.duration_h is None:
            x = expm(a * (tau - first)) @ np.linalg.solve(np.eye(k) - expm(a * tau), b)
        else:
            augmented = np.zeros((n, k + 1, k + 1))
            augmented[:, :k, :k], augmented[:, :k, k:] = a, r
            one_infusion = expm(augmented * regimen.duration_h)[:, :k, k:]
            x = expm(a * (tau - first - regimen.duration_h)) @ np.linalg.solve(np.eye(k) - expm(a * tau), one_infusion)
        y0[:, idx] += x[:, :, 0]
    return y0
