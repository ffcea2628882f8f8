"""HUDD's clustering of one layer: distances, profiles, Ward, WICD curve and the chosen ``k``.

See the package docstring (:mod:`dnnsafety.clustering.hudd`, "Choosing k").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dnnsafety.clustering.distances import (
    check_distance_matrix,
    pairwise_distances,
    row_max_normalise,
)
from dnnsafety.clustering.duplicates import zero_distance_groups
from dnnsafety.clustering.hudd.knee import (
    MIN_GRADIENT_POINTS,
    GradientEnds,
    fourth_order_gradient,
    kneedle,
)
from dnnsafety.clustering.hudd.ward import OLO_AUTO_MAX_N, ward_tree
from dnnsafety.clustering.hudd.wicd import PairRule, silhouette_curve, symmetric_pairs, wicd_curve
from dnnsafety.clustering.indices import canonical_labels, cluster_indices
from dnnsafety.exceptions import ConfigError

logger = logging.getLogger(__name__)


KReason = Literal[
    "knee",
    "silhouette",
    "no-knee-silhouette",
    "few-k-silhouette",
    "empty",
    "single-input",
    "two-inputs",
    "identical-inputs",
]

KRule = Literal["hudd", "silhouette"]


MAX_K_CAP = 500


# --------------------------------------------------------------------------- result type


@dataclass(frozen=True, eq=False)
class LayerClustering:
    """HUDD clustering of one layer's error-inducing inputs.

    Attributes
    ----------
    layer
        Layer name.
    labels
        ``N`` int64 cluster ids ``0..k-1`` (0 = largest cluster).
    k
        Number of clusters chosen.
    k_reason
        How ``k`` was chosen (see the module docstring).
    ks
        Candidate ``k`` values ``2..min(maxK, distinct inputs)`` (empty for ``N < 3``, for
        identical inputs and for two distinct inputs).
    wicd
        WICD on ``D^`` for each candidate.
    gradient
        4th-order gradient of ``wicd`` (empty when fewer than 5 candidates).
    knee_k
        The Kneedle knee, or ``None`` when there is none.
    silhouette_curve
        Silhouette on ``D`` for each candidate when ``k`` was chosen by silhouette, else empty.
    indices
        Indices of the chosen cut on the raw ``D`` (see :mod:`.indices`) plus
        ``"wicd_normalised"``, the WICD of the chosen cut on ``D^``.
    is_input
        True for the pixel-level map (HUDD's layer 0), which is never selected.
    linkage
        SciPy linkage matrix (``(N-1) x 4``; empty when no tree was built).
    leaf_order
        Dendrogram leaf order (input indices).
    optimal_ordering
        Whether the leaf order is SciPy's optimal leaf ordering.
    """

    layer: str
    labels: np.ndarray
    k: int
    k_reason: KReason
    ks: np.ndarray
    wicd: np.ndarray
    gradient: np.ndarray
    knee_k: int | None
    indices: dict[str, float]
    is_input: bool = False
    silhouette_curve: np.ndarray = field(default_factory=lambda: np.zeros(0))
    linkage: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    leaf_order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    optimal_ordering: bool = False

    def __post_init__(self) -> None:
        for name in ("labels", "ks", "wicd", "gradient", "silhouette_curve", "linkage"):
            getattr(self, name).setflags(write=False)
        self.leaf_order.setflags(write=False)

    @property
    def n_inputs(self) -> int:
        """Number of clustered inputs."""
        return int(self.labels.shape[0])

    @property
    def sizes(self) -> np.ndarray:
        """Cluster sizes, indexed by cluster id."""
        return np.bincount(self.labels, minlength=self.k)


# --------------------------------------------------------------------------- k range


def max_k(n: int, cap: int = MAX_K_CAP) -> int:
    """HUDD's largest candidate ``k``: ``clamp(floor(n / 2), 2, cap)``, never above ``n``.

    Parameters
    ----------
    n
        Number of inputs.
    cap
        Upper bound (500 in HUDD).

    Returns
    -------
    int
        The largest ``k`` tried (``n`` itself when ``n < 2``).
    """
    return int(min(max(n // 2, 2), cap, n))


# --------------------------------------------------------------------------- one layer


def _check_options(
    max_k_cap: int, pair_rule: str, gradient_step: float, sensitivity: float
) -> None:
    if isinstance(max_k_cap, bool) or not isinstance(max_k_cap, int | np.integer) or max_k_cap < 2:
        raise ConfigError(f"The 'max_k_cap' parameter must be an int >= 2. Got {max_k_cap!r}.")
    if pair_rule not in ("mean", "upper"):
        raise ConfigError(
            f"The 'pair_rule' parameter must be 'mean' or 'upper'. Got {pair_rule!r}."
        )
    if not (
        isinstance(gradient_step, int | float)
        and math.isfinite(gradient_step)
        and gradient_step > 0
    ):
        raise ConfigError(
            f"The 'gradient_step' parameter must be a number > 0. Got {gradient_step!r}."
        )
    if not (
        isinstance(sensitivity, int | float) and math.isfinite(sensitivity) and sensitivity >= 0
    ):
        raise ConfigError(
            f"The 'sensitivity' parameter must be a number >= 0. Got {sensitivity!r}."
        )


def _trivial(layer: str, d: np.ndarray, reason: KReason, is_input: bool) -> LayerClustering:
    n = d.shape[0]
    labels = np.zeros(n, dtype=np.int64)
    indices = cluster_indices(d, labels)
    indices["wicd_normalised"] = 0.0 if n else math.nan
    return LayerClustering(
        layer=layer,
        labels=labels,
        k=min(n, 1),
        k_reason=reason,
        ks=np.zeros(0, dtype=np.int64),
        wicd=np.zeros(0),
        gradient=np.zeros(0),
        knee_k=None,
        indices=indices,
        is_input=is_input,
        leaf_order=np.arange(n, dtype=np.int64),
    )


def cluster_layer(
    x: np.ndarray,
    *,
    layer: str = "layer",
    precomputed: bool = False,
    is_input: bool = False,
    max_k_cap: int = MAX_K_CAP,
    pair_rule: PairRule = "mean",
    k_rule: KRule = "hudd",
    gradient_step: float = 4.0,
    gradient_ends: GradientEnds = "fourth-order",
    sensitivity: float = 1.0,
    optimal_ordering: bool | None = None,
    chunk_rows: int | None = None,
) -> LayerClustering:
    """Cluster one layer's error-inducing inputs the HUDD way.

    Parameters
    ----------
    x
        ``N x D`` features (flattened heatmaps; an array or memmap, ``N x C x H x W`` is
        flattened), or with ``precomputed=True`` an ``N x N`` Euclidean distance matrix.
    layer
        Name stored in the result.
    precomputed
        Whether ``x`` already is the distance matrix ``D``.
    is_input
        Mark the pixel-level map; :func:`select_layer` never picks it.
    max_k_cap
        HUDD's cap on candidate ``k`` (500).
    pair_rule
        How a pair of the asymmetric ``D^`` is read in WICD: ``"mean"`` (default,
        independent of input order) or ``"upper"`` (the literal formula, compat).
    k_rule
        ``"hudd"``: knee of the WICD gradient with the documented fallbacks;
        ``"silhouette"``: the candidate ``k`` with the highest silhouette on ``D``.
    gradient_step
        Spacing handed to the gradient stencil (HUDD's "step 4"; never changes ``k``).
    gradient_ends
        Stencils at the two ends of the WICD curve (:func:`.fourth_order_gradient`):
        ``"fourth-order"`` (default) or ``"first-difference"`` (the released tool; compat).
    sensitivity
        Kneedle's ``S``.
    optimal_ordering
        Optimal leaf ordering of the dendrogram; ``None`` = only for ``N <= 500``.
    chunk_rows
        Rows per block in the distance computations; ``None`` = automatic.

    Returns
    -------
    LayerClustering
        The chosen cut, the curves behind the choice and the indices of the cut.

    Raises
    ------
    InvalidInputError
        If ``x`` is malformed (see :func:`.pairwise_distances`, :func:`.check_distance_matrix`).
    ConfigError
        If an option is out of range.
    """
    _check_options(max_k_cap, pair_rule, gradient_step, sensitivity)
    if k_rule not in ("hudd", "silhouette"):
        raise ConfigError(f"The 'k_rule' parameter must be 'hudd' or 'silhouette'. Got {k_rule!r}.")
    if precomputed:
        d = check_distance_matrix(x, chunk_rows=chunk_rows)
    else:
        d = pairwise_distances(x, chunk_rows=chunk_rows)
    n = d.shape[0]
    if n == 0:
        return _trivial(layer, d, "empty", is_input)
    if n == 1:
        return _trivial(layer, d, "single-input", is_input)
    if n == 2:
        return _trivial(layer, d, "two-inputs", is_input)
    if float(d.max()) == 0.0:
        logger.info("Layer %s: all %d inputs are identical; one cluster.", layer, n)
        return _trivial(layer, d, "identical-inputs", is_input)
    groups = zero_distance_groups(d, chunk_rows=chunk_rows)
    if groups.n_distinct == 2:
        logger.info("Layer %s: only 2 distinct inputs among %d; one cluster.", layer, n)
        return _trivial(layer, d, "two-inputs", is_input)
    rep = groups.representative()
    if groups.has_duplicates:
        # copies get their first copy's distances exactly, so their profiles are equal
        d = d[np.ix_(rep, rep)]

    dh = row_max_normalise(d)
    use_olo = n <= OLO_AUTO_MAX_N if optimal_ordering is None else bool(optimal_ordering)
    tree = ward_tree(dh, optimal_ordering=use_olo)
    ks = np.arange(2, min(max_k(n, max_k_cap), groups.n_distinct) + 1, dtype=np.int64)
    curve = wicd_curve(tree, symmetric_pairs(dh, pair_rule, chunk_rows=chunk_rows), ks)
    del dh

    gradient = np.zeros(0)
    knee_k: int | None = None
    sil = np.zeros(0)
    reason: KReason
    if ks.size >= MIN_GRADIENT_POINTS:
        gradient = fourth_order_gradient(curve, gradient_step, ends=gradient_ends)
        knee = kneedle(
            ks, gradient, curve="concave", direction="increasing", sensitivity=sensitivity
        )
        knee_k = None if knee is None else int(ks[knee])
    if k_rule == "hudd" and knee_k is not None:
        k, reason = knee_k, "knee"
    else:
        if k_rule == "silhouette":
            reason = "silhouette"
        elif ks.size < MIN_GRADIENT_POINTS:
            reason = "few-k-silhouette"
        else:
            reason = "no-knee-silhouette"
        sil = silhouette_curve(tree, d, ks, chunk_rows=chunk_rows)
        k = int(ks[int(np.nanargmax(sil))]) if np.isfinite(sil).any() else int(ks[0])
        why = {
            "silhouette": "as analysis.k_rule asks",
            "few-k-silhouette": "too few inputs for the knee of the WICD curve",
            "no-knee-silhouette": "the WICD curve has no knee",
        }[reason]
        logger.info("layer %r: %d clusters, the cut with the best silhouette (%s)", layer, k, why)

    # identical inputs merge first (at height 0) and k <= distinct inputs, so copies share
    # their cut; reading each copy's label from its first copy makes that a guarantee
    labels = canonical_labels(tree.labels(k)[rep])
    k = int(labels.max()) + 1
    indices = cluster_indices(d, labels, chunk_rows=chunk_rows)
    indices["wicd_normalised"] = float(curve[k - 2])
    return LayerClustering(
        layer=layer,
        labels=labels,
        k=k,
        k_reason=reason,
        ks=ks,
        wicd=curve,
        gradient=gradient,
        knee_k=knee_k,
        indices=indices,
        is_input=is_input,
        silhouette_curve=sil,
        linkage=tree.linkage,
        leaf_order=tree.order,
        optimal_ordering=use_olo,
    )
