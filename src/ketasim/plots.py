"""Figures of a simulation, one per layer, on a shared time axis (matplotlib, Agg backend)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .result import SimulationResult  # noqa: E402

#: (figure file stem, title, y label, outputs); every axis label carries its unit
PANELS = (
    ("pk_plasma", "Plasma concentrations", "concentration [ng/mL]",
     ("pk.ketamine_plasma", "pk.s_ketamine_plasma", "pk.r_ketamine_plasma", "pk.norketamine_plasma",
      "pk.dhnk_plasma", "pk.hnk_plasma")),
    ("pk_brain", "Brain ketamine (tissue, total)", "concentration [ng/mL]", ("pk.ketamine_brain",)),
    ("receptor_block", "NMDA receptor block", "blocked fraction [fraction]",
     ("receptor.nmda_block_interneuron", "receptor.nmda_block_pyramidal")),
    ("synapse_glutamate", "Glutamate surge (disinhibition)", "glutamate [% baseline]", ("synapse.glutamate",)),
    ("synapse_ampa", "AMPA activation and eEF2 de-suppression", "fraction [fraction]",
     ("synapse.ampa_activation", "synapse.eef2_desuppression")),
    ("plasticity", "BDNF, mTORC1, synaptic proteins and spines", "level [fold baseline]",
     ("plasticity.bdnf", "plasticity.mtorc1", "plasticity.synaptic_proteins", "plasticity.spine_density")),
    ("inflammation_il6", "Inflammation", "cytokine [pg/mL]", ("inflammation.il6", "inflammation.tnf_alpha")),
    ("inflammation_kynurenine", "Kynurenine pathway", "concentration [uM]",
     ("inflammation.kynurenine", "inflammation.quinolinic_acid", "inflammation.kynurenic_acid")),
    ("circuit", "Prefrontal-limbic connectivity (as fMRI sees it)", "connectivity [r or z]",
     ("circuit.pfc_amygdala_fc", "circuit.pfc_gbc")),
    ("clinical_madrs", "Depression score", "MADRS [points]", ("clinical.madrs",)),
    ("clinical_cadss", "Dissociation", "CADSS [points]", ("clinical.cadss",)),
    ("clinical_bp", "Blood pressure and heart rate", "SBP, DBP [mmHg]; HR [1/min]",
     ("clinical.sbp", "clinical.dbp", "clinical.heart_rate")),
)


def _log_time(result: SimulationResult) -> bool:
    """Log time when both the first hour and the following days matter (runs longer than 2 d)."""
    return result.times_h[-1] > 48.0


def figure(result: SimulationResult, title: str, ylabel: str, names: tuple[str, ...]):
    t = result.times_h
    keep = t > 0 if _log_time(result) else slice(None)
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    for name in names:
        ax.plot(t[keep], result[name][keep], label=f"{name} [{result.unit(name)}]", lw=1.6)
    if _log_time(result):
        ax.set_xscale("log")
    if "clinical.madrs" in names:
        baseline = result["clinical.madrs"][0]
        ax.axhline(0.5 * baseline, ls="--", c="grey", lw=1, label="response (50 % fall) [points]")
        ax.axhline(10.0, ls=":", c="grey", lw=1, label="remission (MADRS <= 10) [points]")
    ax.set_title(title)
    ax.set_xlabel("time [h]" + (" (log scale)" if _log_time(result) else ""))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def png_base64(fig, dpi: int = 110) -> str:
    """The figure as base64 PNG text for embedding in an HTML report; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def write_figures(result: SimulationResult, folder: Path) -> list[tuple[str, Path]]:
    """Write every panel as PNG into ``folder``; returns (title, path) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, title, ylabel, names in PANELS:
        if not all(n in result.outputs for n in names):
            continue
        fig = figure(result, title, ylabel, names)
        path = folder / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append((title, path))
    return written
