"""The HTML report of a simulation: every layer on one page, with the disclaimer."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .plots import write_figures
from .result import DISCLAIMER, SimulationResult


def _cell(v: dict) -> str:
    value = "n/a" if v["value"] is None else f"{v['value']:.4g}"
    return f"<td>{value} {html.escape(v['unit'])}</td>"


def _summary_rows(summary: dict) -> str:
    rows = []
    for name, entry in summary.items():
        if not isinstance(entry, dict):
            continue
        cells = " ".join(_cell(v) for v in entry.values())
        heads = ", ".join(entry)
        rows.append(f"<tr><th>{html.escape(name)}</th><td class='k'>{heads}</td>{cells}</tr>")
    return "\n".join(rows)


def html_page(title: str, body: str, width_px: int = 1200) -> str:
    """A self-contained report page: the title as heading, the disclaimer above and below ``body``."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:{width_px}px;margin:2em auto;color:#222}}
.disclaimer{{background:#fff4e5;border-left:4px solid #e69500;padding:.6em 1em}}
table{{border-collapse:collapse;font-size:.8em}}td,th{{padding:.2em .5em;border-bottom:1px solid #ddd;text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="disclaimer"><strong>For research and teaching only.</strong> {html.escape(DISCLAIMER)}</p>
{body}
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
</body></html>
"""


def write_report(result: SimulationResult, folder: Path, title: str = "ketasim simulation") -> Path:
    """Write ``report.html`` and the PNG figures (under ``figures/``) into ``folder``."""
    figures = write_figures(result, folder / "figures")
    imgs = "\n".join(
        f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}'><figcaption>{html.escape(t)}</figcaption></figure>"
        for t, p in figures)
    manifest = json.dumps(result.manifest, indent=2, default=str)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}}
.disclaimer{{background:#fff4e5;border-left:4px solid #e69500;padding:.6em 1em}}
table{{border-collapse:collapse;font-size:.85em}}td,th{{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}}
td.k{{color:#777}}img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p class="disclaimer"><strong>For research and teaching only.</strong> {html.escape(DISCLAIMER)}</p>
<p>Solver status: <strong>{html.escape(result.status)}</strong>; {result.steps} integration steps.</p>
<h2>The chain, layer by layer</h2>
{imgs}
<h2>Exposure summary</h2>
<table>{_summary_rows(result.summary())}</table>
<h2>Manifest</h2>
<pre>{html.escape(manifest)}</pre>
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
</body></html>
"""
    path = folder / "report.html"
    path.write_text(page)
    return path
