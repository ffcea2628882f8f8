"""Identical inputs: found once, clustered once, given one label.

Repeated frames are normal in camera data, so the error-inducing inputs often hold exact
duplicates. Every reducer, clusterer and HUDD's per-layer clustering therefore works on the
*distinct* rows and maps the result back, so that identical inputs always share their cluster
(or are noise together). How a duplicate counts is up to the algorithm (``docs/analysis.md``):
where it supports weights (DBSCAN, k-means, Ward, the silhouette, HUDD's WICD) a row seen
``c`` times weighs ``c``, exactly as on the full data; UMAP and HDBSCAN have no weights and
see each distinct row once.

:func:`identical_rows` groups rows that are exactly equal (``-0.0`` equals ``0.0``);
:func:`zero_distance_groups` groups the rows of a distance matrix at distance exactly 0, which
:func:`~dnnsafety.clustering.distances.pairwise_distances` gives to rows equal up to rounding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from dnnsafety.clustering.distances import auto_chunk_rows


@dataclass(frozen=True, eq=False)
class DuplicateGroups:
    """Rows grouped by identity, groups numbered in order of their first row.

    Attributes
    ----------
    first
        ``G`` index of the first row of each group (increasing).
    inverse
        ``N`` group of each row, so ``x[first][inverse]`` equals ``x`` row for row.
    counts
        ``G`` rows per group (the weight of each distinct row).
    """

    first: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray

    @property
    def n_rows(self) -> int:
        """Number of rows ``N``."""
        return int(self.inverse.shape[0])

    @property
    def n_distinct(self) -> int:
        """Number of distinct rows ``G``."""
        return int(self.first.shape[0])

    @property
    def has_duplicates(self) -> bool:
        """Whether some row occurs more than once."""
        return self.n_distinct < self.n_rows

    def representative(self) -> np.ndarray:
        """``N`` index of the first row of each row's group."""
        return self.first[self.inverse]

    def expand(self, values: np.ndarray) -> np.ndarray:
        """Per-group ``values`` (first axis ``G``) repeated for every row (first axis ``N``)."""
        return np.asarray(values)[self.inverse]


def _groups_from_labels(labels: np.ndarray) -> DuplicateGroups:
    """Groups from any per-row group key, renumbered by first appearance."""
    n = labels.shape[0]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return DuplicateGroups(empty, empty, empty)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    inverse = rank[inverse.reshape(-1)].astype(np.int64)
    counts = np.bincount(inverse, minlength=order.size).astype(np.int64)
    return DuplicateGroups(first[order].astype(np.int64), inverse, counts)


def identical_rows(x: np.ndarray) -> DuplicateGroups:
    """Group the rows of ``x`` that are exactly equal.

    Each row is hashed (BLAKE2b, 128 bits) one at a time, so no copy of ``x`` is made and
    image batches or memmaps work as well as feature matrices.

    Parameters
    ----------
    x
        ``N x D`` finite array (``N x C x H x W`` is flattened per row); a NumPy array or
        anything :func:`numpy.asarray` accepts (a CPU tensor).

    Returns
    -------
    DuplicateGroups
        One group per distinct row, in order of first appearance.
    """
    arr = np.asarray(x)
    n = arr.shape[0]
    floating = np.issubdtype(arr.dtype, np.floating)
    keys = np.empty(n, dtype="S16")
    for i in range(n):
        row = np.ascontiguousarray(arr[i])
        if floating:
            row = row + row.dtype.type(0.0)  # -0.0 -> 0.0: equal values, equal bytes
        keys[i] = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
    return _groups_from_labels(keys)


def zero_distance_groups(d: np.ndarray, *, chunk_rows: int | None = None) -> DuplicateGroups:
    """Group the inputs of a distance matrix that are at distance exactly 0 (transitively).

    Parameters
    ----------
    d
        ``N x N`` distance matrix (symmetric, zero diagonal).
    chunk_rows
        Rows scanned at a time; ``None`` = automatic.

    Returns
    -------
    DuplicateGroups
        The connected components of the "distance 0" graph, in order of first appearance.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = d.shape[0]
    chunk = chunk_rows or auto_chunk_rows(n)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for r0 in range(0, n, chunk):
        block = np.asarray(d[r0 : r0 + chunk])
        i, j = np.nonzero(block == 0)
        keep = i + r0 != j
        rows.append(i[keep] + r0)
        cols.append(j[keep])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    if r.size == 0:
        every = np.arange(n, dtype=np.int64)
        return DuplicateGroups(every, every.copy(), np.ones(n, dtype=np.int64))
    graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return _groups_from_labels(np.asarray(labels))


__all__ = ["DuplicateGroups", "identical_rows", "zero_distance_groups"]
