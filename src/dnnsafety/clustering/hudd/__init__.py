"""HUDD's clustering of one layer and its choice of layer (METHOD.md §2, steps 3-6).

Per layer:

1. ``D`` = Euclidean distances between the flattened heatmaps
   (:mod:`~dnnsafety.clustering.distances`).
2. ``D^`` = ``D`` divided by each row's maximum; every input is represented by its row of
   ``D^`` (its *distance profile*).
3. Ward linkage of the profiles (Euclidean), with optimal leaf ordering on small inputs.
4. Cut the tree into every ``k`` in ``2..maxK``, ``maxK = clamp(floor(N/2), 2, 500)``
   (never above ``N``, nor above the number of distinct inputs) and compute HUDD's
   ``WICD(k)`` on ``D^``.
5. ``k`` = Kneedle knee (concave, increasing, ``S = 1``) of the 4th-order finite-difference
   gradient of the WICD curve, with the documented fallbacks below.

Then :func:`select_layer` picks one layer for the whole analysis.

Interpretations and fallbacks (the published description leaves them open or the released
tool crashes):

*Cuts.* The cut into ``k`` clusters is the partition after the first ``N - k`` merges of the
linkage (the merge order, which is sorted by height). It always has exactly ``k`` clusters,
also when merge heights tie; ``fcluster(criterion="maxclust")`` cuts at a height and returns
fewer clusters on ties. Without tied heights this is the partition of
:func:`scipy.cluster.hierarchy.cut_tree` (which breaks ties in an order of its own).

*Pairs of ``D^``.* ``D^`` is not symmetric, so "``mean_{i<j in C} D^[i, j]``" depends on how
a pair is read. ``pair_rule="upper"`` reads ``D^[min(i,j), max(i,j)]`` (the literal formula:
the upper triangle in input order; the result changes when the inputs are shuffled).
``pair_rule="mean"`` (default) reads ``(D^[i,j] + D^[j,i]) / 2``, which does not depend on
the input order.

*Gradient "step 4".* The WICD curve is sampled at consecutive ``k``. The gradient uses the
5-point stencils of 4th-order accuracy: central ``(f[i-2] - 8f[i-1] + 8f[i+1] - f[i+2]) / 12h``
inside, and one-sided/off-centre 5-point stencils of the same order for the two points at
each end, so it is exact for polynomials of degree <= 4 everywhere and needs >= 5 points.
"Step 4" is read as the spacing ``h = 4`` handed to the stencil (``gradient_step``), i.e. a
constant factor ``1/4``. Kneedle rescales ``y`` to ``[0, 1]``, so ``h`` never changes the
chosen ``k``; it is kept for faithful gradient values.
The released tool's ``gradientO4`` uses first differences at the two first and two last
points instead (``gradient_ends="first-difference"``, used by ``mode = "hudd-compat"``). Those
end values are steeper on a falling WICD curve, the Kneedle normalisation shifts, and the knee
moves one ``k`` to the right: 13/16/16 instead of 12/15/15 clusters on the planted benchmark
at N = 500/1000/2000, with identical partitions at equal ``k``. The default keeps the
4th-order stencils (the order the method states, and the closer ``k`` to the planted one).

*Kneedle.* Satopää et al. (2011) without smoothing: normalise ``x`` and ``y`` to ``[0, 1]``,
difference curve ``y_n - x_n``, local maxima (interior points strictly above their left and
not below their right neighbour), threshold ``T = y_d[max] - S * mean(diff(x_n))``; the knee
is the first local maximum after which the difference curve drops below ``T`` before the next
local maximum. No local maximum or no such drop: no knee.

*Choosing ``k``* (``LayerClustering.k_reason``):

- ``"knee"``: the Kneedle knee of the gradient (``k_rule="hudd"``, the default).
- ``"no-knee-silhouette"``: Kneedle found no knee; ``k`` = the candidate with the highest
  silhouette on ``D`` (smallest ``k`` on ties). Silhouette is scale-free and, unlike WICD,
  does not fall with ``k`` by construction.
- ``"few-k-silhouette"``: fewer than 5 candidates (``N <= 11``, or fewer than 6 distinct
  inputs), the gradient is undefined;
  ``k`` = highest silhouette on ``D`` as above (``N = 3..5`` have the single candidate 2).
- ``"empty"`` (``N = 0``, ``k = 0``), ``"single-input"`` (``N = 1``, one cluster),
  ``"two-inputs"`` (``N = 2``, or only two distinct inputs: one cluster; two singletons
  would be no root-cause cluster at all, and nothing distinguishes the cases),
  ``"identical-inputs"`` (``D = 0``: one cluster).
- ``"silhouette"``: ``k_rule="silhouette"``, the candidate with the highest silhouette on
  ``D``, whatever the curve looks like.

Known behaviour of the HUDD rule: the 5-point stencil spreads a sharp drop of the WICD curve
at the true ``k*`` over ``k* - 2 .. k* + 2``, so the gradient flattens only after ``k*`` and
the knee lands on ``k* + 1`` or later; WICD's ``1/K`` factor keeps the gradient rising, and
the knee moves further right when ``N`` (hence ``maxK``) grows. On four well-separated
Gaussian blobs the rule picks 5 clusters for ``N = 90`` and 8-11 for ``N = 360`` with blobs
closer together, and 15 for 8 planted clusters in 4,096 dimensions at every ``N`` from 1,000
to 10,000 (``benchmarks/bench_hudd_clustering.py``). The extra clusters split planted ones, so
purity stays 1, while the cut at the planted ``k`` recovers them exactly and
``k_rule="silhouette"`` picks the planted ``k`` on the blob tests. HUDD accepts such
over-clustering (engineers inspect every cluster); ``k_rule`` makes the alternative available.

*Identical inputs* (repeated frames; inputs at distance exactly 0 in ``D``, see
:mod:`~dnnsafety.clustering.distances`) always share their cluster. They stay in the data with
their weight: each copy gets its first copy's row and column of ``D``, so copies have equal
profiles and merge first, at height 0 (Ward of the distinct inputs weighted by their counts),
WICD and the silhouette count every copy, and the candidates stop at the number of distinct
inputs, ``2..min(maxK, G)``, since a finer cut could only split copies.

*Cluster ids* are ``0..K-1`` by decreasing size, ties by smallest input index
(:func:`~dnnsafety.clustering.indices.canonical_labels`); they do not depend on the leaf order.

*Optimal leaf ordering* changes only the leaf order, never a cut. SciPy's implementation
grows about as ``N^4`` here (3 s at ``N = 1000``, 69 s at ``N = 2000``), so by default
(``optimal_ordering=None``) it runs only up to ``N = 500``.
"""

from dnnsafety.clustering.hudd.knee import (
    MIN_GRADIENT_POINTS,
    Curve,
    Direction,
    GradientEnds,
    fourth_order_gradient,
    kneedle,
)
from dnnsafety.clustering.hudd.layer import (
    MAX_K_CAP,
    KReason,
    KRule,
    LayerClustering,
    cluster_layer,
    max_k,
)
from dnnsafety.clustering.hudd.select import SelectionMode, select_layer
from dnnsafety.clustering.hudd.ward import OLO_AUTO_MAX_N, WardTree, ward_tree
from dnnsafety.clustering.hudd.wicd import PairRule, silhouette_curve, symmetric_pairs, wicd_curve

__all__ = [
    "MAX_K_CAP",
    "MIN_GRADIENT_POINTS",
    "OLO_AUTO_MAX_N",
    "Curve",
    "Direction",
    "GradientEnds",
    "KReason",
    "KRule",
    "LayerClustering",
    "PairRule",
    "SelectionMode",
    "WardTree",
    "cluster_layer",
    "fourth_order_gradient",
    "kneedle",
    "max_k",
    "select_layer",
    "silhouette_curve",
    "symmetric_pairs",
    "ward_tree",
    "wicd_curve",
]
