"""The curves over the candidate cuts: HUDD's WICD(k) and the silhouette.

See the package docstring (:mod:`dnnsafety.clustering.hudd`, "Pairs of D^").
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from dnnsafety.clustering.distances import auto_chunk_rows
from dnnsafety.clustering.hudd.ward import WardTree
from dnnsafety.clustering.indices import silhouette_from_sums
from dnnsafety.exceptions import ConfigError

PairRule = Literal["mean", "upper"]


def symmetric_pairs(dh: np.ndarray, rule: PairRule, *, chunk_rows: int | None = None) -> np.ndarray:
    """Turn ``D^`` *in place* into the symmetric pair-value matrix used by WICD.

    Parameters
    ----------
    dh
        ``N x N`` float64 matrix (overwritten).
    rule
        ``"mean"``: ``(D^[i,j] + D^[j,i]) / 2``; ``"upper"``: ``D^[min(i,j), max(i,j)]``.
    chunk_rows
        Rows per block.

    Returns
    -------
    numpy.ndarray
        ``dh`` itself, now symmetric.
    """
    if rule not in ("mean", "upper"):
        raise ConfigError(f"The 'pair_rule' parameter must be 'mean' or 'upper'. Got {rule!r}.")
    n = dh.shape[0]
    chunk = chunk_rows or auto_chunk_rows(n)
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        diag = dh[r0:r1, r0:r1]
        if rule == "mean":
            diag[...] = (diag + diag.T) / 2.0
            upper = (dh[r0:r1, r1:] + dh[r1:, r0:r1].T) / 2.0
            dh[r0:r1, r1:] = upper
        else:
            diag[...] = np.triu(diag) + np.triu(diag, 1).T
            upper = dh[r0:r1, r1:]
        dh[r1:, r0:r1] = upper.T
    return dh


def wicd_curve(tree: WardTree, pairs: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """HUDD's WICD of the cut into each ``k`` of ``ks``, for all of them in ``O(N^2)``.

    The within-cluster pair sums are built up along the merge order: merging ``A`` and ``B``
    adds the sum of the ``A x B`` block, and every pair of inputs is in exactly one such
    block, so the whole curve costs one pass over the pairs.

    Parameters
    ----------
    tree
        The Ward tree.
    pairs
        ``N x N`` symmetric pair-value matrix (see :func:`symmetric_pairs`).
    ks
        Numbers of clusters, each in ``1..N``.

    Returns
    -------
    numpy.ndarray
        ``WICD(k)`` for each ``k`` of ``ks``.
    """
    n = tree.n
    ks = np.asarray(ks, dtype=np.int64)
    if ks.size == 0:
        return np.zeros(0)
    last_level = n - int(ks.min())
    z = tree.linkage
    within = np.zeros(2 * n - 1)
    for t in range(last_level):
        a, b = int(z[t, 0]), int(z[t, 1])
        cross = pairs[np.ix_(tree.members(a), tree.members(b))].sum()
        within[n + t] = within[a] + within[b] + cross
    size = tree.size.astype(np.float64)
    contribution = np.divide(
        2.0 * within, n * (size - 1.0), out=np.zeros_like(within), where=size >= 2
    )
    left = z[:last_level, 0].astype(np.int64)
    right = z[:last_level, 1].astype(np.int64)
    step = contribution[n : n + last_level] - contribution[left] - contribution[right]
    total = np.concatenate(([0.0], np.cumsum(step)))  # total at level L
    return total[n - ks] / ks


def silhouette_curve(
    tree: WardTree, d: np.ndarray, ks: np.ndarray, *, chunk_rows: int | None = None
) -> np.ndarray:
    """Mean silhouette on ``D`` of the cut into each ``k`` of ``ks``.

    Sums of distances from every input to every cluster are computed once for the finest cut
    (``O(N^2)``) and merged column by column going up the tree, so each further ``k`` costs
    ``O(N k)``.

    Parameters
    ----------
    tree
        The Ward tree.
    d
        ``N x N`` raw distance matrix.
    ks
        Numbers of clusters, each in ``2..N-1``.
    chunk_rows
        Rows of ``d`` processed at a time.

    Returns
    -------
    numpy.ndarray
        Silhouette per ``k`` (NaN for ``k`` outside ``2..N-1``).
    """
    n = tree.n
    ks = np.asarray(ks, dtype=np.int64)
    if ks.size == 0:
        return np.zeros(0)
    k_hi, k_lo = int(ks.max()), int(ks.min())
    nodes = tree.nodes_at(k_hi)
    col_of = np.full(2 * n - 1, -1, dtype=np.int64)
    col_of[nodes] = np.arange(nodes.size)
    sizes = tree.size[nodes].astype(np.float64)
    own = np.empty(n, dtype=np.int64)
    own[tree.order] = np.repeat(np.arange(nodes.size), tree.size[nodes])
    starts = tree.start[nodes]
    sums = np.empty((n, nodes.size))
    chunk = chunk_rows or auto_chunk_rows(n)
    for r0 in range(0, n, chunk):
        block = np.asarray(d[r0 : r0 + chunk], dtype=np.float64)[:, tree.order]
        sums[r0 : r0 + chunk] = np.add.reduceat(block, starts, axis=1)
    node_at = nodes.copy()
    result: dict[int, float] = {}
    z = tree.linkage
    for k in range(k_hi, k_lo - 1, -1):
        if 2 <= k <= n - 1:
            result[k] = float(np.mean(silhouette_from_sums(sums[:, :k], sizes[:k], own)))
        if k == k_lo:
            break
        t = n - k  # the merge taking k clusters to k - 1
        ca, cb = int(col_of[int(z[t, 0])]), int(col_of[int(z[t, 1])])
        keep, gone = min(ca, cb), max(ca, cb)
        sums[:, keep] += sums[:, gone]
        sizes[keep] += sizes[gone]
        own[own == gone] = keep
        col_of[n + t] = keep
        node_at[keep] = n + t
        last = k - 1
        if gone != last:
            sums[:, gone] = sums[:, last]
            sizes[gone] = sizes[last]
            own[own == last] = gone
            node_at[gone] = node_at[last]
            col_of[node_at[gone]] = gone
    return np.array([result.get(int(k), math.nan) for k in ks])
