"""Competing hypotheses of ketamine's antidepressant action, as named parts of the model.

Each hypothesis is written once, in the layer where its biology lives, and included or left out by
its switch parameter ``mechanism.<name>`` (1 on, 0 off). The switch multiplies the one term the
hypothesis adds, so every combination is the same vector field with different switches: the
compiled kernel, the JAX backend and the SBML export (where the switches are parameters) follow
for all 2^7 combinations from one compilation. A left-out mechanism's states, if it has any, are
still integrated but feed no other state (``private_states``; ``tests/test_mechanisms.py`` checks
that on the symbolic Jacobian), so a virtual trial, whose outputs do not read them, solves them at a
looser tolerance (``idle_states``).

>>> from ketasim.model.mechanisms import MECHANISMS, switches
>>> sorted(MECHANISMS)[:3]
['disinhibition', 'expectancy_perceptible', 'glun2b_eef2']
>>> switches(["opioid", "disinhibition"])["mechanism.opioid"]
1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ScenarioError

#: the parameter-name prefix of the switches (``params/mechanism.toml``)
SWITCH_PREFIX = "mechanism."


@dataclass(frozen=True)
class Mechanism:
    """One hypothesis: where it lives, what it adds, on whose evidence, and what it predicts.

    ``kind`` is ``route`` (a path from the drug to the symptoms) or ``modulator`` (it changes a
    route, so it needs one). ``gain`` is the hypothesis's own coupling strength, the one parameter
    ``ketasim calibrate --mechanisms`` may fit for a variant (never a gain shared by every route);
    ``needs_layers`` are the layers that must be present for its term to exist. ``private_states``
    (state names, or prefixes ending in ``_``) are the states that exist for this hypothesis alone:
    with its switch off, no other state depends on them.
    """

    name: str
    title: str
    kind: str
    module: str
    equations: str
    sources: tuple[str, ...]
    predicts: tuple[str, ...]
    gain: str | None = None
    needs_layers: tuple[str, ...] = ()
    private_states: tuple[str, ...] = ()

    @property
    def switch(self) -> str:
        return f"{SWITCH_PREFIX}{self.name}"

    def owns(self, state: str) -> bool:
        """Whether ``state`` is one of ``private_states``."""
        return any(state == p or (p.endswith("_") and state.startswith(p)) for p in self.private_states)


MECHANISMS: dict[str, Mechanism] = {m.name: m for m in (
    Mechanism(
        "disinhibition", "Disinhibition and the glutamate surge", "route", "ketasim.model.synapse",
        "drive = s * surge_gain * B_interneuron / (1 + GABA-A potentiation); glutamate follows drive minus "
        "adaptation; AMPA activation follows glutamate; BDNF release += bdnf_release_gain * (AMPA - AMPA0)",
        ("Moghaddam B et al. J Neurosci 1997;17:2921", "Homayoun H, Moghaddam B. J Neurosci 2007;27:11496",
         "Milak MS et al. Mol Psychiatry 2016;21:320 (Glx surge)"),
        ("benzodiazepines blunt the effect (GABA-A potentiation damps the drive)",
         "any NMDA channel blocker that reaches interneurons at ketamine-like occupancy acts alike",
         "no effect without a glutamate surge"),
        gain="plasticity.bdnf_release_gain", needs_layers=("synapse", "plasticity")),
    Mechanism(
        "glun2b_eef2", "Resting GluN2B block on pyramidal cells and eEF2", "route", "ketasim.model.synapse",
        "GluN2B inhibition = 1 - (1 - B_pyramidal)(1 - GluN2B-selective inhibition); d eEF2/dt = k_eef2 * "
        "(s * inhibition - eEF2); BDNF translation += bdnf_translation_gain * eEF2",
        ("Autry AE et al. Nature 2011;475:91", "Miller OH et al. eLife 2014;3:e03581"),
        ("a GluN2B-selective antagonist (traxoprodil) acts without a glutamate surge",
         "the effect survives benzodiazepines"),
        gain="plasticity.bdnf_translation_gain", needs_layers=("synapse", "plasticity")),
    Mechanism(
        "hnk_ampa", "(2R,6R)-HNK through AMPA receptors", "route", "ketasim.model.synapse",
        "AMPA += (1 - AMPA_glutamate) * s * hnk_ampa_emax * HNK / (HNK + hnk_ampa_ec50)",
        ("Zanos P et al. Nature 2016;533:481", "Lumsden EW et al. PNAS 2019;116:5160",
         "Raja SM et al. Clin Pharmacol Ther 2024;116:1314 (human (2R,6R)-HNK phase 1)"),
        ("dosed (2R,6R)-HNK is antidepressant without dissociation",
         "arketamine (more HNK per NMDA block) is at least as effective as esketamine"),
        gain="synapse.hnk_ampa_emax", needs_layers=("synapse", "plasticity")),
    Mechanism(
        "inflammation", "Inflammation and the kynurenine pathway", "route", "ketasim.model.inflammation",
        "severity *= exp(s * il6_symptom_gain * IL-6 rise); BDNF production /= (1 + s * IL-6 effect); "
        "NMDA open probability scaled by s * (quinolinic acid agonism, kynurenic acid antagonism)",
        ("Park M et al. J Psychiatr Res 2017;84:113", "Kiraly DD et al. Transl Psychiatry 2017;7:e1065",
         "Zhan Y et al. Transl Psychiatry 2020;10:246", "Osimo EF et al. Brain Behav Immun 2020;87:901"),
        ("patients with raised IL-6 respond less", "IL-6 rises transiently after one infusion and falls after six"),
        gain="clinical.il6_symptom_gain", needs_layers=("inflammation",)),
    Mechanism(
        "opioid", "Opioid-system dependence", "modulator", "ketasim.model.probes",
        "every drug-driven antidepressant drive (BDNF production above baseline, habenula relief) *= "
        "1 - s * naltrexone mu occupancy",
        ("Williams NR et al. Am J Psychiatry 2018;175:1205", "Williams NR et al. Mol Psychiatry 2019;24:1779",
         "Klein ME et al. PNAS 2020;117:2656", "contrary: Yoon G et al. JAMA Psychiatry 2019;76:337",
         "contrary: Yoon G et al. Int J Neuropsychopharmacol 2025 (pyaf056)"),
        ("naltrexone pretreatment removes the antidepressant effect but not dissociation",),
        needs_layers=("probes", "plasticity")),
    Mechanism(
        "habenula_trapping", "Trapping block in the lateral habenula", "route", "ketasim.model.receptor",
        "dB/dt = theta P kon C free - B (r (1 - theta) + theta P koff): a trapped blocker leaves only when "
        "its channel reopens; habenula P and r fall with burst firing, 1 / (1 + (B / B50)^4), which block "
        "silences; severity *= exp(-s * habenula_symptom_gain * burst blockade)",
        ("Yang Y et al. Nature 2018;554:317", "Ma S et al. Nature 2023;622:802",
         "Mealing GAR et al. J Pharmacol Exp Ther 1999;288:204 (trapping fractions)"),
        ("a trapped blocker's effect outlasts plasma exposure; a fast-off, low-trapping blocker's does not",
         "memantine and lanicemine fail where ketamine succeeds"),
        gain="clinical.habenula_symptom_gain", needs_layers=("receptor", "clinical"),
        private_states=("receptor.block_habenula_",)),
    Mechanism(
        "expectancy_perceptible", "Expectancy carried by perceptible effects", "route", "ketasim.model.clinical",
        "perceived drug effect rises with dissociation and sedation and fades like a contact; expectancy's "
        "engagement counts it with weight s * perceptible_expectancy_weight",
        ("Wilkinson ST et al. Psychother Psychosom 2019;88:240 (functional unblinding)",
         "Muthukumaraswamy S et al. Neuropharmacology 2021;192:108595"),
        ("an active placebo (midazolam) narrows the difference from ketamine",
         "blinded drugs without perceptible effects separate from placebo less"),
        gain="clinical.perceptible_expectancy_weight", needs_layers=("clinical",),
        private_states=("clinical.perceived_drug_effect",)),
)}

#: the mechanisms of the calibrated model (their switches are 1 in ``params/mechanism.toml``)
DEFAULT_MECHANISMS: tuple[str, ...] = ("disinhibition", "glun2b_eef2", "hnk_ampa", "inflammation")


def check_mechanisms(names: Iterable[str], field: str) -> tuple[str, ...]:
    """``names`` as a tuple in registry order, or ``ScenarioError`` naming ``field`` and what is allowed."""
    names = list(names)
    if not names:
        raise ScenarioError(field, f"name at least one mechanism; allowed: {', '.join(MECHANISMS)}")
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown:
        raise ScenarioError(field, f"unknown mechanism {', '.join(repr(u) for u in unknown)}; "
                                   f"allowed: {', '.join(MECHANISMS)}")
    routes = [n for n in names if MECHANISMS[n].kind == "route"]
    if not routes:
        raise ScenarioError(field, f"{', '.join(names)} only modulate a route; add at least one route "
                                   f"({', '.join(n for n, m in MECHANISMS.items() if m.kind == 'route')})")
    return tuple(n for n in MECHANISMS if n in names)


def switches(names: Iterable[str]) -> dict[str, float]:
    """The switch parameters for a variant: 1 for each named mechanism, 0 for every other."""
    chosen = set(names)
    return {m.switch: 1.0 if m.name in chosen else 0.0 for m in MECHANISMS.values()}


def active(params) -> tuple[str, ...]:
    """The mechanisms switched on in a ParameterSet."""
    return tuple(m.name for m in MECHANISMS.values() if params.value(m.switch) > 0.5)


def idle_states(state_names: Sequence[str], parameter_names: Sequence[str], theta: np.ndarray) -> tuple[str, ...]:
    """The private states of every mechanism switched off in every row of ``theta`` (patients x
    ``parameter_names``), in the order of ``state_names``: states no other state depends on, which
    only outputs reading them directly would need accurately.

    >>> from ketasim.engine import build_problem
    >>> from ketasim.model import default_model
    >>> from ketasim.params import load_parameters
    >>> from ketasim.scenario import Scenario
    >>> problem = build_problem([Scenario.from_dict({"dose": []})], load_parameters(), default_model())
    >>> idle_states(default_model().state_names, problem.parameter_names, problem.theta)[-1]
    'clinical.perceived_drug_effect'
    """
    off = [m for m in MECHANISMS.values() if m.private_states and m.switch in parameter_names
           and not np.any(np.asarray(theta)[:, list(parameter_names).index(m.switch)] != 0.0)]
    return tuple(s for s in state_names if any(m.owns(s) for m in off))


def missing_layers(names: Iterable[str], layer_names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """For each named mechanism, the layers it needs that the model lacks (empty when none)."""
    have = set(layer_names)
    out = {}
    for n in names:
        lacking = tuple(layer for layer in MECHANISMS[n].needs_layers if layer not in have)
        if lacking:
            out[n] = lacking
    return out


def with_mechanisms(params, names: Iterable[str] | None):
    """``params`` (a ParameterSet) with the switches of a variant: exactly ``names`` on; unchanged
    when ``names`` is None (the switches in the parameter files: the calibrated set)."""
    if names is None:
        return params
    return params.replace(**switches(check_mechanisms(names, "mechanisms")))
