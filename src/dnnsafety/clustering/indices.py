"""Internal clustering indices computed from a distance matrix.

Everything here needs only the ``N x N`` Euclidean distance matrix ``D`` and the labels; it
is computed in one streamed pass over row blocks of ``D`` (no ``N x N`` temporaries).

Indices (``K`` = number of clusters, ``n_C`` = size of cluster ``C``):

``wicd``
    HUDD's weighted intra-cluster distance
    ``(1/K) * sum_{C: n_C >= 2} (n_C / N) * mean_{i<j in C} D[i, j]``; lower is better.
``icd``
    Unweighted mean, over clusters with at least two members, of the mean pairwise
    distance inside the cluster; NaN when every cluster is a singleton.
``silhouette``
    Mean silhouette coefficient (singletons score 0), identical to
    ``sklearn.metrics.silhouette_score(D, labels, metric="precomputed")``; NaN unless
    ``2 <= K <= N - 1``. Higher is better, scale-free.
``dunn``
    Smallest distance between members of different clusters divided by the largest
    distance inside one cluster; ``inf`` when all clusters are points, NaN when ``K < 2``.
``davies_bouldin``
    Computed from ``D`` alone with the Euclidean centroid identities
    ``||x_i - c_C||^2 = mean_{j in C} D[i,j]^2 - sum_{j,l in C} D[j,l]^2 / (2 n_C^2)`` and
    ``||c_A - c_B||^2 = mean_{i in A, j in B} D[i,j]^2 - (the two within terms)``, so it equals
    ``sklearn.metrics.davies_bouldin_score`` on the features that produced ``D`` without
    needing them. NaN unless ``2 <= K <= N - 1``. Lower is better.
``n_clusters``, ``n_singletons``
    Counts, as floats so that the mapping has one value type.
"""

from __future__ import annotations

import math

import numpy as np

from dnnsafety.clustering.distances import auto_chunk_rows
from dnnsafety.exceptions import InvalidInputError

INDEX_NAMES = (
    "wicd",
    "icd",
    "silhouette",
    "dunn",
    "davies_bouldin",
    "n_clusters",
    "n_singletons",
)


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters ``0..K-1`` by decreasing size, ties by their smallest member index.

    Parameters
    ----------
    labels
        Integer cluster label per input (any values).

    Returns
    -------
    numpy.ndarray
        int64 labels; cluster 0 is the largest. The numbering depends only on the partition,
        not on the original label values.
    """
    lab = np.asarray(labels)
    if lab.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(lab, return_inverse=True)
    inverse = inverse.reshape(-1)
    k = int(inverse.max()) + 1
    sizes = np.bincount(inverse, minlength=k)
    first = np.full(k, lab.size, dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(lab.size, dtype=np.int64))
    order = np.lexsort((first, -sizes))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k, dtype=np.int64)
    return rank[inverse]


def silhouette_from_sums(sums: np.ndarray, sizes: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Silhouette of each input from its distance sums to every cluster.

    Parameters
    ----------
    sums
        ``M x K``: ``sums[i, c]`` = sum of distances from input ``i`` to the members of ``c``.
    sizes
        ``K`` cluster sizes.
    own
        ``M`` cluster index of each input.

    Returns
    -------
    numpy.ndarray
        ``M`` silhouette values; 0 for members of singletons and where ``a = b = 0``
        (scikit-learn's conventions).
    """
    m, k = sums.shape
    rows = np.arange(m)
    n_own = sizes[own]
    a = sums[rows, own] / np.maximum(n_own - 1, 1)
    if k < 2:
        return np.zeros(m, dtype=np.float64)
    means = sums / sizes[None, :]
    means[rows, own] = np.inf
    b = means.min(axis=1)
    denom = np.maximum(a, b)
    s = np.divide(b - a, denom, out=np.zeros(m, dtype=np.float64), where=denom > 0)
    s[n_own <= 1] = 0.0
    return s


def _check_labels(d: np.ndarray, labels: np.ndarray) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != d.shape[0]:
        raise InvalidInputError(
            f"Expected one label per row of the {d.shape[0]} x {d.shape[0]} distance matrix; "
            f"got labels of shape {lab.shape}."
        )
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise InvalidInputError(f"Cluster labels must be integers; got dtype {lab.dtype}.")
    return lab


def cluster_indices(
    d: np.ndarray, labels: np.ndarray, *, chunk_rows: int | None = None
) -> dict[str, float]:
    """Internal indices of one partition, from its distance matrix.

    Parameters
    ----------
    d
        ``N x N`` symmetric Euclidean distance matrix (zero diagonal).
    labels
        Integer cluster label per input (any values; they are renumbered internally).
    chunk_rows
        Rows of ``d`` processed at a time; ``None`` picks blocks of about 64 MiB.

    Returns
    -------
    dict of str to float
        The indices named in :data:`INDEX_NAMES` (see the module docstring for definitions).
        Undefined values are NaN.

    Raises
    ------
    InvalidInputError
        If ``labels`` does not hold one integer per row of ``d``.
    """
    dist = np.asarray(d, dtype=np.float64)
    lab = canonical_labels(_check_labels(dist, labels))
    n = lab.shape[0]
    nan = math.nan
    if n == 0:
        return dict.fromkeys(INDEX_NAMES, nan) | {"n_clusters": 0.0, "n_singletons": 0.0}
    k = int(lab.max()) + 1
    sizes = np.bincount(lab, minlength=k).astype(np.float64)
    perm = np.argsort(lab, kind="stable")
    starts = np.concatenate(([0], np.cumsum(np.bincount(lab, minlength=k))[:-1]))
    sum1 = np.zeros((k, k))
    sum2 = np.zeros((k, k))
    own_sq = np.empty(n)
    sil = np.empty(n)
    intra_max = 0.0
    inter_min = math.inf
    chunk = chunk_rows or auto_chunk_rows(n)
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        own = lab[r0:r1]
        rows = np.arange(r1 - r0)
        block = dist[r0:r1][:, perm]
        by_cluster = np.add.reduceat(block, starts, axis=1)
        by_cluster_sq = np.add.reduceat(block * block, starts, axis=1)
        intra_max = max(
            intra_max, float(np.maximum.reduceat(block, starts, axis=1)[rows, own].max())
        )
        if k > 1:
            mins = np.minimum.reduceat(block, starts, axis=1)
            mins[rows, own] = np.inf
            inter_min = min(inter_min, float(mins.min()))
        np.add.at(sum1, own, by_cluster)
        np.add.at(sum2, own, by_cluster_sq)
        own_sq[r0:r1] = by_cluster_sq[rows, own]
        sil[r0:r1] = silhouette_from_sums(by_cluster, sizes, own)

    within = np.diagonal(sum1)  # ordered pairs: twice the sum over i < j
    multi = sizes >= 2
    pair_means = within[multi] / (sizes[multi] * (sizes[multi] - 1))
    result = dict.fromkeys(INDEX_NAMES, nan)
    result["n_clusters"] = float(k)
    result["n_singletons"] = float(np.sum(sizes == 1))
    result["wicd"] = float(np.sum(sizes[multi] / n * pair_means) / k)
    if multi.any():
        result["icd"] = float(np.mean(pair_means))
    if 2 <= k <= n - 1:
        result["silhouette"] = float(np.mean(sil))
        result["davies_bouldin"] = _davies_bouldin(lab, sizes, sum2, own_sq)
    if k >= 2:
        if intra_max > 0:
            result["dunn"] = inter_min / intra_max
        else:
            result["dunn"] = math.inf if inter_min > 0 else nan
    return result


def _davies_bouldin(
    lab: np.ndarray, sizes: np.ndarray, sum2: np.ndarray, own_sq: np.ndarray
) -> float:
    """Davies-Bouldin index from sums of squared distances (see the module docstring)."""
    within_sq = np.diagonal(sum2) / (2.0 * sizes**2)  # per cluster: T_C / (2 n_C^2)
    to_centroid_sq = own_sq / sizes[lab] - within_sq[lab]
    to_centroid = np.sqrt(np.maximum(to_centroid_sq, 0.0))
    spread = np.bincount(lab, weights=to_centroid, minlength=sizes.size) / sizes
    centre_sq = sum2 / np.outer(sizes, sizes) - within_sq[:, None] - within_sq[None, :]
    centre = np.sqrt(np.maximum(centre_sq, 0.0))
    np.fill_diagonal(centre, 0.0)
    if np.allclose(spread, 0) or np.allclose(centre, 0):
        return 0.0
    centre[centre == 0] = np.inf
    ratio = (spread[:, None] + spread[None, :]) / centre
    return float(np.mean(ratio.max(axis=1)))


def wicd_of_labels(pairs: np.ndarray, labels: np.ndarray) -> float:
    """HUDD's WICD of one partition on a symmetric pair-value matrix.

    Parameters
    ----------
    pairs
        ``N x N`` symmetric matrix whose ``[i, j]`` is the value of the pair ``{i, j}``
        (the raw distances, or a symmetrised ``D^``).
    labels
        Integer cluster label per input.

    Returns
    -------
    float
        ``(1/K) * sum_{C: n_C >= 2} (n_C / N) * mean_{i<j in C} pairs[i, j]``; NaN if ``N = 0``.
    """
    arr = np.asarray(pairs, dtype=np.float64)
    lab = canonical_labels(_check_labels(arr, labels))
    n = lab.shape[0]
    if n == 0:
        return math.nan
    k = int(lab.max()) + 1
    total = 0.0
    for c in range(k):
        members = np.flatnonzero(lab == c)
        m = members.size
        if m >= 2:
            block = arr[np.ix_(members, members)]
            ordered_pairs_sum = float(block.sum() - np.trace(block))
            total += (m / n) * ordered_pairs_sum / (m * (m - 1))
    return total / k
