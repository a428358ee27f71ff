"""Generate compiled kernels from the one model definition.

The layers are evaluated on sympy symbols, which gives the vector field as expressions; from them
this module derives the analytic Jacobian and prints, after common-subexpression elimination, plain
Python that numba compiles: ``derived`` (the parameter-only subexpressions, once per patient),
``rhs``, and ``w_matrix``, which writes only the structural non-zeros of W = I/(h gamma) - J into the
storage of the sparse LU generated for their fixed pattern (``sparse_lu.py``: ordering, fill,
straight-line factor and solve). The generated module also carries the Rosenbrock integrator
(``rodas4_template.py``), so that numba inlines the model into the solver. Generated source is
cached on disk under a hash of the model, and numba's own cache keeps the machine code, so a second
run pays no compilation.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from ..model.system import Model
from .sparse_lu import FASTMATH, MAX_MULTIPLIER, NJIT, SparseLU, factor_source, solve_source, symbolic_lu

_TEMPLATE = Path(__file__).with_name("rodas4_template.py")
_TABLEAU = Path(__file__).with_name("tableau.py")
_SPARSE_LU = Path(__file__).with_name("sparse_lu.py")
_GENERATOR_VERSION = "7"


@dataclass(frozen=True)
class SymbolicModel:
    """The model as sympy expressions over symbols y_i (states), p_j (parameters), u_k (inputs)."""

    state_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    input_names: tuple[str, ...]
    rhs: tuple[sp.Expr, ...]
    jacobian: dict[tuple[int, int], sp.Expr]
    y: tuple[sp.Symbol, ...]
    p: tuple[sp.Symbol, ...]
    u: tuple[sp.Symbol, ...]

    @property
    def sparsity(self) -> float:
        n = len(self.state_names)
        return len(self.jacobian) / (n * n)


def symbolic_model(model: Model, parameter_names: tuple[str, ...]) -> SymbolicModel:
    y = sp.symbols(f"y_0:{len(model.state_names)}", real=True)
    p = sp.symbols(f"p_0:{len(parameter_names)}", real=True)
    u = sp.symbols(f"u_0:{len(model.input_names)}", real=True)
    dy = model.derivatives(dict(zip(model.state_names, y)), dict(zip(parameter_names, p)),
                           dict(zip(model.input_names, u)), sp)
    rhs = tuple(sp.sympify(dy[name]) for name in model.state_names)
    jac = {}
    for i, expr in enumerate(rhs):
        for j, yj in enumerate(y):
            if yj in expr.free_symbols:
                d = sp.diff(expr, yj)
                if d != 0:
                    jac[(i, j)] = d
    return SymbolicModel(model.state_names, parameter_names, model.input_names, rhs, jac, y, p, u)


class _Printer(PythonCodePrinter):
    def _print_Symbol(self, expr):  # y_3 -> y[3]
        name, _, idx = expr.name.rpartition("_")
        if name in ("y", "p", "u") and idx.isdigit():
            return f"{name}[{idx}]"
        return super()._print_Symbol(expr)


def _function_source(name: str, args: str, assignments: list[tuple[str, sp.Expr, str]],
                     constants: list[str] = ()) -> str:
    """A numba function assigning each ``target = wrap.format(expr)`` after CSE; ``constants`` first."""
    printer = _Printer({"fully_qualified_modules": True})
    exprs = [e for _, e, _ in assignments]
    subs, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("t"), optimizations="basic")
    lines = [NJIT, f"def {name}({args}):"]
    lines += [f"    {c}" for c in constants]
    for sym, e in subs:
        lines.append(f"    {sym} = {printer.doprint(e)}")
    for (target, _, wrap), e in zip(assignments, reduced):
        lines.append(f"    {target} = {wrap.format(printer.doprint(e))}")
    lines.append("    return None")
    return "\n".join(lines)


def w_matrix_source(sm: SymbolicModel, lu: SparseLU) -> str:
    """``w_matrix(y, p, u, fac, lu)``: W = fac I - J written straight into the sparse LU storage.

    Only the structural non-zeros are computed; fill slots are zeroed and diagonal slots without a
    Jacobian entry get ``fac``, so no n x n matrix is touched in the step loop.
    """
    pos = {v: r for r, v in enumerate(lu.perm)}
    assignments, constants = [], []
    for (r, c), slot in lu.slots.items():
        i, j = lu.perm[r], lu.perm[c]
        expr = sm.jacobian.get((i, j))
        if expr is None:
            constants.append(f"lu[{slot}] = {'fac' if r == c else '0.0'}")
        else:
            assignments.append((f"lu[{slot}]", expr, "fac - ({})" if r == c else "-({})"))
    assert all((pos[i], pos[j]) in lu.slots for i, j in sm.jacobian)
    return _function_source("w_matrix", "y, p, u, fac, lu", assignments, constants)


def hoist_parameter_terms(sm: SymbolicModel) -> tuple[SymbolicModel, list[sp.Expr]]:
    """Replace every largest subexpression of the parameters alone by a new parameter p_k (k from
    the number of parameters on), so that it is computed once per patient, not in every call.

    Returns the model over the extended parameters and the expressions of the new ones (over the
    original parameters only, since each is a largest such subexpression).
    """
    params = set(sm.p)
    table: dict[sp.Expr, sp.Symbol] = {}

    def hoist(e: sp.Expr) -> sp.Expr:
        if e.is_Atom:
            return e
        free = e.free_symbols
        if free and free <= params:
            if e not in table:
                table[e] = sp.Symbol(f"p_{len(sm.p) + len(table)}", real=True)
            return table[e]
        return e.func(*[hoist(a) for a in e.args])

    rhs = tuple(hoist(e) for e in sm.rhs)
    jac = {k: hoist(e) for k, e in sm.jacobian.items()}
    return replace(sm, rhs=rhs, jacobian=jac), list(table)


def kernel_source(sm: SymbolicModel) -> str:
    n = len(sm.state_names)
    lu = symbolic_lu(n, list(sm.jacobian))
    sm, derived = hoist_parameter_terms(sm)
    n_params = len(sm.parameter_names)
    derived_src = _function_source("derived", "p",
                                   [(f"p[{n_params + k}]", e, "{}") for k, e in enumerate(derived)])
    rhs = _function_source("rhs", "y, p, u, out",
                           [(f"out[{i}]", e, "{}") for i, e in enumerate(sm.rhs)])
    header = (
        "# Generated by ketasim.engine.codegen from the model definition; do not edit.\n"
        f"# states: {n}, parameters: {len(sm.parameter_names)}, "
        f"Jacobian non-zeros: {len(sm.jacobian)}; sparse LU of W: {len(lu.slots)} entries "
        f"({lu.n_fill} fill), {lu.n_updates} multiply-adds, {max(lu.block) + 1} diagonal blocks\n"
        "import math\nimport numba\nimport numpy as np\n\n"
        f"N_STATES = {n}\nN_PARAMS = {len(sm.parameter_names)}\n"
        f"N_INPUTS = {len(sm.input_names)}\nN_DERIVED = {len(derived)}\n"
        f"LU_SIZE = {lu.size}\nMAX_MULTIPLIER = {MAX_MULTIPLIER!r}\n"
        f"FASTMATH = {{{', '.join(repr(f) for f in FASTMATH)}}}\n"
        "# original (row, column) of each stored entry of W, for the dense fallback\n"
        f"W_ROWS = np.array({[i for i, _ in lu.entries]}, dtype=np.int64)\n"
        f"W_COLS = np.array({[j for _, j in lu.entries]}, dtype=np.int64)\n\n"
    )
    parts = [derived_src, rhs, w_matrix_source(sm, lu), factor_source(lu), solve_source(lu), _TEMPLATE.read_text()]
    return header + "\n\n\n".join(parts)


def cache_dir() -> Path:
    """Where generated kernels live: $KETASIM_CACHE_DIR, else ~/.cache/ketasim."""
    root = os.environ.get("KETASIM_CACHE_DIR") or Path.home() / ".cache" / "ketasim"
    path = Path(root) / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_key(model: Model, parameter_names: tuple[str, ...]) -> str:
    """A hash of everything the generated code depends on."""
    import ketasim.model as model_pkg

    h = hashlib.sha256()
    h.update(_GENERATOR_VERSION.encode())
    h.update(sp.__version__.encode())
    h.update(_TEMPLATE.read_bytes())
    h.update(_TABLEAU.read_bytes())  # numba freezes the imported coefficients into its cache
    h.update(_SPARSE_LU.read_bytes())  # ordering and printed factor/solve
    h.update(Path(__file__).read_bytes())
    for f in sorted(Path(model_pkg.__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    h.update(repr((model.layer_names, model.state_names, parameter_names, model.input_names)).encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=8)
def _load(path_str: str, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path_str)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def compiled_kernel(model: Model, parameter_names: tuple[str, ...]) -> ModuleType:
    """The numba module for ``model`` (generated and compiled on first use, then loaded from the disk cache).

    The first use anywhere generates the source and compiles the solver under a lock on the cache
    folder: processes starting together on an empty cache (Dask workers, pytest-xdist, a command
    line beside a notebook) wait for one compilation instead of each compiling the same kernel,
    which took a core for about 40 s each on a 2-core machine.
    """
    key = model_key(model, parameter_names)
    module_name = f"ketasim_kernel_{key}"
    path = cache_dir() / f"{module_name}.py"
    compiled = path.with_suffix(".compiled")  # written once numba's cache holds the solver

    def ready() -> bool:  # the marker and the source it was written for (a cleaner may delete either)
        return compiled.exists() and path.exists()

    if not ready():
        with _exclusive(path.with_suffix(".lock")):
            if not ready():  # another process may have finished while this one waited
                if not path.exists():
                    source = kernel_source(symbolic_model(model, parameter_names))
                    tmp = path.with_suffix(f".tmp{os.getpid()}")
                    tmp.write_text(source)
                    os.replace(tmp, path)  # atomic: a process without the lock sees the whole file or none
                _compile_solver(_load(str(path), module_name), len(model.state_names), len(parameter_names),
                                len(model.input_names))
                try:
                    compiled.touch()
                except OSError:  # a read-only cache: the next process compiles again, as before the lock
                    pass
    return _load(str(path), module_name)


@contextmanager
def _exclusive(lock_path: Path):
    """An exclusive advisory lock on ``lock_path`` across processes (POSIX), saying on stderr when it
    waits for another process; where there is none (no fcntl, a read-only cache folder, a file system
    without flock) concurrent processes may each compile, as numba's cache allows."""
    handle = None
    try:
        import fcntl

        handle = open(lock_path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"ketasim: waiting for another process compiling the model kernel ({lock_path.stem})",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
    except (ImportError, OSError):  # no lock to be had here: go on without one
        if handle is not None:
            handle.close()
        handle = None
    if handle is None:
        yield
        return
    with handle:
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile_solver(module: ModuleType, n_states: int, n_params: int, n_inputs: int) -> None:
    """Compile ``solve_batch`` for the argument types ``engine.cpu.solve_cpu`` passes (C-contiguous
    float64 arrays, the per-state tolerances among them, a float step cap, an int step budget) by
    calling it on one patient whose only segment is empty, so numba writes its cache now; nothing is
    integrated."""
    import numpy as np

    tolerance = np.full(n_states, 1e-6), np.full(n_states, 1e-9)  # rtol, atol: one per state
    module.solve_batch(np.ones((1, n_states)), np.ones((1, n_params)), np.zeros((1, 2)), np.zeros((1, 1, n_inputs)),
                       np.zeros((1, 1, n_states)), np.zeros(1), *tolerance, 1.0, 1, np.zeros((1, 1, n_states)),
                       np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
