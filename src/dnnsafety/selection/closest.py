"""HUDD's ClosestU: the pool inputs nearest to the root-cause clusters (METHOD.md §2.8).

* The distance of a pool input to a root-cause cluster (RCC) is its Euclidean distance to the
  cluster's nearest member, in the analysis feature space. Only RCCs with at least 2 members
  take part; noise (negative labels) is ignored.
* Each RCC ``c`` gets a quota ``U_c = ceil(f * |c|)`` (``f = 2`` in HUDD's tool).
* Greedy global assignment: for rank ``r = 0, 1, ...``, the still unassigned inputs are taken
  in increasing distance to their ``r``-th nearest RCC; an input is assigned to that RCC if
  its quota is still open. This stops as soon as every quota is full. There is no distance
  threshold.

**Labelling budget.** The method's natural size is ``sum_c U_c``
(:meth:`ClosestSelector.natural_budget`). Comparisons with baselines need a fixed budget, so
:meth:`ClosestSelector.select` rescales the quotas to sum to exactly the budget
(:func:`scale_quotas`): proportional to the natural quotas (hence to the cluster sizes, up to
the rounding of ``ceil``), every RCC at least 1, largest-remainder rounding. A budget equal to
the natural budget gives back the natural quotas unchanged. A budget smaller than the number
of RCCs cannot give each RCC an input: then the largest RCCs get 1 each, the others 0, and a
warning is logged. Natural and scaled quotas are recorded in ``Selection.info``.

**Contrastive variant** (``closest-contrast``, not part of HUDD). The nearest-member distance
favours dense regions: a nominal image of the same sign can lie closer to a tilt cluster than
most tilt images do (measured on signs: 50 of the 53 images chosen for the largest tilt
cluster were nominal). The contrastive score compares the distance ``d_c`` to the cluster's
nearest member with the distance ``d_ok`` to the nearest of a reference set of inputs the
model classifies correctly (``ClusterSpace.correct``)::

    s_c = d_c / (d_c + d_ok)        (0.5 when both are 0)

``s_c < 0.5`` means the input is nearer to the root cause than to any success of the model,
the vote of a 1-nearest-neighbour error predictor. ``d_ok`` does not depend on the cluster, so
the order of the clusters for one input is unchanged (where ``d_ok = 0`` makes every score 1,
the raw distances break the tie); only which inputs come first changes.
Quotas, the greedy assignment and the balancing are the same, with ``s_c`` in place of the
distance.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import numpy as np

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.selection._nearest import Reference, group_min_distances
from dnnsafety.selection.contrastive import (
    DISTANCES,
    DistanceParameter,
    contrastive_to_correct,
)
from dnnsafety.selection.selectors import (
    SELECTORS,
    ClusterSpace,
    Oracle,
    PoolView,
    Selection,
    Selector,
    check_batch_size,
)

logger = logging.getLogger(__name__)


def eligible_clusters(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids (ascending) and sizes of the clusters with at least 2 members (noise excluded)."""
    ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
    keep = sizes >= 2
    return ids[keep], sizes[keep]


def natural_quotas(sizes: np.ndarray, f: float) -> np.ndarray:
    """``U_c = ceil(f * |c|)`` for every cluster size (``f * |c|`` rounded to 9 decimals
    first, so that e.g. ``0.1 * 30`` gives 3, not 4)."""
    return np.ceil(np.round(f * np.asarray(sizes, dtype=np.float64), 9)).astype(np.int64)


def scale_quotas(natural: np.ndarray, budget: int) -> np.ndarray:
    """Rescale quotas to sum to ``budget``: proportional, each >= 1, largest remainder.

    Parameters
    ----------
    natural
        ``(K,)`` natural quotas (positive ints).
    budget
        Total wanted (int >= 1).

    Returns
    -------
    numpy.ndarray
        ``(K,)`` int quotas summing to ``budget``. Each is ``floor`` or ``ceil`` of its exact
        share ``budget * natural / sum(natural)``, unless raised to the minimum of 1 (then
        the clusters most above their share give one back). Ties go to the lower position.
        If ``budget < K`` the ``budget`` clusters with the largest natural quota get 1 each
        (ties: lower position) and the others 0.
    """
    natural = np.asarray(natural, dtype=np.int64)
    k = len(natural)
    if budget < k:
        quotas = np.zeros(k, dtype=np.int64)
        quotas[np.argsort(-natural, kind="stable")[:budget]] = 1
        return quotas
    share = budget * natural / natural.sum()
    quotas = np.maximum(1, np.floor(share)).astype(np.int64)
    while quotas.sum() > budget:
        excess = np.where(quotas > 1, quotas - share, -np.inf)
        quotas[int(np.argmax(excess))] -= 1
    while quotas.sum() < budget:
        quotas[int(np.argmax(share - quotas))] += 1
    return quotas


def closest_assignment(
    dist: np.ndarray, quotas: np.ndarray, tiebreak: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """HUDD's greedy global assignment of pool inputs to clusters under quotas.

    Parameters
    ----------
    dist
        ``P x K`` distance of every pool input to every cluster.
    quotas
        ``(K,)`` number of inputs each cluster takes.
    tiebreak
        Optional ``P x K``: orders the clusters of one input where ``dist`` ties (the
        contrastive scores tie at 1 when an input coincides with a correct one; the raw
        distances then keep its nearest cluster first).

    Returns
    -------
    tuple
        ``(rows, cluster, last_rank)``: chosen pool rows in assignment order, the position
        (``0..K-1``) of the cluster each is assigned to, and the last rank ``r`` used
        (``-1`` if nothing was assigned). Ties in distance go to the lower pool row; ties
        between clusters at equal distance go to the lower cluster position.

    Notes
    -----
    Within one rank an assignment never changes another input's ``r``-th distance, so
    "repeatedly take the closest unassigned input" is one stable sort per rank; the first
    ``remaining[c]`` inputs of that order aimed at cluster ``c`` are the ones assigned.
    """
    n, k = dist.shape
    if tiebreak is None:
        ranked = np.argsort(dist, axis=1, kind="stable")
    else:
        ranked = np.lexsort((tiebreak, dist), axis=1)
    remaining = np.asarray(quotas, dtype=np.int64).copy()
    unassigned = np.ones(n, dtype=bool)
    rows: list[np.ndarray] = []
    cluster: list[np.ndarray] = []
    last_rank = -1
    for r in range(k):
        if remaining.sum() <= 0:
            break
        cand = np.flatnonzero(unassigned)
        if len(cand) == 0:
            break
        last_rank = r
        target = ranked[cand, r]
        order = np.argsort(dist[cand, target], kind="stable")
        cand, target = cand[order], target[order]
        # position of each candidate among those aimed at the same cluster, in distance order
        by_target = np.argsort(target, kind="stable")
        counts = np.bincount(target, minlength=k)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        position = np.empty(len(cand), dtype=np.int64)
        position[by_target] = np.arange(len(cand)) - first[target[by_target]]
        accept = position < remaining[target]
        rows.append(cand[accept])
        cluster.append(target[accept])
        remaining -= np.bincount(target[accept], minlength=k)
        unassigned[cand[accept]] = False
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), last_rank
    return np.concatenate(rows), np.concatenate(cluster), last_rank


@SELECTORS.register("closest", help="HUDD ClosestU: pool inputs nearest to the root-cause clusters")
class ClosestSelector(DistanceParameter, Selector):
    """HUDD's ClosestU unsafe-set selection (see the module docstring).

    Parameters
    ----------
    f
        Quota factor: ``U_c = ceil(f * |c|)`` (HUDD's tool: 2).
    batch_size
        Pool rows read and compared at a time; ``None`` picks about 64 MiB per batch. The
        result does not depend on it.
    distance
        ``"nearest"`` (HUDD: distance to the cluster's nearest member) or ``"contrastive"``
        (that distance relative to the distance to correctly classified inputs; see the
        module docstring).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"space"})
    DISTANCES = DISTANCES

    def __init__(
        self, *, f: float = 2.0, batch_size: int | None = None, distance: str = "nearest"
    ) -> None:
        self.f = f
        self.batch_size = batch_size
        self.distance = distance

    def _check_f(self) -> float:
        f = self.f
        if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f) or f <= 0:
            raise ConfigError(f"The 'f' parameter of closest must be a float > 0. Got {f!r}.")
        return float(f)

    def _clusters(
        self, clusters: ClusterSpace | None
    ) -> tuple[ClusterSpace, np.ndarray, np.ndarray]:
        if clusters is None:
            raise InvalidInputError(
                "The closest selector needs the root-cause clusters: pass "
                "clusters=ClusterSpace(features, labels) in the pool's feature space."
            )
        ids, sizes = eligible_clusters(clusters.labels)
        if len(ids) == 0:
            raise InvalidInputError(
                "The closest selector needs at least one root-cause cluster with 2 or more "
                "members; the clustering found none (only noise or singletons)."
            )
        return clusters, ids, sizes

    def natural_quotas(self, clusters: ClusterSpace) -> dict[int, int]:
        """``{cluster id: ceil(f * size)}`` for the clusters with at least 2 members."""
        _, ids, sizes = self._clusters(clusters)
        quotas = natural_quotas(sizes, self._check_f())
        return {int(c): int(q) for c, q in zip(ids, quotas, strict=True)}

    def natural_budget(self, clusters: ClusterSpace) -> int:
        """The method's own unsafe-set size, ``sum_c ceil(f * |c|)``."""
        return sum(self.natural_quotas(clusters).values())

    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        """Choose ``budget`` pool inputs by ClosestU with quotas scaled to the budget.

        ``oracle`` and ``rng`` are not used: the selection is deterministic.

        Raises
        ------
        ConfigError
            Bad ``budget``, ``f`` or ``batch_size``.
        InvalidInputError
            No clusters, no cluster with >= 2 members, no pool features, or features of
            different dimensions.
        """
        f = self._check_f()
        batch_size = check_batch_size(self.batch_size, self.name)
        space, ids, sizes = self._clusters(clusters)
        assert pool.features is not None  # select() checked it: ``requires`` holds "space"
        if self.distance not in self.DISTANCES:
            raise ConfigError(
                f"The 'distance' parameter of {self.name} must be one of "
                f"{', '.join(self.DISTANCES)}. Got {self.distance!r}."
            )
        if self.distance == "contrastive" and space.correct is None:
            raise InvalidInputError(
                f"The {self.name} selector needs features of correctly classified inputs: "
                "pass ClusterSpace(features, labels, correct=...) in the same feature space."
            )
        natural = natural_quotas(sizes, f)
        quotas = scale_quotas(natural, budget)
        if budget < len(ids):
            logger.warning(
                "closest: budget %d is smaller than the number of clusters (%d); %d clusters "
                "get no input.",
                budget,
                len(ids),
                len(ids) - budget,
            )
        member = np.isin(space.labels, ids)
        groups = np.searchsorted(ids, space.labels[member])
        reference = Reference(space.features[member], "ClusterSpace.features")
        dist = group_min_distances(
            pool.features,
            reference,
            groups,
            len(ids),
            batch_size=batch_size,
            what="PoolView.features",
        )
        raw = None
        if self.distance == "contrastive":
            raw = dist
            dist = contrastive_to_correct(pool.features, raw, space.correct, batch_size, self.name)
        rows, position, last_rank = closest_assignment(dist, quotas, tiebreak=raw)
        farther = int(np.sum(dist[rows, position] > dist[rows].min(axis=1))) if len(rows) else 0
        logger.info(
            "%s: selected %d pool images for %d clusters (ClosestU's own quota rule, %g per "
            "cluster member, would select %d); %s.",
            self.name,
            len(rows),
            len(ids),
            f,
            int(natural.sum()),
            f"{farther} went to a farther cluster because the quotas of nearer ones were full"
            if farther
            else "each went to the cluster nearest to it",
        )
        all_ids, all_sizes = np.unique(space.labels[space.labels >= 0], return_counts=True)
        info = {
            "selector": self.name,
            "params": {"f": f, "distance": self.distance},
            "cluster_sizes": {str(c): int(s) for c, s in zip(ids, sizes, strict=True)},
            "natural_quotas": {str(c): int(q) for c, q in zip(ids, natural, strict=True)},
            "natural_budget": int(natural.sum()),
            "quotas": {str(c): int(q) for c, q in zip(ids, quotas, strict=True)},
            "ignored_clusters": [int(c) for c, s in zip(all_ids, all_sizes, strict=True) if s < 2],
            "n_noise": int((space.labels < 0).sum()),
            "last_rank": int(last_rank),
        }
        if self.distance == "contrastive":
            info["n_correct_reference"] = len(space.correct)
        return Selection(
            ids=pool.ids[rows],
            cost=len(rows),
            cluster=ids[position],
            distance=dist[rows, position],
            info=info,
        )


@SELECTORS.register(
    "closest-contrast",
    help="ClosestU with a contrastive distance: near the clusters, far from correct inputs",
)
class ContrastiveClosestSelector(ClosestSelector):
    """ClosestU ranked by the contrastive score (module docstring); needs
    ``ClusterSpace.correct``. Same parameters as :class:`ClosestSelector`."""

    requires: ClassVar[frozenset[str]] = frozenset({"space", "correct"})

    def __init__(self, *, f: float = 2.0, batch_size: int | None = None) -> None:
        super().__init__(f=f, batch_size=batch_size, distance="contrastive")
