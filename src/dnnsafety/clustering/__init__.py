"""Root-cause clustering of error-inducing inputs.

HUDD (METHOD.md §2, steps 3-6): :func:`pairwise_distances` between flattened heatmaps,
:func:`cluster_layer` (Ward on row-normalised distance profiles, WICD curve, knee of its
gradient) per layer, and :func:`select_layer` to pick the layer.

SAFE (METHOD.md §3): a reducer from :data:`REDUCERS` (``none``, ``pca``, ``umap``) and a
clusterer from :data:`CLUSTERERS` (``dbscan``, ``hdbscan``, ``kmeans``, ``ward``).

Both give identical inputs (repeated frames) the same cluster (:mod:`.duplicates`).
"""

from dnnsafety.clustering.clusterers import (
    CLUSTERERS,
    Clusterer,
    DBSCANClusterer,
    HDBSCANClusterer,
    KMeansClusterer,
    WardClusterer,
)
from dnnsafety.clustering.distances import (
    check_distance_matrix,
    condensed_distances,
    pairwise_distances,
    row_max_normalise,
)
from dnnsafety.clustering.duplicates import (
    DuplicateGroups,
    identical_rows,
    zero_distance_groups,
)
from dnnsafety.clustering.hudd import (
    LayerClustering,
    WardTree,
    cluster_layer,
    fourth_order_gradient,
    kneedle,
    max_k,
    select_layer,
    silhouette_curve,
    ward_tree,
    wicd_curve,
)
from dnnsafety.clustering.indices import canonical_labels, cluster_indices, wicd_of_labels
from dnnsafety.clustering.reducers import (
    REDUCERS,
    IdentityReducer,
    PCAReducer,
    Reducer,
    UMAPReducer,
)

__all__ = [
    "CLUSTERERS",
    "REDUCERS",
    "Clusterer",
    "DBSCANClusterer",
    "DuplicateGroups",
    "HDBSCANClusterer",
    "IdentityReducer",
    "KMeansClusterer",
    "LayerClustering",
    "PCAReducer",
    "Reducer",
    "UMAPReducer",
    "WardClusterer",
    "WardTree",
    "canonical_labels",
    "check_distance_matrix",
    "cluster_indices",
    "cluster_layer",
    "condensed_distances",
    "fourth_order_gradient",
    "identical_rows",
    "kneedle",
    "max_k",
    "pairwise_distances",
    "row_max_normalise",
    "select_layer",
    "silhouette_curve",
    "ward_tree",
    "wicd_curve",
    "wicd_of_labels",
    "zero_distance_groups",
]
