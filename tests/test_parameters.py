"""The parameter registry: every entry has unit, range and source; loading refuses bad files."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from ketasim import ParameterError, ParameterRangeError
from ketasim.params import load_parameter_file, load_parameters
from ketasim.units import INTERNAL_UNITS, unit_dimension


def calibration_target_ids():
    text = resources.files("ketasim").joinpath("data/calibration.toml").read_text()
    return {t["id"] for t in tomllib.loads(text)["target"]}


def test_every_parameter_complete(params):
    assert len(params) > 60
    for name, p in params.items():
        assert p.unit and p.description and p.source, name
        assert p.range[0] <= p.value <= p.range[1], name
        assert unit_dimension(p.unit) in INTERNAL_UNITS, name


def test_calibrated_parameters_name_shipped_targets(params):
    ids = calibration_target_ids()
    for name, p in params.items():
        if p.provenance == "calibrated":
            named = [i for i in ids if i in p.source]
            assert named, f"{name}: 'calibrated:' must name a target id from data/calibration.toml"


def test_units_converted_to_internal(params):
    assert params["pk.hepatic_flow_age_slope"].internal == pytest.approx(0.007 / 8766.0)
    assert params["pk.cl_s_ketamine"].internal == pytest.approx(89.0)
    assert params["pk.cl_s_ketamine"].internal_unit == "L/h"


def test_replace_checks_range_and_changes_digest(params):
    changed = params.replace(pk__cl_s_ketamine=95.0)
    assert changed.value("pk.cl_s_ketamine") == 95.0 and params.value("pk.cl_s_ketamine") == 89.0
    assert changed.digest() != params.digest()
    with pytest.raises(ParameterRangeError, match=r"pk.cl_s_ketamine=500 L/h is outside 60..96 L/h"):
        params.replace(pk__cl_s_ketamine=500.0)


def test_combinations_that_break_the_equations_are_refused(params):
    with pytest.raises(ParameterRangeError, match="must stay below pk.q_hepatic"):
        params.replace(pk__cl_s_ketamine=96.0, pk__fraction_extrahepatic=0.02)
    with pytest.raises(ParameterRangeError, match="pk.fm_cyp2b6 \\+ pk.fm_cyp3a4 must be at most 1"):
        params.replace(pk__fm_cyp2b6=0.8, pk__fm_cyp3a4=0.5)


@pytest.mark.parametrize("entry,words", [
    ('value = 1.0\nunit = "L"\nrange = [0, 2]\ncv = 0.1\nsource = "x"\n', "lacks description"),
    ('value = 1.0\nunit = "zorgs"\nrange = [0, 2]\ncv = 0.1\nsource = "x"\ndescription = "d"\n',
     "is not usable"),
    ('value = 5.0\nunit = "L"\nrange = [0, 2]\ncv = 0.1\nsource = "x"\ndescription = "d"\n', "outside 0..2 L"),
    ('value = 1.0\nunit = "L"\nrange = [0, 2]\ncv = -1\nsource = "x"\ndescription = "d"\n', "cv must be"),
    ('value = 1.0\nunit = "L"\nrange = [0, 2]\ncv = 0.1\nsource = ""\ndescription = "d"\n', "source is empty"),
    ('value = 1.0\nunit = "L"\nrange = [3, 2]\ncv = 0.1\nsource = "x"\ndescription = "d"\n', "range must be"),
])
def test_bad_parameter_files_refused(tmp_path, entry, words):
    path = tmp_path / "layer.toml"
    path.write_text("[thing]\n" + entry)
    with pytest.raises(ParameterError, match=words):
        load_parameter_file(path)


def test_override_file(tmp_path, params):
    path = tmp_path / "override.toml"
    path.write_text('["pk.cl_s_ketamine"]\nvalue = 95.0\nunit = "L/h"\nrange = [60.0, 96.0]\ncv = 0.13\n'
                    'source = "my lab"\ndescription = "faster"\n')
    assert load_parameters(path).value("pk.cl_s_ketamine") == 95.0
    path.write_text('["pk.nonsense"]\nvalue = 1.0\n')
    with pytest.raises(ParameterError, match="unknown parameter 'pk.nonsense'"):
        load_parameters(path)
