"""HUDD's clustering of one layer and its choice of layer (METHOD.md §2, steps 3-6).

Per layer:

1. ``D`` = Euclidean distances between the flattened heatmaps (:mod:`.distances`).
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
:mod:`.distances`) always share their cluster. They stay in the data with their weight: each
copy gets its first copy's row and column of ``D``, so copies have equal profiles and merge
first, at height 0 (Ward of the distinct inputs weighted by their counts), WICD and the
silhouette count every copy, and the candidates stop at the number of distinct inputs,
``2..min(maxK, G)``, since a finer cut could only split copies.

*Cluster ids* are ``0..K-1`` by decreasing size, ties by smallest input index
(:func:`~dnnsafety.clustering.indices.canonical_labels`); they do not depend on the leaf order.

*Optimal leaf ordering* changes only the leaf order, never a cut. SciPy's implementation
grows about as ``N^4`` here (3 s at ``N = 1000``, 69 s at ``N = 2000``), so by default
(``optimal_ordering=None``) it runs only up to ``N = 500``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dnnsafety.clustering.distances import (
    auto_chunk_rows,
    check_distance_matrix,
    condensed_distances,
    pairwise_distances,
    row_max_normalise,
)
from dnnsafety.clustering.duplicates import zero_distance_groups
from dnnsafety.clustering.indices import canonical_labels, cluster_indices, silhouette_from_sums
from dnnsafety.exceptions import ConfigError, InvalidInputError

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
PairRule = Literal["mean", "upper"]
KRule = Literal["hudd", "silhouette"]
SelectionMode = Literal["compat", "default"]
Curve = Literal["concave", "convex"]
Direction = Literal["increasing", "decreasing"]

MAX_K_CAP = 500
OLO_AUTO_MAX_N = 500
MIN_GRADIENT_POINTS = 5


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


# --------------------------------------------------------------------------- gradient, knee

# 5-point weights of f' (times 12 h) for the two first and two last samples, same order (4).
_FIRST = np.array([-25.0, 48.0, -36.0, 16.0, -3.0])  # offsets 0..4
_SECOND = np.array([-3.0, -10.0, 18.0, -6.0, 1.0])  # offsets -1..3
_PENULTIMATE = -_SECOND[::-1]  # offsets -3..1
_LAST = -_FIRST[::-1]  # offsets -4..0


def fourth_order_gradient(y: np.ndarray, step: float = 4.0) -> np.ndarray:
    """Gradient of an evenly sampled curve with 4th-order accurate 5-point stencils.

    Interior points use ``(y[i-2] - 8 y[i-1] + 8 y[i+1] - y[i+2]) / (12 step)``; the first two
    and last two points use one-sided / off-centre 5-point stencils of the same order, so the
    result is exact for polynomials of degree <= 4 at every point.

    Parameters
    ----------
    y
        1-D curve with at least 5 samples.
    step
        Spacing between samples (HUDD: 4, see the module docstring).

    Returns
    -------
    numpy.ndarray
        float64 gradient, same length as ``y``.

    Raises
    ------
    InvalidInputError
        If ``y`` is not 1-D with at least 5 finite values.
    ConfigError
        If ``step`` is not a finite number > 0.
    """
    f = np.asarray(y, dtype=np.float64)
    if f.ndim != 1 or f.shape[0] < MIN_GRADIENT_POINTS or not np.isfinite(f).all():
        raise InvalidInputError(
            f"The 4th-order gradient needs a 1-D curve of at least {MIN_GRADIENT_POINTS} finite "
            f"values; got shape {f.shape}. Use more inputs or a fallback for short curves."
        )
    if not (isinstance(step, int | float) and math.isfinite(step) and step > 0):
        raise ConfigError(f"The 'step' parameter must be a finite number > 0. Got {step!r}.")
    n = f.shape[0]
    g = np.empty(n)
    g[2:-2] = f[:-4] - 8.0 * f[1:-3] + 8.0 * f[3:-1] - f[4:]
    g[0] = _FIRST @ f[:5]
    g[1] = _SECOND @ f[:5]
    g[-2] = _PENULTIMATE @ f[-5:]
    g[-1] = _LAST @ f[-5:]
    return g / (12.0 * step)


def kneedle(
    x: np.ndarray,
    y: np.ndarray,
    *,
    curve: Curve = "concave",
    direction: Direction = "increasing",
    sensitivity: float = 1.0,
) -> int | None:
    """Knee of a curve with Kneedle (Satopää et al., 2011), without smoothing.

    Parameters
    ----------
    x
        Strictly increasing sample positions (at least 3).
    y
        Curve values.
    curve, direction
        Shape of the curve. The other three shapes are mapped onto "concave, increasing"
        (``1 - f(1 - x)``, ``f(1 - x)``, ``1 - f(x)``) before the search.
    sensitivity
        Kneedle's ``S`` (>= 0): how far the difference curve must drop after a local maximum,
        in units of the mean normalised x step.

    Returns
    -------
    int or None
        Index into ``x`` of the knee, or ``None`` when there is none (flat or straight curve,
        no local maximum of the difference curve, or no drop below the threshold).

    Raises
    ------
    InvalidInputError
        If ``x`` and ``y`` are not 1-D of equal length, not finite, or ``x`` is not strictly
        increasing.
    ConfigError
        If ``curve``, ``direction`` or ``sensitivity`` is invalid.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if (
        xs.ndim != 1
        or xs.shape != ys.shape
        or not (np.isfinite(xs).all() and np.isfinite(ys).all())
    ):
        raise InvalidInputError(
            f"kneedle needs two finite 1-D arrays of equal length; got shapes {xs.shape} and "
            f"{ys.shape}."
        )
    if xs.size >= 2 and not np.all(np.diff(xs) > 0):
        raise InvalidInputError("kneedle needs strictly increasing x values; sort the curve.")
    if curve not in ("concave", "convex"):
        raise ConfigError(f"The 'curve' parameter must be 'concave' or 'convex'. Got {curve!r}.")
    if direction not in ("increasing", "decreasing"):
        raise ConfigError(
            f"The 'direction' parameter must be 'increasing' or 'decreasing'. Got {direction!r}."
        )
    if not (
        isinstance(sensitivity, int | float) and math.isfinite(sensitivity) and sensitivity >= 0
    ):
        raise ConfigError(
            f"The 'sensitivity' parameter must be a finite number >= 0. Got {sensitivity!r}."
        )
    n = xs.size
    if n < 3 or ys.max() == ys.min():
        return None
    xn = (xs - xs[0]) / (xs[-1] - xs[0])
    yn = (ys - ys.min()) / (ys.max() - ys.min())
    flip = (curve == "convex") == (direction == "increasing")  # reverse x for these two shapes
    if flip:
        xn, yn = 1.0 - xn[::-1], yn[::-1]
    if curve == "convex":
        yn = 1.0 - yn
    diff = yn - xn
    maxima = [i for i in range(1, n - 1) if diff[i] > diff[i - 1] and diff[i] >= diff[i + 1]]
    if not maxima:
        return None
    drop = sensitivity * float(np.mean(np.diff(xn)))
    for pos, i in enumerate(maxima):
        stop = maxima[pos + 1] if pos + 1 < len(maxima) else n
        if np.any(diff[i + 1 : stop] < diff[i] - drop):
            return n - 1 - i if flip else i
    return None


# --------------------------------------------------------------------------- Ward tree


@dataclass(frozen=True, eq=False)
class WardTree:
    """A linkage with the bookkeeping to cut it at any number of clusters.

    Every subtree covers a contiguous range of the leaf order, so a cluster is stored as
    ``(start, size)`` in that order. Level ``L`` = the first ``L`` merges done = ``N - L``
    clusters; node ``j`` exists at level ``L`` when ``born[j] <= L < dies[j]``.

    Attributes
    ----------
    n
        Number of leaves (inputs).
    linkage
        SciPy linkage matrix.
    order
        Leaf order.
    start, size, born, dies
        Per node (``2N - 1``: leaves, then merge ``t`` as node ``N + t``).
    """

    n: int
    linkage: np.ndarray
    order: np.ndarray
    start: np.ndarray
    size: np.ndarray
    born: np.ndarray
    dies: np.ndarray

    @classmethod
    def from_linkage(cls, z: np.ndarray) -> WardTree:
        """Build the bookkeeping for a SciPy linkage matrix ``z`` (``(N-1) x 4``)."""
        from scipy.cluster.hierarchy import leaves_list

        n = z.shape[0] + 1
        order = leaves_list(z).astype(np.int64)
        left = z[:, 0].astype(np.int64)
        right = z[:, 1].astype(np.int64)
        start = np.empty(2 * n - 1, dtype=np.int64)
        start[order] = np.arange(n)
        for t in range(n - 1):
            start[n + t] = min(start[left[t]], start[right[t]])
        size = np.ones(2 * n - 1, dtype=np.int64)
        size[n:] = z[:, 3].astype(np.int64)
        born = np.zeros(2 * n - 1, dtype=np.int64)
        born[n:] = np.arange(1, n)
        dies = np.full(2 * n - 1, n, dtype=np.int64)
        dies[left] = np.arange(1, n)
        dies[right] = np.arange(1, n)
        return cls(n, z, order, start, size, born, dies)

    def nodes_at(self, k: int) -> np.ndarray:
        """Nodes forming the cut into ``k`` clusters, in leaf order."""
        if not 1 <= k <= self.n:
            raise InvalidInputError(
                f"Cannot cut {self.n} inputs into {k} clusters; use 1..{self.n}."
            )
        level = self.n - k
        nodes = np.flatnonzero((self.born <= level) & (self.dies > level))
        return nodes[np.argsort(self.start[nodes])]

    def members(self, node: int) -> np.ndarray:
        """Input indices under ``node``."""
        s = int(self.start[node])
        return self.order[s : s + int(self.size[node])]

    def labels(self, k: int) -> np.ndarray:
        """Canonical labels of the cut into exactly ``k`` clusters (ties never merge more)."""
        nodes = self.nodes_at(k)
        in_leaf_order = np.repeat(np.arange(nodes.size), self.size[nodes])
        lab = np.empty(self.n, dtype=np.int64)
        lab[self.order] = in_leaf_order
        return canonical_labels(lab)


def ward_tree(profiles: np.ndarray, *, optimal_ordering: bool | None = None) -> WardTree:
    """Ward linkage of the rows of ``profiles`` (Euclidean).

    Distances between rows are computed with BLAS (:func:`.condensed_distances`) and handed
    to SciPy's Ward linkage, which then runs in ``O(N^2)``.

    Parameters
    ----------
    profiles
        ``N x M`` matrix, one row per input (HUDD: the rows of ``D^``), ``N >= 2``.
    optimal_ordering
        Apply SciPy's optimal leaf ordering; ``None`` = only when ``N <= 500``.

    Returns
    -------
    WardTree
        The tree and its cut bookkeeping.
    """
    from scipy.cluster.hierarchy import linkage, optimal_leaf_ordering

    n = profiles.shape[0]
    if n < 2:
        raise InvalidInputError(f"Ward linkage needs at least 2 inputs; got {n}.")
    y = condensed_distances(profiles)
    z = linkage(y, method="ward")
    use_olo = n <= OLO_AUTO_MAX_N if optimal_ordering is None else optimal_ordering
    if use_olo:
        z = optimal_leaf_ordering(z, y)
    return WardTree.from_linkage(z)


# --------------------------------------------------------------------------- curves


def symmetric_pairs(dh: np.ndarray, rule: PairRule, *, chunk_rows: int | None = None) -> np.ndarray:
    """Turn ``D^`` *in place* into the symmetric pair-value matrix used by WICD.

    Parameters
    ----------
    dh
        ``N x N`` float64 matrix (overwritten).
    rule
        ``"mean"``: ``(D^[i,j] + D^[j,i]) / 2``; ``"upper"``: ``D^[min(i,j), max(i,j)]``.
    chunk_rows
        Rows per block.

    Returns
    -------
    numpy.ndarray
        ``dh`` itself, now symmetric.
    """
    if rule not in ("mean", "upper"):
        raise ConfigError(f"The 'pair_rule' parameter must be 'mean' or 'upper'. Got {rule!r}.")
    n = dh.shape[0]
    chunk = chunk_rows or auto_chunk_rows(n)
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        diag = dh[r0:r1, r0:r1]
        if rule == "mean":
            diag[...] = (diag + diag.T) / 2.0
            upper = (dh[r0:r1, r1:] + dh[r1:, r0:r1].T) / 2.0
            dh[r0:r1, r1:] = upper
        else:
            diag[...] = np.triu(diag) + np.triu(diag, 1).T
            upper = dh[r0:r1, r1:]
        dh[r1:, r0:r1] = upper.T
    return dh


def wicd_curve(tree: WardTree, pairs: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """HUDD's WICD of the cut into each ``k`` of ``ks``, for all of them in ``O(N^2)``.

    The within-cluster pair sums are built up along the merge order: merging ``A`` and ``B``
    adds the sum of the ``A x B`` block, and every pair of inputs is in exactly one such
    block, so the whole curve costs one pass over the pairs.

    Parameters
    ----------
    tree
        The Ward tree.
    pairs
        ``N x N`` symmetric pair-value matrix (see :func:`symmetric_pairs`).
    ks
        Numbers of clusters, each in ``1..N``.

    Returns
    -------
    numpy.ndarray
        ``WICD(k)`` for each ``k`` of ``ks``.
    """
    n = tree.n
    ks = np.asarray(ks, dtype=np.int64)
    if ks.size == 0:
        return np.zeros(0)
    last_level = n - int(ks.min())
    z = tree.linkage
    within = np.zeros(2 * n - 1)
    for t in range(last_level):
        a, b = int(z[t, 0]), int(z[t, 1])
        cross = pairs[np.ix_(tree.members(a), tree.members(b))].sum()
        within[n + t] = within[a] + within[b] + cross
    size = tree.size.astype(np.float64)
    contribution = np.divide(
        2.0 * within, n * (size - 1.0), out=np.zeros_like(within), where=size >= 2
    )
    left = z[:last_level, 0].astype(np.int64)
    right = z[:last_level, 1].astype(np.int64)
    step = contribution[n : n + last_level] - contribution[left] - contribution[right]
    total = np.concatenate(([0.0], np.cumsum(step)))  # total at level L
    return total[n - ks] / ks


def silhouette_curve(
    tree: WardTree, d: np.ndarray, ks: np.ndarray, *, chunk_rows: int | None = None
) -> np.ndarray:
    """Mean silhouette on ``D`` of the cut into each ``k`` of ``ks``.

    Sums of distances from every input to every cluster are computed once for the finest cut
    (``O(N^2)``) and merged column by column going up the tree, so each further ``k`` costs
    ``O(N k)``.

    Parameters
    ----------
    tree
        The Ward tree.
    d
        ``N x N`` raw distance matrix.
    ks
        Numbers of clusters, each in ``2..N-1``.
    chunk_rows
        Rows of ``d`` processed at a time.

    Returns
    -------
    numpy.ndarray
        Silhouette per ``k`` (NaN for ``k`` outside ``2..N-1``).
    """
    n = tree.n
    ks = np.asarray(ks, dtype=np.int64)
    if ks.size == 0:
        return np.zeros(0)
    k_hi, k_lo = int(ks.max()), int(ks.min())
    nodes = tree.nodes_at(k_hi)
    col_of = np.full(2 * n - 1, -1, dtype=np.int64)
    col_of[nodes] = np.arange(nodes.size)
    sizes = tree.size[nodes].astype(np.float64)
    own = np.empty(n, dtype=np.int64)
    own[tree.order] = np.repeat(np.arange(nodes.size), tree.size[nodes])
    starts = tree.start[nodes]
    sums = np.empty((n, nodes.size))
    chunk = chunk_rows or auto_chunk_rows(n)
    for r0 in range(0, n, chunk):
        block = np.asarray(d[r0 : r0 + chunk], dtype=np.float64)[:, tree.order]
        sums[r0 : r0 + chunk] = np.add.reduceat(block, starts, axis=1)
    node_at = nodes.copy()
    result: dict[int, float] = {}
    z = tree.linkage
    for k in range(k_hi, k_lo - 1, -1):
        if 2 <= k <= n - 1:
            result[k] = float(np.mean(silhouette_from_sums(sums[:, :k], sizes[:k], own)))
        if k == k_lo:
            break
        t = n - k  # the merge taking k clusters to k - 1
        ca, cb = int(col_of[int(z[t, 0])]), int(col_of[int(z[t, 1])])
        keep, gone = min(ca, cb), max(ca, cb)
        sums[:, keep] += sums[:, gone]
        sizes[keep] += sizes[gone]
        own[own == gone] = keep
        col_of[n + t] = keep
        node_at[keep] = n + t
        last = k - 1
        if gone != last:
            sums[:, gone] = sums[:, last]
            sizes[gone] = sizes[last]
            own[own == last] = gone
            node_at[gone] = node_at[last]
            col_of[node_at[gone]] = gone
    return np.array([result.get(int(k), math.nan) for k in ks])


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
        gradient = fourth_order_gradient(curve, gradient_step)
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


# --------------------------------------------------------------------------- layer choice


def select_layer(
    results: Mapping[str, LayerClustering],
    mode: SelectionMode = "default",
    *,
    exclude: Collection[str] = (),
) -> str:
    """Choose the layer whose clusters are used for the analysis.

    Parameters
    ----------
    results
        Clustering per layer name, in layer order.
    mode
        ``"compat"``: HUDD's rule, the lowest WICD of the chosen cut on the *raw* ``D``
        (``indices["wicd"]``). It is not scale-free: layers with small relevance values win.
        ``"default"``: the highest silhouette of the chosen cut on ``D``. Silhouette does not
        change when a layer's distances are scaled, rewards clusters that are both tight and
        apart, and, unlike WICD (which carries a ``1/K`` factor), does not improve just because
        a layer chose more clusters.
    exclude
        Layer names never to select, in addition to layers with ``is_input``.

    Returns
    -------
    str
        The selected layer's name (the mapping key). Ties go to the earlier layer. Layers
        whose cut has fewer than 2 clusters (identical inputs, ``N < 3``) are considered only
        when no other layer is left.

    Raises
    ------
    InvalidInputError
        If no layer is left to choose from.
    ConfigError
        If ``mode`` is unknown.
    """
    if mode not in ("compat", "default"):
        raise ConfigError(f"The 'mode' parameter must be 'compat' or 'default'. Got {mode!r}.")
    candidates = [name for name, res in results.items() if not res.is_input and name not in exclude]
    if not candidates:
        raise InvalidInputError(
            "No layer to select from: every layer is the input layer or excluded. Cluster at "
            "least one hidden layer."
        )
    proper = [name for name in candidates if results[name].k >= 2]
    pool = proper or candidates

    def score(name: str) -> float:
        idx = results[name].indices
        value = idx.get("wicd" if mode == "compat" else "silhouette", math.nan)
        if not math.isfinite(value):
            return math.inf
        return value if mode == "compat" else -value

    best = min(pool, key=score)  # min() keeps the first of equal scores
    logger.info(
        "selected layer %r (%s of %d candidate layers) by the %s of its clusters",
        best,
        _ordinal(pool.index(best) + 1),
        len(pool),
        "lowest WICD" if mode == "compat" else "highest silhouette",
    )
    return best


def _ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ..., ``11th``, ``12th``, ``13th``, ``21st``."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
