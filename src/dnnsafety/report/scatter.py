"""The 2-D map of the error-inducing inputs (``analysis/map.json``) as an inline SVG."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from dnnsafety.report.html import Section, as_float, as_int, cluster_colour, esc, script_json
from dnnsafety.report.load import UNKNOWN_SCENARIO, RunData

WIDTH, HEIGHT, PAD = 960, 560, 18


def _points(data: dict[str, Any]) -> list[tuple[int, str, float, float, int]]:
    """``(index, id, x, y, cluster)`` of every well-formed point, in file order."""
    out = []
    for i, p in enumerate(data.get("points") or []):
        if not isinstance(p, dict):
            continue
        x, y = as_float(p.get("x")), as_float(p.get("y"))
        if x is None or y is None:
            continue
        cluster = as_int(p.get("cluster"))
        out.append((i, str(p.get("id", "")), x, y, -1 if cluster is None else cluster))
    return out


def _details(run: RunData, ids: list[str]) -> list[str]:
    """``true -> predicted · scenario`` of each id, from samples.parquet when it has them."""
    frame = run.samples
    if frame is None or not ids:
        return [""] * len(ids)
    table = frame.assign(sample_id=frame["sample_id"].astype(str)).drop_duplicates("sample_id")
    rows = table.set_index("sample_id").reindex(ids)
    names = run.class_names

    def label(value: Any) -> str:
        if value is None or pd.isna(value):
            return "?"
        index = int(value)
        return names[index] if 0 <= index < len(names) else str(index)

    out = []
    for _, row in rows.iterrows():
        parts = []
        if "label" in rows.columns and "pred" in rows.columns and pd.notna(row.get("pred")):
            parts.append(f"{label(row.get('label'))} → {label(row.get('pred'))}")
        scenario = row.get("scenario") if "scenario" in rows.columns else None
        if isinstance(scenario, str) and scenario != UNKNOWN_SCENARIO:
            parts.append(scenario)
        out.append(" · ".join(parts))
    return out


def _svg(points: list[tuple[int, str, float, float, int]]) -> str:
    xs, ys = [p[2] for p in points], [p[3] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (WIDTH - 2 * PAD) / (x1 - x0 or 1.0)
    sy = (HEIGHT - 2 * PAD) / (y1 - y0 or 1.0)
    radius = 4.5 if len(points) < 500 else 3.2 if len(points) < 3000 else 2.2
    circles = []
    for k, (_, _, x, y, cluster) in sorted(enumerate(points), key=lambda kp: kp[1][4] >= 0):
        cx, cy = PAD + (x - x0) * sx, HEIGHT - PAD - (y - y0) * sy
        circles.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{cluster_colour(cluster)}" '
            f'data-i="{k}" data-c="{cluster}"></circle>'
        )
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="2-D map of the errors">'
        f"{''.join(circles)}</svg>"
    )


def _legend(points: list[tuple[int, str, float, float, int]], run: RunData) -> str:
    counts = Counter(p[4] for p in points)
    cards = {
        as_int(c.get("id"))
        for c in (run.clusters or {}).get("clusters") or []
        if isinstance(c, dict)
    }
    items = []
    for cluster in sorted(counts, key=lambda c: (c < 0, c)):
        name = "noise" if cluster < 0 else f"cluster {cluster}"
        dot = f'<span class="dot" style="background:{cluster_colour(cluster)}"></span>'
        label = f"{dot}{name} ({counts[cluster]})"
        if cluster in cards:
            items.append(f'<a class="item" href="#cluster-{cluster}">{label}</a>')
        else:
            items.append(f'<span class="item">{label}</span>')
    return f'<div class="legend">{"".join(items)}</div>'


def map_section(run: RunData) -> Section | None:
    """The interactive 2-D map, or ``None`` when the run has no ``analysis/map.json``."""
    data = run.projection
    if data is None:
        return None
    points = _points(data)
    if not points:
        return None
    tile, columns = as_int(data.get("tile")), as_int(data.get("columns"))
    sprite = run.image(data.get("sprite"))
    has_sprite = bool(sprite and tile and columns and tile > 0 and columns > 0)
    sheet_w, sheet_h = (sprite.width, sprite.height) if sprite else (0, 0)
    tiles = columns * (sheet_h // tile) if has_sprite and tile and columns else 0
    details = _details(run, [p[1] for p in points])
    info = {
        "tile": tile if has_sprite else 1,
        "columns": columns if has_sprite else 1,
        "sheetWidth": sheet_w,
        "sheetHeight": sheet_h,
        "tiles": tiles,
        "hasSprite": has_sprite,
        # a thumbnail is addressed by its point's position in map.json ("tile")
        "points": [
            {"id": p[1], "cluster": p[4], "tile": p[0], "detail": d}
            for p, d in zip(points, details, strict=True)
        ],
    }
    thumb_style = f' style="background-image:url({sprite.uri})"' if has_sprite and sprite else ""
    body = (
        '<div class="card"><div class="map-wrap">'
        f"{_svg(points)}"
        f'<div id="map-tip"><div class="thumb"{thumb_style}></div><div class="label"></div></div>'
        f"</div>{_legend(points, run)}</div>"
        f'<script type="application/json" id="map-data">{script_json(info)}</script>'
    )
    method = esc(data.get("method") or "2-D")
    lead = (
        f"{method} projection of {len(points)} error-inducing inputs, coloured by cluster."
        " Hover a point for its image; click it to jump to its cluster."
    )
    return Section("map", "2-D map", body, lead)
