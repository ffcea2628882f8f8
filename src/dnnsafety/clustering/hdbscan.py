"""scikit-learn's HDBSCAN (excess-of-mass selection; registered as ``hdbscan``); noise is -1.

HDBSCAN has no sample weights, so it sees each distinct row once.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from dnnsafety._validation import check_bool_param
from dnnsafety._validation import check_int_param as check_int
from dnnsafety.clustering.base import CLUSTERERS, Clusterer
from dnnsafety.types import JSONValue


@CLUSTERERS.register("hdbscan", help="HDBSCAN (scikit-learn), noise kept as -1.")
class HDBSCANClusterer(Clusterer):
    """HDBSCAN (scikit-learn's implementation, excess-of-mass cluster selection).

    It takes no sample weights, so it clusters the distinct rows, each counted once; ``N``
    below is their number.

    Parameters
    ----------
    min_cluster_size
        Smallest cluster; ``None`` = ``max(5, ceil(N / 100))``, at most ``N``.
    min_samples
        Neighbourhood size of the core distance; ``None`` = ``min_cluster_size``.
    allow_single_cluster
        Let HDBSCAN return one cluster (otherwise it splits or calls everything noise).
    random_state
        Unused (HDBSCAN is deterministic); accepted so that every clusterer takes it.
    """

    def __init__(
        self,
        *,
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        allow_single_cluster: bool = False,
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state=random_state)
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.allow_single_cluster = allow_single_cluster

    def _checked_params(self) -> dict[str, JSONValue]:
        if self.min_cluster_size is not None:
            check_int(self, "min_cluster_size", self.min_cluster_size, 2)
        if self.min_samples is not None:
            check_int(self, "min_samples", self.min_samples, 1)
        check_bool_param(self, "allow_single_cluster", self.allow_single_cluster)
        return {**super()._checked_params(), "allow_single_cluster": self.allow_single_cluster}

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        from sklearn.cluster import HDBSCAN

        n = arr.shape[0]  # HDBSCAN takes no weights: each distinct row counts once
        if self.min_cluster_size is None:
            mcs = max(5, math.ceil(n / 100))
        else:
            mcs = int(self.min_cluster_size)
        mcs = max(2, min(mcs, n))
        ms = mcs if self.min_samples is None else min(int(self.min_samples), n)
        model = HDBSCAN(
            min_cluster_size=mcs,
            min_samples=ms,
            allow_single_cluster=self.allow_single_cluster,
            copy=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            labels = np.asarray(model.fit_predict(arr), dtype=np.int64)
        chosen = {"min_cluster_size": mcs, "min_samples": ms, "reason": "hdbscan"}
        return labels, chosen, []


__all__ = ["HDBSCANClusterer"]
