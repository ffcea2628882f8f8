"""Clusterers of the black-box (SAFE) pipeline (METHOD.md §3): imports and registers them all.

Four clusterers are registered in :data:`CLUSTERERS`, one module each:

``dbscan`` (:mod:`.dbscan`)
    DBSCAN with ``eps`` and ``min_samples`` chosen by silhouette x (1 - noise share).
``hdbscan`` (:mod:`.hdbscan`)
    scikit-learn's HDBSCAN (excess-of-mass selection); noise is -1.
``kmeans`` (:mod:`.kmeans`), ``ward`` (:mod:`.ward`)
    k-means and Ward linkage with ``k`` in ``2..min(max_k, N - 1, distinct rows)`` chosen by
    the highest silhouette (:mod:`.silhouette`).
``guarded`` (:mod:`.guard`), ``conditional`` (:mod:`.conditional`)
    Any clusterer then no cluster holding most errors; clustering per class of the errors.

The contract they share is :class:`~dnnsafety.clustering.base.Clusterer`. Adding a clusterer
means one module in this folder whose class is decorated with
``@CLUSTERERS.register("name", help="...")``, plus its import below.
"""

from __future__ import annotations

from dnnsafety.clustering.base import (
    CLUSTERERS,
    DEFAULT_SILHOUETTE_SAMPLE,
    REASONS,
    Clusterer,
    finalize_labels,
)
from dnnsafety.clustering.conditional import ClassConditionalClusterer
from dnnsafety.clustering.dbscan import DBSCANClusterer
from dnnsafety.clustering.guard import GuardedClusterer
from dnnsafety.clustering.hdbscan import HDBSCANClusterer
from dnnsafety.clustering.kmeans import KMeansClusterer
from dnnsafety.clustering.kmeans_fixed import FixedKMeansClusterer
from dnnsafety.clustering.silhouette import (
    SilhouetteKClusterer,
    SilhouetteScorer,
    search_k_by_silhouette,
)
from dnnsafety.clustering.ward import WardClusterer

__all__ = [
    "CLUSTERERS",
    "DEFAULT_SILHOUETTE_SAMPLE",
    "REASONS",
    "ClassConditionalClusterer",
    "Clusterer",
    "DBSCANClusterer",
    "FixedKMeansClusterer",
    "GuardedClusterer",
    "HDBSCANClusterer",
    "KMeansClusterer",
    "SilhouetteKClusterer",
    "SilhouetteScorer",
    "WardClusterer",
    "finalize_labels",
    "search_k_by_silhouette",
]
