"""Root-cause clustering of error-inducing inputs.

HUDD (METHOD.md §2, steps 3-6): :func:`pairwise_distances` between flattened heatmaps,
:func:`cluster_layer` (Ward on row-normalised distance profiles, WICD curve, knee of its
gradient) per layer, and :func:`select_layer` to pick the layer.
"""

from dnnsafety.clustering.distances import (
    check_distance_matrix,
    condensed_distances,
    pairwise_distances,
    row_max_normalise,
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

__all__ = [
    "LayerClustering",
    "WardTree",
    "canonical_labels",
    "check_distance_matrix",
    "cluster_indices",
    "cluster_layer",
    "condensed_distances",
    "fourth_order_gradient",
    "kneedle",
    "max_k",
    "pairwise_distances",
    "row_max_normalise",
    "select_layer",
    "silhouette_curve",
    "ward_tree",
    "wicd_curve",
    "wicd_of_labels",
]
