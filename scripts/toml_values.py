"""Rewrite the ``value`` of parameters in the package's TOML files (used by the calibration scripts)."""

from __future__ import annotations

import re
from pathlib import Path

PARAMS = Path(__file__).resolve().parent.parent / "src" / "ketasim" / "params"


def write_values(values: dict[str, float], field: str = "value") -> None:
    """``values`` maps 'layer.name' to the new value (in the file's unit); ``field = "cv"`` writes
    the between-patient CV instead."""
    for full, value in values.items():
        layer, name = full.split(".", 1)
        path = PARAMS / f"{layer}.toml"
        text = path.read_text()
        pattern = rf"(\[{re.escape(name)}\]\n(?:[a-z_]+ = [^\n]+\n)*?{field} = )[^\n]+"
        new, n = re.subn(pattern, lambda m, value=value: f"{m.group(1)}{value:.4g}", text)
        if n != 1:
            raise KeyError(f"{full}.{field} not found in {path}")
        path.write_text(new)
