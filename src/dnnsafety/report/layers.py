"""The layer-selection section: per-layer clustering indices and WICD plots."""

from __future__ import annotations

from typing import Any

from dnnsafety.report.clusters import describe_value
from dnnsafety.report.html import Cell, Section, as_dict, esc, number, table, text
from dnnsafety.report.load import RunData
from dnnsafety.runs import safe_name

INDEX_COLUMNS = {
    "silhouette": "silhouette",
    "davies_bouldin": "Davies–Bouldin",
    "dunn": "Dunn",
    "icd": "ICD",
    "wicd": "WICD",
    "wicd_normalised": "WICD (norm.)",
    "n_singletons": "singletons",
}
SKIPPED_INDICES = {"n_clusters"}


def safe_layer_name(layer: str) -> str:
    """The file-name form of a layer name, as the analysis stage writes its WICD plot."""
    return safe_name(layer)


def _plot(run: RunData, layer: str, lazy: bool, css: str = "") -> str:
    image = run.image(f"analysis/wicd_{safe_layer_name(layer)}.png")
    if image is None:
        return ""
    loading = ' loading="lazy"' if lazy else ""
    return (
        f'<figure class="{css}"><img class="zoom" src="{image.uri}"{loading} '
        f'alt="WICD of {esc(layer)}">'
        f"<figcaption>{esc(layer)}</figcaption></figure>"
    )


def _index_names(layers: dict[str, dict[str, Any]]) -> list[str]:
    present = {k for entry in layers.values() for k in (entry.get("indices") or {})}
    known = [k for k in INDEX_COLUMNS if k in present]
    return known + sorted(present - set(known) - SKIPPED_INDICES)


def _largest(sizes: Any) -> str:
    if not isinstance(sizes, list) or not sizes:
        return "–"
    top = sorted((s for s in sizes if isinstance(s, int)), reverse=True)[:3]
    return ", ".join(str(s) for s in top) + (" …" if len(sizes) > 3 else "")


def layers_section(run: RunData) -> Section | None:
    """The table of candidate layers and the WICD plots (``analysis/layers.json``)."""
    data = run.layers
    if data is None or not isinstance(data.get("layers"), dict):
        return None
    layers = {str(k): v for k, v in data["layers"].items() if isinstance(v, dict)}
    selected = data.get("selected") or (run.clusters or {}).get("layer") or ""
    if not selected:
        selected = next((k for k, v in layers.items() if v.get("selected")), "")
    indices = _index_names(layers)
    headers = ["layer", "k", "k from", "knee k", "largest clusters"]
    headers += [INDEX_COLUMNS.get(k, k) for k in indices]
    rows, marks = [], []
    for name, entry in layers.items():
        values = as_dict(entry.get("indices"))
        is_selected = name == selected or entry.get("selected") is True
        label = esc(name) + (" <span class='badge'>input</span>" if entry.get("is_input") else "")
        label += " <span class='badge ok'>selected</span>" if is_selected else ""
        row = [
            Cell(label),
            number(entry.get("k")),
            text(entry.get("k_reason", "–")),
            number(entry.get("knee_k")),
            Cell(_largest(entry.get("sizes")), numeric=True),
        ]
        row += [number(values.get(k)) for k in indices]
        rows.append(row)
        marks.append("sel" if is_selected else "")
    body = f'<div class="card"><div class="scroll">{table(headers, rows, "", marks)}</div>'
    body += (
        '<p class="note">k: the number of clusters chosen for the layer (and why); knee k: the'
        " knee of the WICD curve. Silhouette and Dunn: higher is better; Davies–Bouldin and"
        " WICD: lower is better.</p></div>"
    )
    plot = _plot(run, selected, lazy=False, css="main") if selected else ""
    others = [p for name in layers if name != selected and (p := _plot(run, name, lazy=True))]
    if plot or others:
        body += '<div class="card" style="margin-top:16px"><h3>WICD curves</h3>'
        if plot:
            body += f'<div class="plots">{plot}</div>'
        if others:
            body += (
                f"<details><summary>Curves of the other {len(others)} layers</summary>"
                f'<div class="plots">{"".join(others)}</div></details>'
            )
        body += "</div>"
    lead = f"Selected layer: <code>{esc(selected)}</code>" if selected else "No layer selected"
    settings = data.get("settings")
    if isinstance(settings, dict) and settings:
        lead += f"; settings: {describe_value(settings)}"
    return Section("layers", "Layer selection", body, lead + ".")
