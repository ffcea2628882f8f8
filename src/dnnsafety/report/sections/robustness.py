"""The robustness section: accuracy per corruption x severity (a heat grid), accuracy
against the missing rate (curves) and silent-data-corruption rates of bit flips."""

from __future__ import annotations

import logging
from typing import Any

from dnnsafety.pipeline.artifacts import ArtifactError, Robustness, read_artifact
from dnnsafety.report.format import PALETTE, Cell, accuracy, as_dict, as_float, num, pct, table
from dnnsafety.report.load import RunData
from dnnsafety.report.sections import Context, register_section

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 14, 12, 34
FAMILY_ORDER = ("noise", "blur", "weather", "digital", "scenario")


def _load(run: RunData) -> Robustness | None:
    if not (run.path / Robustness.FILE).is_file():
        return None
    try:
        return read_artifact(Robustness, run.path)
    except ArtifactError as exc:
        log.warning("%s; its section is left out", str(exc).rstrip("."))
        return None


def _heat_grid(data: Robustness) -> Any:
    grid = data.accuracy or {}
    families = data.families or {}
    severities = sorted({int(s) for cells in grid.values() for s in cells})
    ce = data.corruption_errors or {}
    order = sorted(
        grid,
        key=lambda n: FAMILY_ORDER.index(families[n]) if families.get(n) in FAMILY_ORDER else 9,
    )
    rows = []
    for name in order:
        cells = grid[name]
        values = [as_float(cells.get(str(s))) for s in severities]
        known = [v for v in values if v is not None]
        row = [Cell(name, note=str(families.get(name, "")))]
        row += [accuracy(v) for v in values]
        row.append(accuracy(sum(known) / len(known) if known else None))
        if ce:
            row.append(Cell(num(ce.get(name)), numeric=True))
        rows.append(row)
    headers = ["corruption", *[f"severity {s}" for s in severities], "mean"]
    if ce:
        headers.append("CE")
    return table(headers, rows)


def _y(value: float) -> float:
    return TOP + (1.0 - value) * (HEIGHT - TOP - BOTTOM)


def _missing_chart(data: Robustness) -> Context | None:
    curves = data.missing or {}
    if not curves:
        return None
    span = WIDTH - LEFT - RIGHT
    lines = []
    for i, (kind, cells) in enumerate(curves.items()):
        points = sorted((float(r), v) for r, v in cells.items() if as_float(v) is not None)
        path = " ".join(f"{LEFT + r * span:.1f},{_y(v):.1f}" for r, v in points)
        colour = PALETTE[i % len(PALETTE)]
        dots = [
            {"x": f"{LEFT + r * span:.1f}", "y": f"{_y(v):.1f}", "title": f"{kind}: rate "
             f"{r:g}, accuracy {pct(v)}"}
            for r, v in points
        ]  # fmt: skip
        lines.append({"kind": kind, "colour": colour, "points": path, "dots": dots})
    ticks = [{"y": f"{_y(t):.1f}", "label": f"{t:.0%}"} for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    xticks = [{"x": f"{LEFT + r * span:.1f}", "label": f"{r:g}"} for r in (0, 0.25, 0.5, 0.75, 1)]
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT,
        "bottom": HEIGHT - BOTTOM, "lines": lines, "ticks": ticks, "xticks": xticks,
    }  # fmt: skip


def _bit_chart(by_bit: dict[str, Any], ranger: dict[str, Any] | None) -> Context | None:
    if not by_bit:
        return None
    rates = {int(b): as_float(as_dict(g).get("rate")) or 0.0 for b, g in by_bit.items()}
    top = max(max(rates.values()), 1e-9)
    span = WIDTH - LEFT - RIGHT
    step = span / 32
    bars = []
    for bit in range(32):
        if bit not in rates:
            continue
        h = rates[bit] / top * (HEIGHT - TOP - BOTTOM)
        kind = "sign" if bit == 31 else "exponent" if bit >= 23 else "mantissa"
        fill = {"sign": "#7c3aed", "exponent": "#dc2626", "mantissa": "#2563eb"}[kind]
        bars.append({
            "x": f"{LEFT + (31 - bit) * step + 1:.1f}", "y": f"{HEIGHT - BOTTOM - h:.1f}",
            "width": f"{step - 2:.1f}", "height": f"{h:.1f}", "fill": fill,
            "title": f"bit {bit} ({kind}): SDC rate {pct(rates[bit], 2)}, "
            f"{as_dict(by_bit[str(bit)]).get('n', '?')} flips",
        })  # fmt: skip
    labels = [
        {"x": f"{LEFT + (31 - b) * step + step / 2:.1f}", "label": str(b)}
        for b in (31, 30, 23, 16, 8, 0)
    ]
    return {
        "width": WIDTH, "height": HEIGHT, "bottom": HEIGHT - BOTTOM, "left": LEFT,
        "right": WIDTH - RIGHT, "bars": bars, "labels": labels, "top": pct(top, 2),
    }  # fmt: skip


def _layer_table(faults: dict[str, Any]) -> Any:
    by_layer = as_dict(faults.get("by_layer"))
    ranger = as_dict(faults.get("ranger"))
    theirs = as_dict(ranger.get("by_layer_ranger"))
    rows = []
    for layer, g in by_layer.items():
        g = as_dict(g)
        row = [Cell(layer), Cell(num(g.get("n")), numeric=True)]
        row += [
            Cell(pct(g.get("rate"), 2), numeric=True),
            Cell(pct(g.get("critical")), numeric=True),
        ]
        if theirs:
            row.append(Cell(pct(as_dict(theirs.get(layer)).get("rate"), 3), numeric=True))
        rows.append(row)
    headers = ["layer", "flips", "SDC rate", "faults with an SDC"]
    if theirs:
        headers.append("SDC rate with Ranger")
    return table(headers, rows)


@register_section("robustness", "Robustness: corruptions, missing data, faults", order=70)
def robustness_section(run: RunData) -> Context | None:
    """Everything of ``robustness.json``; ``None`` when the run has none."""
    data = _load(run)
    if data is None:
        return None
    faults = data.faults or {}
    ranger = as_dict(faults.get("ranger")) or None
    return {
        "n_images": data.images.get("n"),
        "selection": data.images.get("selection", ""),
        "clean": pct(data.clean_accuracy),
        "grid": _heat_grid(data) if data.accuracy else None,
        "mce": None if data.mce is None else num(data.mce),
        "reference": as_dict(data.reference).get("run", ""),
        "missing": _missing_chart(data),
        "faults": bool(faults),
        "n_faults": faults.get("n"),
        "fault_inputs": faults.get("n_inputs"),
        "sdc_rate": pct(faults.get("rate"), 2),
        "critical": pct(faults.get("critical")),
        "bits": _bit_chart(as_dict(faults.get("by_bit")), ranger),
        "layers": _layer_table(faults) if faults else None,
        "ranger": None if ranger is None else {
            "clean": pct(ranger.get("clean_accuracy")),
            "exp_plain": pct(ranger.get("exponent_rate"), 2),
            "exp_ranger": pct(ranger.get("exponent_rate_ranger"), 3),
            "rate_ranger": pct(ranger.get("rate_ranger"), 3),
        },
    }  # fmt: skip
