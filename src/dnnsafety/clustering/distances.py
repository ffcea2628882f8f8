"""Euclidean distance matrices for HUDD clustering, computed in row blocks.

HUDD compares error-inducing inputs through the Euclidean distance between their flattened
heatmaps (METHOD.md §2, step 3). The inputs are large (``N x D`` with ``D`` in the thousands),
so the distances are computed block by block with matrix products, using

``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b``

on rows centred by the column mean (centring removes the common offset and with it most of
the cancellation of this identity). Only ``chunk_rows`` rows are read at a time, so a
:class:`numpy.memmap` is streamed from disk rather than loaded whole. Products are taken in
float64 whatever the input dtype.

Squared distances that are within rounding error of zero are set to exactly zero: any value
below ``1e-12 * (||a_c||^2 + ||b_c||^2)`` (``a_c``, ``b_c`` the centred rows), i.e. distances
below about one millionth of the data's spread, far below the resolution of float32 inputs.
Identical inputs therefore get a distance of exactly 0, which the clustering relies on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from dnnsafety.exceptions import InvalidInputError

logger = logging.getLogger(__name__)

ZERO_TOLERANCE = 1e-12
"""Relative tolerance under which a squared distance is treated as exactly zero."""

_BLOCK_ELEMENTS = 2**23  # float64 elements per row block (64 MiB)


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


def _check_chunk_rows(chunk_rows: int | None, n_columns: int) -> int:
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


def _bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _load(x: np.ndarray, r0: int, r1: int, what: str) -> np.ndarray:
    block = np.asarray(x[r0:r1], dtype=np.float64)
    if not np.isfinite(block).all():
        bad = r0 + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        raise InvalidInputError(
            f"{what} row {bad} contains NaN or infinity. Remove or repair that input first."
        )
    return block


def _centre_and_norms(x: np.ndarray, chunk: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and squared norms of the centred rows, in two streamed passes."""
    n, dim = x.shape
    bounds = _bounds(n, chunk)
    total = np.zeros(dim, dtype=np.float64)
    for r0, r1 in bounds:
        total += _load(x, r0, r1, what).sum(axis=0)
    mean = total / max(n, 1)
    sq = np.empty(n, dtype=np.float64)
    for r0, r1 in bounds:
        block = _load(x, r0, r1, what) - mean
        sq[r0:r1] = np.einsum("ij,ij->i", block, block)
    return mean, sq


def _distance_blocks(
    x: np.ndarray, chunk: int, what: str
) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
    """Yield ``(r0, r1, c0, c1, block)`` for the upper block triangle (``c0 >= r0``)."""
    n = x.shape[0]
    mean, sq = _centre_and_norms(x, chunk, what)
    bounds = _bounds(n, chunk)
    for i, (r0, r1) in enumerate(bounds):
        a = _load(x, r0, r1, what) - mean
        for c0, c1 in bounds[i:]:
            b = a if c0 == r0 else _load(x, c0, c1, what) - mean
            block = a @ b.T
            block *= -2.0
            norms = sq[r0:r1, None] + sq[None, c0:c1]
            block += norms
            block[block <= ZERO_TOLERANCE * norms] = 0.0
            if c0 == r0:
                np.fill_diagonal(block, 0.0)
            np.sqrt(block, out=block)
            yield r0, r1, c0, c1, block


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
    chunk = _check_chunk_rows(chunk_rows, rows.shape[1])
    n = rows.shape[0]
    out = np.empty((n, n), dtype=np.float64)
    for r0, r1, c0, c1, block in _distance_blocks(rows, chunk, "pairwise_distances input"):
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
    chunk = _check_chunk_rows(chunk_rows, rows.shape[1])
    n = rows.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    for r0, r1, c0, c1, block in _distance_blocks(rows, chunk, "condensed_distances input"):
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
    chunk = _check_chunk_rows(chunk_rows, n)
    scale = float(np.max(arr)) if n else 0.0
    for r0, r1 in _bounds(n, chunk):
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
