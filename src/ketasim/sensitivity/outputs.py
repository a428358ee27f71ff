"""What a sensitivity analysis looks at: a model output at a time, or a trial endpoint.

``clinical.madrs@24h`` is the model's MADRS 24 h after the start of a scenario; for a trial,
``response_rate@24h`` is the response rate of the first arm at the 24-h assessment,
``midazolam:response_rate@24h`` that of the arm named ``midazolam``, and ``median_time_to_relapse``
the Kaplan-Meier median time to relapse (h) of the first arm.

>>> parse_output_spec("clinical.madrs@24h").time_h
24.0
>>> spec = parse_output_spec("ketamine:response_rate@24 h")
>>> spec.arm, spec.name, spec.time_h, spec.unit
('ketamine', 'response_rate', 24.0, 'fraction')
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..errors import KetasimError
from ..units import parse_time


class SensitivityError(KetasimError, ValueError):
    """Bad input to a sensitivity analysis; the message names the option and what is allowed."""


#: trial endpoints: name -> (unit, needs an assessment time, where it is read in the trial summary)
TRIAL_ENDPOINTS = {
    "response_rate": ("fraction", True, "per arm and assessment: response_rate.estimate"),
    "remission_rate": ("fraction", True, "per arm and assessment: remission_rate.estimate"),
    "madrs_change": ("points", True, "per arm and assessment: mean MADRS change from baseline"),
    "median_time_to_relapse": ("h", False, "per arm: Kaplan-Meier median time to relapse"),
}

_SPEC = re.compile(r"^\s*(?:(?P<arm>[^:@\s][^:@]*?)\s*:\s*)?(?P<name>[A-Za-z_][\w.]*)\s*(?:@\s*(?P<time>.+?))?\s*$")


@dataclass(frozen=True)
class OutputSpec:
    """One quantity to analyse. ``kind`` is ``model`` (an output at a time) or ``trial`` (an endpoint)."""

    text: str
    kind: str
    name: str
    time_h: float | None
    arm: str | None = None
    unit: str = ""

    @property
    def label(self) -> str:
        """``[arm:]name@T h [unit]``: the key of this output in results and reports."""
        where = f"{self.arm}:" if self.arm else ""
        when = f"@{self.time_h:g} h" if self.time_h is not None else ""
        return f"{where}{self.name}{when} [{self.unit}]" if self.unit else f"{where}{self.name}{when}"


def parse_output_spec(text: str) -> OutputSpec:
    """Parse ``layer.quantity@TIME`` or ``[arm:]endpoint[@TIME]`` (syntax only; ``check_outputs``
    checks the names against the model or the trial)."""
    m = _SPEC.match(text or "")
    if not m:
        raise SensitivityError(f"--output '{text}': write layer.quantity@TIME (e.g. clinical.madrs@24h) or a trial "
                               f"endpoint [arm:]name[@TIME] with name one of {', '.join(TRIAL_ENDPOINTS)}")
    name, arm, when = m.group("name"), m.group("arm"), m.group("time")
    time_h = None
    if when is not None:
        try:
            time_h = parse_time(when.strip(), "--output")
        except KetasimError:
            raise SensitivityError(f"--output '{text}': '{when}' is not a time; write a number and a unit "
                                   "min, h, d or w (e.g. @24h, @7d)") from None
        if time_h < 0:
            raise SensitivityError(f"--output '{text}': the time must be >= 0")
    if "." in name:
        if arm is not None:
            raise SensitivityError(f"--output '{text}': an arm prefix applies to trial endpoints "
                                   f"({', '.join(TRIAL_ENDPOINTS)}), not to model outputs")
        if time_h is None:
            raise SensitivityError(f"--output '{text}': a model output needs a time, e.g. {name}@24h")
        return OutputSpec(text=text, kind="model", name=name, time_h=time_h)
    if name not in TRIAL_ENDPOINTS:
        close = difflib.get_close_matches(name, TRIAL_ENDPOINTS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SensitivityError(f"--output '{text}': '{name}' is neither a model output (layer.quantity, e.g. "
                               f"clinical.madrs@24h) nor a trial endpoint ({', '.join(TRIAL_ENDPOINTS)}){hint}")
    unit, timed, _ = TRIAL_ENDPOINTS[name]
    if timed and time_h is None:
        raise SensitivityError(f"--output '{text}': {name} needs an assessment time, e.g. {name}@24h")
    if not timed and time_h is not None:
        raise SensitivityError(f"--output '{text}': {name} is read over the whole trial; drop '@{when}'")
    return OutputSpec(text=text, kind="trial", name=name, time_h=time_h, arm=arm, unit=unit)


def check_model_outputs(specs, model, duration_h: float) -> list[OutputSpec]:
    """The specs with units filled in; refuses unknown names and times past the scenario's end."""
    units = {v.name: v.unit for v in model.outputs}
    out = []
    for s in specs:
        if s.kind != "model":
            raise SensitivityError(f"--output '{s.text}': trial endpoints need a trial file ([trial] table); "
                                   "for a scenario give model outputs such as clinical.madrs@24h")
        if s.name not in units:
            close = difflib.get_close_matches(s.name, units, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SensitivityError(f"--output '{s.text}': unknown output '{s.name}'{hint} The outputs are the "
                                   "layer.quantity columns of `ketasim simulate`'s timeseries.csv (docs/model.md lists "
                                   "them), e.g. clinical.madrs, pk.ketamine_plasma, plasticity.spine_density")
        if s.time_h > duration_h + 1e-9:
            raise SensitivityError(f"--output '{s.text}': {s.time_h:g} h is past the scenario's end "
                                   f"({duration_h:g} h); lengthen [simulation] duration or pick an earlier time")
        out.append(OutputSpec(text=s.text, kind="model", name=s.name, time_h=s.time_h, unit=units[s.name]))
    return out


def check_trial_outputs(specs, trial) -> list[OutputSpec]:
    """The specs with the arm filled in (first arm by default); refuses unknown arms and assessments."""
    arms = [a.name for a in trial.arms]
    out = []
    for s in specs:
        if s.kind != "trial":
            raise SensitivityError(f"--output '{s.text}': a trial file is analysed through its endpoints "
                                   f"({', '.join(TRIAL_ENDPOINTS)}), e.g. response_rate@24h; model outputs such as "
                                   f"{s.name} need a scenario file")
        arm = s.arm or arms[0]
        if arm not in arms:
            raise SensitivityError(f"--output '{s.text}': no arm '{arm}'; the trial's arms are {', '.join(arms)}")
        if s.time_h is not None and not any(abs(s.time_h - a) < 1e-9 for a in trial.assessments_h):
            allowed = ", ".join(f"{a:g} h" for a in trial.assessments_h)
            raise SensitivityError(f"--output '{s.text}': {s.time_h:g} h is not an assessment of the trial; "
                                   f"its assessments are {allowed}")
        out.append(OutputSpec(text=s.text, kind="trial", name=s.name, time_h=s.time_h, arm=arm, unit=s.unit))
    return out
