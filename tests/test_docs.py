"""Documentation stays true: generated parameter tables current, README's promises kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_parameter_tables_in_docs_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_parameter_tables.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_opens_with_disclaimer_and_two_commands():
    text = (ROOT / "README.md").read_text()
    head = text[:2500]
    assert "research and teaching" in head
    assert "make demo" in head and "make test" in head
    assert (ROOT / "examples" / "single_infusion.toml").exists()


def test_ci_script_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert "make test" in script and "set -e" in script
