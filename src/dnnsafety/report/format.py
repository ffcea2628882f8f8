"""What the report's templates show, as plain text: number formats, colours, table cells.

Nothing here writes HTML: every value goes to a template, which escapes it (autoescape), except
:func:`script_json`, the one filter that embeds JSON in a ``<script>`` block safely itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

# Categorical colours (Tableau 20, reordered so neighbours differ); cluster i gets i mod 20.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#393b79", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#9edae5", "#dbdb8d", "#637939",
)  # fmt: skip
NOISE_COLOUR = "#9ca3af"


def script_json(obj: Any) -> Markup:
    """JSON that can sit inside ``<script type="application/json">`` without breaking out.

    ``<``, ``>`` and ``&`` (and the JavaScript line separators) are written as ``\\u`` escapes,
    so the text needs no HTML escaping: it is returned as :class:`~markupsafe.Markup`.
    """
    text = json.dumps(obj, ensure_ascii=False, default=str, allow_nan=False)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, code)
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a dict, else an empty dict (tolerates malformed JSON)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` when it is a list, else an empty list (tolerates malformed JSON)."""
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int | None:
    """``value`` as an int, or ``None`` when it is not an integral number."""
    number = as_float(value)
    return int(number) if number is not None and number == int(number) else None


def pct(value: Any, digits: int = 1) -> str:
    """A fraction as a percentage (``0.8064`` -> ``80.6%``); ``–`` when not a number."""
    number = as_float(value)
    return "–" if number is None else f"{number * 100:.{digits}f}%"


def num(value: Any, digits: int = 3) -> str:
    """A number for a table: ints with thousands separators, floats to ``digits`` significant
    digits (``0.806``, ``12.3``, ``1,234.5``; scientific only below ``1e-4`` or from ``1e6``)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    number = as_float(value)
    if number is None:
        return str(value) if value is not None else "–"
    size = abs(number)
    if size == 0:
        return "0"
    if size >= 1e6 or size < 1e-4:
        return f"{number:.{max(digits - 1, 1)}e}"
    if size >= 10 ** (digits - 1):
        return f"{number:,.1f}" if size < 1000 else f"{number:,.0f}"
    return f"{number:.{digits}g}"


def seconds(value: Any) -> str:
    """A duration in seconds, as ``0.42 s``, ``12.3 s`` or ``3 min 05 s``."""
    number = as_float(value)
    if number is None:
        return "–"
    if number < 10:
        return f"{number:.2f} s"
    if number < 120:
        return f"{number:.1f} s"
    minutes, rest = divmod(round(number), 60)
    return f"{minutes} min {rest:02d} s"


def acc_colour(value: Any) -> str:
    """A background colour for an accuracy: green near 100%, amber around 75%, red below 50%."""
    number = as_float(value)
    if number is None:
        return "transparent"
    hue = max(0.0, min(1.0, (number - 0.5) / 0.5)) * 130
    return f"hsl({hue:.0f},75%,{88 if number < 0.995 else 93}%)"


def heat_colour(share: float, diagonal: bool) -> tuple[str, str]:
    """Background and text colour of a confusion-matrix cell holding ``share`` of its row."""
    share = max(0.0, min(1.0, share))
    if diagonal:
        background = f"rgba(21,128,61,{0.08 + 0.72 * share:.2f})"
        return background, "#fff" if share > 0.55 else "inherit"
    alpha = min(1.0, share * 3.0)
    return f"rgba(220,38,38,{alpha:.2f})", "#fff" if alpha > 0.6 else "inherit"


def cluster_colour(cluster: int) -> str:
    """The colour of a cluster in every chart (noise, ``-1``, is grey)."""
    return NOISE_COLOUR if cluster < 0 else PALETTE[cluster % len(PALETTE)]


@dataclass(frozen=True)
class Cell:
    """One table cell: its ``text`` (escaped by the template) plus layout and decorations.

    ``note`` is a muted remark after the text, ``badges`` ``(css, label)`` pairs after it,
    ``codes`` names shown as code, ``dot`` a colour swatch before it; ``bold``/``italic`` and
    ``href`` (a link) wrap the text, ``span`` wraps it in a ``<span>`` (rotated headers).
    """

    text: str = ""
    numeric: bool = False
    css: str = ""
    style: str = ""
    title: str = ""
    header: bool = False
    bold: bool = False
    italic: bool = False
    note: str = ""
    badges: tuple[tuple[str, str], ...] = ()
    codes: tuple[str, ...] = ()
    dot: str = ""
    href: str = ""
    span: bool = False

    @property
    def classes(self) -> str:
        """The ``class`` attribute: ``num`` for numbers, then ``css``."""
        return " ".join(c for c in ("num" if self.numeric else "", self.css) if c)


def text(value: object) -> Cell:
    """A text cell."""
    return Cell(str(value))


def number(value: Any, digits: int = 3, css: str = "") -> Cell:
    """A right-aligned number cell."""
    return Cell(num(value, digits), numeric=True, css=css)


def accuracy(value: Any, css: str = "") -> Cell:
    """A right-aligned accuracy cell, coloured by :func:`acc_colour`."""
    return Cell(
        pct(value),
        numeric=True,
        css=f"acc {css}".strip(),
        style=f"background:{acc_colour(value)}",
    )


@dataclass(frozen=True)
class Table:
    """A table for the ``table`` macro: header cells, rows of cells, row classes."""

    headers: list[Cell]
    rows: list[list[Cell]]
    css: str = ""
    row_css: list[str] = field(default_factory=list)


def table(
    headers: Sequence[str | Cell],
    rows: Iterable[Sequence[Cell]],
    css: str = "",
    row_css: Sequence[str] | None = None,
) -> Table:
    """A :class:`Table`; plain-string headers become header cells aligned like the first row."""
    body = [list(r) for r in rows]
    head = []
    for i, h in enumerate(headers):
        if isinstance(h, Cell):
            head.append(h)
            continue
        numeric = bool(body) and i < len(body[0]) and body[0][i].numeric
        head.append(Cell(h, numeric=numeric))
    marks = [
        row_css[i] if row_css is not None and i < len(row_css) else "" for i in range(len(body))
    ]
    return Table(head, body, css, marks)


def dominant(counts: Any) -> tuple[str, int, int] | None:
    """The most frequent key of a ``{name: count}`` mapping, its count and the total."""
    if not isinstance(counts, dict) or not counts:
        return None
    valid = {str(k): v for k, v in counts.items() if as_int(v) is not None}
    if not valid:
        return None
    name = max(valid, key=lambda k: int(valid[k]))
    return name, int(valid[name]), sum(int(v) for v in valid.values())
