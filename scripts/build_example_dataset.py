"""Build the shipped example event data set, examples/datasets/study30.csv, and its VPC figure.

Thirty IDs in three designs, each with its own covariates (WT, AGE, SEX, BMADRS):

* IDs 1-10: racemic ketamine 0.5 mg/kg IV over 40 min (CMT 2, RATE); plasma ketamine (DVID 1) to
  8 h and norketamine (DVID 2) at 2 and 8 h;
* IDs 11-20: intranasal esketamine 56 mg twice weekly for two weeks (CMT 3, II 84 h, ADDL 3);
  plasma ketamine after the first and the last dose, MADRS (DVID 3) at baseline, day 1, week 1 and
  week 2;
* IDs 21-30: escitalopram 10 mg daily already at steady state (CMT 7, SS 1, II 24 h, ADDL 3) and oral
  racemic ketamine 50 mg daily for three days (CMT 1, II 24 h, ADDL 2); plasma ketamine after the
  first and the third dose, escitalopram (DVID 4) at the start and on day 2.

The DVs are one simulated study of that design drawn from ketasim's model population with the
default mapping's residual error (``ketasim.study``, seed 2026): an example to run the commands
on, not data from any trial. The VPC figure (docs/figures/vpc_study30.png) sets the data set
against 200 more simulated studies of its design.

    python scripts/build_example_dataset.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "examples" / "datasets" / "study30.csv"
FIGURE = ROOT / "docs" / "figures" / "vpc_study30.png"
COLUMNS = ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "DV", "DVID", "WT", "AGE", "SEX", "BMADRS"]


def design(seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []

    def add(pid, cov, time, evid, amt=".", cmt=".", rate=".", ii=".", addl=".", ss=".", dvid="."):
        rows.append([pid, time, evid, amt, cmt, rate, ii, addl, ss, ".", dvid, *cov])

    for pid in range(1, 31):
        cov = [round(float(rng.uniform(55, 100)), 1), int(rng.integers(22, 65)), int(rng.integers(0, 2)),
               int(rng.integers(24, 40))]
        if pid <= 10:
            amount = round(0.5 * cov[0], 2)
            add(pid, cov, 0, 1, amount, 2, rate=round(amount * 1.5, 4))
            for t in (0.25, 0.67, 1, 2, 4, 8):
                add(pid, cov, t, 0, dvid=1)
            for t in (2, 8):
                add(pid, cov, t, 0, dvid=2)
        elif pid <= 20:
            add(pid, cov, 0, 0, dvid=3)
            add(pid, cov, 0, 1, 56, 3, ii=84, addl=3)
            for t in (0.5, 1, 2, 252.5, 253, 254):
                add(pid, cov, t, 0, dvid=1)
            for t in (24, 168, 336):
                add(pid, cov, t, 0, dvid=3)
        else:
            add(pid, cov, 0, 1, 10, 7, ii=24, addl=3, ss=1)
            add(pid, cov, 0, 1, 50, 1, ii=24, addl=2)
            add(pid, cov, 0, 0, dvid=4)
            for t in (0.5, 1, 2, 4, 48.5, 49, 50, 52):
                add(pid, cov, t, 0, dvid=1)
            add(pid, cov, 48, 0, dvid=4)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["ID", "TIME", "EVID"], kind="stable", ascending=[True, True, False]).reset_index(drop=True)


def main() -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ketasim.dataset import read_dataset
    from ketasim.study import simulate_study
    from ketasim.vpc import PERCENTILES, vpc

    table = design()
    text = table.to_csv(index=False)
    study = simulate_study(read_dataset(io.StringIO(text)), replicates=1, seed=2026)
    measured = table["EVID"] == 0
    values = dict(zip(study.observed["row"] - 2, study.dv[0]))
    table.loc[measured, "DV"] = [f"{values[i]:.4g}" for i in table.index[measured]]
    DATASET.parent.mkdir(parents=True, exist_ok=True)
    header = ("# ketasim example event data set: one study simulated from the model population "
              "(scripts/build_example_dataset.py); not data from any trial. For research and teaching only.\n")
    DATASET.write_text(header + table.to_csv(index=False))
    print(f"wrote {DATASET.relative_to(ROOT)}: {table['ID'].nunique()} IDs, {len(table)} rows")

    result = vpc(read_dataset(DATASET), replicates=200, seed=1)
    outputs = list(result.bins["output"].unique())
    fig, axes = plt.subplots(1, len(outputs), figsize=(4.2 * len(outputs), 3.4), dpi=80)
    units = {"pk.ketamine_plasma": "ng/mL", "pk.norketamine_plasma": "ng/mL", "clinical.madrs": "points",
             "comparators.ssri_plasma": "ng/mL"}
    for ax, output in zip(np.atleast_1d(axes), outputs):
        g = result.bins[result.bins["output"] == output]
        x = np.arange(len(g))
        for q, colour in zip(PERCENTILES, ("tab:blue", "tab:red", "tab:blue")):
            tag = f"p{q:g}"
            ax.fill_between(x, g[f"simulated_{tag}_low"], g[f"simulated_{tag}_high"], color=colour, alpha=0.2)
            ax.plot(x, g[f"observed_{tag}"], "o-", color=colour, ms=3, label=f"observed {tag}")
        ax.set_xticks(x, [f"{t:g}" for t in g["time_median [h]"]], rotation=60, fontsize=6)
        ax.set_xlabel("bin: median time [h]")
        ax.set_ylabel(f"{output} [{units.get(output, '')}]")
        ax.set_title(output, fontsize=8)
        ax.legend(fontsize=5)
    inside = result.inside
    fig.suptitle(f"VPC of examples/datasets/study30.csv, 200 replicates: {int(inside.sum())} of {int(inside.size)} "
                 "observed percentiles inside the simulated 95 % intervals (shaded)", fontsize=8)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE)
    print(f"wrote {FIGURE.relative_to(ROOT)}: {int(inside.sum())} of {int(inside.size)} inside")


if __name__ == "__main__":
    main()
