"""A plain `pip install ketasim` is enough for every command (issue 16, part 1).

Two checks. Statically, every module the package imports (at the top of a file or inside a
function) is the standard library, ketasim itself, or installed by the core dependencies in
pyproject.toml (directly or through them): nothing a command reaches needs an extra. At run time,
each command runs in a fresh interpreter in which the test-only packages cannot be imported, so a
stray import of one of them fails here rather than on a user's machine.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "ketasim"
DATASET = ROOT / "examples" / "datasets" / "racemic_infusion_targets.toml"

# in the `test` extra and not in the core dependencies: a command must never need them
TEST_ONLY = ("roadrunner", "petab", "httpx", "schemathesis", "playwright", "hypothesis", "pytest")


def _core_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def _installed_by(requirements: list[Requirement]) -> set[str]:
    """Normalised names of the distributions these requirements install (transitively)."""
    seen: set[tuple[str, frozenset]] = set()
    # a requirement's marker is evaluated where it is listed, with the extras its parent was asked for
    stack = [(r, frozenset(r.extras)) for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    while stack:
        req, extras = stack.pop()
        name = req.name.lower().replace("_", "-")
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            below = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in below:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (extras or {""})):
                stack.append((sub, frozenset(sub.extras)))
    return {name for name, _ in seen}


def _imported_modules() -> dict[str, list[str]]:
    """Top-level module name -> the files that import it (absolute imports only)."""
    found: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def test_every_import_is_installed_by_the_core_dependencies():
    core = _installed_by(_core_requirements())
    owners = metadata.packages_distributions()
    missing = {}
    for module, files in _imported_modules().items():
        if module in sys.stdlib_module_names or module == "ketasim" or module == "__future__":
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists & core:
            missing[module] = (sorted(dists) or ["not installed"], sorted(set(files))[:3])
    assert not missing, f"imported by ketasim but not installed by its core dependencies: {missing}"


def test_the_check_sees_a_missing_dependency():
    # the closure must not be everything installed: the test extra's own packages are outside it
    core = _installed_by(_core_requirements())
    assert "python-libsbml" in core
    assert not {"libroadrunner", "petab", "playwright", "schemathesis"} & core


_BLOCKED_RUN = textwrap.dedent("""
    import sys
    blocked = set(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Blocker())
    sys.argv = ["ketasim", *sys.argv[2:]]
    from ketasim.cli import main
    main()
""")


def _start_without_extras(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _BLOCKED_RUN, ",".join(TEST_ONLY), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _all_finished(started: dict[str, subprocess.Popen], timeout: float = 600.0) -> dict[str, subprocess.CompletedProcess]:
    """Each process's result, within one overall deadline; whatever still runs after it (or after a
    failure here) is killed, never left behind."""
    deadline = time.monotonic() + timeout
    try:
        done = {}
        for name, process in started.items():
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        return done
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


COMMANDS = ("simulate", "trial", "power", "optimise", "serve", "sensitivity", "fit", "calibrate", "validate", "compare",
            "mechanisms", "nca", "dataset", "vpc", "cite", "export-sbml", "export-petab", "schema")


def test_the_blocker_blocks():
    run = subprocess.run([sys.executable, "-c", _BLOCKED_RUN.replace("from ketasim.cli import main\nmain()",
                                                                     "import petab"), ",".join(TEST_ONLY)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "blocked by the test" in run.stderr


def test_the_list_holds_every_command():
    from ketasim.cli import app

    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    assert names | {g.name for g in app.registered_groups} == set(COMMANDS)


def test_every_command_starts_without_the_extras():
    """Each command's --help in a fresh interpreter without the extras, started side by side."""
    runs = _all_finished({command: _start_without_extras(command, "--help") for command in COMMANDS})
    failed = {command: (run.stdout[-1000:], run.stderr[-2000:]) for command, run in runs.items()
              if run.returncode != 0 or "Usage" not in run.stdout}
    assert not failed, failed


def test_commands_work_without_the_extras(tmp_path):
    scenario = ROOT / "examples" / "single_infusion.toml"
    started = {  # side by side: each is mostly a fresh interpreter's imports
        "export-sbml": _start_without_extras("export-sbml", scenario, "--out", tmp_path / "model.xml"),
        "export-petab": _start_without_extras("export-petab", DATASET, "--out", tmp_path / "petab"),
        "simulate": _start_without_extras("simulate", scenario, "--out", tmp_path / "run", "--quiet"),
        "mechanisms": _start_without_extras("mechanisms", "--json"),
        "cite": _start_without_extras("cite"),
    }
    runs = _all_finished(started)
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr[-2000:])
    assert (tmp_path / "model.xml").read_text().startswith("<?xml")
    assert (tmp_path / "petab" / "problem.yaml").is_file()
    assert (tmp_path / "run" / "summary.json").is_file()


def test_a_missing_test_dependency_skips_here_and_fails_under_ci(tmp_path):
    """issue 16 part 5: `make test` installs chromium with `|| true`; under CI a missing browser (or
    optional test package) must fail the run, not leave it green with the browser untested."""
    (tmp_path / "test_needs_tool.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom conftest import skip_or_fail_in_ci\n"
        "skip_or_fail_in_ci('the tool is absent')\n\ndef test_x():\n    pass\n" % str(ROOT / "tests"))

    def run(ci: str):
        # a plain pytest, whether or not this one runs in a pytest-xdist worker
        env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_XDIST")}
        if ci:
            env["CI"] = ci
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                               str(tmp_path / "test_needs_tool.py")], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)

    outside, under = run(""), run("true")
    assert outside.returncode in (0, 5) and "1 skipped" in outside.stdout, outside.stdout  # 5: nothing else ran
    assert under.returncode != 0 and "the tool is absent; CI=true" in under.stdout, under.stdout
