"""Write the parameter tables of docs/model.md from the package's parameter files.

    python scripts/generate_parameter_tables.py          # rewrite the tables in docs/model.md
    python scripts/generate_parameter_tables.py --check  # exit 1 if docs/model.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from ketasim.params import load_parameters

DOC = Path(__file__).resolve().parent.parent / "docs" / "model.md"
BEGIN, END = "<!-- BEGIN PARAMETER TABLES (generated) -->", "<!-- END PARAMETER TABLES -->"
TITLES = {"pk": "Pharmacokinetics (`pk`)",
          "interactions": "Enzyme activity: genotypes and interacting drugs (`interactions`)",
          "comparators": "Comparator drugs (`comparators`)", "inflammation": "Inflammation (`inflammation`)",
          "receptor": "Receptor (`receptor`)", "synapse": "Synapse (`synapse`)",
          "plasticity": "Plasticity (`plasticity`)", "circuit": "Circuit (`circuit`)",
          "clinical": "Clinical (`clinical`)"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def tables() -> str:
    params = load_parameters()
    layers: dict[str, list] = {}
    for p in params.values():
        layers.setdefault(p.layer, []).append(p)
    parts = []
    for layer in sorted(layers, key=lambda name: list(TITLES).index(name) if name in TITLES else 99):
        parts.append(f"### {TITLES.get(layer, layer)}\n")
        parts.append("| parameter | value | unit | range | CV | description | source |")
        parts.append("|---|---:|---|---|---:|---|---|")
        for p in layers[layer]:
            parts.append(f"| `{p.name}` | {p.value:g} | {p.unit} | {p.range[0]:g}-{p.range[1]:g} | {p.cv:g} | "
                         f"{_cell(p.description)} | {_cell(p.source)} |")
        parts.append("")
    return "\n".join(parts)


def render(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n\n{tables()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = DOC.read_text()
    wanted = render(current)
    if "--check" in argv:
        if current != wanted:
            print(f"{DOC} is out of date: run python scripts/generate_parameter_tables.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
