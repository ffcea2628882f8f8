"""The chunked Euclidean distance engine shared by clustering and selection.

HUDD clusters error-inducing inputs by the Euclidean distances between their flattened
heatmaps (METHOD.md §2, step 3); the selectors compare a pool of up to 100,000 inputs with the
clustered ones or with training inputs. The rows are large (``N x D`` with ``D`` in the
thousands), so distances are computed block by block with matrix products, using

``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b``

on rows centred by the mean of a *reference* set (centring removes the common offset and with
it most of the cancellation of this identity). Only a block of rows is read at a time, so a
:class:`numpy.memmap` is streamed from disk rather than loaded whole. Products are taken in
float64 whatever the input dtype.

Squared distances that are within rounding error of zero are set to exactly zero: any value
below ``ZERO_TOLERANCE * (||a_c||^2 + ||b_c||^2)`` (``a_c``, ``b_c`` the centred rows), i.e.
distances below about one millionth of the data's spread, far below the resolution of float32
inputs. Identical inputs therefore get a distance of exactly 0, which the clustering relies on.

:class:`Reference` holds the reference rows (their mean, the squared norms of the centred rows,
optionally the centred blocks); :func:`self_distance_blocks` yields the distances among the
reference rows (:func:`dnnsafety.clustering.distances.pairwise_distances`) and
:meth:`Reference.sq_distances` those from query rows to them (the selectors' nearest-neighbour
searches in :mod:`dnnsafety.detection._nearest`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from dnnsafety.exceptions import InvalidInputError

ZERO_TOLERANCE = 1e-12
"""Relative tolerance under which a squared distance is treated as exactly zero."""

_BLOCK_ELEMENTS = 2**23  # float64 elements per row block (64 MiB)

_CACHE_BYTES = 256 * 2**20
"""Reference sets up to this size (as float64) are converted once and kept in memory."""


def auto_chunk_rows(n_columns: int) -> int:
    """Rows per block so that one float64 block stays around 64 MiB.

    Parameters
    ----------
    n_columns
        Number of values per row.

    Returns
    -------
    int
        A block height between 64 and 2048 rows.
    """
    return int(min(2048, max(64, _BLOCK_ELEMENTS // max(n_columns, 1))))


def check_chunk_rows(chunk_rows: int | None, n_columns: int) -> int:
    """``chunk_rows`` checked (an int >= 1), or :func:`auto_chunk_rows` when ``None``.

    Raises
    ------
    InvalidInputError
        If ``chunk_rows`` is neither ``None`` nor an int >= 1.
    """
    if chunk_rows is None:
        return auto_chunk_rows(n_columns)
    if (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, int | np.integer)
        or chunk_rows < 1
    ):
        raise InvalidInputError(
            f"The 'chunk_rows' parameter must be an int >= 1 or None. Got {chunk_rows!r}."
        )
    return int(chunk_rows)


def row_blocks(n: int, batch: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of ``batch`` rows."""
    for start in range(0, n, batch):
        yield start, min(start + batch, n)


def read_block(rows: Any, r0: int, r1: int, what: str, dim: int | None = None) -> np.ndarray:
    """Rows ``r0:r1`` of ``rows`` as a 2-D float64 array (trailing axes flattened).

    Parameters
    ----------
    rows
        Array, memmap or anything that returns an array for a row slice.
    r0, r1
        The rows to read.
    what
        Name of ``rows`` for error messages.
    dim
        Values per row the block must have (``None``: any).

    Raises
    ------
    InvalidInputError
        If the rows are not real numbers, not ``N x D``, of another width than ``dim`` or
        hold NaN or infinity.
    """
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
        raise InvalidInputError(
            f"{what} row {bad} contains NaN or infinity. Remove or repair that input first."
        )
    return block


class Reference:
    """Reference rows, centred by their mean, served chunk by chunk in float64.

    Parameters
    ----------
    rows
        ``R x D`` reference rows (array or memmap), ``R >= 1``.
    what
        Name used in error messages.
    chunk
        Rows per chunk; ``None`` chooses about 64 MiB per chunk.
    cache
        Keep the centred float64 chunks in memory: ``None`` (default) when they take at most
        256 MiB, ``False`` never (every pass re-reads the rows, so memory stays at one chunk).

    Raises
    ------
    InvalidInputError
        If ``rows`` is empty or a block fails :func:`read_block`.
    """

    def __init__(
        self, rows: Any, what: str, chunk: int | None = None, *, cache: bool | None = None
    ) -> None:
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
        if cache is None:
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
            yield c0, c1, self.block(i)

    def block(self, i: int) -> np.ndarray:
        """The ``i``-th chunk of centred float64 rows (rows ``i * chunk`` onwards)."""
        if self._cached:
            return self._cached[i]
        c0 = i * self.chunk
        rows = read_block(self.rows, c0, min(c0 + self.chunk, self.n), self.what, self.dim)
        return rows - self.mean

    def centre(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre a query block by the reference mean; return it and its squared norms."""
        centred = block - self.mean
        return centred, np.einsum("ij,ij->i", centred, centred)

    def sq_distances(
        self, query: np.ndarray, query_sq: np.ndarray, ref: np.ndarray, c0: int, c1: int
    ) -> np.ndarray:
        """Squared Euclidean distances between centred query rows and reference rows.

        Parameters
        ----------
        query, query_sq
            Centred query rows and their squared norms (:meth:`centre`).
        ref
            Centred reference rows ``c0:c1`` (one item of :meth:`chunks`).
        c0, c1
            Which reference rows ``ref`` holds.

        Returns
        -------
        numpy.ndarray
            ``len(query) x (c1 - c0)`` float64, never negative, exactly 0 within
            :data:`ZERO_TOLERANCE`.
        """
        d2 = query @ ref.T
        d2 *= -2.0
        norms = query_sq[:, None] + self.sq[None, c0:c1]
        d2 += norms
        d2[d2 <= ZERO_TOLERANCE * norms] = 0.0
        return d2


def self_distance_blocks(
    reference: Reference,
) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
    """Euclidean distances among the reference rows, block by block.

    Yields ``(r0, r1, c0, c1, block)`` for the upper block triangle (``c0 >= r0``): ``block``
    holds the distances between rows ``r0:r1`` and ``c0:c1``, float64, exactly zero on the
    diagonal and between identical rows. Each block is a fresh array the caller may keep.
    """
    bounds = list(row_blocks(reference.n, reference.chunk))
    for i, (r0, r1) in enumerate(bounds):
        a = reference.block(i)
        a_sq = reference.sq[r0:r1]
        for j in range(i, len(bounds)):
            c0, c1 = bounds[j]
            b = a if j == i else reference.block(j)  # a @ a.T: one symmetric product
            block = reference.sq_distances(a, a_sq, b, c0, c1)
            if j == i:
                np.fill_diagonal(block, 0.0)
            np.sqrt(block, out=block)
            yield r0, r1, c0, c1, block


def query_batch(n_query: int, dim: int, batch_size: int | None) -> int:
    """Query rows per batch: the given size, or about 64 MiB of float64 per batch."""
    if batch_size is not None:
        return batch_size
    return min(auto_chunk_rows(dim), max(n_query, 1))
