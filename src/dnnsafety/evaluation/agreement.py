"""How two root-cause analyses of the same errors agree: contingency table, ARI, matched pairs.

Two analyses of one run (e.g. the black-box default and the white-box HUDD) each partition the
same error-inducing inputs into root-cause clusters. :func:`compare_partitions` puts the two
partitions side by side:

* the **contingency table** (clusters of the first x clusters of the second, noise ``-1`` as
  its own row / column), counted over the errors both analysed;
* the **adjusted Rand index** (Hubert & Arabie, Journal of Classification 1985) over the
  errors both *clustered* (:func:`~dnnsafety.evaluation.clusters.cluster_agreement`): 1 for the
  same partition whatever the cluster ids, about 0 for independent ones;
* for each cluster of the first, its **best-matching** cluster of the second by the Jaccard
  index of their member sets, ``|A ∩ B| / |A ∪ B|`` (1: the same members).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnnsafety.evaluation.clusters import cluster_agreement

NOISE = -1


@dataclass(frozen=True)
class ClusterMatch:
    """The cluster of the second analysis that best matches one cluster of the first.

    Attributes
    ----------
    first, second
        Cluster ids in the first and the second analysis (``second = -1`` when no member of
        ``first`` is in any cluster of the second).
    shared
        Errors in both clusters.
    first_size, second_size
        Members of each cluster, counted over the errors both analyses analysed.
    jaccard
        ``shared / (first_size + second_size - shared)``, in [0, 1].
    """

    first: int
    second: int
    shared: int
    first_size: int
    second_size: int
    jaccard: float


@dataclass(frozen=True)
class PartitionComparison:
    """Two partitions of the same errors, side by side.

    Attributes
    ----------
    n_common
        Errors both analyses analysed (noise included).
    n_shared
        Errors both analyses put in a cluster (not noise): the ARI's inputs.
    ari
        Adjusted Rand index over the ``n_shared`` errors (NaN with fewer than two).
    first_ids, second_ids
        Row and column labels of :attr:`contingency`: the cluster ids, ascending, with noise
        (``-1``) last when present.
    contingency
        ``(len(first_ids), len(second_ids))`` counts of errors in both clusters.
    matches
        One :class:`ClusterMatch` per cluster of the first analysis (noise excluded), in
        ``first_ids`` order.
    """

    n_common: int
    n_shared: int
    ari: float
    first_ids: list[int]
    second_ids: list[int]
    contingency: np.ndarray
    matches: list[ClusterMatch]

    @property
    def mean_jaccard(self) -> float:
        """Mean best-match Jaccard over the first analysis's clusters (NaN without any)."""
        values = [m.jaccard for m in self.matches]
        return float(np.mean(values)) if values else float("nan")


def _ordered(ids: np.ndarray) -> list[int]:
    found = sorted(int(i) for i in np.unique(ids))
    return [i for i in found if i != NOISE] + ([NOISE] if NOISE in found else [])


def compare_partitions(first: dict[str, int], second: dict[str, int]) -> PartitionComparison:
    """Contingency table, ARI and best Jaccard matches of two analyses' clusters.

    Parameters
    ----------
    first, second
        Cluster id per error id (``-1``: noise), e.g. every analysed error of two
        ``clusters.json`` files. Errors only one of them analysed are left out.

    Returns
    -------
    PartitionComparison
        A permuted labelling of the same partition gives ARI 1 and every Jaccard 1;
        independent partitions give ARI about 0.
    """
    common = sorted(first.keys() & second.keys())
    a = np.array([first[k] for k in common], dtype=np.int64)
    b = np.array([second[k] for k in common], dtype=np.int64)
    rows, cols = _ordered(a), _ordered(b)
    row_of = {c: i for i, c in enumerate(rows)}
    col_of = {c: j for j, c in enumerate(cols)}
    table = np.zeros((len(rows), len(cols)), dtype=np.int64)
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        table[row_of[x], col_of[y]] += 1
    matches = []
    col_sizes = table.sum(axis=0)
    for cid in rows:
        if cid == NOISE:
            continue
        i = row_of[cid]
        size = int(table[i].sum())
        best = ClusterMatch(cid, NOISE, 0, size, 0, 0.0)
        for cj in cols:
            if cj == NOISE:
                continue
            j = col_of[cj]
            shared = int(table[i, j])
            union = size + int(col_sizes[j]) - shared
            jac = shared / union if union else 0.0
            if shared and jac > best.jaccard:
                best = ClusterMatch(cid, cj, shared, size, int(col_sizes[j]), jac)
        matches.append(best)
    ari = cluster_agreement(
        {k: int(v) for k, v in zip(common, a.tolist(), strict=True)},
        {k: int(v) for k, v in zip(common, b.tolist(), strict=True)},
    )
    return PartitionComparison(
        n_common=len(common),
        n_shared=ari.n_shared,
        ari=ari.ari,
        first_ids=rows,
        second_ids=cols,
        contingency=table,
        matches=matches,
    )
