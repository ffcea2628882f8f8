"""Ward linkage of the distance profiles, and its cuts into exactly ``k`` clusters.

See the package docstring (:mod:`dnnsafety.clustering.hudd`, "Cuts" and "Optimal leaf ordering").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnnsafety.clustering.distances import condensed_distances
from dnnsafety.clustering.indices import canonical_labels
from dnnsafety.exceptions import InvalidInputError

OLO_AUTO_MAX_N = 500


@dataclass(frozen=True, eq=False)
class WardTree:
    """A linkage with the bookkeeping to cut it at any number of clusters.

    Every subtree covers a contiguous range of the leaf order, so a cluster is stored as
    ``(start, size)`` in that order. Level ``L`` = the first ``L`` merges done = ``N - L``
    clusters; node ``j`` exists at level ``L`` when ``born[j] <= L < dies[j]``.

    Attributes
    ----------
    n
        Number of leaves (inputs).
    linkage
        SciPy linkage matrix.
    order
        Leaf order.
    start, size, born, dies
        Per node (``2N - 1``: leaves, then merge ``t`` as node ``N + t``).
    """

    n: int
    linkage: np.ndarray
    order: np.ndarray
    start: np.ndarray
    size: np.ndarray
    born: np.ndarray
    dies: np.ndarray

    @classmethod
    def from_linkage(cls, z: np.ndarray) -> WardTree:
        """Build the bookkeeping for a SciPy linkage matrix ``z`` (``(N-1) x 4``)."""
        from scipy.cluster.hierarchy import leaves_list

        n = z.shape[0] + 1
        order = leaves_list(z).astype(np.int64)
        left = z[:, 0].astype(np.int64)
        right = z[:, 1].astype(np.int64)
        start = np.empty(2 * n - 1, dtype=np.int64)
        start[order] = np.arange(n)
        for t in range(n - 1):
            start[n + t] = min(start[left[t]], start[right[t]])
        size = np.ones(2 * n - 1, dtype=np.int64)
        size[n:] = z[:, 3].astype(np.int64)
        born = np.zeros(2 * n - 1, dtype=np.int64)
        born[n:] = np.arange(1, n)
        dies = np.full(2 * n - 1, n, dtype=np.int64)
        dies[left] = np.arange(1, n)
        dies[right] = np.arange(1, n)
        return cls(n, z, order, start, size, born, dies)

    def nodes_at(self, k: int) -> np.ndarray:
        """Nodes forming the cut into ``k`` clusters, in leaf order."""
        if not 1 <= k <= self.n:
            raise InvalidInputError(
                f"Cannot cut {self.n} inputs into {k} clusters; use 1..{self.n}."
            )
        level = self.n - k
        nodes = np.flatnonzero((self.born <= level) & (self.dies > level))
        return nodes[np.argsort(self.start[nodes])]

    def members(self, node: int) -> np.ndarray:
        """Input indices under ``node``."""
        s = int(self.start[node])
        return self.order[s : s + int(self.size[node])]

    def labels(self, k: int) -> np.ndarray:
        """Canonical labels of the cut into exactly ``k`` clusters (ties never merge more)."""
        nodes = self.nodes_at(k)
        in_leaf_order = np.repeat(np.arange(nodes.size), self.size[nodes])
        lab = np.empty(self.n, dtype=np.int64)
        lab[self.order] = in_leaf_order
        return canonical_labels(lab)


def ward_tree(profiles: np.ndarray, *, optimal_ordering: bool | None = None) -> WardTree:
    """Ward linkage of the rows of ``profiles`` (Euclidean).

    Distances between rows are computed with BLAS (:func:`.condensed_distances`) and handed
    to SciPy's Ward linkage, which then runs in ``O(N^2)``.

    Parameters
    ----------
    profiles
        ``N x M`` matrix, one row per input (HUDD: the rows of ``D^``), ``N >= 2``.
    optimal_ordering
        Apply SciPy's optimal leaf ordering; ``None`` = only when ``N <= 500``.

    Returns
    -------
    WardTree
        The tree and its cut bookkeeping.
    """
    from scipy.cluster.hierarchy import linkage, optimal_leaf_ordering

    n = profiles.shape[0]
    if n < 2:
        raise InvalidInputError(f"Ward linkage needs at least 2 inputs; got {n}.")
    y = condensed_distances(profiles)
    z = linkage(y, method="ward")
    use_olo = n <= OLO_AUTO_MAX_N if optimal_ordering is None else optimal_ordering
    if use_olo:
        z = optimal_leaf_ordering(z, y)
    return WardTree.from_linkage(z)
