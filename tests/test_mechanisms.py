"""Competing mechanisms: the registry, the switches, true trapping, the discriminating drugs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from typer.testing import CliRunner

import ketasim
from ketasim.cli import app
from ketasim.errors import ScenarioError
from ketasim.model import default_model
from ketasim.model.mechanisms import DEFAULT_MECHANISMS, MECHANISMS, check_mechanisms, switches, with_mechanisms
from ketasim.model.receptor import SPECIES, Receptor, concentration_input
from ketasim.scenario import DRUG_ROUTES, Scenario
from ketasim.trial import TrialSpec

SWITCH_FILE = Path(ketasim.__file__).parent / "params" / "mechanism.toml"

#: every discriminating drug, dosed once on its route
PROBE_DOSES = [
    {"drug": "memantine", "route": "oral", "amount": "20 mg"},
    {"drug": "lanicemine", "route": "iv", "amount": "100 mg", "duration": "1 h"},
    {"drug": "traxoprodil", "route": "iv", "amount": "0.75 mg/kg", "duration": "90 min"},
    {"drug": "naltrexone", "route": "oral", "amount": "50 mg"},
    {"drug": "nitrous-oxide", "route": "inhaled", "amount": "50 %", "duration": "1 h"},
    {"drug": "2r6r-hnk", "route": "iv", "amount": "1 mg/kg", "duration": "40 min"},
]


def test_registry_lists_seven_hypotheses_with_sources_and_switches():
    assert len(MECHANISMS) >= 7
    switches_in_file = tomllib.loads(SWITCH_FILE.read_text())
    assert set(switches_in_file) == set(MECHANISMS)
    for name, m in MECHANISMS.items():
        assert m.sources and m.predicts and m.equations, name
        assert m.kind in ("route", "modulator")
        assert (switches_in_file[name]["value"] == 1.0) == (name in DEFAULT_MECHANISMS)


def test_cli_lists_mechanisms_as_json():
    res = CliRunner().invoke(app, ["mechanisms", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)["mechanisms"]
    assert {r["name"] for r in rows} == set(MECHANISMS)
    assert all(r["sources"] for r in rows)


@pytest.mark.parametrize("names,words", [(["nonsense"], "unknown mechanism 'nonsense'"),
                                         (["opioid"], "only modulate a route"), ([], "at least one")])
def test_bad_mechanism_lists_are_refused(names, words):
    with pytest.raises(ValueError, match=words):
        check_mechanisms(names, "model.mechanisms")
    with pytest.raises(ScenarioError, match="model.mechanisms"):
        Scenario.from_dict({"model": {"mechanisms": names}})


def test_cli_bad_mechanism_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["simulate", "--drug", "esketamine", "--route", "intranasal", "--dose", "56 mg",
                                   "--mechanisms", "disinhibition,telepathy", "--out", str(out)])
    assert res.exit_code == 2 and "--mechanisms" in res.output and "telepathy" in res.output
    assert not out.exists()


def test_trial_file_model_table_is_checked():
    trial = {"trial": {"seed": 1, "assessments": ["1 d"]}, "population": {"n": 4, "preset": "mdd-rct"},
             "arm": [{"name": "a", "dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg"}]}]}
    assert TrialSpec.from_dict({**trial, "model": {"mechanisms": ["glun2b_eef2"]}}).mechanisms == ("glun2b_eef2",)
    with pytest.raises(ScenarioError, match="model: unknown key"):
        TrialSpec.from_dict({**trial, "model": {"mechanism": ["glun2b_eef2"]}})


def test_mechanism_needing_an_absent_layer_is_refused():
    from ketasim.model.pk import PK
    from ketasim.model.probes import Probes
    from ketasim.model.system import Model

    small = Model([PK(), Probes()])
    with pytest.raises(ScenarioError, match="model.mechanisms: disinhibition needs the synapse"):
        ketasim.simulate({"simulation": {"duration": "1 h"}}, model=small, mechanisms=["disinhibition"])


@pytest.mark.parametrize("dose,field", [
    ({"drug": "memantine", "route": "iv", "amount": "20 mg"}, "dose[0].route"),
    ({"drug": "nitrous-oxide", "route": "inhaled", "amount": "50 mg", "duration": "1 h"}, "dose[0].amount"),
    ({"drug": "nitrous-oxide", "route": "inhaled", "amount": "90 %", "duration": "1 h"}, "dose[0].amount"),
    ({"drug": "nitrous-oxide", "route": "inhaled", "amount": "50 %"}, "dose[0].duration"),
    ({"drug": "esketamine", "route": "inhaled", "amount": "56 mg"}, "dose[0].route"),
])
def test_drug_on_a_route_it_lacks_is_refused(dose, field):
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({"dose": [dose]})
    assert err.value.field == field


# ---------------------------------------------------------------------- switches act where they live
def _evaluate(names, **state):
    """Outputs and derivatives of the default model at a state with ketamine on board."""
    from ketasim.engine import build_problem
    from ketasim.params import load_parameters

    params = with_mechanisms(load_parameters(), names)
    model = default_model()
    problem = build_problem(Scenario.from_dict({"simulation": {"duration": "1 h"}}), params, model)
    y = dict(zip(model.state_names, problem.y0[0]))
    y.update({"pk.s_ketamine_central": 20.0, "pk.s_ketamine_effect": 1.0, "pk.r_ketamine_effect": 1.0,
              "probes.naltrexone_central": 50.0, "receptor.block_habenula_s_ketamine": 0.3,
              "receptor.block_interneuron_s_ketamine": 0.3, "receptor.block_pyramidal_s_ketamine": 0.2, **state})
    theta = dict(zip(problem.parameter_names, problem.theta[0]))
    u = {n: 0.0 for n in model.input_names}
    return model.evaluate(y, theta, u, np, want_readouts=False)


def test_switching_a_route_off_removes_its_term_only():
    dy_all, out_all = _evaluate(DEFAULT_MECHANISMS)
    dy, out = _evaluate([n for n in DEFAULT_MECHANISMS if n != "disinhibition"])
    assert out_all["synapse.disinhibition"] > 0 and out["synapse.disinhibition"] == 0
    assert dy["synapse.eef2_desuppression"] == dy_all["synapse.eef2_desuppression"]
    dy, _ = _evaluate(["disinhibition"], **{"synapse.eef2_desuppression": 0.0})
    assert dy["synapse.eef2_desuppression"] == 0.0  # no GluN2B route: nothing drives eEF2


def test_opioid_permission_only_under_the_opioid_mechanism():
    _, without = _evaluate(DEFAULT_MECHANISMS)
    _, with_opioid = _evaluate(DEFAULT_MECHANISMS + ("opioid",))
    occupancy = with_opioid["probes.mu_opioid_occupancy"]
    assert occupancy > 0.9  # 50 umol lumped naltrexone: above Lee 1988's blocking range
    assert without["probes.opioid_permission"] == 1.0
    assert with_opioid["probes.opioid_permission"] == pytest.approx(1.0 - occupancy)


def test_habenula_relief_only_under_its_mechanism():
    dy_off, out = _evaluate(DEFAULT_MECHANISMS)
    dy_on, _ = _evaluate(DEFAULT_MECHANISMS + ("habenula_trapping",))
    assert out["receptor.habenula_burst_blockade"] > 0.9
    assert dy_on["clinical.severity"] < dy_off["clinical.severity"]


def test_a_felt_drug_adds_engagement_and_never_removes_contacts():
    """expectancy_perceptible: a felt drug raises engagement (expectancy rises faster), while the
    contacts of doses and sessions fade on their own, whatever is felt (a bug once let a strong
    perceived effect drive them below zero)."""
    felt = {"clinical.perceived_drug_effect": 1.0, "clinical.treatment_contact": 0.0}
    dy_off, _ = _evaluate(DEFAULT_MECHANISMS, **felt)
    dy_on, _ = _evaluate(DEFAULT_MECHANISMS + ("expectancy_perceptible",), **felt)
    assert dy_on["clinical.treatment_contact"] == dy_off["clinical.treatment_contact"] == 0.0
    assert dy_on["clinical.expectancy_acute"] > dy_off["clinical.expectancy_acute"]
    assert dy_on["clinical.perceived_drug_effect"] < 0  # fades when nothing is felt now


# ---------------------------------------------------------------------- true trapping
def _block_after_pulse(species: str, conc_um: float, times=(1.0, 2.0, 6.0)):
    """Receptor layer alone: ``species`` at ``conc_um`` for 1 h, then none; block per population."""
    from ketasim.params import load_parameters

    layer = Receptor()
    p = {k.split(".", 1)[1]: v for k, v in load_parameters().internal_values().items() if k.startswith("receptor.")}
    p["mechanism.inflammation"] = 0.0
    names = [v.name for v in layer.states()]

    def rate(t, y):
        inp = {concentration_input(s): 0.0 for s in SPECIES}
        inp[concentration_input(species)] = conc_um if t < 1.0 else 0.0
        inp.update({"inflammation.quinolinic_acid": 0.0, "inflammation.kynurenic_acid": 0.0,
                    "probes.nitrous_oxide_nmda_inhibition": 0.0})
        d = layer.derivatives(dict(zip(names, y)), p, {}, inp, np)
        return [d[n] for n in names]

    sol = solve_ivp(rate, (0.0, max(times)), np.zeros(len(names)), method="LSODA", t_eval=times,
                    rtol=1e-8, atol=1e-12, max_step=0.02)
    return {pop: sol.y[names.index(f"block_{pop}_{species}")] for pop in ("interneuron", "habenula")}


def test_trapped_ketamine_block_outlasts_the_drug_where_channels_fall_silent():
    """An hour after S-ketamine is gone, silenced habenula channels keep over half their block;
    busy cortical channels have released it."""
    block = _block_after_pulse("s_ketamine", 0.3)
    assert block["habenula"][0] > 0.15
    assert block["habenula"][1] > 0.5 * block["habenula"][0]
    assert block["interneuron"][1] < 0.01 * block["interneuron"][0]


def test_fast_off_less_trapped_blocker_is_released():
    """Memantine, at a level giving the habenula about the same block as ketamine above, is gone an
    hour after the drug: it unblocks faster (Gilling 2009) and is trapped less (Mealing 1999)."""
    block = _block_after_pulse("memantine", 0.5)
    assert block["habenula"][0] > 0.15
    assert block["habenula"][1] < 0.01 * block["habenula"][0]


# ---------------------------------------------------------------------- every drug runs
@pytest.fixture(scope="module")
def probes_run():
    return ketasim.simulate({"dose": [{**d, "at": ["0 h"]} for d in PROBE_DOSES]
                             + [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                 "duration": "40 min", "at": ["2 h"]}],
                             "simulation": {"duration": "2 d", "output_every": "10 min"}},
                            mechanisms=list(MECHANISMS))


def test_every_probe_drug_runs_in_one_scenario(probes_run):
    res = probes_run
    assert res.status == "ok"
    for name in ("probes.memantine_plasma", "probes.lanicemine_plasma", "probes.traxoprodil_plasma",
                 "probes.naltrexone_plasma", "pk.hnk_plasma"):
        assert res[name].max() > 0, name
    assert res.at("probes.nitrous_oxide_nmda_inhibition", 0.5) > 0.2
    assert res.at("probes.nitrous_oxide_nmda_inhibition", 3.0) < 1e-3  # gone minutes after the gas stops
    assert res.at("probes.mu_opioid_occupancy", 4.0) > 0.95
    assert res.at("probes.glun2b_inhibition", 1.0) > 0.5
    for name in res.outputs:
        if name.startswith(("probes.", "receptor.")):
            assert np.all(res[name] >= -1e-9), name


def test_every_discriminating_drug_runs_in_a_trial():
    """One arm per drug of the issue's list (each with its own patients), every mechanism on."""
    doses = [*PROBE_DOSES, {"drug": "rapamycin", "route": "oral", "amount": "6 mg"},
             {"drug": "arketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}]
    trial = {"trial": {"name": "every drug", "seed": 3, "assessments": ["1 d"]},
             "population": {"n": 4, "preset": "treatment-resistant"},
             "arm": [{"name": d["drug"], "dose": [d]} for d in doses]}
    result = ketasim.run_trial(trial, mechanisms=list(MECHANISMS))
    assert set(result.summary["arms"]) == {d["drug"] for d in doses}
    for arm, summary in result.summary["arms"].items():
        change = summary["assessments"][0]["madrs_change [points]"]["mean"]
        assert change is not None and np.isfinite(change), arm


def test_every_drug_route_is_registered():
    for dose in PROBE_DOSES:
        assert dose["route"] in DRUG_ROUTES[dose["drug"]]


def test_naltrexone_withholds_the_plasticity_drive_only_under_the_opioid_mechanism():
    ketamine = {"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min",
                "at": ["1 h"]}
    naltrexone = {"drug": "naltrexone", "route": "oral", "amount": "50 mg", "at": ["0 h"]}
    sim = {"duration": "1 d", "output_every": "15 min"}

    def bdnf_peak(doses, names):
        return ketasim.simulate({"dose": doses, "simulation": sim}, mechanisms=names)["plasticity.bdnf"].max()

    base = DEFAULT_MECHANISMS
    assert bdnf_peak([ketamine, naltrexone], base) == pytest.approx(bdnf_peak([ketamine], base), rel=1e-6)
    opioid = base + ("opioid",)
    rise_blocked = bdnf_peak([ketamine, naltrexone], opioid) - 1.0
    rise = bdnf_peak([ketamine], opioid) - 1.0
    assert rise > 0.05 and rise_blocked < 0.1 * rise


def test_switches_cover_every_mechanism():
    assert set(switches(["disinhibition"])) == {m.switch for m in MECHANISMS.values()}


# ---------------------------------------------------------------------- private states: solved loosely in trials
def test_private_states_feed_no_other_state_with_their_switch_off():
    """The declaration that lets trials solve a switched-off mechanism's states at a looser tolerance
    (``idle_states``), checked on the analytic Jacobian: every entry through which a state outside the
    private set reads a private one vanishes when the switch is 0."""
    from ketasim.engine.codegen import symbolic_model
    from ketasim.params import load_parameters

    model = default_model()
    names = model.parameter_names(tuple(load_parameters())) + model.covariate_names
    sm = symbolic_model(model, names)
    declared = [m for m in MECHANISMS.values() if m.private_states]
    assert {m.name for m in declared} == {"habenula_trapping", "expectancy_perceptible"}
    for m in declared:
        switch = sm.p[names.index(m.switch)]
        private = {i for i, s in enumerate(sm.state_names) if m.owns(s)}
        assert len(private) >= len(m.private_states), f"{m.name}: a private state names no state of the model"
        reads = [(i, j) for i, j in sm.jacobian if j in private and i not in private]
        assert reads, f"{m.name}: its states feed nothing even with the switch on"
        ungated = [(sm.state_names[i], sm.state_names[j]) for i, j in reads if sm.jacobian[(i, j)].subs(switch, 0) != 0]
        assert not ungated, f"{m.name}: with its switch off these states still read its private ones: {ungated}"


def test_no_trial_output_reads_an_idle_state():
    """Every output a trial reads (the patients table's session and assessment outputs, the dosing
    rules' targets, every concentration ``[trial] exposure`` may name), the connectivity readouts
    among them, is unchanged when the idle states are moved; the outputs that report them do change,
    so the check can fail."""
    from ketasim.engine import SolverSettings, build_problem, solve
    from ketasim.model.mechanisms import idle_states
    from ketasim.params import load_parameters
    from ketasim.simulate import observe_batch
    from ketasim.trial.design import concentration_outputs
    from ketasim.trial.rules import TARGET_OUTPUTS
    from ketasim.trial.run import READOUTS

    model = default_model()
    scenario = Scenario.from_dict({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                             "duration": "40 min"}]})
    problem = build_problem([scenario], load_parameters(), model, t_out=np.array([0.5, 2.0, 24.0]))
    states, status, _ = solve(problem, SolverSettings(rtol=1e-8, atol=1e-10))
    assert status[0] == 0
    idle = idle_states(model.state_names, problem.parameter_names, problem.theta)
    assert "clinical.perceived_drug_effect" in idle and "receptor.block_habenula_s_ketamine" in idle
    moved = states.copy()
    for name in idle:
        i = model.state_names.index(name)
        moved[..., i] = 0.5 * moved[..., i] + 0.25  # fractions, kept in (0, 1)
    before = observe_batch(model, states, problem.parameter_names, problem.theta)
    after = observe_batch(model, moved, problem.parameter_names, problem.theta)
    read = {"clinical.madrs", "clinical.cadss", "clinical.sbp", *(name for _, name, _ in READOUTS),
            *TARGET_OUTPUTS, *concentration_outputs()}
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert not read & changed, f"trial outputs reading idle states: {sorted(read & changed)}"
    assert {"receptor.nmda_block_habenula", "receptor.habenula_burst_blockade"} <= changed


def test_trials_solve_idle_states_loosely_and_only_those():
    """A trial's chunks carry the idle states as loose; with a mechanism switched on, its states are
    solved at the trials' tolerance again. The drug amounts get the trials' atol in their volume."""
    from dataclasses import replace

    from ketasim.engine import build_problem
    from ketasim.params import load_parameters
    from ketasim.trial.run import TRIAL_SETTINGS, chunk_settings

    model = default_model()
    scenario = Scenario.from_dict({"dose": []})
    calibrated = chunk_settings(build_problem([scenario], load_parameters(), model), TRIAL_SETTINGS)
    assert set(calibrated.loose_states) == {s for s in model.state_names
                                            if s.startswith("receptor.block_habenula_")} | {"clinical.perceived_drug_effect"}
    rtol, atol = calibrated.tolerances(model.state_names)
    loose = np.array([s in calibrated.loose_states for s in model.state_names])
    amount = np.array([s in calibrated.amount_states for s in model.state_names])
    assert np.all(rtol[loose] == 10 * TRIAL_SETTINGS.rtol) and np.all(rtol[~loose] == TRIAL_SETTINGS.rtol)
    assert np.all(atol[~loose & ~amount] == TRIAL_SETTINGS.atol)
    # the drug amounts (umol) are held to atol (uM) in the trials' volume, every other state to atol
    assert not np.any(loose & amount)
    assert np.all(atol[amount] == TRIAL_SETTINGS.atol * TRIAL_SETTINGS.amount_volume)
    units = {v.name: v.unit for v in model.states}
    assert {s for s in model.state_names if units[s] == "umol"} == set(calibrated.amount_states)
    assert "pk.s_ketamine_central" in calibrated.amount_states and "pk.s_ketamine_effect" not in calibrated.amount_states
    habenula_on = with_mechanisms(load_parameters(), [*DEFAULT_MECHANISMS, "habenula_trapping"])
    on = chunk_settings(build_problem([scenario], habenula_on, model), TRIAL_SETTINGS)
    assert on.loose_states == ("clinical.perceived_drug_effect",)
    assert chunk_settings(build_problem([scenario], habenula_on, model), replace(TRIAL_SETTINGS, loose_factor=1.0)
                          ).tolerances(model.state_names)[0].tolist() == [TRIAL_SETTINGS.rtol] * len(model.state_names)


def test_solver_settings_refuse_unknown_loose_states_and_bad_factors():
    from ketasim.engine import SolverSettings

    with pytest.raises(ValueError, match="loose_states: not states of the model: clinical.nothing"):
        SolverSettings(loose_states=("clinical.nothing",)).tolerances(default_model().state_names)
    with pytest.raises(ValueError, match="loose_factor"):
        SolverSettings(loose_factor=0.5)
    with pytest.raises(ValueError, match="amount_states: not states of the model: pk.nothing"):
        SolverSettings(amount_states=("pk.nothing",)).tolerances(default_model().state_names)
    for volume in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="amount_volume"):
            SolverSettings(amount_volume=volume)
