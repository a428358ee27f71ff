"""The public API is small and pinned; its docstring examples run."""

from __future__ import annotations

import doctest
import importlib

import pytest

import ketasim

PUBLIC = ["DISCLAIMER", "Dose", "KetasimError", "ParameterError", "ParameterRangeError", "ParameterSet",
          "Patient", "Scenario", "ScenarioError", "SimulationResult", "SolverError", "SolverSettings",
          "export_sbml", "load_parameters", "optimise", "power", "run_trial", "simulate"]


def test_public_api_is_pinned():
    assert sorted(ketasim.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(ketasim, name)


@pytest.mark.parametrize("module", ["ketasim", "ketasim.simulate", "ketasim.scenario", "ketasim.params",
                                    "ketasim.population.spec", "ketasim.population.sample", "ketasim.trial",
                                    "ketasim.trial.statistics", "ketasim.engine.problem", "ketasim.model.system",
                                    "ketasim.compare", "ketasim.compare.variants", "ketasim.compare.experiments", "ketasim.nca",
                                    "ketasim.trial.success", "ketasim.trial.power", "ketasim.params.draws",
                                    "ketasim.result", "ketasim.dataset", "ketasim.vpc", "ketasim.trial.rules",
                                    "ketasim.trial.optimise", "ketasim.trial.discharge", "ketasim.trial.ketamine_use",
                                    "ketasim.calibrate.hierarchical", "ketasim.calibrate.liking",
                                    "ketasim.calibrate.targets"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0


def test_result_exports():
    res = ketasim.simulate({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "35 mg"}],
                            "simulation": {"duration": "2 h", "output_every": "10 min"}})
    ds = res.to_xarray()
    assert ds["pk.ketamine_plasma"].attrs["units"] == "ng/mL" and ds["time"].attrs["units"] == "h"
    df = res.to_dataframe()
    assert df.columns[0] == "time [h]" and "pk.ketamine_plasma [ng/mL]" in df.columns
    assert res.summary()["pk.ketamine_plasma"]["cmax"]["unit"] == "ng/mL"


def test_core_does_not_import_interfaces():
    """Plotting, the CLI and the report stay at the edge: the model and engine never import them."""
    import subprocess
    import sys

    code = ("import sys, ketasim; ketasim.simulate({'simulation': {'duration': '1 h'}}); "
            "bad = [m for m in ('matplotlib', 'typer', 'rich') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_results_show_themselves_in_jupyter():
    """A simulation's and a trial's HTML representation: key numbers with units, a figure for the
    simulation, and the disclaimer; plot refuses outputs of different units on one axis."""
    res = ketasim.simulate({"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                      "duration": "40 min"}], "simulation": {"duration": "1 d"}})
    page = res._repr_html_()
    assert "ketamine Cmax [ng/mL]" in page and "data:image/png;base64," in page
    assert "research and teaching" in page
    with pytest.raises(ValueError, match="different units"):
        res.plot("pk.ketamine_plasma", "clinical.madrs")
    trial = ketasim.run_trial({"trial": {"name": "repr", "seed": 1, "assessments": ["24 h"]},
                               "population": {"n": 5, "preset": "treatment-resistant"},
                               "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv",
                                                                      "amount": "0.5 mg/kg", "duration": "40 min"}]}]})
    page = trial._repr_html_()
    assert "MADRS change [points]" in page and "research and teaching" in page
