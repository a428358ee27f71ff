"""Circuit: prefrontal-limbic network whose connections follow prefrontal synaptic strength.

Four regions (dlPFC, vmPFC/sgACC, amygdala, hippocampus) form a linear stochastic network
``dz = A z dt + dW`` with ``A = (-I + W) / tau``; weights are relative to each region's self-decay,
so the correlations below do not depend on ``tau``. Every connection that starts or ends in a prefrontal
region scales with prefrontal synaptic strength ``c`` (fraction of the healthy reference):

    c = c0 x spine density x (1 + a x functional potentiation)

where ``c0`` (below 1 in depression, lower with higher baseline MADRS) is a patient covariate, so a
patient with baseline MADRS <= 6 is the healthy reference (c0 = 1); spine density is at most the
healthy density and potentiation at most its ceiling ``a`` (plasticity layer), so ``c`` is bounded.
The network is stable by construction: each region's total absolute input weight ``r_i`` is passed
through a smooth saturation ``r_i / (1 + (r_i / rho)^4)^(1/4)`` with ``rho = 0.9`` (divisive input
normalisation), so every row of ``W`` sums in absolute value to less than ``rho < 1`` and, by
Gershgorin's theorem, every eigenvalue of ``A`` has real part below ``-(1 - rho) / tau`` for any
weights and any strength. vmPFC inhibits the amygdala
(top-down control); the amygdala drives vmPFC (bottom-up). Functional connectivity is computed as
fMRI sees it at rest: the stationary covariance ``S`` of the network solves the Lyapunov equation
``A S + S A' + I = 0`` (in units of tau); correlations give ``circuit.pfc_amygdala_fc`` (vmPFC-amygdala, r) and the
prefrontal global connectivity ``circuit.pfc_gbc`` (mean Fisher z of dlPFC and vmPFC with all other
regions), the measures in which depression is low and ketamine restores (Abdallah 2017).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Layer, Variable

REGIONS = ("dlpfc", "vmpfc", "amygdala", "hippocampus")
PREFRONTAL = ("dlpfc", "vmpfc")
#: (target, source, parameter): directed effective connections
#: the largest total absolute input weight a region can have (Gershgorin bound: below 1 is stable)
MAX_INPUT_WEIGHT = 0.9
CONNECTIONS = (
    ("vmpfc", "dlpfc", "w_dlpfc_to_vmpfc"),
    ("dlpfc", "vmpfc", "w_vmpfc_to_dlpfc"),
    ("amygdala", "vmpfc", "w_vmpfc_to_amygdala"),
    ("vmpfc", "amygdala", "w_amygdala_to_vmpfc"),
    ("hippocampus", "vmpfc", "w_vmpfc_to_hippocampus"),
    ("vmpfc", "hippocampus", "w_hippocampus_to_vmpfc"),
    ("amygdala", "hippocampus", "w_hippocampus_to_amygdala"),
)


def stationary_covariance(a: list[list[Any]]) -> list[list[Any]]:
    """Solve A S + S A' + I = 0 for symmetric S, elementwise over arrays (numpy or jax).

    The n(n+1)/2 unknowns S_kl (k <= l) satisfy linear equations whose matrix is the symmetric
    part of the Kronecker sum of A, non-singular for a stable A; plain Gaussian elimination keeps
    the code free of any linear-algebra library, so it broadcasts over time points.
    """
    n = len(a)
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    index = {pair: k for k, pair in enumerate(pairs)}

    def unknown(k, m_):
        return index[(min(k, m_), max(k, m_))]

    size = len(pairs)
    mat = [[0.0] * size for _ in range(size)]
    rhs = [0.0] * size
    for row, (i, j) in enumerate(pairs):
        for k in range(n):
            mat[row][unknown(k, j)] = mat[row][unknown(k, j)] + a[i][k]  # (A S)_ij
            mat[row][unknown(i, k)] = mat[row][unknown(i, k)] + a[j][k]  # (S A')_ij
        rhs[row] = -1.0 if i == j else 0.0
    for col in range(size):  # forward elimination (diagonally dominant for a stable network)
        for row in range(col + 1, size):
            factor = mat[row][col] / mat[col][col]
            for k in range(col, size):
                mat[row][k] = mat[row][k] - factor * mat[col][k]
            rhs[row] = rhs[row] - factor * rhs[col]
    sol = [0.0] * size
    for row in range(size - 1, -1, -1):
        acc = rhs[row]
        for k in range(row + 1, size):
            acc = acc - mat[row][k] * sol[k]
        sol[row] = acc / mat[row][row]
    return [[sol[unknown(i, j)] for j in range(n)] for i in range(n)]


class Circuit(Layer):
    """Prefrontal-amygdala-hippocampal network and its functional connectivity."""

    name: ClassVar[str] = "circuit"

    def states(self) -> tuple[Variable, ...]:
        return ()

    def outputs(self) -> tuple[Variable, ...]:
        return (Variable("prefrontal_strength", "fraction healthy",
                         "prefrontal synaptic strength relative to the healthy reference"),)

    def readout_variables(self) -> tuple[Variable, ...]:
        return (
            Variable("pfc_amygdala_fc", "r", "vmPFC-amygdala functional connectivity (correlation)"),
            Variable("pfc_gbc", "z", "prefrontal global brain connectivity (mean Fisher z)"),
        )

    def derivatives(self, x, p, c, inp, m) -> dict[str, Any]:
        return {}

    @staticmethod
    def strength(p, c, inp):
        return (c["synaptic_density_baseline"] * inp["plasticity.spine_density"]
                * (1.0 + p["plasticity.potentiation_strength_max"] * inp["plasticity.synaptic_potentiation"]))

    def observe(self, x, p, c, inp, m) -> dict[str, Any]:
        return {"prefrontal_strength": self.strength(p, c, inp)}

    def effective_connectivity(self, p, strength, m) -> list[list[Any]]:
        """A = -I + W: connections scaled by prefrontal strength, each region's inputs normalised so
        that their absolute sum stays below ``MAX_INPUT_WEIGHT`` (stable by construction)."""
        n = len(REGIONS)
        weights: dict[tuple[int, int], Any] = {}
        for target, source, name in CONNECTIONS:
            weight = p[name]
            if target in PREFRONTAL or source in PREFRONTAL:
                weight = weight * strength
            weights[(REGIONS.index(target), REGIONS.index(source))] = weight
        a = [[(-1.0 if i == j else 0.0) for j in range(n)] for i in range(n)]
        for i in range(n):
            inputs = [(j, w) for (t, j), w in weights.items() if t == i]
            if not inputs:
                continue
            total = sum(m.sqrt(w * w) for _, w in inputs)  # |w|, differentiable and traceable
            # r / (1 + (r / rho)^4)^(1/4) < rho: the row's absolute sum after normalisation
            scale = 1.0 / (1.0 + (total / MAX_INPUT_WEIGHT) ** 4) ** 0.25
            for j, w in inputs:
                a[i][j] = w * scale
        return a

    def readouts(self, x, p, c, inp, m) -> dict[str, Any]:
        s = stationary_covariance(self.effective_connectivity(p, self.strength(p, c, inp), m))
        return connectivity_readouts(s, m)


def connectivity_readouts(s: list[list[Any]], m: Any) -> dict[str, Any]:
    """vmPFC-amygdala correlation and prefrontal GBC (mean Fisher z) from a covariance matrix."""

    def corr(i, j):
        return s[i][j] / m.sqrt(s[i][i] * s[j][j])

    vm, am = REGIONS.index("vmpfc"), REGIONS.index("amygdala")
    z = [m.arctanh(corr(REGIONS.index(r), k)) for r in PREFRONTAL
         for k in range(len(REGIONS)) if k != REGIONS.index(r)]
    return {"pfc_amygdala_fc": corr(vm, am), "pfc_gbc": sum(z) / len(z)}


def lyapunov_rate(a: list[list[Any]], s: list[list[Any]]) -> dict[tuple[int, int], Any]:
    """A S + S A' + I for the upper triangle: zero exactly at the stationary covariance."""
    n = len(a)
    return {(i, j): sum(a[i][k] * s[k][j] + s[i][k] * a[j][k] for k in range(n)) + (1.0 if i == j else 0.0)
            for i in range(n) for j in range(i, n)}
