"""ketasim: a mechanistic, multi-scale simulator of ketamine's rapid antidepressant action.

ketasim is a research and teaching tool; it is not a clinical decision aid and gives no advice
to any individual.

>>> import ketasim
>>> res = ketasim.simulate({"dose": [{"drug": "esketamine", "route": "intranasal", "amount": "56 mg"}],
...                         "simulation": {"duration": "1 d", "output_every": "5 min"}})
>>> res.unit("pk.s_ketamine_plasma")
'ng/mL'
"""

from .engine import SolverSettings
from .errors import KetasimError, ParameterError, ParameterRangeError, ScenarioError, SolverError
from .params import ParameterSet, load_parameters
from .result import DISCLAIMER, SimulationResult
from .scenario import Dose, Patient, Scenario
from .simulate import simulate


def run_trial(trial, **kwargs):
    """Run a virtual clinical trial (a TOML path, a dict or a ``TrialSpec``; see ``ketasim.trial``)."""
    from .trial import run_trial as _run

    return _run(trial, **kwargs)


def power(trial, **kwargs):
    """Power of a trial design over replicate virtual trials (see ``ketasim.trial.power``)."""
    from .trial.power import power as _power

    return _power(trial, **kwargs)


def optimise(spec, **kwargs):
    """The best regimen within bounds and safety caps for a virtual population (see ``ketasim.trial.optimise``)."""
    from .trial.optimise import optimise as _optimise

    return _optimise(spec, **kwargs)


def export_sbml(scenario, **kwargs) -> str:
    """SBML Level 3 Version 2 text of the model with ``scenario`` (see ``ketasim.sbml``)."""
    from .sbml import export_sbml as _export

    return _export(scenario, **kwargs)

__version__ = "0.1.0"

__all__ = [
    "DISCLAIMER",
    "Dose",
    "KetasimError",
    "ParameterError",
    "ParameterRangeError",
    "ParameterSet",
    "Patient",
    "Scenario",
    "ScenarioError",
    "SimulationResult",
    "SolverError",
    "SolverSettings",
    "export_sbml",
    "load_parameters",
    "optimise",
    "power",
    "run_trial",
    "simulate",
]
