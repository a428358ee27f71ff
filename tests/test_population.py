"""Virtual populations: reproducible draws, the distributions asked for, variability within ranges."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ketasim.errors import ScenarioError
from ketasim.model.constraints import violations
from ketasim.population import LINKED_PARAMETERS, PatientParameters, PopulationSampler, PopulationSpec, presets


def sampler(params, **population):
    return PopulationSampler(PopulationSpec.from_dict({"n": 10, "preset": "treatment-resistant", **population}), params)


def test_same_seed_same_patient_whatever_the_order(params):
    s = sampler(params)
    forward = s.draw_many(42, 1, range(0, 50))
    backward = list(reversed(s.draw_many(42, 1, range(49, -1, -1))))
    assert [v.patient for v in forward] == [v.patient for v in backward]
    assert all(a.parameters == b.parameters for a, b in zip(forward, backward))
    other_seed = s.draw(43, 1, 0)
    other_arm = s.draw(42, 2, 0)
    assert other_seed.patient != forward[0].patient and other_arm.patient != forward[0].patient


def test_covariate_distributions_follow_the_spec(params):
    s = sampler(params, weight={"mean": "80 kg", "sd": "16 kg", "min": "45 kg", "max": "150 kg"},
                cyp2b6={"poor": 0.2, "normal": 0.8}, comedications={"lorazepam": 0.25}, female_fraction=0.3)
    pts = [v.patient for v in s.draw_many(1, 0, range(4000))]
    w = np.array([p.weight_kg for p in pts])
    assert w.min() >= 45 and w.max() <= 150
    assert abs(w.mean() - 80) < 1.0 and abs(w.std() - 16) < 1.0  # truncation at +-2 SD barely moves them
    # binomial 99.9 % bounds for n = 4000
    assert abs(np.mean([p.cyp2b6 == "poor" for p in pts]) - 0.2) < 0.021
    assert abs(np.mean(["lorazepam" in p.comedications for p in pts]) - 0.25) < 0.023
    assert abs(np.mean([p.sex == "female" for p in pts]) - 0.3) < 0.024


def test_lognormal_covariate_has_the_requested_mean_and_sd(params):
    s = sampler(params, weight={"mean": "80 kg", "sd": "20 kg", "distribution": "lognormal", "min": "20 kg", "max": "250 kg"})
    w = np.array([v.patient.weight_kg for v in s.draw_many(3, 0, range(5000))])
    assert abs(w.mean() - 80) < 1.2 and abs(w.std() - 20) < 1.5
    assert np.mean(w - w.mean()) ** 3 < np.mean((w - w.mean()) ** 3)  # right-skewed


def test_parameter_variability_lognormal_within_ranges_and_constraints(params):
    s = sampler(params)
    drawn = s.draw_many(5, 0, range(1500))
    name = "pk.cl_r_ketamine"  # CV 13 %, range 45-110 L/h wide enough to leave it untruncated
    log_values = np.log([v.parameters[name] for v in drawn])
    omega = np.sqrt(np.log1p(params[name].cv ** 2))
    assert abs(np.std(log_values) - omega) < 0.1 * omega
    assert abs(np.median(np.exp(log_values)) / params.value(name) - 1) < 0.02  # the file's value is the median
    for v in drawn[:300]:
        assert not violations(v.parameters)
        for n in s.varied:
            low, high = params[n].range
            ratio = v.parameters[n] / params.value(n)
            assert low / params[n].value - 1e-9 <= ratio <= high / params[n].value + 1e-9, n
        for copy, original in LINKED_PARAMETERS.items():
            assert v.parameters[copy] / params.value(copy) == pytest.approx(v.parameters[original] / params.value(original))


def test_correlated_parameters(params):
    s = sampler(params, variability={"correlations": [["pk.cl_r_ketamine", "pk.v_central", 0.7]]})
    drawn = s.draw_many(9, 0, range(3000))
    a = np.log([v.parameters["pk.cl_r_ketamine"] for v in drawn])
    b = np.log([v.parameters["pk.v_central"] for v in drawn])
    assert 0.6 < np.corrcoef(a, b)[0, 1] < 0.75  # slightly below 0.7: V1's range truncates it


def test_variability_off_excluded_and_scaled(params):
    off = sampler(params, variability=False).draw(1, 0, 0)
    assert dict(off.parameters) == params.internal_values()
    no_pk = sampler(params, variability={"exclude": ["pk.*"]}).draw(1, 0, 0)
    assert all(no_pk.parameters[n] == params.value(n) for n in params if n.startswith("pk."))
    assert any(no_pk.parameters[n] != params.value(n) for n in params if n.startswith("clinical."))


def test_presets_have_sources_and_load(params):
    for name, entry in presets().items():
        assert entry["source"] and entry["description"]
        PopulationSpec.from_dict({"n": 1, "preset": name})


@pytest.mark.parametrize("population, field", [
    ({"n": 0}, "population.n"),
    ({"n": 10, "preset": "martians"}, "population.preset"),
    ({"n": 10, "weight": {"mean": "80 kg", "sd": "16 kg"}}, "population.age"),  # no preset: every field needed
    ({"n": 10, "preset": "treatment-resistant", "cyp2b6": {"poor": 0.5, "normal": 0.6}}, "population.cyp2b6"),
    ({"n": 10, "preset": "treatment-resistant", "cyp2b6": {"slow": 1.0}}, "population.cyp2b6"),
    ({"n": 10, "preset": "treatment-resistant", "weight": {"mean": "80 mg/kg", "sd": "1 kg"}}, "population.weight.mean"),
    ({"n": 10, "preset": "treatment-resistant", "weight": {"mean": "300 kg", "sd": "1 kg"}}, "population.weight.mean"),
    ({"n": 10, "preset": "treatment-resistant", "weight": {"mean": "80 kg", "sd": "1 kg", "max": "300 kg"}},
     "population.weight"),
    ({"n": 10, "preset": "treatment-resistant", "age": {"mean": "40 y", "sd": "-1 y"}}, "population.age.sd"),
    ({"n": 10, "preset": "treatment-resistant", "baseline_madrs": {"mean": 32, "sd": 5, "distribution": "beta"}},
     "population.baseline_madrs.distribution"),
    ({"n": 10, "preset": "treatment-resistant", "comedications": {"aspirin": 0.1}}, "population.comedications"),
    ({"n": 10, "preset": "treatment-resistant", "variability": {"scale": -1}}, "population.variability.scale"),
    ({"n": 10, "preset": "treatment-resistant", "variability": {"correlations": [["pk.v_central", "pk.v_central", 0.5]]}},
     "population.variability.correlations[0]"),
    ({"n": 10, "preset": "treatment-resistant", "shoe_size": 42}, "population"),
])
def test_bad_population_named(population, field, params):
    with pytest.raises(ScenarioError) as info:
        PopulationSampler(PopulationSpec.from_dict(population), params)
    assert info.value.field == field


def test_correlation_with_an_unknown_parameter_is_named(params):
    with pytest.raises(ScenarioError, match="pk.nonsense") as info:
        PopulationSpec.from_dict({"n": 1, "preset": "treatment-resistant",
                                  "variability": {"correlations": [["pk.nonsense", "pk.v_central", 0.5]]}})
    assert info.value.field == "population.variability.correlations[0]"
    with pytest.raises(ScenarioError, match="does not vary|not a parameter that varies"):
        sampler(params, variability={"exclude": ["pk.*"], "correlations": [["pk.cl_r_ketamine", "pk.v_central", 0.5]]})


def test_cohort_arrays_are_the_drawn_patients(params):
    s = sampler(params, comedications={"lorazepam": 0.3, "clarithromycin": 0.2})
    indices = [300, 5, 6, 129, 127]  # three blocks, out of order
    cohort = s.draw_cohort(7, 1, indices)
    objects = s.draw_many(7, 1, indices)
    assert cohort.indices.tolist() == indices
    for r, vp in enumerate(objects):
        assert cohort.patients.patient(r) == vp.patient
        assert cohort.parameters.row(r) == dict(vp.parameters)
    assert s.draw_many(7, 1, []) == []


def test_batch_problem_equals_one_problem_per_patient(params):
    """A chunk's arrays built over columns are bit for bit those built patient by patient."""
    from dataclasses import replace

    from ketasim.engine import build_batch_problem, build_problem
    from ketasim.model import default_model
    from ketasim.scenario import Patient, PatientColumns, Scenario

    scenario = Scenario.from_dict({
        "dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg", "at": ["0 h", "72 h"]},
                 {"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min", "at": ["24 h"]},
                 {"drug": "midazolam", "route": "iv", "amount": "0.045 mg/kg", "duration": "40 min", "at": ["96 h"]},
                 # weight-based nasal: each patient's own device count (pk.dose_fractions), as arrays in a batch
                 {"drug": "racemic-ketamine", "route": "intranasal", "amount": "0.7 mg/kg", "at": ["120 h"]}],
        "therapy": [{"kind": "cbt", "at": ["48 h"]}],
        "simulation": {"duration": "7 d", "output_every": "1 d"}})
    model = default_model()
    cohort = sampler(params, comedications={"clarithromycin": 0.5, "lorazepam": 0.5},
                     cyp2b6={"poor": 0.5, "normal": 0.5}, inflammation={"high": 0.5, "low": 0.5}).draw_cohort(2, 0, range(40))
    patients = [cohort.patients.patient(r) for r in range(len(cohort))]
    patients[3] = replace(patients[3], il6_pg_ml=4.0)
    columns = PatientColumns.of(patients)
    batch = build_batch_problem(scenario, columns, cohort.parameters, model)
    one_by_one = build_problem([replace(scenario, patient=p) for p in patients],
                               [PatientParameters(cohort.parameters.row(r)) for r in range(len(cohort))], model)
    for field in ("theta", "y0", "seg_t", "seg_u", "seg_jump", "t_out", "dosed_umol"):
        assert np.array_equal(getattr(batch, field), getattr(one_by_one, field)), field
    assert batch.parameter_names == one_by_one.parameter_names
    shared = build_batch_problem(scenario, PatientColumns.of([Patient()]), params, model)
    assert np.array_equal(shared.theta, build_problem(scenario, params, model).theta)


def test_philox_matches_random123_known_answers():
    """A pin of the generator, not a statistical result: Random123's ``tests/kat_vectors``, the three
    ``philox4x32 10`` lines (counter, key, expected output)."""
    from ketasim.population.counter_rng import philox4x32

    vectors = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
               ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
               ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
                (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for counter, key, expected in vectors:
        out = philox4x32(tuple(np.uint64(c) for c in counter), tuple(np.uint64(k) for k in key))
        assert tuple(int(x) for x in out) == expected
    # vectorised over broadcast counters, each entry equals its own scalar computation
    rows = np.arange(5, dtype=np.uint64)
    batch = philox4x32((rows, np.uint64(1), np.uint64(2), np.uint64(3)), (np.uint64(7), np.uint64(9)))
    for r in range(5):
        single = philox4x32(tuple(np.uint64(c) for c in (r, 1, 2, 3)), (np.uint64(7), np.uint64(9)))
        assert [int(b[r]) for b in batch] == [int(s) for s in single]


def test_counter_normals_are_standard_normal():
    """200,000 deviates of one key: mean, SD and the Kolmogorov-Smirnov distance within their
    99.9 % sampling bounds for that many draws (with a fixed key this is a check of the transform,
    run once, not a repeated statistical test)."""
    from ketasim.population.counter_rng import standard_normal

    n = 200_000
    z = standard_normal((np.arange(n, dtype=np.uint64), np.uint64(0), np.uint64(3), np.uint64(0)),
                        (np.uint64(12345), np.uint64(678)))
    assert abs(z.mean()) < 3.29 / np.sqrt(n)
    assert abs(z.std() - 1.0) < 3.29 * np.sqrt(0.5 / n)
    ks = np.max(np.abs(np.arange(1, n + 1) / n - stats.norm.cdf(np.sort(z))))
    assert ks < 1.95 / np.sqrt(n)  # Kolmogorov 99.9 % critical value


@pytest.mark.parametrize("removed", ["clinical.k_expectancy_acute", "pk.ka_oral"])
def test_one_parameter_more_or_less_leaves_the_others_draws_alone(params, removed):
    """Deviations are keyed by parameter name, not position: excluding one parameter (neither
    constrained nor linked) from variability changes no other parameter of any patient."""
    with_it = sampler(params).draw_cohort(11, 1, range(300)).parameters
    without = sampler(params, variability={"exclude": [removed]}).draw_cohort(11, 1, range(300)).parameters
    assert removed in sampler(params).varied
    for k, name in enumerate(with_it.names):
        if name == removed:
            assert np.all(without.values[:, k] == params.value(name))
            assert np.any(with_it.values[:, k] != params.value(name))
        else:
            assert np.array_equal(with_it.values[:, k], without.values[:, k]), name


def test_a_parameters_cv_changes_only_its_own_draws(params):
    """Halving one parameter's CV halves its own log-deviations (where neither is truncated by the
    range) and leaves every other parameter of every patient as it was."""
    import dataclasses

    name = "clinical.k_expectancy_acute"
    changed = dict(params.items())
    changed[name] = dataclasses.replace(params[name], cv=params[name].cv / 2)
    a = sampler(params).draw_cohort(3, 0, range(256)).parameters
    b = sampler(type(params)(changed)).draw_cohort(3, 0, range(256)).parameters
    k = a.names.index(name)
    for j, other in enumerate(a.names):
        if j != k:
            assert np.array_equal(a.values[:, j], b.values[:, j]), other
    eta_a, eta_b = np.log(a.values[:, k] / params.value(name)), np.log(b.values[:, k] / params.value(name))
    omega_a = np.sqrt(np.log1p(params[name].cv ** 2))
    omega_b = np.sqrt(np.log1p((params[name].cv / 2) ** 2))
    # the rows whose value is the first draw in both (a narrower spread keeps a value inside the range)
    ratio_a, ratio_b = eta_a / omega_a, eta_b / omega_b
    first = np.isclose(ratio_a, ratio_b, rtol=1e-9, atol=0)
    assert first.mean() > 0.8
    # where they differ, a's first draw fell outside the range and was redrawn
    low, high = (np.log(r / params[name].value) for r in params[name].range)
    assert np.all((ratio_b[~first] * omega_a < low) | (ratio_b[~first] * omega_a > high))


def test_a_constrained_parameter_moves_no_unconstrained_draw(params):
    """A row that fails a model constraint draws only its constrained parameters again, so changing
    a constrained parameter's CV (here hepatic blood flow, calibrated) leaves every unconstrained
    parameter of every patient as it was."""
    import dataclasses

    from ketasim.model.constraints import CONSTRAINED_PARAMETERS

    name = "pk.q_hepatic"
    assert name in CONSTRAINED_PARAMETERS
    changed = dict(params.items())
    changed[name] = dataclasses.replace(params[name], cv=params[name].cv * 0.8)
    a = sampler(params).draw_cohort(4, 0, range(512)).parameters
    b = sampler(type(params)(changed)).draw_cohort(4, 0, range(512)).parameters
    assert not np.array_equal(a.values[:, a.names.index(name)], b.values[:, b.names.index(name)])
    moved_with_constraints = set(CONSTRAINED_PARAMETERS) | set(LINKED_PARAMETERS)
    for k, other in enumerate(a.names):
        if other not in moved_with_constraints:
            assert np.array_equal(a.values[:, k], b.values[:, k]), other
