"""SBML export reproduced by an independent simulator (libRoadRunner), and PEtab problems."""

from __future__ import annotations

from pathlib import Path

import libsbml
import numpy as np
import pytest
import roadrunner
from typer.testing import CliRunner

import ketasim
from ketasim.cli import app
from ketasim.model import default_model
from ketasim.model.mechanisms import MECHANISMS
from ketasim.sbml import export_sbml, sbml_id

ROOT = Path(__file__).parent.parent


def _roadrunner(xml: str, rtol: float, atol: float):
    """libRoadRunner with ketasim's error control: the same absolute tolerance on every state.

    Given one number, libRoadRunner multiplies the absolute tolerance by each state's initial value
    (its `absolute_tolerance` description), so that a state starting small, such as IL-6 at 1.8e-3
    ng/mL, gets 1.8e-15 instead of 1e-12. That, not the model, is what stalled CVODE after the infusion
    start with the inflammation term on (t = 1.0003 h; issue 12): with the same vector it finishes in
    0.07 s.
    """
    rr = roadrunner.RoadRunner(xml)
    rr.integrator.relative_tolerance = rtol
    rr.integrator.absolute_tolerance = [atol] * len(rr.integrator.getAbsoluteToleranceVector())
    return rr


SCENARIOS = {
    "iv_infusion": {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min"}],
                    "simulation": {"duration": "3 d", "output_every": "15 min"}},
    "intranasal_esketamine": {"patient": {"weight": "82 kg", "sex": "male"},
                              "dose": [{"drug": "esketamine", "route": "intranasal", "amount": "84 mg"}],
                              "simulation": {"duration": "2 d", "output_every": "10 min"}},
    "oral_with_cyp3a4_inhibitor": {"patient": {"comedications": ["clarithromycin"]},
                                   "dose": [{"drug": "racemic-ketamine", "route": "oral", "amount": "50 mg",
                                             "at": ["0 h", "12 h"]}],
                                   "simulation": {"duration": "2 d", "output_every": "10 min"}},
    "repeated_14_days": {"dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg",
                                   "start": "0 d", "every": "3.5 d", "count": 4},
                                  {"drug": "escitalopram", "route": "oral", "amount": "10 mg",
                                   "start": "0 d", "every": "1 d", "count": 14}],
                         "simulation": {"duration": "14 d", "output_every": "2 h"}},
    "therapy_schedule": {"patient": {"inflammation": "high"},
                         "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                   "duration": "40 min"}],
                         "therapy": [{"kind": "cbt", "start": "1 d", "every": "7 d", "count": 3}],
                         "simulation": {"duration": "21 d", "output_every": "3 h"}},
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_libroadrunner_reproduces_every_state(name):
    scenario = SCENARIOS[name]
    ours = ketasim.simulate(scenario, settings=ketasim.SolverSettings(rtol=1e-10, atol=1e-13))
    rr = _roadrunner(export_sbml(scenario), rtol=1e-10, atol=1e-12)
    rr.timeCourseSelections = ["time"] + [sbml_id(n) for n in ours.states]
    theirs = rr.simulate(times=list(ours.times_h))
    np.testing.assert_allclose(theirs[:, 0], ours.times_h)
    for j, state in enumerate(ours.states):
        a, b = ours.states[state], theirs[:, j + 1]
        ok = (np.abs(a - b) <= 1e-4 * np.abs(a)) | (np.abs(a - b) <= 1e-8)
        assert ok.all(), f"{state}: max difference {np.max(np.abs(a - b)):.3g} at t = {ours.times_h[~ok][0]:g} h"


def test_outputs_as_rules_in_their_units():
    scenario = SCENARIOS["iv_infusion"]
    ours = ketasim.simulate(scenario)
    xml = export_sbml(scenario)
    doc = libsbml.readSBMLFromString(xml)
    model = doc.getModel()
    for var in default_model().outputs:
        par = model.getParameter(sbml_id(var.name))
        assert par is not None, var.name
        assert par.isSetUnits()
    # at the accuracy the other cross-engine tests use: libRoadRunner's defaults (rtol 1e-6) left the
    # ketamine tail 1.3e-4 off in relative terms, outside the comparison's own rtol
    rr = _roadrunner(xml, rtol=1e-10, atol=1e-12)
    rr.timeCourseSelections = ["time", "pk_ketamine_plasma", "clinical_madrs", "circuit_pfc_gbc", "inflammation_il6"]
    theirs = rr.simulate(times=list(ours.times_h))
    for j, name in enumerate(["pk.ketamine_plasma", "clinical.madrs", "circuit.pfc_gbc", "inflammation.il6"]):
        np.testing.assert_allclose(theirs[:, j + 1], ours[name], rtol=1e-4, atol=1e-8, err_msg=name)


def test_parameters_carry_units_and_sources():
    model = libsbml.readSBMLFromString(export_sbml(SCENARIOS["iv_infusion"])).getModel()
    par = model.getParameter("pk_cl_s_ketamine")
    assert par.getUnits() == "litre_per_hour" and par.getValue() == pytest.approx(89.0)
    assert "SPRAVATO" in par.getAnnotationString()
    for i in range(model.getNumParameters()):
        assert model.getParameter(i).isSetUnits(), model.getParameter(i).getId()


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.toml")), ids=lambda p: p.name)
def test_every_example_exports_without_errors(path, tmp_path):
    out = tmp_path / "model.xml"
    result = CliRunner().invoke(app, ["export-sbml", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = libsbml.readSBMLFromFile(str(out))
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, True)
    n = doc.checkConsistency()
    assert not [doc.getError(i).getMessage() for i in range(n) if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    assert (doc.getLevel(), doc.getVersion()) == (3, 2)


def test_bad_input_leaves_no_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[patient]\nhair = "brown"\n')
    out = tmp_path / "model.xml"
    result = CliRunner().invoke(app, ["export-sbml", str(bad), "--out", str(out)])
    assert result.exit_code == 2 and "unknown key" in result.output and not out.exists()
    good = ROOT / "examples" / "single_infusion.toml"
    result = CliRunner().invoke(app, ["export-sbml", str(good), "--out", "/proc/ketasim/model.xml"])
    assert result.exit_code == 2 and "cannot write" in result.output
    result = CliRunner().invoke(app, ["export-sbml", str(good), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_petab_problem_passes_the_linter(tmp_path):
    from petab import v1 as petab

    out = tmp_path / "petab"
    result = CliRunner().invoke(app, ["export-petab", str(ROOT / "examples" / "datasets" / "racemic_infusion_targets.toml"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    problem = petab.Problem.from_yaml(str(out / "problem.yaml"))
    assert petab.lint_problem(problem) is False
    assert len(problem.measurement_df) == 4 and set(problem.parameter_df.index) >= {"pk_v_central"}


def test_bad_dataset_refused(tmp_path):
    path = tmp_path / "data.toml"
    path.write_text(f'[dataset]\nid = "x"\nscenario = "{ROOT / "examples" / "single_infusion.toml"}"\n'
                    '[[observation]]\ntarget = "t"\nquantity = "pk.nonsense"\ntime = "1 h"\nvalue = 1.0\n'
                    'unit = "ng/mL"\nsd = 1.0\n')
    result = CliRunner().invoke(app, ["export-petab", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "observation[0].quantity" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change,words", [
    ('estimate = ["pk.v_central", "pk.v_central"]', "named twice"),
    ('estimate = ["inflammation.il6_high"]', "cannot be estimated"),
    ('estimates = ["pk.v_central"]', "unknown key(s) 'estimates'"),
])
def test_petab_dataset_checks(tmp_path, change, words):
    path = tmp_path / "data.toml"
    path.write_text(f'[dataset]\nid = "x"\nscenario = "{ROOT / "examples" / "single_infusion.toml"}"\n{change}\n'
                    '[[observation]]\ntarget = "t"\nquantity = "pk.ketamine_plasma"\ntime = "1 h"\nvalue = 1.0\n'
                    'unit = "ng/mL"\nsd = 1.0\n')
    result = CliRunner().invoke(app, ["export-petab", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and words in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_petab_export_can_be_rerun(tmp_path):
    args = ["export-petab", str(ROOT / "examples" / "datasets" / "racemic_infusion_targets.toml"), "--out",
            str(tmp_path / "petab")]
    assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_negative_zero_is_bracketed():
    from ketasim.sbml import _Tracer

    tracer = _Tracer()
    x = tracer.symbol("x")
    assert (x ** -0.0).text == "x ^ (-0.0)"
    assert (-0.0 - x).text == "(-0.0) - x"


#: a scenario that exercises every mechanism's term: ketamine, a felt active placebo, naltrexone, a gas
_MECHANISM_SCENARIO = {
    "dose": [{"drug": "naltrexone", "route": "oral", "amount": "50 mg", "at": ["0 h"]},
             {"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg", "duration": "40 min", "at": ["1 h"]},
             {"drug": "midazolam", "route": "iv", "amount": "0.045 mg/kg", "duration": "40 min", "at": ["30 h"]},
             {"drug": "nitrous-oxide", "route": "inhaled", "amount": "50 %", "duration": "1 h", "at": ["36 h"]}],
    "simulation": {"duration": "2 d", "output_every": "1 h"}}
_VARIANTS = {name: [name] if MECHANISMS[name].kind == "route" else ["disinhibition", name] for name in MECHANISMS}
_VARIANTS["all"] = list(MECHANISMS)
#: CI runs these; the rest with -m slow
_FAST_VARIANTS = ("habenula_trapping", "all")


def _variant_marks(v):
    return [] if v in _FAST_VARIANTS else [pytest.mark.slow]


@pytest.mark.parametrize("variant", [pytest.param(v, marks=_variant_marks(v)) for v in _VARIANTS])
def test_libroadrunner_reproduces_each_mechanism_variant(variant):
    """Each hypothesis on its own (a modulator with one route) and all together: the switches are SBML
    parameters, and libRoadRunner integrates the exported document to the same states."""
    names = _VARIANTS[variant]
    ours = ketasim.simulate(_MECHANISM_SCENARIO, mechanisms=names,
                            settings=ketasim.SolverSettings(rtol=1e-10, atol=1e-13))
    xml = export_sbml(_MECHANISM_SCENARIO, mechanisms=names)
    for m in MECHANISMS.values():
        assert f'id="{sbml_id(m.switch)}"' in xml
    rr = _roadrunner(xml, rtol=1e-10, atol=1e-12)
    rr.timeCourseSelections = ["time"] + [sbml_id(n) for n in ours.states]
    theirs = rr.simulate(times=list(ours.times_h))
    for j, state in enumerate(ours.states):
        a, b = ours.states[state], theirs[:, j + 1]
        ok = (np.abs(a - b) <= 1e-4 * np.abs(a)) | (np.abs(a - b) <= 1e-8)
        assert ok.all(), f"{state}: max difference {np.max(np.abs(a - b)):.3g} at t = {ours.times_h[~ok][0]:g} h"
