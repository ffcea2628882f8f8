"""Euclidean distance matrices for HUDD clustering, computed in row blocks.

HUDD compares error-inducing inputs through the Euclidean distance between their flattened
heatmaps (METHOD.md §2, step 3). The blocks come from the chunked engine in
:mod:`dnnsafety.distances` (shared with the selectors): float64 products of rows centred by
the column mean, ``chunk_rows`` rows read at a time (a :class:`numpy.memmap` is streamed from
disk rather than loaded whole), and squared distances within rounding error of zero (below
``1e-12 * (||a_c||^2 + ||b_c||^2)``, :data:`ZERO_TOLERANCE`) set to exactly zero. Identical
inputs therefore get a distance of exactly 0, which the clustering relies on.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dnnsafety.distances import (
    ZERO_TOLERANCE,
    Reference,
    auto_chunk_rows,
    check_chunk_rows,
    row_blocks,
    self_distance_blocks,
)
from dnnsafety.exceptions import InvalidInputError

__all__ = [
    "ZERO_TOLERANCE",
    "auto_chunk_rows",
    "check_distance_matrix",
    "condensed_distances",
    "pairwise_distances",
    "row_max_normalise",
]


def _as_rows(x: object, what: str) -> np.ndarray:
    """Return ``x`` as a 2-D numeric array view (trailing dimensions flattened)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.ndim < 2:
        raise InvalidInputError(
            f"{what} must have one row per input (shape N x D, or N x C x H x W); got an array "
            f"of shape {arr.shape}. Reshape a single input to (1, -1)."
        )
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InvalidInputError(
            f"{what} must hold real numbers; got dtype {arr.dtype}. Convert it with "
            "x.astype(np.float32)."
        )
    if arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)
    return arr


def _blocks(
    rows: np.ndarray, chunk_rows: int | None, what: str
) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
    """The engine's upper-triangle distance blocks of ``rows``, streamed (no cache)."""
    chunk = check_chunk_rows(chunk_rows, rows.shape[1])
    if rows.shape[0] == 0:
        return iter(())
    return self_distance_blocks(Reference(rows, what, chunk, cache=False))


def pairwise_distances(x: np.ndarray, *, chunk_rows: int | None = None) -> np.ndarray:
    """Euclidean distances between all rows of ``x``.

    Parameters
    ----------
    x
        ``N x D`` array or :class:`numpy.memmap` of real numbers (any float or int dtype);
        higher-dimensional arrays (``N x C x H x W`` heatmaps) are flattened per row.
        A memmap is read ``chunk_rows`` rows at a time, never whole.
    chunk_rows
        Rows per block; ``None`` picks blocks of about 64 MiB (see :func:`auto_chunk_rows`).

    Returns
    -------
    numpy.ndarray
        ``N x N`` float64 matrix: symmetric, exactly zero on the diagonal and between identical
        rows, never negative.

    Raises
    ------
    InvalidInputError
        If ``x`` is not 2-D (after flattening), not numeric or holds NaN or infinity.
    """
    rows = _as_rows(x, "pairwise_distances input")
    n = rows.shape[0]
    out = np.empty((n, n), dtype=np.float64)
    for r0, r1, c0, c1, block in _blocks(rows, chunk_rows, "pairwise_distances input"):
        out[r0:r1, c0:c1] = block
        if c0 != r0:
            out[c0:c1, r0:r1] = block.T
    return out


def condensed_distances(x: np.ndarray, *, chunk_rows: int | None = None) -> np.ndarray:
    """Euclidean distances between the rows of ``x`` in condensed form.

    The layout is that of :func:`scipy.spatial.distance.pdist`: the upper triangle of the
    distance matrix, row by row, without the diagonal. Half the memory of
    :func:`pairwise_distances` and BLAS speed (``pdist`` does not use matrix products).

    Parameters
    ----------
    x
        ``N x D`` array or memmap, as for :func:`pairwise_distances`.
    chunk_rows
        Rows per block; ``None`` picks blocks of about 64 MiB.

    Returns
    -------
    numpy.ndarray
        1-D float64 array of length ``N * (N - 1) / 2``.

    Raises
    ------
    InvalidInputError
        If ``x`` is not 2-D (after flattening), not numeric or holds NaN or infinity.
    """
    rows = _as_rows(x, "condensed_distances input")
    n = rows.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    for r0, r1, c0, c1, block in _blocks(rows, chunk_rows, "condensed_distances input"):
        for i in range(r0, r1):
            j0 = max(c0, i + 1)
            if j0 >= c1:
                continue
            offset = n * i - i * (i + 1) // 2 - i - 1
            out[offset + j0 : offset + c1] = block[i - r0, j0 - c0 :]
    return out


def check_distance_matrix(d: object, *, chunk_rows: int | None = None) -> np.ndarray:
    """Validate a precomputed distance matrix and return it as a float64 array.

    Parameters
    ----------
    d
        Candidate ``N x N`` matrix of Euclidean distances.
    chunk_rows
        Rows checked at a time (the checks never build an ``N x N`` temporary).

    Returns
    -------
    numpy.ndarray
        ``d`` itself when it already is a float64 array, else a float64 copy.

    Raises
    ------
    InvalidInputError
        If ``d`` is not square, not finite, negative somewhere, not zero on the diagonal or
        not symmetric (relative tolerance 1e-9).
    """
    arr = d if isinstance(d, np.ndarray) else np.asarray(d)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InvalidInputError(
            f"A precomputed distance matrix must be square (N x N); got shape {arr.shape}. "
            "Pass the features with precomputed=False to have the distances computed."
        )
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"Distances must be real numbers; got dtype {arr.dtype}.")
    arr = np.asarray(arr, dtype=np.float64)
    n = arr.shape[0]
    chunk = check_chunk_rows(chunk_rows, n)
    scale = float(np.max(arr)) if n else 0.0
    for r0, r1 in row_blocks(n, chunk):
        block = arr[r0:r1]
        if not np.isfinite(block).all():
            raise InvalidInputError("The distance matrix contains NaN or infinity; repair it.")
        if (block < 0).any():
            raise InvalidInputError(
                "The distance matrix has negative entries; distances must be >= 0."
            )
        if not np.allclose(block, arr[:, r0:r1].T, rtol=1e-9, atol=1e-12 * scale):
            raise InvalidInputError(
                "The distance matrix is not symmetric; pass (d + d.T) / 2 if the asymmetry "
                "is rounding noise."
            )
    if n and np.any(np.diagonal(arr) != 0):
        raise InvalidInputError(
            "The distance matrix must be zero on the diagonal; set np.fill_diagonal(d, 0)."
        )
    return arr


def row_max_normalise(d: np.ndarray) -> np.ndarray:
    """Divide every row of a distance matrix by that row's maximum (HUDD's ``D^``).

    Parameters
    ----------
    d
        ``N x N`` non-negative distance matrix.

    Returns
    -------
    numpy.ndarray
        New float64 matrix ``D^[i, j] = D[i, j] / max_j D[i, j]``, with values in ``[0, 1]``.
        A row whose maximum is 0 (an input at distance 0 from every input, which happens only
        when all inputs are identical) becomes a row of zeros instead of NaN. The result is
        in general *not* symmetric.

    Raises
    ------
    InvalidInputError
        If ``d`` is not a square matrix.
    """
    arr = np.asarray(d, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InvalidInputError(
            f"row_max_normalise expects a square N x N distance matrix; got shape {arr.shape}."
        )
    if arr.shape[0] == 0:
        return arr.copy()
    row_max = arr.max(axis=1)
    scale = np.divide(1.0, row_max, out=np.zeros_like(row_max), where=row_max > 0)
    return arr * scale[:, None]
