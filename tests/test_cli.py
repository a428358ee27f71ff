"""The command line: outputs of `simulate`, the quick form, `cite`, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ketasim.cli import app

ROOT = Path(__file__).parent.parent
REQUIRED_COLUMNS = [
    "time [h]", "pk.ketamine_plasma [ng/mL]", "pk.s_ketamine_plasma [ng/mL]", "pk.r_ketamine_plasma [ng/mL]",
    "pk.norketamine_plasma [ng/mL]", "pk.s_norketamine_plasma [ng/mL]", "pk.r_norketamine_plasma [ng/mL]",
    "pk.dhnk_plasma [ng/mL]", "pk.hnk_plasma [ng/mL]", "pk.ketamine_brain [ng/mL]",
    "receptor.nmda_block_interneuron [fraction]", "receptor.nmda_block_pyramidal [fraction]",
]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "demo"
    result = invoke("simulate", ROOT / "examples" / "single_infusion.toml", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_simulate_writes_every_file(demo_folder):
    for name in ("timeseries.csv", "timeseries.parquet", "summary.json", "manifest.json", "report.html",
                 "figures/pk_plasma.png", "figures/receptor_block.png"):
        assert (demo_folder / name).is_file(), name
    assert not [p for p in demo_folder.parent.iterdir() if ".partial-" in p.name]


def test_timeseries_columns_and_units(demo_folder):
    csv = pd.read_csv(demo_folder / "timeseries.csv")
    parquet = pd.read_parquet(demo_folder / "timeseries.parquet")
    assert list(csv.columns[:len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS or set(REQUIRED_COLUMNS) <= set(csv.columns)
    assert list(csv.columns) == list(parquet.columns)
    pd.testing.assert_frame_equal(csv, parquet, check_exact=False, rtol=1e-12)
    assert csv["time [h]"].iloc[-1] == 672.0  # the demo follows four weeks
    peak = csv["pk.ketamine_plasma [ng/mL]"].max()
    assert 150 < peak < 215


def test_summary_and_manifest(demo_folder):
    summary = json.loads((demo_folder / "summary.json").read_text())
    entry = summary["pk.ketamine_plasma"]
    assert entry["cmax"]["unit"] == "ng/mL" and entry["tmax"]["unit"] == "h" and entry["auc"]["unit"] == "ng/mL*h"
    assert entry["tmax"]["value"] == pytest.approx(40 / 60, abs=0.09)
    for species in ("pk.s_ketamine_plasma", "pk.norketamine_plasma", "pk.hnk_plasma", "pk.dhnk_plasma"):
        assert summary[species]["auc"]["value"] > 0
    manifest = json.loads((demo_folder / "manifest.json").read_text())
    for key in ("ketasim_version", "scenario", "parameter_set_sha256", "solver", "created"):
        assert key in manifest
    assert len(manifest["parameter_set_sha256"]) == 64


def test_report_has_disclaimer_and_figures(demo_folder):
    page = (demo_folder / "report.html").read_text()
    assert "research and teaching" in page and "not medical advice" in page
    assert page.count("data:image/png;base64") == 12  # every layer has its panel


def test_quick_form(tmp_path):
    out = tmp_path / "quick"
    result = invoke("simulate", "--drug", "esketamine", "--route", "intranasal", "--dose", "56 mg",
                    "--days", "2", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(out / "timeseries.csv")
    assert csv["time [h]"].iloc[-1] == 48.0
    assert csv["pk.r_ketamine_plasma [ng/mL]"].abs().max() < 1e-12  # esketamine is pure S (round-off only)
    assert csv["pk.s_ketamine_plasma [ng/mL]"].max() > 0


def test_rerun_replaces_an_earlier_result(tmp_path):
    out = tmp_path / "again"
    args = ("simulate", "--drug", "arketamine", "--dose", "0.5 mg/kg", "--infusion", "40 min", "--days", "1",
            "--out", out, "--quiet")
    assert invoke(*args).exit_code == 0
    (out / "stale.txt").write_text("from the earlier run")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert not (out / "stale.txt").exists() and (out / "summary.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_foreign_or_file_output_is_refused(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "important.txt").write_text("keep me")
    args = ("simulate", "--drug", "esketamine", "--dose", "10 mg", "--days", "1", "--quiet", "--out")
    result = invoke(*args, foreign)
    assert result.exit_code == 2 and "not empty" in result.output
    assert (foreign / "important.txt").read_text() == "keep me"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    result = invoke(*args, a_file)
    assert result.exit_code == 2 and "not a folder" in result.output
    assert a_file.read_text() == "x"


BAD_FILES = {
    "unknown_key": ('[patient]\nweight = "70 kg"\nshoe_size = 42\n', "patient: unknown key(s) 'shoe_size'"),
    "unknown_drug": ('[[dose]]\ndrug = "ketamine-xr"\nroute = "iv"\namount = "1 mg"\n', "dose[0].drug"),
    "unknown_route": ('[[dose]]\ndrug = "esketamine"\nroute = "ear"\namount = "1 mg"\n', "dose[0].route"),
    "negative_amount": ('[[dose]]\ndrug = "esketamine"\nroute = "iv"\namount = "-1 mg"\n', "dose[0].amount"),
    "zero_amount": ('[[dose]]\ndrug = "esketamine"\nroute = "iv"\namount = "0 mg/kg"\n', "dose[0].amount"),
    "wrong_unit": ('[[dose]]\ndrug = "esketamine"\nroute = "iv"\namount = "40 min"\n', "does not fit"),
    "light_patient": ('[patient]\nweight = "15 kg"\n', "patient.weight"),
    "zero_weight": ('[patient]\nweight = "0 kg"\n', "patient.weight"),
    "overlap": ('[[dose]]\ndrug = "esketamine"\nroute = "iv"\namount = "10 mg"\nduration = "2 h"\n'
                'at = ["0 h", "1 h"]\n', "past the next iv dose"),
    "malformed": ('[[dose]\ndrug = \n', "malformed TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_scenario_files_exit_2_and_leave_nothing(case, tmp_path):
    text, words = BAD_FILES[case]
    scenario = tmp_path / f"{case}.toml"
    scenario.write_text(text)
    out = tmp_path / "out"
    result = invoke("simulate", scenario, "--out", out)
    assert result.exit_code == 2
    assert words in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [scenario.name]


@pytest.mark.parametrize("args,words", [
    (["--drug", "esketamine", "--dose", "56 mg", "--route", "nose"], "dose[0].route"),
    (["--drug", "esketamine", "--dose", "fifty"], "dose[0].amount"),
    (["--drug", "esketamine", "--dose", "56 mg", "--days", "0"], "--days"),
    (["--drug", "esketamine"], "--drug and --dose"),
    (["--drug", "esketamine", "--dose", "56 mg", "--backend", "gpu"], "--backend"),
])
def test_bad_quick_form_exit_2(args, words, tmp_path):
    out = tmp_path / "out"
    result = invoke("simulate", *args, "--out", out)
    assert result.exit_code == 2
    assert words in result.output
    assert not out.exists()


def test_missing_file_exit_2(tmp_path):
    result = invoke("simulate", tmp_path / "nope.toml", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "cannot read" in result.output


def test_bad_parameter_file_exit_2(tmp_path):
    result = invoke("simulate", ROOT / "examples" / "single_infusion.toml", "--params", tmp_path / "none.toml",
                    "--out", tmp_path / "out")
    assert result.exit_code == 2 and "cannot read the parameter file" in result.output
    (tmp_path / "bad.toml").write_text("[x\n")
    result = invoke("cite", "--params", tmp_path / "bad.toml")
    assert result.exit_code == 2 and "malformed TOML" in result.output


def test_non_utf8_scenario_exit_2(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[patient]\nsex = \"f\u00e9male\"\n".encode("latin-1"))
    result = invoke("simulate", path, "--out", tmp_path / "out")
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_cite_lists_every_parameter_source():
    result = invoke("cite", "--json")
    assert result.exit_code == 0
    citations = json.loads(result.output)
    cited = {name for names in citations.values() for name in names}
    from ketasim.params import load_parameters

    assert cited == set(load_parameters())
    assert any("Ebert B" in source for source in citations)
    text = invoke("cite")
    assert "pk.cl_s_ketamine = 89 L/h" in text.output


def test_schema_command_prints_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0 and json.loads(result.output)["title"] == "ketasim scenario"
