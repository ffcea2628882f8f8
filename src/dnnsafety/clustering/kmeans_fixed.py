"""k-means with a fixed number of clusters (registered as ``kmeans-fixed``).

Where :mod:`.kmeans` chooses ``k`` by silhouette (few, well-separated clusters: root causes),
bias discovery over-clusters on purpose, as Domino does with its fixed number of slices: a
small under-represented group only shows up as its own cluster when ``k`` is large enough, and
a well-represented region split into several clusters costs nothing (none of them is flagged).
Identical rows weigh as often as they occur (``sample_weight``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dnnsafety._validation import check_int_param as check_int
from dnnsafety.clustering.base import CLUSTERERS, Clusterer
from dnnsafety.types import JSONValue


@CLUSTERERS.register("kmeans-fixed", help="k-means with a fixed k (over-clustering, as Domino).")
class FixedKMeansClusterer(Clusterer):
    """k-means (k-means++ initialisation) with ``n_clusters`` clusters.

    Parameters
    ----------
    n_clusters
        Number of clusters ``k`` (at most the number of distinct rows).
    n_init
        k-means restarts (best inertia kept).
    random_state
        Random state of k-means.
    """

    _test_params: ClassVar[dict[str, Any]] = {"n_clusters": 3, "n_init": 2}

    def __init__(self, *, n_clusters: int = 30, n_init: int = 3, random_state: int = 0) -> None:
        super().__init__(random_state=random_state)
        self.n_clusters = n_clusters
        self.n_init = n_init

    def _checked_params(self) -> dict[str, JSONValue]:
        return {
            **super()._checked_params(),
            "n_clusters": check_int(self, "n_clusters", self.n_clusters, 1),
            "n_init": check_int(self, "n_init", self.n_init, 1),
        }

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        from sklearn.cluster import KMeans

        k = min(int(str(config["n_clusters"])), len(arr))
        model = KMeans(
            n_clusters=k, n_init=int(str(config["n_init"])), random_state=self.random_state
        )
        labels = np.asarray(model.fit_predict(arr, sample_weight=weights), dtype=np.int64)
        return labels, {"k": k, "reason": "fixed"}, []


__all__ = ["FixedKMeansClusterer"]
