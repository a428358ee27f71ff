"""Drawing virtual patients: covariates and parameter variability, reproducibly.

Patients are drawn in blocks of ``BLOCK`` consecutive indices, each block from random streams
derived from the trial seed, a stream number (the arm or sequence) and the block number (numpy
``SeedSequence`` spawn keys), so the draws are vectorised and patient 417 of arm 1 is still the same
person whatever the chunk size, the number of workers or the machine. Covariates, parameter
deviations and rating noise use separate streams: changing a covariate distribution leaves each
patient's parameter deviations as they were. A parameter deviation is not taken from a stream at
all but computed from its own coordinates (``counter_rng``): the parameter's name under the seed and
stream, the patient's row and block, and the attempt. Adding, removing or re-ranging one parameter
therefore leaves every other parameter's draws exactly as they were (the members of a correlated
group move together), so a change to one part of the model is judged on its own rather than through
a reshuffled population.

Each patient's illness either responds to the plasticity route or does not (a Bernoulli draw with
``population.plasticity_nonresponder_fraction``). Enrolment follows a screening rating: the true
severity (the ``baseline_madrs`` covariate, which starts the model) plus the patient's fluctuation,
the rating day's own deviation and the rater's error (``population.madrs_fluctuation_sd``,
``population.madrs_occasion_sd``, ``population.madrs_rater_sd``) must reach the population's
``inclusion_madrs_at_least``; patients below it are replaced by new draws. Later ratings
(``ratings``) continue the same fluctuation as an Ornstein-Uhlenbeck process with correlation time
``population.madrs_fluctuation_time`` and add a fresh day's deviation and rater error, so those
enrolled on a high day regress towards their true severity.

Parameter variability is lognormal around the file's value (its median), with
``omega = sqrt(ln(1 + CV^2))`` (the usual NONMEM exponential model), redrawn until the value lies in
the parameter's plausible range and every combination the equations need holds
(``ketasim.model.constraints``).

>>> from ketasim.params import load_parameters
>>> sampler = PopulationSampler(PopulationSpec.from_dict({"n": 5, "preset": "treatment-resistant"}),
...                             load_parameters())
>>> a = sampler.draw(seed=42, stream=0, index=3)
>>> b = sampler.draw(seed=42, stream=0, index=3)
>>> a.patient == b.patient and a.parameters == b.parameters
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ScenarioError
from ..model.constraints import CONSTRAINED_PARAMETERS, satisfied
from ..params import ParameterColumns, ParameterSet
from ..scenario import Patient, PatientColumns
from .counter_rng import name_key, standard_normal
from .spec import PopulationSpec

#: parameters that are copies of another's value in a second layer: they vary together
LINKED_PARAMETERS = {
    "receptor.quinolinic_acid_baseline": "inflammation.quinolinic_acid_healthy",
    "receptor.kynurenic_acid_baseline": "inflammation.kynurenic_acid_healthy",
}
_COVARIATE_STREAM, _VARIABILITY_STREAM, _RATING_STREAM = 0, 1, 2
#: screening rounds before giving up on an inclusion threshold few patients can reach
_MAX_SCREENS = 1000
#: patients drawn together from one random stream: large enough to vectorise, small enough that a
#: chunk boundary inside a block costs little (the block is drawn by both chunks, identically)
BLOCK = 128
_MAX_REDRAWS = 200
#: redraws of a parameter value computed together (values outside the range are redrawn in order;
#: several at once make the loop short, and the kept value is the same as one at a time)
_CANDIDATES = 8


class PatientParameters(dict):
    """One patient's parameter values (internal units), read like a ``ParameterSet``."""

    def value(self, name: str) -> float:
        return self[name]


@dataclass(frozen=True)
class VirtualPatient:
    """A drawn patient: covariates and individual parameter values."""

    index: int
    patient: Patient
    parameters: PatientParameters


@dataclass(frozen=True)
class Cohort:
    """Drawn patients as arrays: row r is patient ``indices[r]`` of its stream, with its covariates
    (``patients``), its parameter values (``parameters``, internal units) and its screening: the
    fluctuation on the screening day and the rating that admitted it (``baseline_rating``, MADRS
    points; the true severity is ``patients.baseline_madrs``). What a trial chunk simulates,
    without a Python object per patient."""

    indices: np.ndarray  # (n,) patient numbers within the stream
    patients: PatientColumns
    parameters: ParameterColumns
    screening_fluctuation: np.ndarray  # (n,) points
    baseline_rating: np.ndarray  # (n,) points

    def __len__(self) -> int:
        return self.indices.shape[0]

    def take(self, rows) -> Cohort:
        return Cohort(self.indices[rows], self.patients.take(rows), self.parameters.take(rows),
                      self.screening_fluctuation[rows], self.baseline_rating[rows])

    @staticmethod
    def concatenate(cohorts: Sequence[Cohort]) -> Cohort:
        if len(cohorts) == 1:
            return cohorts[0]
        return Cohort(np.concatenate([c.indices for c in cohorts]), PatientColumns.concatenate([c.patients for c in cohorts]),
                      ParameterColumns(cohorts[0].parameters.names, np.concatenate([c.parameters.values for c in cohorts])),
                      np.concatenate([c.screening_fluctuation for c in cohorts]),
                      np.concatenate([c.baseline_rating for c in cohorts]))

    def virtual_patients(self) -> list[VirtualPatient]:
        """The same patients as objects (one per row)."""
        names = self.parameters.names
        return [VirtualPatient(index=int(i), patient=self.patients.patient(r),
                               parameters=PatientParameters(zip(names, row)))
                for r, (i, row) in enumerate(zip(self.indices.tolist(), self.parameters.values.tolist()))]


class PopulationSampler:
    """Draws patients of one ``PopulationSpec`` around one ``ParameterSet``."""

    def __init__(self, spec: PopulationSpec, params: ParameterSet):
        self.spec = spec
        self.typical = params.internal_values()
        self.nonresponder_fraction = params.value("population.plasticity_nonresponder_fraction")
        # what is independent between two ratings a day or more apart: the rater's error and the
        # rating day's own state (a 24-h recall reads that day), so an observation term, not a layer
        self.rating_sd = math.hypot(params.value("population.madrs_rater_sd"),
                                    params.value("population.madrs_occasion_sd"))
        self.fluctuation_sd = params.value("population.madrs_fluctuation_sd")
        self.fluctuation_time_h = params.value("population.madrs_fluctuation_time")
        var = spec.variability
        if var.enabled and var.scale > 0:
            names = [n for n, p in params.items()
                     if p.cv > 0 and p.value > 0 and n not in LINKED_PARAMETERS and not var.excludes(n)]
        else:
            names = []
        self.varied: tuple[str, ...] = tuple(names)
        cv = np.array([params[n].cv * var.scale for n in names])
        self.omega = np.sqrt(np.log1p(cv ** 2))
        # bounds on the log-multiplier: the parameter's plausible range relative to its value
        self.log_low = np.array([math.log(params[n].range[0] / params[n].value) if params[n].range[0] > 0 else -np.inf
                                 for n in names])
        self.log_high = np.array([math.log(params[n].range[1] / params[n].value) for n in names])
        self.cholesky, self.groups = self._correlation_structure(var.correlations)
        self._names = tuple(self.typical)
        self._typical_array = np.array([self.typical[n] for n in self._names])
        position = {n: i for i, n in enumerate(self._names)}
        self._varied_index = np.array([position[n] for n in self.varied], dtype=int)
        self._linked_index = [(position[c], position[o]) for c, o in LINKED_PARAMETERS.items()
                              if c in position and o in position and o in self.varied]
        self._constraint_columns = {n: position[n] for n in CONSTRAINED_PARAMETERS if n in position}
        self._key_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._uncorrelated = np.ones(len(self.varied), dtype=bool)
        for group in self.groups:
            self._uncorrelated[group] = False
        self._constraint_redrawn = self._columns_a_constraint_moves()

    def _correlation_structure(self, correlations):
        n = len(self.varied)
        index = {name: i for i, name in enumerate(self.varied)}
        corr = np.eye(n)
        parent = list(range(n))

        def root(i):
            while parent[i] != i:
                i = parent[i]
            return i

        for k, (a, b, rho) in enumerate(correlations):
            for name in (a, b):
                if name not in index:
                    raise ScenarioError(f"population.variability.correlations[{k}]",
                                        f"'{name}' is not a parameter that varies (unknown, CV 0, or excluded)")
            i, j = index[a], index[b]
            corr[i, j] = corr[j, i] = rho
            parent[root(i)] = root(j)
        try:
            chol = np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise ScenarioError("population.variability.correlations",
                                "the correlations do not form a valid (positive definite) matrix") from None
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(root(i), []).append(i)
        correlated = [np.array(g) for g in groups.values() if len(g) > 1]
        # the Cholesky factor is block diagonal over the groups, so each group's block draws it alone
        return chol, correlated

    # ------------------------------------------------------------------ drawing
    def draw(self, seed: int, stream: int, index: int) -> VirtualPatient:
        """Patient ``index`` of stream ``stream`` (an arm or sequence) under trial seed ``seed``."""
        return self.draw_many(seed, stream, [index])[0]

    def draw_many(self, seed: int, stream: int, indices: Sequence[int]) -> list[VirtualPatient]:
        """The patients at ``indices`` as objects (``draw_cohort`` gives them as arrays)."""
        if len(indices) == 0:
            return []
        return self.draw_cohort(seed, stream, indices).virtual_patients()

    def draw_cohort(self, seed: int, stream: int, indices: Sequence[int]) -> Cohort:
        """The patients at ``indices``; each block of ``BLOCK`` consecutive indices is drawn whole, so a
        patient depends only on its block, never on which other patients are asked for."""
        needed, rows = _blocks_and_rows(indices)
        if needed.size == 0:
            raise ValueError("no patient indices given")
        return Cohort.concatenate([self._block(seed, stream, int(b)) for b in needed]).take(rows)

    def ratings(self, seed: int, stream: int, indices: Sequence[int], times_h: np.ndarray,
                screening_fluctuation: np.ndarray) -> np.ndarray:
        """(len(indices), len(times_h)) what a rater adds to the latent MADRS at each of ``times_h``
        (h, ascending, all after the screening at 0): the patient's fluctuation, an
        Ornstein-Uhlenbeck process continuing from ``screening_fluctuation``, plus the rating day's
        own deviation and the rater's error, independent between ratings. From the block's own
        stream, so it does not depend on chunking."""
        times_h = np.asarray(times_h, dtype=float)
        needed, rows = _blocks_and_rows(indices)
        k = times_h.size
        if needed.size == 0:
            return np.zeros((0, k))
        z = np.concatenate([_rng(seed, stream, int(b), _RATING_STREAM).standard_normal((BLOCK, 2 * k))
                            for b in needed])[rows]
        decay = np.exp(-np.diff(np.concatenate([[0.0], times_h])) / self.fluctuation_time_h)
        fluctuation = np.asarray(screening_fluctuation, dtype=float).copy()
        out = np.empty((z.shape[0], k))
        for j in range(k):  # exact OU transition over each gap between ratings
            fluctuation = fluctuation * decay[j] + self.fluctuation_sd * np.sqrt(1.0 - decay[j] ** 2) * z[:, j]
            out[:, j] = fluctuation + self.rating_sd * z[:, k + j]
        return out

    def _block(self, seed: int, stream: int, block: int) -> Cohort:
        patients, fluctuation, rating = self._covariates(_rng(seed, stream, block, _COVARIATE_STREAM), BLOCK)
        parameters = self._parameters(seed, stream, block, BLOCK)
        return Cohort(block * BLOCK + np.arange(BLOCK), patients, ParameterColumns(self._names, parameters),
                      fluctuation, rating)

    def _covariates(self, rng, n: int) -> tuple[PatientColumns, np.ndarray, np.ndarray]:
        """Covariates, screening-day fluctuation and screening rating of ``n`` enrolled patients."""
        s = self.spec
        female = rng.random(n) < s.female_fraction
        weight, age = s.weight.draw_many(rng, n), s.age.draw_many(rng, n)
        madrs, fluctuation, rating = self._screened_severity(rng, n)
        cyp2b6, cyp3a4 = s.cyp2b6.draw_many(rng, n), s.cyp3a4.draw_many(rng, n)
        bdnf, inflammation = s.bdnf_val66met.draw_many(rng, n), s.inflammation.draw_many(rng, n)
        course = s.course.draw_many(rng, n)
        responsive = rng.random(n) >= self.nonresponder_fraction
        drugs = tuple(drug for drug, _ in s.comedications)
        taking = rng.random((n, len(drugs))) < np.array([p for _, p in s.comedications])
        patients = PatientColumns(weight_kg=np.asarray(weight, dtype=float), age_y=np.asarray(age, dtype=float),
                                  sex=np.where(female, "female", "male").astype(object),
                                  baseline_madrs=madrs,
                                  cyp2b6=np.array(cyp2b6, dtype=object), cyp3a4=np.array(cyp3a4, dtype=object),
                                  bdnf_val66met=np.array(bdnf, dtype=object),
                                  inflammation=np.array(inflammation, dtype=object),
                                  comedication_names=drugs, taking=taking.reshape(n, len(drugs)),
                                  il6_pg_ml=np.full(n, np.nan), course=np.array(course, dtype=object),
                                  plasticity_responsive=responsive)
        return patients, fluctuation, rating

    def _screened_severity(self, rng, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(true severity, screening fluctuation, screening rating) of ``n`` patients whose rating
        reaches the inclusion threshold: the referred are screened until enough are enrolled."""
        def screen(k):
            true = np.asarray(self.spec.baseline_madrs.draw_many(rng, k), dtype=float)
            fluctuation = self.fluctuation_sd * rng.standard_normal(k)
            rating = np.clip(true + fluctuation + self.rating_sd * rng.standard_normal(k), 0.0, 60.0)
            return true, fluctuation, rating

        true, fluctuation, rating = screen(n)
        threshold = self.spec.inclusion_madrs_at_least
        for _ in range(_MAX_SCREENS):
            low = np.flatnonzero(rating < threshold)
            if low.size == 0:
                return true, fluctuation, rating
            true[low], fluctuation[low], rating[low] = screen(low.size)
        raise ScenarioError("population.inclusion_madrs_at_least",
                            f"{threshold:g} points: too few of the population's patients reach it at screening; "
                            "lower it or raise the baseline_madrs distribution")

    def _log_deviations(self, keys: tuple[np.ndarray, np.ndarray], block: int, rows: np.ndarray,
                        attempts: np.ndarray) -> np.ndarray:
        """(len(rows), n_varied) log-deviations within the ranges for patient ``rows`` of ``block`` at
        their constraint ``attempts``. Entry (row, parameter) is a function of the parameter's key
        and (row, attempt, block, redraw) alone: the first redraw number whose value lies in the
        range (a correlated group redrawn together, so its correlation holds)."""
        rows, attempts = rows.astype(np.uint64)[:, None], attempts.astype(np.uint64)[:, None]
        block = np.uint64(block)
        eta = self.omega * standard_normal((rows, attempts, block, np.uint64(0)), keys)
        outside = (eta < self.log_low) | (eta > self.log_high)
        r, c = np.nonzero(outside & self._uncorrelated)
        for redraw in range(1, _MAX_REDRAWS + 1, _CANDIDATES):
            if r.size == 0:
                break
            # the next few redraws of every entry still outside at once; the first inside is kept
            numbers = np.arange(redraw, redraw + _CANDIDATES, dtype=np.uint64)
            z = standard_normal((rows[r], attempts[r], block, numbers), (keys[0][0, c, None], keys[1][0, c, None]))
            value = self.omega[c, None] * z
            inside = (value >= self.log_low[c, None]) & (value <= self.log_high[c, None])
            found = inside.any(axis=1)
            eta[r[found], c[found]] = value[found, inside[found].argmax(axis=1)]
            r, c = r[~found], c[~found]
        for group in self.groups:
            eta[:, group] = self._group_deviations(keys, block, rows, attempts, group)
        return np.clip(eta, self.log_low, self.log_high)

    def _group_deviations(self, keys, block, rows, attempts, group: np.ndarray) -> np.ndarray:
        """(len(rows), len(group)) correlated log-deviations; a row with any member outside its range
        takes the group's next redraw number, for every member."""
        factor = self.cholesky[np.ix_(group, group)].T
        group_keys = (keys[0][:, group], keys[1][:, group])
        redraw = np.zeros((rows.shape[0], 1), dtype=np.uint64)
        eta = self.omega[group] * (standard_normal((rows, attempts, block, redraw), group_keys) @ factor)
        for _ in range(_MAX_REDRAWS):
            r = np.flatnonzero(((eta < self.log_low[group]) | (eta > self.log_high[group])).any(axis=1))
            if r.size == 0:
                break
            redraw[r] += np.uint64(1)
            z = standard_normal((rows[r], attempts[r], block, redraw[r]), group_keys)
            eta[r] = self.omega[group] * (z @ factor)
        return eta

    def _keys(self, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        """The varied parameters' key words under (seed, stream), each (1, n_varied), from their names."""
        cached = self._key_cache.get((seed, stream))
        if cached is None:
            words = np.array([name_key(name, seed, stream, _VARIABILITY_STREAM) for name in self.varied],
                             dtype=np.uint64).reshape(-1, 2)
            cached = (words[None, :, 0], words[None, :, 1])
            if len(self._key_cache) >= 64:
                self._key_cache.clear()
            self._key_cache[(seed, stream)] = cached
        return cached

    def _parameters(self, seed: int, stream: int, block: int, n: int) -> np.ndarray:
        """(n, n_parameters) values of rows 0..n-1 of ``block``. A row whose combination the equations
        cannot take draws its constrained parameters again at the next attempt; the rest keep their
        first draw (they do not enter the constraints, so the distribution is the same), and so a
        change to a constrained parameter leaves every other parameter's draws alone too."""
        if not self.varied:
            return np.tile(self._typical_array, (n, 1))
        keys = self._keys(int(seed), int(stream))
        rows = np.arange(n)
        drawn = self._parameter_rows(keys, block, rows, np.zeros(n, dtype=np.uint64))
        bad = np.flatnonzero(~self._admissible(drawn))
        moved = self._constraint_redrawn
        for attempt in range(1, _MAX_REDRAWS + 1):
            if bad.size == 0:
                break
            again = self._parameter_rows(keys, block, rows[bad], np.full(bad.size, attempt, dtype=np.uint64))
            drawn[np.ix_(bad, moved)] = again[:, moved]
            bad = bad[~self._admissible(drawn[bad])]
        if bad.size:
            raise RuntimeError("could not draw parameters satisfying the model's constraints; "
                               "lower population.variability.scale")
        return drawn

    def _columns_a_constraint_moves(self) -> np.ndarray:
        """Positions (in the parameter array) redrawn when a row fails a constraint: the varied
        constrained parameters, the members of their correlated groups, and the linked copies of any
        of these."""
        constrained = {i for i, name in enumerate(self.varied) if name in self._constraint_columns}
        for group in self.groups:
            if constrained & set(group.tolist()):
                constrained |= set(group.tolist())
        positions = {int(self._varied_index[i]) for i in constrained}
        positions |= {copy for copy, original in self._linked_index if original in positions}
        return np.array(sorted(positions), dtype=int)

    def parameter_columns(self, rng: np.random.Generator, n: int) -> ParameterColumns:
        """``n`` patients' parameter values (internal units) with the population's between-patient
        variability, drawn from ``rng`` (a visual predictive check's virtual patients)."""
        return ParameterColumns(self._names, self._parameters(int(rng.integers(2 ** 63)), 0, 0, n))

    def _admissible(self, values: np.ndarray) -> np.ndarray:
        """(n,) whether each row satisfies every condition of ``model/constraints.py``."""
        return satisfied({name: values[:, i] for name, i in self._constraint_columns.items()}, values.shape[0])

    def _parameter_rows(self, keys, block: int, rows: np.ndarray, attempts: np.ndarray) -> np.ndarray:
        values = np.tile(self._typical_array, (rows.size, 1))
        values[:, self._varied_index] *= np.exp(self._log_deviations(keys, block, rows, attempts))
        for copy, original in self._linked_index:
            values[:, copy] *= values[:, original] / self._typical_array[original]
        return values


def _blocks_and_rows(indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray | slice]:
    """The blocks that hold ``indices`` (sorted) and each index's row in those blocks drawn one
    after another."""
    block, row = np.divmod(np.asarray(indices, dtype=np.int64).reshape(-1), BLOCK)
    needed = np.unique(block)
    rows = np.searchsorted(needed, block) * BLOCK + row
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and np.all(np.diff(rows) == 1):
        return needed, slice(int(rows[0]), int(rows[-1]) + 1)  # a chunk's usual case: views, not copies
    return needed, rows


def _rng(seed: int, stream: int, block: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, block, purpose)))
