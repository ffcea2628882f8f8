"""Silhouette on a fixed subsample, and the clusterers that choose ``k`` by it.

Every silhouette is computed on the same random subsample of at most
``silhouette_sample_size`` rows (seeded), from one distance matrix, so that the candidates
are compared on equal terms and the cost stays bounded for large ``N``. A row stands for as
many inputs as its weight (identical inputs are clustered once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from dnnsafety._validation import check_int_param as check_int
from dnnsafety.clustering.base import DEFAULT_SILHOUETTE_SAMPLE, Clusterer
from dnnsafety.clustering.indices import silhouette_from_sums
from dnnsafety.types import JSONValue


class SilhouetteScorer:
    """Mean silhouette of partitions of ``X``, on one fixed subsample.

    The pairwise Euclidean distances of at most ``sample_size`` rows (drawn once, seeded)
    are computed once; every partition is then scored on those rows, leaving out noise.

    Parameters
    ----------
    x
        ``N x d`` data (validated float64).
    sample_size
        Largest number of rows used; all rows when ``N <= sample_size``.
    seed
        Seed of the subsample.
    weights
        How many inputs each row stands for (identical inputs kept once); ``None`` = 1 each.
        The score is then the silhouette of the data with every row repeated that often.
    """

    def __init__(
        self, x: np.ndarray, *, sample_size: int, seed: int, weights: np.ndarray | None = None
    ) -> None:
        from sklearn.metrics import pairwise_distances

        n = x.shape[0]
        if n > sample_size:
            rng = np.random.default_rng(seed)
            self.index = np.sort(rng.choice(n, size=sample_size, replace=False))
        else:
            self.index = np.arange(n)
        # Whether the subsample is the whole data (then ``distances`` is ``N x N``, in order).
        self.covers_all = n <= sample_size
        self.distances = pairwise_distances(x[self.index])
        np.fill_diagonal(self.distances, 0.0)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self.weights = w[self.index]

    def __call__(self, labels: np.ndarray) -> float:
        """Mean silhouette of the non-noise sampled rows; NaN unless ``2 <= K <= M - 1``.

        ``M`` counts inputs, i.e. the weights of the non-noise sampled rows.
        """
        lab = np.asarray(labels)[self.index]
        keep = lab >= 0
        clusters, own = np.unique(lab[keep], return_inverse=True)
        k = clusters.size
        w = self.weights[keep]
        m = float(w.sum())
        if not 2 <= k <= m - 1:
            return math.nan
        d = self.distances[np.ix_(keep, keep)] if keep.sum() < lab.size else self.distances
        onehot = np.zeros((own.size, k))
        onehot[np.arange(own.size), own] = w
        sums = d @ onehot
        sizes = onehot.sum(axis=0)
        s = silhouette_from_sums(sums, sizes, own.reshape(-1))
        return float(np.dot(s, w) / m)


def search_k_by_silhouette(
    labels_for_k: Callable[[int], np.ndarray], ks: Sequence[int], scorer: SilhouetteScorer
) -> tuple[int, np.ndarray, list[dict[str, JSONValue]], bool]:
    """Try every ``k`` and keep the partition with the highest silhouette.

    Parameters
    ----------
    labels_for_k
        Partition of the data into ``k`` clusters.
    ks
        Candidate numbers of clusters (increasing, non-empty).
    scorer
        Silhouette of a partition.

    Returns
    -------
    tuple
        ``(k, labels, table, scored)``: the chosen ``k`` (smallest on ties), its labels, one
        ``{"k", "silhouette"}`` row per candidate, and whether any silhouette was defined
        (else the first candidate is returned).
    """
    best_k, best_labels, best_score = -1, np.zeros(0, dtype=np.int64), -math.inf
    first: np.ndarray | None = None
    table: list[dict[str, JSONValue]] = []
    for k in ks:
        labels = labels_for_k(int(k))
        if first is None:
            first = labels
        score = scorer(labels)
        table.append({"k": int(k), "silhouette": None if math.isnan(score) else score})
        if not math.isnan(score) and score > best_score:
            best_k, best_labels, best_score = int(k), labels, score
    if best_k < 0:
        if first is None:
            raise ValueError("search_k_by_silhouette needs at least one candidate k")
        return int(ks[0]), first, table, False
    return best_k, best_labels, table, True


class SilhouetteKClusterer(Clusterer):
    """Base of the clusterers whose ``k`` is chosen by silhouette (k-means, Ward).

    ``k`` runs over ``2..min(max_k, N - 1, distinct rows)``; the highest silhouette wins
    (smallest ``k`` on ties). A subclass writes only :meth:`_labels_factory`: the partition
    into ``k`` clusters.

    Parameters
    ----------
    max_k
        Largest ``k`` tried.
    silhouette_sample_size
        Rows used for the silhouette (see :class:`SilhouetteScorer`).
    random_state
        Seed of the silhouette subsample (and of the clusterer, if it is random).
    """

    def __init__(
        self,
        *,
        max_k: int = 30,
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state=random_state)
        self.max_k = max_k
        self.silhouette_sample_size = silhouette_sample_size

    def _checked_params(self) -> dict[str, JSONValue]:
        return {
            **super()._checked_params(),
            "max_k": check_int(self, "max_k", self.max_k, 2),
            "silhouette_sample_size": check_int(
                self, "silhouette_sample_size", self.silhouette_sample_size, 3
            ),
        }

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        n = int(weights.sum())
        hi = min(int(config["max_k"]), n - 1, arr.shape[0])
        ks = list(range(2, hi + 1))
        scorer = SilhouetteScorer(
            arr,
            sample_size=int(config["silhouette_sample_size"]),
            seed=int(self.random_state),
            weights=weights,
        )
        k, labels, table, scored = search_k_by_silhouette(
            self._labels_factory(arr, config, weights), ks, scorer
        )
        best = max(
            (row["silhouette"] for row in table if row["silhouette"] is not None), default=None
        )
        chosen = {"k": k, "silhouette": best, "reason": "silhouette" if scored else "no-silhouette"}
        return labels, chosen, table

    def _labels_factory(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> Callable[[int], np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract


__all__ = ["SilhouetteKClusterer", "SilhouetteScorer", "search_k_by_silhouette"]
