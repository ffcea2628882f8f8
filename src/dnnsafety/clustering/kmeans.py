"""k-means with ``k`` chosen by silhouette (registered as ``kmeans``).

It cannot answer "one cluster" for ``N >= 3`` distinct rows: silhouette is undefined for
``k = 1``. Identical rows weigh as often as they occur (``sample_weight``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dnnsafety._validation import check_int_param as check_int
from dnnsafety.clustering.base import CLUSTERERS, DEFAULT_SILHOUETTE_SAMPLE
from dnnsafety.clustering.silhouette import SilhouetteKClusterer
from dnnsafety.types import JSONValue


@CLUSTERERS.register("kmeans", help="k-means, k in 2..30 by silhouette.")
class KMeansClusterer(SilhouetteKClusterer):
    """k-means (k-means++ initialisation) with ``k`` chosen by silhouette.

    Parameters
    ----------
    max_k
        Largest ``k`` tried (also at most ``N - 1`` and the number of distinct rows).
    n_init
        k-means restarts per ``k`` (best inertia kept).
    silhouette_sample_size
        Rows used for the silhouette (see the module docstring).
    random_state
        Random state of k-means and of the silhouette subsample.
    """

    def __init__(
        self,
        *,
        max_k: int = 30,
        n_init: int = 10,
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            max_k=max_k,
            silhouette_sample_size=silhouette_sample_size,
            random_state=random_state,
        )
        self.n_init = n_init

    def _checked_params(self) -> dict[str, JSONValue]:
        return {**super()._checked_params(), "n_init": check_int(self, "n_init", self.n_init, 1)}

    def _labels_factory(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> Callable[[int], np.ndarray]:
        from sklearn.cluster import KMeans

        def labels_for_k(k: int) -> np.ndarray:
            model = KMeans(
                n_clusters=k, n_init=int(config["n_init"]), random_state=self.random_state
            )
            return np.asarray(model.fit_predict(arr, sample_weight=weights), dtype=np.int64)

        return labels_for_k


__all__ = ["KMeansClusterer"]
