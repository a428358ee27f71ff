"""Drawing virtual patients: covariates and parameter variability, reproducibly.

Patients are drawn in blocks of ``BLOCK`` consecutive indices, each block from random streams
derived from the trial seed, a stream number (the arm or sequence) and the block number (numpy
``SeedSequence`` spawn keys), so the draws are vectorised and patient 417 of arm 1 is still the same
person whatever the chunk size, the number of workers or the machine. Covariates, parameter
deviations and rating noise use separate streams: changing a covariate distribution leaves each
patient's parameter deviations as they were.

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
from ..model.constraints import violations
from ..params import ParameterSet
from ..scenario import Patient
from .spec import PopulationSpec

#: parameters that are copies of another's value in a second layer: they vary together
LINKED_PARAMETERS = {
    "receptor.quinolinic_acid_baseline": "inflammation.quinolinic_acid_healthy",
    "receptor.kynurenic_acid_baseline": "inflammation.kynurenic_acid_healthy",
}
_COVARIATE_STREAM, _VARIABILITY_STREAM, _RATING_STREAM = 0, 1, 2
#: patients drawn together from one random stream: large enough to vectorise, small enough that a
#: chunk boundary inside a block costs little (the block is drawn by both chunks, identically)
BLOCK = 128
_MAX_REDRAWS = 200


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


class PopulationSampler:
    """Draws patients of one ``PopulationSpec`` around one ``ParameterSet``."""

    def __init__(self, spec: PopulationSpec, params: ParameterSet):
        self.spec = spec
        self.typical = params.internal_values()
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
        self.uncorrelated = np.ones(n, dtype=bool)
        for g in correlated:
            self.uncorrelated[g] = False
        # the Cholesky factor is block diagonal over the groups, so each group's block draws it alone
        return chol, correlated

    # ------------------------------------------------------------------ drawing
    def draw(self, seed: int, stream: int, index: int) -> VirtualPatient:
        """Patient ``index`` of stream ``stream`` (an arm or sequence) under trial seed ``seed``."""
        return self.draw_many(seed, stream, [index])[0]

    def draw_many(self, seed: int, stream: int, indices: Sequence[int]) -> list[VirtualPatient]:
        """The patients at ``indices``; each block of ``BLOCK`` consecutive indices is drawn whole, so a
        patient depends only on its block, never on which other patients are asked for."""
        blocks: dict[int, list[VirtualPatient]] = {}
        out = []
        for i in indices:
            b, r = divmod(int(i), BLOCK)
            if b not in blocks:
                blocks[b] = self._block(seed, stream, b)
            out.append(blocks[b][r])
        return out

    @staticmethod
    def rating_noise(seed: int, stream: int, indices: Sequence[int], size: int) -> np.ndarray:
        """(len(indices), size) standard normal deviates of each patient's MADRS ratings, from its
        block's own stream (so they do not depend on chunking either)."""
        blocks: dict[int, np.ndarray] = {}
        rows = []
        for i in indices:
            b, r = divmod(int(i), BLOCK)
            if b not in blocks:
                blocks[b] = _rng(seed, stream, b, _RATING_STREAM).standard_normal((BLOCK, size))
            rows.append(blocks[b][r])
        return np.array(rows).reshape(len(rows), size)

    def _block(self, seed: int, stream: int, block: int) -> list[VirtualPatient]:
        patients = self._covariates(_rng(seed, stream, block, _COVARIATE_STREAM), BLOCK)
        parameters = self._parameters(_rng(seed, stream, block, _VARIABILITY_STREAM), BLOCK)
        return [VirtualPatient(index=block * BLOCK + r, patient=p, parameters=q)
                for r, (p, q) in enumerate(zip(patients, parameters))]

    def _covariates(self, rng, n: int) -> list[Patient]:
        s = self.spec
        female = rng.random(n) < s.female_fraction
        weight, age, madrs = s.weight.draw_many(rng, n), s.age.draw_many(rng, n), s.baseline_madrs.draw_many(rng, n)
        cyp2b6, cyp3a4 = s.cyp2b6.draw_many(rng, n), s.cyp3a4.draw_many(rng, n)
        bdnf, inflammation = s.bdnf_val66met.draw_many(rng, n), s.inflammation.draw_many(rng, n)
        drugs = [drug for drug, _ in s.comedications]
        taking = rng.random((n, len(drugs))) < np.array([p for _, p in s.comedications])
        return [Patient(weight_kg=float(weight[r]), age_y=float(age[r]), sex="female" if female[r] else "male",
                        baseline_madrs=float(madrs[r]), cyp2b6=cyp2b6[r], cyp3a4=cyp3a4[r],
                        comedications=tuple(d for d, t in zip(drugs, taking[r]) if t), bdnf_val66met=bdnf[r],
                        inflammation=inflammation[r]) for r in range(n)]

    def _log_deviations(self, rng, n: int) -> np.ndarray:
        """(n, n_varied) log-deviations within the ranges (outside values redrawn; a correlated
        group redrawn together, so its correlation holds)."""
        m = len(self.varied)
        z = rng.standard_normal((n, m))
        eta = self.omega * (z @ self.cholesky.T if self.groups else z)  # the factor is the identity without correlations
        flat = eta.reshape(-1)  # a view: redraws write into eta
        outside = (eta < self.log_low) | (eta > self.log_high)
        todo = np.flatnonzero((outside & self.uncorrelated).reshape(-1))
        for _ in range(_MAX_REDRAWS):  # only the entries still outside are drawn again and checked
            if todo.size == 0:
                break
            cols = todo % m
            flat[todo] = self.omega[cols] * rng.standard_normal(todo.size)
            todo = todo[(flat[todo] < self.log_low[cols]) | (flat[todo] > self.log_high[cols])]
        for group in self.groups:
            for _ in range(_MAX_REDRAWS):
                rows = np.flatnonzero(((eta[:, group] < self.log_low[group]) | (eta[:, group] > self.log_high[group]))
                                      .any(axis=1))
                if rows.size == 0:
                    break
                z = rng.standard_normal((rows.size, len(group)))
                eta[np.ix_(rows, group)] = self.omega[group] * (z @ self.cholesky[np.ix_(group, group)].T)
        return np.clip(eta, self.log_low, self.log_high)

    def _parameters(self, rng, n: int) -> list[PatientParameters]:
        if not self.varied:
            return [PatientParameters(self.typical) for _ in range(n)]
        drawn = self._parameter_rows(rng, n)
        bad = [r for r in range(n) if violations(drawn[r])]
        for _ in range(_MAX_REDRAWS):  # a combination the equations cannot take is drawn again
            if not bad:
                return drawn
            for r, row in zip(bad, self._parameter_rows(rng, len(bad))):
                drawn[r] = row
            bad = [r for r in bad if violations(drawn[r])]
        raise RuntimeError("could not draw parameters satisfying the model's constraints; "
                           "lower population.variability.scale")

    def _parameter_rows(self, rng, n: int) -> list[PatientParameters]:
        values = np.tile(self._typical_array, (n, 1))
        values[:, self._varied_index] *= np.exp(self._log_deviations(rng, n))
        for copy, original in self._linked_index:
            values[:, copy] *= values[:, original] / self._typical_array[original]
        return [PatientParameters(zip(self._names, row)) for row in values.tolist()]


def _rng(seed: int, stream: int, block: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, block, purpose)))
