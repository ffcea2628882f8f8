"""Nearest-neighbour distances from a large, streamed set of rows to a reference set.

The pool can hold 100,000 inputs of thousands of dimensions, so it is read ``batch_size``
rows at a time (a :class:`numpy.memmap` is never loaded whole) and no ``P x M`` matrix is
ever formed: each pool batch is compared with the reference set chunk by chunk and only the
running minima are kept. The arithmetic follows :mod:`dnnsafety.clustering.distances`:
float64 products on rows centred by the reference mean, ``||a-b||^2 = ||a||^2 + ||b||^2 -
2 a.b``, and squared distances within :data:`~dnnsafety.clustering.distances.ZERO_TOLERANCE`
of zero snapped to exactly zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from dnnsafety.clustering.distances import ZERO_TOLERANCE, auto_chunk_rows
from dnnsafety.exceptions import InvalidInputError

_CACHE_BYTES = 256 * 2**20
"""Reference sets up to this size (as float64) are converted once and kept in memory."""


def read_block(rows: Any, r0: int, r1: int, what: str, dim: int | None = None) -> np.ndarray:
    """Rows ``r0:r1`` of ``rows`` as a 2-D float64 array (trailing axes flattened)."""
    block = np.asarray(rows[r0:r1])
    if block.dtype == np.bool_ or not (
        np.issubdtype(block.dtype, np.floating) or np.issubdtype(block.dtype, np.integer)
    ):
        raise InvalidInputError(
            f"{what} must hold real numbers; got dtype {block.dtype}. Convert with "
            "x.astype(np.float32)."
        )
    if block.ndim < 2:
        raise InvalidInputError(
            f"{what} must have one row per input (N x D); row slices have shape {block.shape}."
        )
    block = block.reshape(len(block), -1).astype(np.float64, copy=False)
    if dim is not None and block.shape[1] != dim:
        raise InvalidInputError(
            f"{what} has {block.shape[1]} values per row but the reference has {dim}; both "
            "must come from the same feature space (same layer, same extractor)."
        )
    if not np.isfinite(block).all():
        bad = r0 + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        raise InvalidInputError(f"{what} row {bad} contains NaN or infinity; repair it first.")
    return block


def row_blocks(n: int, batch: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of ``batch`` rows."""
    for start in range(0, n, batch):
        yield start, min(start + batch, n)


class Reference:
    """Reference rows, centred by their mean, served chunk by chunk in float64.

    Parameters
    ----------
    rows
        ``R x D`` reference rows (array or memmap).
    what
        Name used in error messages.
    chunk
        Rows per chunk; ``None`` chooses about 64 MiB per chunk.
    """

    def __init__(self, rows: Any, what: str, chunk: int | None = None) -> None:
        self.rows = rows
        self.what = what
        self.n = len(rows)
        if self.n == 0:
            raise InvalidInputError(f"{what} is empty.")
        first = read_block(rows, 0, 1, what)
        self.dim = first.shape[1]
        self.chunk = chunk or auto_chunk_rows(self.dim)
        total = np.zeros(self.dim, dtype=np.float64)
        for c0, c1 in row_blocks(self.n, self.chunk):
            total += read_block(rows, c0, c1, what, self.dim).sum(axis=0)
        self.mean = total / self.n
        self.sq = np.empty(self.n, dtype=np.float64)
        cache = self.n * self.dim * 8 <= _CACHE_BYTES
        self._cached: list[np.ndarray] = []
        for c0, c1 in row_blocks(self.n, self.chunk):
            block = read_block(rows, c0, c1, what, self.dim) - self.mean
            self.sq[c0:c1] = np.einsum("ij,ij->i", block, block)
            if cache:
                self._cached.append(block)

    def chunks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(start, stop, centred float64 block)`` over the reference rows."""
        for i, (c0, c1) in enumerate(row_blocks(self.n, self.chunk)):
            if self._cached:
                yield c0, c1, self._cached[i]
            else:
                yield c0, c1, read_block(self.rows, c0, c1, self.what, self.dim) - self.mean

    def centre(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre a query block by the reference mean; return it and its squared norms."""
        centred = block - self.mean
        return centred, np.einsum("ij,ij->i", centred, centred)

    def sq_distances(
        self, query: np.ndarray, query_sq: np.ndarray, ref: np.ndarray, c0: int, c1: int
    ) -> np.ndarray:
        """Squared Euclidean distances between centred query rows and reference rows."""
        d2 = query @ ref.T
        d2 *= -2.0
        norms = query_sq[:, None] + self.sq[None, c0:c1]
        d2 += norms
        d2[d2 <= ZERO_TOLERANCE * norms] = 0.0
        return d2


def query_batch(n_query: int, dim: int, batch_size: int | None) -> int:
    """Query rows per batch: the given size, or about 64 MiB of float64 per batch."""
    if batch_size is not None:
        return batch_size
    return min(auto_chunk_rows(dim), max(n_query, 1))


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
