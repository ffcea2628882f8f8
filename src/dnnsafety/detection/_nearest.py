"""Nearest-neighbour distances from a large, streamed set of rows to a reference set.

The pool can hold 100,000 inputs of thousands of dimensions, so it is read ``batch_size``
rows at a time (a :class:`numpy.memmap` is never loaded whole) and no ``P x M`` matrix is
ever formed: each pool batch is compared with the reference set chunk by chunk and only the
running minima are kept. The distances come from the chunked engine in
:mod:`dnnsafety.distances` (:class:`~dnnsafety.distances.Reference`), the one HUDD's
distance matrices use too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnsafety.distances import Reference, query_batch, read_block, row_blocks

__all__ = ["Reference", "group_min_distances", "nearest_in_class", "read_block"]


def group_min_distances(
    rows: Any,
    reference: Reference,
    groups: np.ndarray,
    n_groups: int,
    *,
    batch_size: int | None,
    what: str,
) -> np.ndarray:
    """Distance from every row to the nearest reference row of each group.

    Parameters
    ----------
    rows
        ``P x D`` query rows (array or memmap), read in batches.
    reference
        The reference rows.
    groups
        ``(R,)`` group index in ``0..n_groups-1`` of each reference row.
    n_groups
        Number of groups ``K``.
    batch_size
        Query rows per batch (``None``: automatic).
    what
        Name of ``rows`` for error messages.

    Returns
    -------
    numpy.ndarray
        ``P x K`` float64 distances (``inf`` for a group without reference rows).
    """
    n = len(rows)
    out = np.full((n, n_groups), np.inf, dtype=np.float64)
    batch = query_batch(n, reference.dim, batch_size)
    layout = []  # per reference chunk: column order grouping it, group starts, group ids
    for c0, c1 in row_blocks(reference.n, reference.chunk):
        order = np.argsort(groups[c0:c1], kind="stable")
        g_sorted = groups[c0:c1][order]
        starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        layout.append((order, starts, g_sorted[starts]))
    for r0, r1 in row_blocks(n, batch):
        query, query_sq = reference.centre(read_block(rows, r0, r1, what, reference.dim))
        best = out[r0:r1]
        for (c0, c1, ref), (order, starts, present) in zip(reference.chunks(), layout, strict=True):
            d2 = reference.sq_distances(query, query_sq, ref, c0, c1)
            mins = np.minimum.reduceat(d2[:, order], starts, axis=1)
            best[:, present] = np.minimum(best[:, present], mins)
    np.sqrt(out, out=out)
    return out


def nearest_in_class(
    rows: Any,
    reference: Reference,
    ref_labels: np.ndarray,
    row_labels: np.ndarray,
    *,
    same: bool,
    batch_size: int | None,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference row of the same class (``same=True``) or of any other class.

    Returns
    -------
    tuple of numpy.ndarray
        ``(P,)`` float64 distances (``inf`` where no reference row qualifies) and ``(P,)``
        int indices of those rows (``-1`` where none; ties: the lowest index).
    """
    n = len(rows)
    dist = np.full(n, np.inf, dtype=np.float64)
    index = np.full(n, -1, dtype=np.int64)
    batch = query_batch(n, reference.dim, batch_size)
    for r0, r1 in row_blocks(n, batch):
        query, query_sq = reference.centre(read_block(rows, r0, r1, what, reference.dim))
        labels = row_labels[r0:r1, None]
        take = np.arange(r1 - r0)
        for c0, c1, ref in reference.chunks():
            d2 = reference.sq_distances(query, query_sq, ref, c0, c1)
            match = ref_labels[None, c0:c1] == labels
            d2[~match if same else match] = np.inf
            j = np.argmin(d2, axis=1)
            value = d2[take, j]
            better = value < dist[r0:r1]
            dist[r0:r1][better] = value[better]
            index[r0:r1][better] = c0 + j[better]
    return np.sqrt(dist), index
