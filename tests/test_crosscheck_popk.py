"""The esketamine cross-check (scripts/crosscheck_esketamine_popk.py) writes Perez-Ruixo 2021's
population model out as its own ODEs; this checks the transcription against the paper's abstract:
absolute nasal bioavailability 54 % at 56 mg and 51 % at 84 mg (to the abstract's rounding, half a
percentage point) and a steady-state volume of 752 L (a pin of Table 3's volumes)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "crosscheck_esketamine_popk.py"


@pytest.fixture(scope="module")
def popk():
    spec = importlib.util.spec_from_file_location("crosscheck_esketamine_popk", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _auc(t, c):
    return float(np.sum(np.diff(t) * (c[1:] + c[:-1]) / 2.0))


@pytest.mark.parametrize(("dose_mg", "published"), [(56.0, 0.54), (84.0, 0.51)])
def test_the_transcribed_model_gives_the_published_nasal_bioavailability(popk, dose_mg, published):
    t = np.linspace(0.0, 120.0, 120 * 20 + 1)
    nasal = _auc(t, popk.perez_ruixo("intranasal", dose_mg, t)[0])
    iv = _auc(t, popk.perez_ruixo("iv", dose_mg, t)[0])
    assert nasal / iv == pytest.approx(published, abs=0.005)


def test_steady_state_volume_is_the_published_one(popk):
    assert popk.VC + popk.VP1 + popk.VP2 == pytest.approx(752.0)  # a pin: Table 3's volumes sum to the abstract's Vss
