"""The layer-selection section: per-layer clustering indices and WICD plots."""

from __future__ import annotations

from typing import Any

from dnnsafety.report.format import Cell, as_dict, number, table, text
from dnnsafety.report.load import RunData
from dnnsafety.report.sections import Context, register_section
from dnnsafety.report.sections.clusters import describe_value
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


def _plot(run: RunData, layer: str) -> Context | None:
    image = run.image(f"analysis/wicd_{safe_layer_name(layer)}.png")
    return None if image is None else {"layer": layer, "image": image}


def _index_names(layers: dict[str, dict[str, Any]]) -> list[str]:
    present = {k for entry in layers.values() for k in (entry.get("indices") or {})}
    known = [k for k in INDEX_COLUMNS if k in present]
    return known + sorted(present - set(known) - SKIPPED_INDICES)


def _largest(sizes: Any) -> str:
    if not isinstance(sizes, list) or not sizes:
        return "–"
    top = sorted((s for s in sizes if isinstance(s, int)), reverse=True)[:3]
    return ", ".join(str(s) for s in top) + (" …" if len(sizes) > 3 else "")


@register_section("layers", "Layer selection", order=40)
def layers_section(run: RunData) -> Context | None:
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
        badges = [("", "input")] if entry.get("is_input") else []
        badges += [("ok", "selected")] if is_selected else []
        row = [
            Cell(name, badges=tuple(badges)),
            number(entry.get("k")),
            text(entry.get("k_reason", "–")),
            number(entry.get("knee_k")),
            Cell(_largest(entry.get("sizes")), numeric=True),
        ]
        row += [number(values.get(k)) for k in indices]
        rows.append(row)
        marks.append("sel" if is_selected else "")
    settings = data.get("settings")
    return {
        "layer_table": table(headers, rows, "", marks),
        "selected": str(selected),
        "main_plot": _plot(run, selected) if selected else None,
        "others": [p for name in layers if name != selected and (p := _plot(run, name))],
        "settings": describe_value(settings) if isinstance(settings, dict) and settings else "",
    }
