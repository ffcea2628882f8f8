"""The 2-D map of the error-inducing inputs (``analysis/map.json``) as an inline SVG."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from dnnsafety.report.format import as_float, as_int, cluster_colour
from dnnsafety.report.load import UNKNOWN_SCENARIO, RunData
from dnnsafety.report.sections import Context, register_section

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


def _circles(points: list[tuple[int, str, float, float, int]]) -> list[Context]:
    """Position, radius and colour of every point (noise drawn first, under the clusters)."""
    xs, ys = [p[2] for p in points], [p[3] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (WIDTH - 2 * PAD) / (x1 - x0 or 1.0)
    sy = (HEIGHT - 2 * PAD) / (y1 - y0 or 1.0)
    radius = 4.5 if len(points) < 500 else 3.2 if len(points) < 3000 else 2.2
    return [
        {
            "cx": f"{PAD + (x - x0) * sx:.1f}",
            "cy": f"{HEIGHT - PAD - (y - y0) * sy:.1f}",
            "r": radius,
            "fill": cluster_colour(cluster),
            "i": k,
            "cluster": cluster,
        }
        for k, (_, _, x, y, cluster) in sorted(enumerate(points), key=lambda kp: kp[1][4] >= 0)
    ]


def _legend(points: list[tuple[int, str, float, float, int]], run: RunData) -> list[Context]:
    counts = Counter(p[4] for p in points)
    cards = {
        as_int(c.get("id"))
        for c in (run.clusters or {}).get("clusters") or []
        if isinstance(c, dict)
    }
    return [
        {
            "cluster": cluster,
            "name": "noise" if cluster < 0 else f"cluster {cluster}",
            "colour": cluster_colour(cluster),
            "count": counts[cluster],
            "linked": cluster in cards,
        }
        for cluster in sorted(counts, key=lambda c: (c < 0, c))
    ]


@register_section("map", "2-D map", order=50)
def map_section(run: RunData) -> Context | None:
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
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "circles": _circles(points),
        "sprite": sprite.uri if has_sprite and sprite else "",
        "legend": _legend(points, run),
        "info": info,
        "method": data.get("method") or "2-D",
        "n_points": len(points),
    }
