"""Designing the next experiment: which candidate separates two hypotheses best.

A design file names two hypotheses (variants, as in ``--variants``) and candidate experiments, each
a two-arm trial (an active arm and a control arm, with the same ``[[dose]]`` tables as a trial file),
crossed with a grid of population presets and assessment times:

.. code-block:: toml

    [design]
    hypotheses = ["calibrated", "glun2b_eef2"]
    presets = ["treatment-resistant"]
    assessments = ["24 h", "7 d"]
    patients = 300                 # virtual patients per arm and hypothesis
    power = 0.8                    # optional (default 0.8)
    alpha = 0.05                   # two-sided (default 0.05)

    [[candidate]]
    name = "traxoprodil vs saline"
    [[candidate.arm]]
    name = "traxoprodil"
    dose = [{drug = "traxoprodil", route = "iv", amount = "0.75 mg/kg", duration = "90 min"}]
    [[candidate.arm]]
    name = "saline"
    dose = [{drug = "saline", route = "iv", duration = "90 min"}]

Each hypothesis is calibrated first (``fit_variant``), then every candidate runs as a virtual
parallel trial under both, with the same seed (the same patients). The outcome is the difference
in mean MADRS change, active minus control. For each candidate, preset and time: the effect each
hypothesis predicts, their difference D, the between-patient SD of the change s (pooled over arms
and hypotheses), and the patients per arm a trial needs for the given power to tell the two
predictions apart: n = 2 (z(1 - alpha/2) + z(power))^2 s^2 / D^2 (the trial's estimated effect has
standard error s sqrt(2/n)). Candidates are ranked by n.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import norm

from ..errors import ScenarioError
from ..params import ParameterSet, load_parameters
from ..result import DISCLAIMER
from ..scenario import read_toml
from ..units import parse_time
from .variants import Variant, fit_variant, parse_variants

DESIGN_FIELDS = ("hypotheses", "presets", "assessments", "patients", "power", "alpha", "seed")
CANDIDATE_FIELDS = ("name", "arm", "population")
MAX_PATIENTS = 20_000


@dataclass(frozen=True)
class DesignSpec:
    """A validated design file."""

    hypotheses: tuple[Variant, Variant]
    presets: tuple[str, ...]
    assessments: tuple[str, ...]
    patients: int
    power: float
    alpha: float
    seed: int
    candidates: tuple[Mapping[str, Any], ...]

    @classmethod
    def load(cls, source: str | Path | Mapping[str, Any]) -> DesignSpec:
        data = read_toml(source, "design file") if not isinstance(source, Mapping) else source
        unknown = sorted(set(data) - {"design", "candidate"})
        if unknown:
            raise ScenarioError(unknown[0], "unknown table; allowed: design, candidate")
        d = data.get("design")
        if not isinstance(d, Mapping):
            raise ScenarioError("design", "a [design] table is required (hypotheses, presets, assessments, patients)")
        for key in d:
            if key not in DESIGN_FIELDS:
                raise ScenarioError(f"design.{key}", f"unknown field; allowed: {', '.join(DESIGN_FIELDS)}")
        hyps = d.get("hypotheses")
        if not isinstance(hyps, list) or len(hyps) != 2 or not all(isinstance(h, str) for h in hyps):
            raise ScenarioError("design.hypotheses", "name exactly two variants, e.g. [\"calibrated\", \"glun2b_eef2\"]")
        hypotheses = parse_variants(hyps, "design.hypotheses")
        if set(hypotheses[0].mechanisms) == set(hypotheses[1].mechanisms):
            raise ScenarioError("design.hypotheses", "the two hypotheses have the same mechanisms")
        presets = _strings(d.get("presets", ["treatment-resistant"]), "design.presets")
        if len(set(presets)) != len(presets):
            raise ScenarioError("design.presets", "a preset is named twice")
        assessments = _strings(d.get("assessments"), "design.assessments")
        for i, a in enumerate(assessments):
            parse_time(a, f"design.assessments[{i}]")
        patients = d.get("patients", 300)
        if not isinstance(patients, int) or isinstance(patients, bool) or not 2 <= patients <= MAX_PATIENTS:
            raise ScenarioError("design.patients", f"{patients!r} must be a whole number in 2..{MAX_PATIENTS}")
        power, alpha = d.get("power", 0.8), d.get("alpha", 0.05)
        for name, v in (("power", power), ("alpha", alpha)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 < v < 1.0:
                raise ScenarioError(f"design.{name}", f"{v!r} must be a number between 0 and 1")
        seed = d.get("seed", 1)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ScenarioError("design.seed", f"{seed!r} must be a whole number >= 0")
        candidates = data.get("candidate")
        if not isinstance(candidates, list) or not candidates:
            raise ScenarioError("candidate", "give at least one [[candidate]] with two [[candidate.arm]] tables")
        spec = cls(hypotheses, presets, assessments, patients, float(power), float(alpha), seed, tuple(candidates))
        names = []
        for i, c in enumerate(candidates):
            where = f"candidate[{i}]"
            if not isinstance(c, Mapping):
                raise ScenarioError(where, "must be a table")
            for key in c:
                if key not in CANDIDATE_FIELDS:
                    raise ScenarioError(f"{where}.{key}", f"unknown field; allowed: {', '.join(CANDIDATE_FIELDS)}")
            if not isinstance(c.get("name"), str) or not c["name"].strip():
                raise ScenarioError(f"{where}.name", "give the candidate a name")
            arms = c.get("arm")
            if not isinstance(arms, list) or len(arms) != 2 or not all(isinstance(a, Mapping) for a in arms):
                raise ScenarioError(f"{where}.arm", "a candidate has exactly two arm tables: the active one, then the control")
            population = c.get("population", {})
            if not isinstance(population, Mapping):
                raise ScenarioError(f"{where}.population", "must be a table of population fields (e.g. comedications)")
            fixed = sorted(set(population) & {"n", "preset"})
            if fixed:
                raise ScenarioError(f"{where}.population.{fixed[0]}", "set by [design] (patients, presets) for every candidate")
            names.append(c["name"])
            for preset in presets:  # every trial the design will run is checked before any runs
                try:
                    spec.trial(c, preset)
                except ScenarioError as exc:
                    raise ScenarioError(f"{where} ({preset})", str(exc)) from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ScenarioError("candidate.name", f"{', '.join(repeated)} named twice")
        return spec

    def trial(self, candidate: Mapping[str, Any], preset: str):
        """The candidate's virtual trial for ``preset`` (a ``TrialSpec``)."""
        from ..trial import TrialSpec

        population = {"n": self.patients, "preset": preset, **dict(candidate.get("population", {}))}
        return TrialSpec.load({
            "trial": {"name": candidate["name"], "seed": self.seed, "assessments": list(self.assessments),
                      "control": candidate["arm"][1].get("name")},
            "population": population, "arm": list(candidate["arm"])})


def _strings(value, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ScenarioError(field, "give a non-empty list of names, e.g. [\"24 h\", \"7 d\"]")
    return tuple(value)


@dataclass(frozen=True)
class DesignResult:
    """One row per candidate, preset and assessment time, best separating first."""

    table: pd.DataFrame
    spec: DesignSpec
    fits: tuple
    manifest: dict[str, Any]

    def write(self, folder: str | Path) -> Path:
        """``design.json``, ``design.csv``, ``manifest.json`` (which marks the folder as a ketasim
        result, so that the command may write it again) and ``report.html``, atomically."""
        from ..output import atomic_folder
        from .report import write_design_report

        with atomic_folder(folder) as tmp:
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2, default=str))
            (tmp / "design.json").write_text(json.dumps(
                {"candidates": self.table.to_dict(orient="records"), "fits": [f.as_dict() for f in self.fits],
                 "manifest": self.manifest, "disclaimer": DISCLAIMER}, indent=2, default=str))
            self.table.to_csv(tmp / "design.csv", index=False)
            write_design_report(self, tmp / "report.html")
        return Path(folder)


def patients_per_arm(difference: float, sd: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """Patients per arm for a two-arm trial whose effect estimate must tell two predicted effects
    ``difference`` apart: 2 (z(1 - alpha/2) + z(power))^2 sd^2 / difference^2 (inf when equal).

    >>> round(patients_per_arm(5.0, 10.0))  # the textbook 63 per arm for d = 0.5
    63
    """
    if difference == 0.0:
        return math.inf
    z = norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)
    return 2.0 * z * z * sd * sd / (difference * difference)


def design(spec: DesignSpec | str | Path | Mapping[str, Any], *, params: ParameterSet | str | Path | None = None,
           fit: bool = True, progress: Callable[[str], None] | None = None) -> DesignResult:
    """Rank the candidates of ``spec`` by the patients per arm needed to tell its two hypotheses apart."""
    from ..model.mechanisms import with_mechanisms
    from ..trial import run_trial

    spec = spec if isinstance(spec, DesignSpec) else DesignSpec.load(spec)
    if not isinstance(params, ParameterSet):
        params = load_parameters(params)
    fits = tuple(fit_variant(h, params, progress=progress) for h in spec.hypotheses) if fit else ()
    variant_params = [f.params for f in fits] if fit else [with_mechanisms(params, h.mechanisms) for h in spec.hypotheses]
    a, b = spec.hypotheses
    rows = []
    for candidate in spec.candidates:
        active, control = (arm["name"] for arm in candidate["arm"])
        for preset in spec.presets:
            trial = spec.trial(candidate, preset)
            summaries = []
            for h, p in zip(spec.hypotheses, variant_params):
                if progress is not None:
                    progress(f"{candidate['name']} ({preset}) under {h.name}")
                summaries.append(run_trial(trial, params=p).summary)
            for i, when in enumerate(spec.assessments):
                effects, variances = [], []
                for s in summaries:
                    change = [s["arms"][arm]["assessments"][i]["madrs_change [points]"] for arm in (active, control)]
                    effects.append(change[0]["mean"] - change[1]["mean"])
                    variances += [c["sd"] ** 2 for c in change]
                sd = math.sqrt(sum(variances) / len(variances))
                difference = effects[0] - effects[1]
                rows.append({"candidate": candidate["name"], "preset": preset, "assessment": when,
                             f"effect under {a.name} [MADRS points]": effects[0],
                             f"effect under {b.name} [MADRS points]": effects[1],
                             "difference [MADRS points]": difference, "between-patient sd [MADRS points]": sd,
                             "standardised difference": abs(difference) / sd if sd > 0 else math.inf,
                             "patients per arm": patients_per_arm(difference, sd, spec.power, spec.alpha)})
    table = pd.DataFrame(rows).sort_values("patients per arm", kind="stable").reset_index(drop=True)
    manifest = {"command": "ketasim compare --design", "hypotheses": {h.name: list(h.mechanisms) for h in spec.hypotheses},
                "patients per arm and hypothesis": spec.patients, "power": spec.power, "alpha": spec.alpha,
                "seed": spec.seed, "fitted": fit, "parameter_set_sha256": params.digest(), "disclaimer": DISCLAIMER}
    return DesignResult(table, spec, fits, manifest)
