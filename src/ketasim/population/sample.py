"""Drawing virtual patients: covariates and parameter variability, reproducibly.

Every patient has its own random streams, derived from the trial seed, a stream number (the arm or
sequence) and the patient's index (numpy ``SeedSequence`` spawn keys). So patient 417 of arm 1 is
the same person whatever the chunk size, the number of workers or the machine. Covariates and
parameter deviations use separate streams: changing a covariate distribution leaves each patient's
parameter deviations as they were.

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
        cov_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index, _COVARIATE_STREAM)))
        var_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index, _VARIABILITY_STREAM)))
        return VirtualPatient(index=index, patient=self._covariates(cov_rng), parameters=self._parameters(var_rng))

    def draw_many(self, seed: int, stream: int, indices: Sequence[int]) -> list[VirtualPatient]:
        return [self.draw(seed, stream, int(i)) for i in indices]

    @staticmethod
    def rating_noise(seed: int, stream: int, indices: Sequence[int], size: int) -> np.ndarray:
        """(len(indices), size) standard normal deviates of each patient's MADRS ratings, from a
        stream of its own (so they do not depend on chunking either)."""
        return np.array([np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, int(i), _RATING_STREAM)))
                         .standard_normal(size) for i in indices]).reshape(len(indices), size)

    def _covariates(self, rng) -> Patient:
        s = self.spec
        sex = "female" if rng.random() < s.female_fraction else "male"
        weight, age, madrs = s.weight.draw(rng), s.age.draw(rng), s.baseline_madrs.draw(rng)
        cyp2b6, cyp3a4 = s.cyp2b6.draw(rng), s.cyp3a4.draw(rng)
        bdnf, inflammation = s.bdnf_val66met.draw(rng), s.inflammation.draw(rng)
        comedications = tuple(drug for drug, prevalence in s.comedications if rng.random() < prevalence)
        return Patient(weight_kg=weight, age_y=age, sex=sex, baseline_madrs=madrs, cyp2b6=cyp2b6, cyp3a4=cyp3a4,
                       comedications=comedications, bdnf_val66met=bdnf, inflammation=inflammation)

    def _log_deviations(self, rng) -> np.ndarray:
        eta = self.omega * (self.cholesky @ rng.standard_normal(len(self.varied)))
        for _ in range(_MAX_REDRAWS):
            outside = (eta < self.log_low) | (eta > self.log_high)
            if not outside.any():
                return eta
            alone = outside & self.uncorrelated
            eta[alone] = self.omega[alone] * rng.standard_normal(int(alone.sum()))
            for group in self.groups:  # a correlated group is redrawn together, so its correlation holds
                if outside[group].any():
                    z = rng.standard_normal(len(group))
                    eta[group] = self.omega[group] * (self.cholesky[np.ix_(group, group)] @ z)
        return np.clip(eta, self.log_low, self.log_high)

    def _parameters(self, rng) -> PatientParameters:
        if not self.varied:
            return PatientParameters(self.typical)
        for _ in range(_MAX_REDRAWS):
            values = self._typical_array.copy()
            values[self._varied_index] *= np.exp(self._log_deviations(rng))
            for copy, original in self._linked_index:
                values[copy] *= values[original] / self._typical_array[original]
            drawn = PatientParameters(zip(self._names, values.tolist()))
            if not violations(drawn):
                return drawn
        raise RuntimeError("could not draw parameters satisfying the model's constraints; "
                           "lower population.variability.scale")
