"""Sparse LU without pivoting on the fixed pattern of W = I/(h gamma) - J, generated as straight-line code.

The Jacobian's sparsity pattern is known when the kernel is generated, so the ordering, the
symbolic factorisation (where fill-in appears) and the numeric factor and solve can be decided
once and printed as straight-line code with constant indices, as KPP does for atmospheric
chemistry (Sandu et al. 1997, "Benchmarking stiff ODE solvers for atmospheric chemistry problems
II: Rosenbrock solvers"; Damian et al. 2002, "The kinetic preprocessor KPP").

Ordering: the states' dependency graph (i -> j when df_i/dy_j != 0) is split into strongly
connected components (Tarjan 1972), which Tarjan's algorithm emits dependencies first. In that
order W is block lower-triangular (Duff, Erisman & Reid, "Direct methods for sparse matrices",
ch. 6): upper factors and fill stay inside the diagonal blocks (here at most 8 states: the PK
compartments of one drug, the channel blockers competing for one receptor), and the
off-diagonal blocks only need multipliers. Without pivoting the factorisation can be unstable if
a pivot is small; the factor reports that (a zero or non-finite pivot, or a multiplier inside a
diagonal block above ``MAX_MULTIPLIER``, i.e. threshold pivoting's test with a very lenient
threshold) and the integrator then falls back to the dense LU with partial pivoting for that step.
Multipliers in the off-diagonal blocks are not tested: they never reach a pivot (every pivot is
eliminated within its own block), so they cannot make the elimination grow, and a large one is
the solution's own size (W's entry over the pivot of an earlier block), which pivoting would not
change (Duff, Erisman & Reid, section 6.1: only the diagonal blocks need pivoting). Testing them
too cost about a fifth of the factorisation (228 of the model's 319 multipliers).

Storage: one flat array ``lu`` holds, in permuted row-major order, the entries of W (structural
non-zeros plus fill), then the n reciprocal pivots. The right-hand side keeps the states'
original order; the permutation lives in the printed indices only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

#: LLVM fast-math flags of all generated code: fused multiply-adds, reciprocals, no signed zeros
#: (about 7 % faster steps; results move by ~1e-8 relative). Not "reassoc": it let the compiled
#: loops depend on where a patient's arrays lie in memory, so a patient's result changed in the last
#: bits with the chunk size; not "nnan"/"ninf" (the integrator tests for non-finite values); not
#: approximate elementary functions
FASTMATH = ("arcp", "contract", "nsz")
#: numpy's error model: a float division by zero gives inf or NaN, which the integrator turns into a
#: smaller step or status 3, instead of Python's exception check before every division (that check
#: cost 8-12 % of the solve)
NJIT = '@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={%s})' % ", ".join(repr(f) for f in FASTMATH)
#: a multiplier |l_ik| inside a diagonal block above this rejects the factorisation (threshold pivoting, u = 1e-10)
MAX_MULTIPLIER = 1e10


def strongly_connected_components(n: int, deps: list[list[int]]) -> list[list[int]]:
    """Tarjan's algorithm; components come out after everything they depend on (deps[i]: i -> j)."""
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * n + 100))

    def visit(v: int) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack[v] = True
        for w in deps[v]:
            if index[w] < 0:
                visit(w)
                low[v] = min(low[v], low[w])
            elif on_stack[w]:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack[w] = False
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    try:
        for v in range(n):
            if index[v] < 0:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


@dataclass(frozen=True)
class SparseLU:
    """The symbolic factorisation: ordering, pattern with fill, and the elimination steps."""

    n: int
    perm: tuple[int, ...]  # perm[r] = original state at permuted position r
    block: tuple[int, ...]  # block[r] = index of the diagonal block of position r
    slots: dict[tuple[int, int], int]  # (row, col) in permuted positions -> index in lu
    rows: tuple[tuple[int, ...], ...]  # rows[r] = sorted permuted columns of row r (after fill)
    n_fill: int

    @property
    def size(self) -> int:
        """Length of the flat ``lu`` array: entries plus reciprocal pivots."""
        return len(self.slots) + self.n

    def inv(self, r: int) -> int:
        return len(self.slots) + r

    @property
    def n_updates(self) -> int:
        """Multiply-adds of one factorisation (a measure of its cost)."""
        return sum(len(updates) for r in range(self.n) for _, _, updates in self.eliminations(r))

    @property
    def entries(self) -> list[tuple[int, int]]:
        """The original (row, column) of W of each stored entry, in storage order."""
        by_slot = sorted(self.slots.items(), key=lambda kv: kv[1])
        return [(self.perm[r], self.perm[c]) for (r, c), _ in by_slot]

    def eliminations(self, r: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """Row ``r``'s elimination (Doolittle, in order): for each column k < r of its pattern, (k,
        the slot of the multiplier l_rk, [(slot of w_rj, slot of u_kj) for the updates j > k]). The
        one traversal that both the printed factorisation and the JAX backend's follow."""
        return [(k, self.slots[(r, k)], [(self.slots[(r, j)], self.slots[(k, j)]) for j in self.rows[k] if j > k])
                for k in self.rows[r] if k < r]

    def lower(self, r: int) -> list[tuple[int, int]]:
        """(slot, permuted column) of row ``r``'s unit-lower-triangular entries."""
        return [(self.slots[(r, k)], k) for k in self.rows[r] if k < r]

    def upper(self, r: int) -> list[tuple[int, int]]:
        """(slot, permuted column) of row ``r``'s strictly upper-triangular entries."""
        return [(self.slots[(r, j)], j) for j in self.rows[r] if j > r]

    def tested(self, r: int, k: int) -> bool:
        """Whether the multiplier l_rk is threshold-tested: it lies inside a diagonal block (module docstring)."""
        return self.block[k] == self.block[r]


def symbolic_lu(n: int, pattern: set[tuple[int, int]] | list[tuple[int, int]]) -> SparseLU:
    """Order the states (SCCs, dependencies first) and find the fill of W's LU without pivoting."""
    deps = [[] for _ in range(n)]
    for i, j in sorted(pattern):
        if i != j:
            deps[i].append(j)
    comps = strongly_connected_components(n, deps)
    perm = [v for comp in comps for v in comp]
    block = [b for b, comp in enumerate(comps) for _ in comp]
    pos = {v: r for r, v in enumerate(perm)}
    rows = [set() for _ in range(n)]
    for i, j in pattern:
        rows[pos[i]].add(pos[j])
    for r in range(n):
        rows[r].add(r)  # W always has its diagonal (1 / (h gamma))
    n_struct = sum(len(s) for s in rows)
    for r in range(n):  # row-oriented (Doolittle) elimination: fill of row r from the rows above
        done = set()
        while True:
            pending = sorted(k for k in rows[r] if k < r and k not in done)
            if not pending:
                break
            k = pending[0]
            done.add(k)
            rows[r].update(j for j in rows[k] if j > k)
    ordered = tuple(tuple(sorted(s)) for s in rows)
    slots = {(r, c): idx for idx, (r, c) in enumerate((r, c) for r in range(n) for c in ordered[r])}
    return SparseLU(n, tuple(perm), tuple(block), slots, ordered, len(slots) - n_struct)


def factor_source(lu: SparseLU, name: str = "w_factor") -> str:
    """``name(lu) -> bool``: factor W (already in ``lu``) in place; False if a pivot is unfit."""
    multipliers = [ik for r in range(lu.n) for k, ik, _ in lu.eliminations(r) if lu.tested(r, k)]
    lines = [f"{name.upper()}_MULTIPLIERS = np.array({multipliers}, dtype=np.int64)", "", "",
             NJIT, f"def {name}(lu):"]
    for r in range(lu.n):
        for k, ik, updates in lu.eliminations(r):
            lines.append(f"    m = lu[{ik}] * lu[{lu.inv(k)}]")
            lines.append(f"    lu[{ik}] = m")
            lines += [f"    lu[{rj}] -= m * lu[{kj}]" for rj, kj in updates]
        d = lu.slots[(r, r)]
        lines.append(f"    d = lu[{d}]")
        lines.append("    if not (d != 0.0 and math.isfinite(d)):")
        lines.append("        return False")
        lines.append(f"    lu[{lu.inv(r)}] = 1.0 / d")
    # checked after the elimination, each on its own: a running maximum would chain every multiplier
    lines.append(f"    for k in {name.upper()}_MULTIPLIERS:")
    lines.append("        if not abs(lu[k]) <= MAX_MULTIPLIER:  # NaN fails this too")
    lines.append("            return False")
    lines.append("    return True")
    return "\n".join(lines)


def solve_source(lu: SparseLU, name: str = "w_solve") -> str:
    """``name(lu, b)``: overwrite b (original state order) with W^-1 b from the factors."""
    p = lu.perm
    lines = [NJIT, f"def {name}(lu, b):"]
    for r in range(lu.n):  # forward: unit lower triangle
        terms = [f"lu[{slot}] * b[{p[k]}]" for slot, k in lu.lower(r)]
        if terms:
            lines.append(f"    b[{p[r]}] -= " + " + ".join(terms))
    for r in range(lu.n - 1, -1, -1):  # backward: upper triangle, reciprocal pivots
        terms = [f"lu[{slot}] * b[{p[j]}]" for slot, j in lu.upper(r)]
        rest = f" - ({' + '.join(terms)})" if terms else ""
        lines.append(f"    b[{p[r]}] = (b[{p[r]}]{rest}) * lu[{lu.inv(r)}]")
    lines.append("    return None")
    return "\n".join(lines)
