"""Hybrid selection: root-cause quotas filled by uncertainty, and Cluster-Margin (METHOD.md §10).

HUDD's ClosestU (:mod:`dnnsafety.selection.closest`) gives every root-cause cluster its share
of the labelling budget but fills it with the pool inputs *nearest* to the cluster, many of
which the model already classifies well. The uncertainty baselines (entropy, DeepGini) pick the
inputs the model is least sure of, but put every label on the root causes whose inputs look
most uncertain and none on the others. The two selectors here mix both.

``hybrid`` (root-cause quotas, uncertainty inside)
    1. Distance of every pool input to every root-cause cluster (>= 2 members) = distance to
       the cluster's nearest member, in the analysis feature space (as ClosestU).
    2. The *neighbourhood* of cluster ``c`` = the pool inputs nearer to ``c`` than to any
       other cluster, limited to the ``neighbourhood * U_c`` nearest of them.
    3. Quotas ``U_c``: HUDD's ``ceil(f * |c|)`` scaled to the budget (``quota="size"``), or
       weighted by the mean uncertainty of the cluster's neighbourhood (``quota="uncertainty"``:
       ``U_c`` proportional to ``|c| * mean u`` over its ``neighbourhood * |c|`` nearest
       candidates, so a root cause whose pool images the model already gets right gets
       fewer labels), or proportional to the neighbourhood's expected errors
       (``quota="errors"``: the sum of ``1 - max p`` over the same candidates), or a
       ``floor`` of labels for every cluster with the rest of the budget spent by global
       uncertainty (``quota="floor"``).
    4. Each cluster takes the ``U_c`` most uncertain inputs of its neighbourhood (uncertainty
       = entropy, DeepGini impurity or ``1 - max p``). Budget a cluster cannot use (a
       neighbourhood smaller than its quota) goes to the most uncertain remaining inputs of
       all neighbourhoods, then of the pool.

``cluster-margin`` (Citovsky et al., "Batch Active Learning at Scale", NeurIPS 2021)
    The ``candidates * budget`` pool inputs with the smallest margin (top-1 minus top-2
    softmax value) are clustered by agglomerative clustering with average linkage in the
    analysis feature space (one cluster per label of the budget); clusters are then visited
    from the smallest to the largest, round-robin, drawing one random unselected member of
    each, until the budget is spent. The paper clusters the whole pool once with HAC and
    takes ``k_m`` (1.25 to 10 times the batch) lowest-margin inputs; clustering only the
    candidates is the same where the candidates' clusters are what is sampled, at a cost of
    ``O(k_m^2)`` instead of ``O(P^2)``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.selection._nearest import Reference, group_min_distances, read_block
from dnnsafety.selection.closest import eligible_clusters, natural_quotas, scale_quotas
from dnnsafety.selection.contrastive import DistanceParameter
from dnnsafety.selection.contrastive import contrastive_to_correct as _distance
from dnnsafety.selection.selectors import (
    SELECTORS,
    ClusterSpace,
    Oracle,
    PoolView,
    Selection,
    Selector,
    check_batch_size,
    need_probs,
)
from dnnsafety.selection.uncertainty import (
    deepgini_score,
    entropy_score,
    max_softmax_uncertainty,
)

__all__ = [
    "ClusterMarginSelector",
    "HybridSelector",
    "hybrid_quotas",
    "margin_score",
    "uncertainty_score",
]

UNCERTAINTIES = {
    "entropy": entropy_score,
    "deepgini": deepgini_score,
    "margin": max_softmax_uncertainty,
}
"""Uncertainty scores the hybrid ranks by (higher = more uncertain)."""

QUOTA_RULES = ("size", "uncertainty", "errors", "floor")


def uncertainty_score(probs: np.ndarray, kind: str) -> np.ndarray:
    """``(P,)`` uncertainty of each softmax row: ``kind`` in :data:`UNCERTAINTIES`."""
    if kind not in UNCERTAINTIES:
        raise ConfigError(
            f"The 'uncertainty' parameter must be one of {', '.join(UNCERTAINTIES)}. Got {kind!r}."
        )
    return np.asarray(UNCERTAINTIES[kind](probs), dtype=np.float64)


def margin_score(probs: np.ndarray) -> np.ndarray:
    """``(P,)`` top-1 minus top-2 softmax value (Cluster-Margin's margin; small = uncertain)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] < 2:
        return np.ones(len(p))
    top = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return np.asarray(top[:, 1] - top[:, 0])


def hybrid_quotas(
    sizes: np.ndarray,
    budget: int,
    f: float,
    rule: str,
    neighbourhood_uncertainty: np.ndarray | None = None,
) -> np.ndarray:
    """Per-cluster quotas of the hybrid selector, summing to ``budget``.

    Parameters
    ----------
    sizes
        ``(K,)`` cluster sizes (test errors per root cause).
    budget
        Labels to spend.
    f
        HUDD's quota factor (``U_c = ceil(f * |c|)`` before scaling).
    rule
        ``"size"``: HUDD's quotas scaled to the budget; ``"uncertainty"``: natural quotas
        multiplied by ``neighbourhood_uncertainty`` (mean uncertainty of each cluster's
        nearest pool candidates) before scaling; ``"errors"``: proportional to
        ``neighbourhood_uncertainty`` alone (the expected errors of each cluster's
        candidates, ``sum(1 - max p)``), whatever the cluster's size.
    neighbourhood_uncertainty
        ``(K,)`` non-negative, required by ``"uncertainty"`` and ``"errors"``.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` int quotas, each >= 1 when ``budget >= K`` (:func:`scale_quotas`).
    """
    natural = natural_quotas(sizes, f)
    if rule == "size":
        return scale_quotas(natural, budget)
    if rule not in QUOTA_RULES:
        raise ConfigError(
            f"The 'quota' parameter must be one of {', '.join(QUOTA_RULES)}. Got {rule!r}."
        )
    if rule not in ("uncertainty", "errors"):  # "floor" is not a proportional rule
        raise ConfigError(
            f"hybrid_quotas computes the size, uncertainty and errors quotas. Got {rule!r}."
        )
    if neighbourhood_uncertainty is None:
        raise InvalidInputError(f"quota={rule!r} needs each neighbourhood's uncertainty.")
    u = np.maximum(np.asarray(neighbourhood_uncertainty, dtype=np.float64), 0)
    # "uncertainty": |c| times the mean uncertainty; "errors": the expected errors themselves
    weight = natural * u if rule == "uncertainty" else u
    if not np.isfinite(weight).all() or weight.sum() <= 0:
        return scale_quotas(natural, budget)
    # scale_quotas takes ints: keep 6 significant digits of the weights
    scaled = np.maximum(1, np.round(weight / weight.max() * 1e6)).astype(np.int64)
    return scale_quotas(scaled, budget)


def _check_positive(value: object, name: str, selector: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"The {name!r} parameter of {selector} must be a number > 0. Got {value!r}."
        )
    return float(value)


def _check_floor(value: object, selector: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"The 'floor' parameter of {selector} must be an int >= 0. Got {value!r}."
        )
    return value


@SELECTORS.register(
    "hybrid",
    help="root-cause quotas (HUDD) filled with the most uncertain inputs of each cluster's "
    "neighbourhood",
)
class HybridSelector(DistanceParameter, Selector):
    """Root-cause quotas filled by uncertainty inside each cluster's neighbourhood.

    See the module docstring for the algorithm.

    Parameters
    ----------
    f
        HUDD's quota factor (``U_c = ceil(f * |c|)``, scaled to the budget).
    neighbourhood
        A cluster's candidates are its ``neighbourhood * U_c`` nearest pool inputs (among
        those nearest to it); ``> 0``. Small: ClosestU; large: uncertainty inside the
        cluster's whole Voronoi cell.
    uncertainty
        ``"entropy"``, ``"deepgini"`` or ``"margin"`` (``1 - max p``).
    quota
        ``"uncertainty"`` (HUDD's quotas weighted by each neighbourhood's mean uncertainty; the
        default, chosen on the signs benchmark, docs/retraining.md), ``"size"`` (HUDD's
        quotas as they are), ``"errors"`` (proportional to each neighbourhood's expected
        errors, ``sum(1 - max p)``) or ``"floor"`` (``floor`` labels per root cause, the rest
        by global uncertainty).
    batch_size
        Pool rows compared at a time (``None``: automatic); the result does not depend on it.
    balance
        Whether the bag is balanced per cluster as HUDD's (``Selection.cluster`` and
        ``Selection.distance`` set as for ClosestU). Off by default: the quotas already share
        the labels among the root causes, and balancing on top gives every cluster the same
        share of the bag whatever its size (on signs with 11 HUDD clusters, the largest cause,
        night with 31% of the errors, got 1/11 of the bag; measured in docs/retraining.md).
        Without it, each chosen input is in the bag once (topped up like the baselines') and
        its cluster is in ``Selection.info["assigned"]``.
    floor
        With ``quota="floor"``: labels every root cause gets (at most ``budget // K``), the
        most uncertain of its ``neighbourhood * floor`` nearest inputs; the rest of the budget
        goes to the most uncertain remaining pool inputs, wherever they are. An int >= 0.
    distance
        ``"nearest"`` (ClosestU's) or ``"contrastive"`` (``closest-contrast``'s; needs
        ``ClusterSpace.correct``): the distance that makes the neighbourhoods.

    Notes
    -----
    Deterministic (``seeded = False``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "space"})

    def __init__(
        self,
        *,
        f: float = 2.0,
        neighbourhood: float = 4.0,
        uncertainty: str = "entropy",
        quota: str = "uncertainty",
        floor: int = 10,
        batch_size: int | None = None,
        balance: bool = False,
        distance: str = "nearest",
    ) -> None:
        self.distance = distance
        self.f = f
        self.neighbourhood = neighbourhood
        self.uncertainty = uncertainty
        self.quota = quota
        self.floor = floor
        self.batch_size = batch_size
        self.balance = balance

    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        """Fill each root cause's quota with its neighbourhood's most uncertain inputs.

        Raises
        ------
        ConfigError
            A bad parameter.
        InvalidInputError
            No root-cause cluster with 2 or more members.
        """
        f = _check_positive(self.f, "f", self.name)
        factor = _check_positive(self.neighbourhood, "neighbourhood", self.name)
        if self.quota not in QUOTA_RULES:
            raise ConfigError(
                f"The 'quota' parameter of {self.name} must be one of {', '.join(QUOTA_RULES)}. "
                f"Got {self.quota!r}."
            )
        batch_size = check_batch_size(self.batch_size, self.name)
        probs = need_probs(pool, self.name)
        score = uncertainty_score(probs, self.uncertainty)
        assert clusters is not None and pool.features is not None  # requires "space"
        ids, sizes = eligible_clusters(clusters.labels)
        if len(ids) == 0:
            raise InvalidInputError(
                f"The {self.name} selector needs at least one root-cause cluster with 2 or more "
                "members; the clustering found none (only noise or singletons)."
            )
        member = np.isin(clusters.labels, ids)
        dist = group_min_distances(
            pool.features,
            Reference(clusters.features[member], "ClusterSpace.features"),
            np.searchsorted(ids, clusters.labels[member]),
            len(ids),
            batch_size=batch_size,
            what="PoolView.features",
        )
        ok = clusters.correct
        dist = _distance(pool.features, dist, ok, batch_size, self.name, self.distance)
        nearest = np.argmin(dist, axis=1)
        own = dist[np.arange(len(dist)), nearest]
        # each cluster's cell, nearest first (ties: lower pool row)
        cells = [
            (rows := np.flatnonzero(nearest == k))[np.argsort(own[rows], kind="stable")]
            for k in range(len(ids))
        ]
        mean_u = None
        if self.quota in ("uncertainty", "errors"):
            natural = natural_quotas(sizes, f)
            # "uncertainty": mean score; "errors": expected errors, sum of 1 - max p
            per_input = score if self.quota == "uncertainty" else max_softmax_uncertainty(probs)
            reduce = np.mean if self.quota == "uncertainty" else np.sum
            mean_u = np.array(
                [
                    float(reduce(per_input[cell[: max(1, math.ceil(factor * q))]]))
                    if len(cell)
                    else 0.0
                    for cell, q in zip(cells, natural, strict=True)
                ]
            )
        if self.quota == "floor":
            floor = _check_floor(self.floor, self.name)
            quotas = np.minimum(floor, budget // len(ids)).astype(np.int64)
            quotas = np.broadcast_to(quotas, (len(ids),)).copy()
        else:
            quotas = hybrid_quotas(sizes, budget, f, self.quota, mean_u)
        chosen: list[int] = []
        cluster_of: list[int] = []
        spare: list[np.ndarray] = []
        for k, (cell, q) in enumerate(zip(cells, quotas, strict=True)):
            cand = cell[: max(int(q), math.ceil(factor * q))]
            order = cand[np.argsort(-score[cand], kind="stable")]
            take = order[: int(q)]
            chosen += take.tolist()
            cluster_of += [k] * len(take)
            spare.append(order[int(q) :])
        unused = budget - len(chosen)
        filled = 0
        if unused > 0:  # a neighbourhood smaller than its quota: the rest by uncertainty
            rest = np.concatenate(spare) if spare else np.zeros(0, dtype=np.int64)
            if self.quota == "floor":  # the budget above the floors: by global uncertainty
                rest = np.zeros(0, dtype=np.int64)
            taken = np.zeros(len(pool), dtype=bool)
            taken[chosen] = True
            others = np.flatnonzero(~taken & ~np.isin(np.arange(len(pool)), rest))
            for group in (rest, others):
                group = group[np.argsort(-score[group], kind="stable")][:unused]
                chosen += group.tolist()
                cluster_of += nearest[group].tolist()
                unused -= len(group)
                filled += len(group)
        rows = np.asarray(chosen, dtype=np.int64)
        position = np.asarray(cluster_of, dtype=np.int64)
        info = {
            "selector": self.name,
            "params": {
                "f": f,
                "neighbourhood": factor,
                "uncertainty": self.uncertainty,
                "quota": self.quota,
                "distance": self.distance,
                **({"floor": int(self.floor)} if self.quota == "floor" else {}),
            },
            "cluster_sizes": {str(c): int(s) for c, s in zip(ids, sizes, strict=True)},
            "quotas": {str(c): int(q) for c, q in zip(ids, quotas, strict=True)},
            "neighbourhood_sizes": {str(c): len(cell) for c, cell in zip(ids, cells, strict=True)},
            "filled_outside_quotas": filled,
            "balance": bool(self.balance),
            "assigned": {
                str(c): int(n)
                for c, n in zip(ids, np.bincount(position, minlength=len(ids)), strict=True)
            },
        }
        if mean_u is not None:
            info["neighbourhood_uncertainty"] = {
                str(c): float(u) for c, u in zip(ids, mean_u, strict=True)
            }
        return Selection(
            ids=pool.ids[rows],
            cost=len(rows),
            cluster=ids[position] if self.balance else None,
            distance=dist[rows, position] if self.balance else None,
            scores=score[rows],
            info=info,
        )


@SELECTORS.register(
    "cluster-margin",
    help="Cluster-Margin (Citovsky et al. 2021): lowest-margin inputs, diversified by HAC",
)
class ClusterMarginSelector(Selector):
    """Cluster-Margin batch active learning (see the module docstring).

    Parameters
    ----------
    candidates
        ``k_m = candidates * budget`` lowest-margin pool inputs are clustered (the paper's
        ``k_m / k_t``; it uses up to 10). ``>= 1``.
    max_candidates
        Cap on ``k_m`` (agglomerative clustering is quadratic in it).
    batch_size
        Unused rows-per-read hint kept for a uniform interface (``None``).

    Notes
    -----
    Seeded: the draw inside each HAC cluster is random. Needs the pool's softmax outputs and
    its features in the analysis feature space (``requires = {"probs", "space"}``); the
    root-cause clusters themselves are not used.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "space"})
    seeded: ClassVar[bool] = True

    def __init__(
        self, *, candidates: float = 10.0, max_candidates: int = 4000, batch_size: int | None = None
    ) -> None:
        self.candidates = candidates
        self.max_candidates = max_candidates
        self.batch_size = batch_size

    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        """Lowest-margin candidates, HAC-clustered, sampled round-robin from small clusters.

        Raises
        ------
        ConfigError
            A bad parameter.
        """
        from sklearn.cluster import AgglomerativeClustering

        factor = _check_positive(self.candidates, "candidates", self.name)
        if factor < 1:
            raise ConfigError(f"The 'candidates' parameter of {self.name} must be >= 1.")
        cap = self.max_candidates
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ConfigError(
                f"The 'max_candidates' parameter of {self.name} must be an int >= 1. Got {cap!r}."
            )
        check_batch_size(self.batch_size, self.name)
        margin = margin_score(need_probs(pool, self.name))
        k_m = min(len(pool), max(budget, min(cap, math.ceil(factor * budget))))
        cand = np.argsort(margin, kind="stable")[:k_m]
        assert pool.features is not None  # requires "space"
        feats = np.concatenate(
            [read_block(pool.features, int(r), int(r) + 1, "PoolView.features") for r in cand]
        ).astype(np.float64)
        n_hac = min(budget, k_m)
        if n_hac >= 2 and k_m > n_hac:
            hac = AgglomerativeClustering(n_clusters=n_hac, linkage="average").fit(feats)
            labels = np.asarray(hac.labels_)
        else:
            labels = np.arange(k_m)
        groups = [cand[labels == g] for g in np.unique(labels)]
        # smallest clusters first (ties: the cluster whose first candidate has the lower margin)
        groups.sort(key=len)
        pools = [list(rng.permutation(g)) for g in groups]
        rows: list[int] = []
        while len(rows) < budget and any(pools):
            for members in pools:
                if members and len(rows) < budget:
                    rows.append(int(members.pop()))
        info = {
            "selector": self.name,
            "params": {"candidates": factor, "max_candidates": cap},
            "k_m": int(k_m),
            "hac_clusters": len(groups),
        }
        chosen = np.asarray(rows, dtype=np.int64)
        return Selection(ids=pool.ids[chosen], cost=len(chosen), scores=-margin[chosen], info=info)


@SELECTORS.register(
    "hybrid-size",
    help="hybrid with HUDD's quotas (proportional to cluster size) instead of uncertainty-weighted",
)
class SizeQuotaHybridSelector(HybridSelector):
    """:class:`HybridSelector` with ``quota="size"`` (HUDD's quotas, proportional to cluster
    size, scaled to the budget). Same parameters otherwise."""

    def __init__(
        self,
        *,
        f: float = 2.0,
        neighbourhood: float = 4.0,
        uncertainty: str = "entropy",
        batch_size: int | None = None,
        balance: bool = False,
    ) -> None:
        super().__init__(
            f=f,
            neighbourhood=neighbourhood,
            uncertainty=uncertainty,
            quota="size",
            batch_size=batch_size,
            balance=balance,
        )
