"""The HTML report of a sensitivity analysis: tornado (local) or Sobol/Morris bars with bootstrap CIs,
and a table ranking parameters grouped by layer, so a reader sees which scale drives each outcome."""

from __future__ import annotations

import html
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..plots import png_base64  # noqa: E402
from ..result import DISCLAIMER  # noqa: E402
from .result import RANK_BY, SCALES  # noqa: E402

TOP = 20  # parameters per figure
_COLOURS = {"pk": "#1f77b4", "interactions": "#aec7e8", "comparators": "#c7c7c7", "receptor": "#ff7f0e",
            "synapse": "#ffbb78", "plasticity": "#2ca02c", "inflammation": "#d62728", "circuit": "#9467bd",
            "clinical": "#8c564b", "population": "#e377c2"}



def _finite(x) -> float:
    return x if x is not None and math.isfinite(x) else 0.0


def _legend(ax, layers) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=_COLOURS.get(x, "grey"), label=f"{x} ({SCALES.get(x, x)})") for x in layers],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="layer (scale)", title_fontsize=7)


def tornado_figure(result, output: str, unit: str):
    """Normalised sensitivities theta * d output / d theta of the most influential parameters."""
    top = [p for p, _ in result.ranking(output)[:TOP]][::-1]
    vals = [_finite(result.indices[output][p]["normalised"]) for p in top]
    layers = [p.split(".", 1)[0] for p in top]
    fig, ax = plt.subplots(figsize=(9.5, 0.28 * len(top) + 1.4))
    ax.barh(range(len(top)), vals, color=[_COLOURS.get(x, "grey") for x in layers])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(top)), top, fontsize=7)
    ax.set_xlabel(f"normalised sensitivity θ·∂y/∂θ [{unit}] (change of y per unit change of ln θ)")
    ax.set_title(output, fontsize=9)
    _legend(ax, dict.fromkeys(layers[::-1]))
    fig.tight_layout()
    return fig


def sobol_figure(result, output: str):
    """First- and total-order indices with their bootstrap CIs (SALib's S1_conf, ST_conf)."""
    top = [p for p, _ in result.ranking(output)[:TOP]][::-1]
    ix = result.indices[output]
    y = list(range(len(top)))
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(top) + 1.4))
    ax.barh([v + 0.2 for v in y], [_finite(ix[p]["ST"]) for p in top], height=0.4,
            xerr=[_finite(ix[p]["ST_conf"]) for p in top], color="#9ecae1", label="total order ST", capsize=2)
    ax.barh([v - 0.2 for v in y], [_finite(ix[p]["S1"]) for p in top], height=0.4,
            xerr=[_finite(ix[p]["S1_conf"]) for p in top], color="#08519c", label="first order S1", capsize=2)
    ax.set_yticks(y, top, fontsize=7)
    ax.set_xlabel("Sobol' index [fraction of output variance] (error bars: bootstrap CI)")
    ax.set_title(output, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def morris_figure(result, output: str, unit: str):
    """mu* (mean absolute elementary effect) with its bootstrap CI, and sigma."""
    top = [p for p, _ in result.ranking(output)[:TOP]][::-1]
    ix = result.indices[output]
    fig, ax = plt.subplots(figsize=(9.5, 0.28 * len(top) + 1.4))
    ax.barh(range(len(top)), [_finite(ix[p]["mu_star"]) for p in top], xerr=[_finite(ix[p]["mu_star_conf"]) for p in top],
            color=[_COLOURS.get(p.split(".", 1)[0], "grey") for p in top], capsize=2)
    ax.plot([_finite(ix[p]["sigma"]) for p in top], range(len(top)), "k.", label="σ (interactions, non-linearity)")
    ax.set_yticks(range(len(top)), top, fontsize=7)
    ax.set_xlabel(f"Morris μ* [{unit} per unit of the range-scaled input] (error bars: bootstrap CI)")
    ax.set_title(output, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) else html.escape(str(x))


def _layer_table(result, output: str) -> str:
    key = RANK_BY[result.method]
    rank = {p: i + 1 for i, (p, _) in enumerate(result.ranking(output))}
    ix = result.indices[output]
    columns = {"local": [("normalised", "θ·∂y/∂θ [output unit]"), ("elasticity", "elasticity [1]"), ("method", "method")],
               "sobol": [("S1", "S1 [1]"), ("S1_conf", "± S1 CI [1]"), ("ST", "ST [1]"), ("ST_conf", "± ST CI [1]")],
               "morris": [("mu_star", "μ* [output unit]"), ("mu_star_conf", "± μ* CI [output unit]"),
                          ("mu", "μ [output unit]"), ("sigma", "σ [output unit]")]}[result.method]
    head = "".join(f"<th>{html.escape(c)}</th>" for _, c in columns)
    rows = []
    for entry in result.by_layer(output):
        layer = entry["layer"]
        names = sorted((p for p in ix if p.split(".", 1)[0] == layer), key=lambda p: rank[p])
        rows.append(f"<tr class='layer'><td colspan='{len(columns) + 2}'><b>{html.escape(layer)}</b> "
                    f"({html.escape(entry['scale'])}): largest {key} {_fmt(entry['max'])} ({html.escape(entry['top'])}), "
                    f"sum {_fmt(entry['sum'])} over {entry['n']} parameters</td></tr>")
        for p in names[:10]:
            cells = "".join(f"<td>{_fmt(ix[p].get(k))}</td>" for k, _ in columns)
            rows.append(f"<tr><td>{rank[p]}</td><td>{html.escape(p)}</td>{cells}</tr>")
        if len(names) > 10:
            rows.append(f"<tr><td></td><td colspan='{len(columns) + 1}'>… {len(names) - 10} more in sensitivity.json</td></tr>")
    return (f"<table><tr><th>rank</th><th>parameter</th>{head}</tr>{''.join(rows)}</table>")


def _failures_section(failures: dict) -> str:
    """Where the runs without a value lie: the parameters whose range ends hold more of them than chance."""
    if not failures or not failures.get("count"):
        return ""
    per_output = ", ".join(f"{html.escape(k)}: {v}" for k, v in failures["per_output"].items())
    rows = "".join(f"<tr><td>{html.escape(w['parameter'])}</td><td>{w['end']} tenth</td><td>{w['failures_there']}</td>"
                   f"<td>{100 * w['fraction_of_failures']:.0f} %</td><td>{100 * w['expected_fraction']:.0f} %</td>"
                   f"<td>{w['p_value']:.2g}</td></tr>" for w in failures["where"][:TOP])
    table = (f"<table><tr><th>parameter</th><th>end of its sampled range</th><th>failing runs there</th>"
             f"<th>share of failing runs</th><th>expected by chance</th><th>p (binomial, one-sided)</th></tr>{rows}</table>"
             if rows else "<p>No parameter's range ends hold more of them than chance would.</p>")
    return (f"<h2>Runs without a value</h2><p>{failures['count']} of {failures['runs']} runs "
            f"({100 * failures['fraction']:.2g} %) gave no value (per output: {per_output}). Each is listed with its "
            f"parameter values in sensitivity.json (<code>failures.samples</code>). Where they lie:</p>{table}")


def write_report(result, folder) -> None:
    """``report.html`` in ``folder`` (figures embedded)."""
    parts = []
    for out in result.outputs:
        label, unit = out["label"], out.get("unit", "")
        if result.method == "local":
            fig = tornado_figure(result, label, unit)
        elif result.method == "sobol":
            fig = sobol_figure(result, label)
        else:
            fig = morris_figure(result, label, unit)
        stats = ", ".join(f"{html.escape(k)}: {_fmt(v, 4)}" for k, v in out.items()
                          if k not in ("label", "name", "unit", "time [h]", "arm"))
        parts.append(f"<h2>{html.escape(label)}</h2><p>{stats}</p>"
                     f"<img alt='indices for {html.escape(label)}' src='data:image/png;base64,{png_base64(fig)}'>"
                     f"<h3>Parameters ranked, grouped by layer (scale)</h3>{_layer_table(result, label)}")
    settings = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v, 6)}</td></tr>" for k, v in result.settings.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    title = {"local": "local sensitivity", "sobol": "Sobol' sensitivity", "morris": "Morris screening"}[result.method]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>ketasim {title}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:auto}} table{{border-collapse:collapse;font-size:0.85em}}
td,th{{border:1px solid #ccc;padding:2px 6px}} tr.layer td{{background:#eef}} .disclaimer{{background:#fee;padding:0.5em}}</style>
</head><body><h1>ketasim {title}</h1><p class="disclaimer">{html.escape(DISCLAIMER)}</p>
<p>Target: {html.escape(result.target.get("kind", ""))} {html.escape(str(result.target.get("name", "")))}</p>
<table>{settings}</table><ul>{notes}</ul>{_failures_section(result.failures)}{''.join(parts)}</body></html>"""
    (folder / "report.html").write_text(doc, encoding="utf-8")
