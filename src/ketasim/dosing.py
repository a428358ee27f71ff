"""From a scenario to what the engine integrates: covariates, initial state and a dose schedule.

The schedule splits the time axis at every dose event: between two events the inputs (IV infusion
rates) are constant, and at the start of each segment boluses are added to states (IV bolus into
plasma, the other routes into their depots, with the non-available fraction booked as eliminated).
Amounts are converted here, at the boundary, from mg to umol of each enantiomer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

import numpy as np

from .model.pk import dose_fractions
from .model.system import Model
from .params import ParameterSet
from .scenario import DRUG_ENANTIOMERS, Patient, Scenario

HOURS_PER_YEAR = 8766.0

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
    "rapamycin": (),  # no effect modelled on ketamine enzymes; inhibits mTORC1 (plasticity layer)
}
#: the state each comparator drug's dose enters (its molar mass is comparators.mw_<drug>)
COMPARATOR_STATES = {"midazolam": "comparators.midazolam_central", "citalopram": "comparators.citalopram_gut",
                     "escitalopram": "comparators.escitalopram_gut", "sertraline": "comparators.sertraline_gut"}


def enzyme_activities(patient: Patient, params: ParameterSet) -> dict[str, float]:
    """CYP2B6 and CYP3A4 (hepatic, gut) activity: genotype times every interacting drug."""

    def genotype(enzyme: str, phenotype: str) -> float:
        return 1.0 if phenotype == "normal" else params.value(f"interactions.{enzyme}_{phenotype}")

    act = {"cyp2b6": genotype("cyp2b6", patient.cyp2b6)}
    act["cyp3a4_hepatic"] = act["cyp3a4_gut"] = genotype("cyp3a4", patient.cyp3a4)
    for drug in patient.comedications:
        for enzyme, name in COMEDICATION_EFFECTS[drug]:
            act[enzyme] *= params.value(f"interactions.{name}")
    return act


def il6_baseline(patient: Patient, params: ParameterSet) -> float:
    """Baseline IL-6 (internal unit ng/mL): given, or by inflammation status; 'normal' in depression
    is raised by Osimo 2020's effect size (g = 0.61) over the healthy reference."""
    if patient.il6_pg_ml is not None:
        return patient.il6_pg_ml / 1000.0
    healthy = params.value("inflammation.il6_healthy")
    if patient.inflammation == "low":
        return params.value("inflammation.il6_low")
    if patient.inflammation == "high":
        return params.value("inflammation.il6_high")
    if patient.baseline_madrs <= HEALTHY_MADRS:
        return healthy
    return healthy + params.value("inflammation.il6_depression_hedges_g") * params.value("inflammation.il6_population_sd")


HEALTHY_MADRS = 6.0


def synaptic_density_baseline(patient: Patient, params: ParameterSet) -> float:
    """Prefrontal synaptic strength before treatment: 1 at MADRS <= 6, lower with severity."""
    deficit = params.value("circuit.synaptic_deficit_per_madrs_point") * max(patient.baseline_madrs - HEALTHY_MADRS, 0.0)
    return max(1.0 - deficit, 0.2)


def covariates(patient: Patient, params: ParameterSet) -> dict[str, float]:
    """The numeric patient covariates of the vector field, in internal units."""
    act = enzyme_activities(patient, params)
    genotype = patient.bdnf_val66met
    return {
        "patient.weight": patient.weight_kg,
        "patient.age": patient.age_y * HOURS_PER_YEAR,
        "patient.female": 1.0 if patient.sex == "female" else 0.0,
        "patient.cyp2b6_activity": act["cyp2b6"],
        "patient.cyp3a4_hepatic_activity": act["cyp3a4_hepatic"],
        "patient.cyp3a4_gut_activity": act["cyp3a4_gut"],
        "patient.baseline_madrs": patient.baseline_madrs,
        "patient.synaptic_density_baseline": synaptic_density_baseline(patient, params),
        "patient.il6_baseline": il6_baseline(patient, params),
        "patient.bdnf_release": 1.0 if genotype == "val/val" else params.value(
            f"plasticity.bdnf_release_{genotype.replace('/', '_')}"),
        "patient.lorazepam": 1.0 if "lorazepam" in patient.comedications else 0.0,
        "patient.rapamycin": 1.0 if "rapamycin" in patient.comedications else 0.0,
    }


@lru_cache(maxsize=32)
def _kernel_parameter_names(model: Model, available: tuple[str, ...]) -> tuple[str, ...]:
    return model.parameter_names(available)  # the same few sets every call: a trial asks per patient


def parameter_vector(model: Model, params: ParameterSet, patient: Patient) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, values) of everything the vector field reads: parameters then covariates."""
    names = _kernel_parameter_names(model, tuple(params))
    cov = covariates(patient, params)
    if isinstance(params, dict):  # a virtual patient's values: one C-level gather instead of a call per name
        values = list(itemgetter(*names)(params)) + [cov[n] for n in model.covariate_names]
    else:
        values = [params.value(n) for n in names] + [cov[n] for n in model.covariate_names]
    return names + model.covariate_names, np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class Schedule:
    """Piecewise-constant inputs and state jumps on segments ``[bounds[i], bounds[i+1])``."""

    bounds: np.ndarray  # (n_segments + 1,) h
    rates: np.ndarray  # (n_segments, n_inputs) umol/h
    jumps: np.ndarray  # (n_segments, n_states) umol (or the state's unit) added at segment start
    dosed_umol: float  # total drug given, for mass-balance checks

    @property
    def n_segments(self) -> int:
        return len(self.bounds) - 1


class _LayerView(Mapping):
    """One layer's parameters by local name, read on demand (schedules need only a few)."""

    def __init__(self, params, layer: str):
        self._params, self._prefix = params, f"{layer}."

    def __getitem__(self, name: str) -> float:
        return self._params.value(self._prefix + name)

    def __iter__(self):
        return (n[len(self._prefix):] for n in self._params if n.startswith(self._prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@lru_cache(maxsize=32)
def _indices(model: Model) -> tuple[dict[str, int], dict[str, int]]:
    """Positions of the model's states and dosing inputs (the same for every patient)."""
    return ({n: i for i, n in enumerate(model.state_names)}, {n: i for i, n in enumerate(model.input_names)})


def build_schedule(scenario: Scenario, model: Model, params: ParameterSet) -> Schedule:
    """Dose events of ``scenario`` as segments for the engine."""
    state_index, input_index = _indices(model)
    pk_values = _LayerView(params, "pk")
    mw = params.value("pk.mw_ketamine")
    end = scenario.duration_h

    events: list[float] = [0.0, end]
    rate_changes: list[tuple[float, int, float]] = []
    boluses: list[tuple[float, int, float]] = []
    dosed = 0.0
    contact = state_index.get("clinical.treatment_contact")  # absent in models without the clinical layer
    therapy_signal = state_index.get("clinical.therapy_signal")

    def infuse(t: float, input_name: str, umol: float, duration: float) -> float:
        """Zero-order input; returns the part given before the end of the run."""
        k = input_index[input_name]
        rate_changes.append((t, k, umol / duration))
        events.append(t)
        if t + duration < end:
            rate_changes.append((t + duration, k, -umol / duration))
            events.append(t + duration)
            return umol
        return umol * (end - t) / duration

    for dose in scenario.doses:
        mg = dose.amount_mg(scenario.patient.weight_kg)
        for t in dose.times_h:
            events.append(t)
            if contact is not None:
                boluses.append((t, contact, 1.0))  # every administration is a treatment contact
            if dose.drug in DRUG_ENANTIOMERS:
                total_umol = mg * 1000.0 / mw
                for e, share in DRUG_ENANTIOMERS[dose.drug].items():
                    umol = total_umol * share
                    if dose.route == "iv" and dose.duration_h is not None:
                        dosed += infuse(t, f"dosing.{e}_ketamine_iv_rate", umol, dose.duration_h)
                        continue
                    dosed += umol
                    for suffix, fraction in dose_fractions(dose.route, pk_values).items():
                        state = "pk.eliminated" if suffix == "eliminated" else f"pk.{e}_{suffix}"
                        boluses.append((t, state_index[state], umol * fraction))
            elif dose.drug in COMPARATOR_STATES:
                umol = mg * 1000.0 / params.value(f"comparators.mw_{dose.drug}")
                if dose.drug == "midazolam" and dose.duration_h is not None:
                    infuse(t, "dosing.midazolam_iv_rate", umol, dose.duration_h)
                else:
                    boluses.append((t, state_index[COMPARATOR_STATES[dose.drug]], umol))
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
    rates = np.zeros((n_seg, len(input_index)))
    for t, k, r in rate_changes:
        rates[seg_of[float(t)]:, k] += r
    # an infusion's stop subtracts what its start added: clear the round-off, input by input
    rates[np.abs(rates) < 1e-12 * np.maximum(1.0, np.abs(rates).max(axis=0, initial=0.0))] = 0.0
    jumps = np.zeros((n_seg, len(state_index)))
    for t, k, a in boluses:
        jumps[seg_of[float(t)], k] += a
    return Schedule(bounds=bounds, rates=rates, jumps=jumps, dosed_umol=dosed)
