"""The picture of two analyses side by side: their contingency table as a heatmap."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dnnsafety.runs import write_bytes

MAX_ANNOTATED_CELLS = 400
"""Counts are written into the cells up to this many cells (beyond, the colours alone)."""


def _label(cid: int) -> str:
    return "noise" if cid == -1 else str(cid)


def plot_contingency(
    table: np.ndarray,
    first_ids: Sequence[int],
    second_ids: Sequence[int],
    names: tuple[str, str],
    path: str | Path,
) -> None:
    """Write the contingency table of two partitions as a PNG heatmap.

    Each row is normalised by its cluster's size, so a row with one dark cell is a cluster of
    the first analysis found whole by the second; the counts are written in the cells.

    Parameters
    ----------
    table
        ``(R, C)`` counts of errors in cluster ``first_ids[r]`` of the first analysis and
        ``second_ids[c]`` of the second (``-1``: noise).
    first_ids, second_ids
        Row and column cluster ids.
    names
        The two analyses' names, for the axis labels.
    path
        Where to write the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(table, dtype=np.int64).reshape(len(first_ids), len(second_ids))
    sizes = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, sizes, out=np.zeros(counts.shape), where=sizes > 0)
    width = min(14.0, 2.5 + 0.45 * max(len(second_ids), 1))
    height = min(14.0, 1.8 + 0.35 * max(len(first_ids), 1))
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    buf = io.BytesIO()
    try:
        if counts.size:
            _draw(fig, ax, counts, share, first_ids, second_ids, names)
        else:
            ax.text(0.5, 0.5, "no error analysed by both", ha="center", va="center")
            ax.set_axis_off()
        fig.tight_layout()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())


def _draw(
    fig: Any,
    ax: Any,
    counts: np.ndarray,
    share: np.ndarray,
    first_ids: Sequence[int],
    second_ids: Sequence[int],
    names: tuple[str, str],
) -> None:
    rows, cols = counts.shape
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), [_label(c) for c in second_ids], fontsize=8)
    ax.set_yticks(range(rows), [_label(c) for c in first_ids], fontsize=8)
    ax.set_xlabel(f"clusters of {names[1]}")
    ax.set_ylabel(f"clusters of {names[0]}")
    if rows * cols <= MAX_ANNOTATED_CELLS:
        for r in range(rows):
            for c in range(cols):
                if counts[r, c]:
                    colour = "white" if share[r, c] > 0.5 else "black"
                    ax.text(c, r, str(counts[r, c]), ha="center", va="center", fontsize=7,
                            color=colour)  # fmt: skip
    fig.colorbar(image, ax=ax, label="share of the row's cluster")
    ax.set_title(f"{names[0]} x {names[1]}: errors in both clusters", fontsize=10)
