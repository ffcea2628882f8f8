"""Agglomerative Ward linkage with ``k`` chosen by silhouette (registered as ``ward``).

Like k-means it cannot answer "one cluster" for ``N >= 3`` distinct rows. It is built on all
rows, where identical rows merge first, which is Ward with weights.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dnnsafety.clustering.base import CLUSTERERS
from dnnsafety.clustering.hudd import ward_tree
from dnnsafety.clustering.silhouette import SilhouetteKClusterer
from dnnsafety.types import JSONValue


@CLUSTERERS.register("ward", help="Agglomerative Ward linkage, k in 2..30 by silhouette.")
class WardClusterer(SilhouetteKClusterer):
    """Agglomerative clustering with Ward linkage (Euclidean), ``k`` chosen by silhouette.

    The tree is built once; the cut into exactly ``k`` clusters is read from it for every
    candidate (:class:`~dnnsafety.clustering.hudd.WardTree`). Memory grows as ``N^2``.

    Parameters
    ----------
    max_k
        Largest ``k`` tried (also at most ``N - 1`` and the number of distinct rows).
    silhouette_sample_size
        Rows used for the silhouette (see the module docstring).
    random_state
        Seed of the silhouette subsample (Ward itself is deterministic).
    """

    def _labels_factory(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> Callable[[int], np.ndarray]:
        # Ward has no weights, but on all rows identical ones merge first (at height 0), which
        # is Ward with weights; each distinct row then reads the label of its first copy
        first = np.concatenate(([0], np.cumsum(weights)[:-1])).astype(np.int64)
        tree = ward_tree(np.repeat(arr, weights, axis=0), optimal_ordering=False)

        def labels_for_k(k: int) -> np.ndarray:
            return tree.labels(k)[first]

        return labels_for_k


__all__ = ["WardClusterer"]
