"""Cluster-count selection that cannot collapse (registered as ``guarded``).

Automatic cluster counts fail quietly in one way that purity does not show: one cluster holds
most errors. On a benchmark where most errors are nominal, that answer already scores a purity
of 0.74-0.84, yet it finds no cause hidden among them (an under-represented visual subtype of a
class, issue 13). Two guards prevent it:

* :func:`guarded_k_search` chooses ``k`` by silhouette, but when the silhouette curve is flat
  (other ``k`` within ``flat_tol`` of the best) and the best partition has one cluster holding
  more than ``max_share`` of the inputs, it takes the smallest ``k`` of the flat set that has
  no such cluster (the next ``k``);
* :class:`GuardedClusterer` runs any registered clusterer (DBSCAN by default), then splits
  further every cluster holding more than ``max_share`` of all inputs: per group first when the
  analysis passes groups (the errors' true classes, ``by = "true"``: a class's subtype is a
  cause only within its class), then within each part by :func:`guarded_k_search`. A part is
  kept whole when no split of it reaches ``min_silhouette``.
* With groups, a smaller cluster collapses in the same way when it spans several groups and
  holds most of each one's inputs (on average over its inputs, more than ``group_share`` of
  their group's inputs): e.g. every error of sandals, sneakers and ankle boots in one
  footwear cluster, with the under-represented subtypes of two of those classes inside. Such a
  cluster is split per group and each part by :func:`guarded_k_search` too. A cluster of one
  cause that spans the classes (a corruption) holds only its share of each class's errors
  and is left whole.

Both are the clusterer contract of :mod:`dnnsafety.clustering.base`; ``fit(x, groups=None)``
takes the optional group key per row (see :func:`error_groups`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np

from dnnsafety._validation import check_float_param as check_float
from dnnsafety._validation import check_int_param as check_int
from dnnsafety.clustering.base import CLUSTERERS, DEFAULT_SILHOUETTE_SAMPLE, Clusterer
from dnnsafety.clustering.duplicates import identical_rows
from dnnsafety.clustering.silhouette import SilhouetteScorer
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.types import JSONValue

GROUP_KEYS = ("", "true", "pred", "pair")
"""How errors are grouped: not at all, by true class, by predicted class, by confusion pair."""


def error_groups(
    by: str, true: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray
) -> np.ndarray | None:
    """Group key per error for a class-conditional clusterer.

    Parameters
    ----------
    by
        ``""`` (no groups: ``None``), ``"true"``, ``"pred"`` or ``"pair"`` (true x predicted).
    true, pred
        ``(N,)`` true and predicted class per error.

    Raises
    ------
    ConfigError
        ``by`` is not one of :data:`GROUP_KEYS`.
    """
    if by not in GROUP_KEYS:
        raise ConfigError(f"Group errors by one of {GROUP_KEYS}; got {by!r}.")
    t = np.asarray(true, dtype=np.int64)
    p = np.asarray(pred, dtype=np.int64)
    if by == "":
        return None
    if by == "true":
        return t
    if by == "pred":
        return p
    return t * (int(max(t.max(initial=0), p.max(initial=0))) + 1) + p


def guarded_k_search(
    x: np.ndarray,
    weights: np.ndarray,
    *,
    max_k: int = 10,
    max_share: float = 0.5,
    flat_tol: float = 0.05,
    min_silhouette: float = 0.0,
    sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, JSONValue]]:
    """k-means with ``k`` by silhouette and the collapse guard.

    Parameters
    ----------
    x
        ``M x d`` distinct rows.
    weights
        ``(M,)`` how many inputs each row stands for.
    max_k
        Largest ``k`` tried (also at most ``M - 1``).
    max_share
        Largest share of the inputs one cluster may hold when a flat curve allows it.
    flat_tol
        Silhouettes within this distance of the best one count as equally good.
    min_silhouette
        Below this best silhouette the rows stay one cluster (``reason = "no-structure"``).
    sample_size, seed
        Silhouette subsample (:class:`~dnnsafety.clustering.silhouette.SilhouetteScorer`) and
        k-means seed.

    Returns
    -------
    tuple
        Labels ``0..k-1`` per row and ``{"k", "silhouette", "largest_share", "reason",
        "curve"}``.
    """
    from sklearn.cluster import KMeans

    m = len(x)
    total = float(weights.sum())
    ks = list(range(2, min(max_k, m - 1) + 1))
    if not ks:
        return np.zeros(m, dtype=np.int64), {"k": 1, "reason": "too-few"}
    scorer = SilhouetteScorer(x, sample_size=sample_size, seed=seed, weights=weights)
    rows: list[tuple[int, float, float, np.ndarray]] = []
    for k in ks:
        lab = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(
            x, sample_weight=weights
        )
        lab = np.asarray(lab, dtype=np.int64)
        sil = scorer(lab)
        share = float(np.bincount(lab, weights=weights).max() / total)
        rows.append((k, -1.0 if math.isnan(sil) else float(sil), share, lab))
    curve: list[JSONValue] = [
        {"k": k, "silhouette": s, "largest_share": sh} for k, s, sh, _ in rows
    ]
    best = max(rows, key=lambda r: (r[1], -r[0]))
    if best[1] < min_silhouette:
        return np.zeros(m, dtype=np.int64), {
            "k": 1,
            "silhouette": best[1],
            "reason": "no-structure",
            "curve": curve,
        }
    flat = [r for r in rows if r[1] >= best[1] - flat_tol]
    spread = [r for r in flat if r[2] <= max_share]
    pick, reason = (spread[0], "guard: next k") if spread and best[2] > max_share else (best, "")
    return pick[3], {
        "k": pick[0],
        "silhouette": pick[1],
        "largest_share": pick[2],
        "reason": reason or "silhouette",
        "curve": curve,
    }


class GroupedClusterer(Clusterer):
    """Base of the clusterers that take an optional group key per row in ``fit``."""

    _groups: np.ndarray | None = None

    def fit(self, x: object, groups: object = None) -> Self:
        """Cluster the rows of ``x``; ``groups`` is an optional ``(N,)`` key per row.

        Raises
        ------
        InvalidInputError
            ``groups`` does not have one entry per row, or ``x`` is not finite 2-D numbers.
        """
        self._groups = None
        if groups is not None:
            arr = np.asarray(x)
            keys = np.asarray(groups).reshape(-1)
            if arr.ndim != 2 or len(keys) != arr.shape[0]:
                raise InvalidInputError(
                    f"groups needs one key per row of X; got {len(keys)} keys for shape "
                    f"{arr.shape}."
                )
            self._groups = keys[identical_rows(arr).first]
        try:
            return super().fit(x)
        finally:
            self._groups = None

    def fit_predict(self, x: object, groups: object = None) -> np.ndarray:
        """``fit(x, groups)`` and return a copy of ``labels_``."""
        return self.fit(x, groups).labels_.copy()


@CLUSTERERS.register(
    "guarded", help="any clusterer, then no cluster may hold most errors (split further)."
)
class GuardedClusterer(GroupedClusterer):
    """A registered clusterer, then the collapse guard (see the module docstring).

    Parameters
    ----------
    by
        The group key the analysis passes (:data:`GROUP_KEYS`; ``""``: none): a dominant
        cluster is split per group first.
    inner
        Name of the clusterer run first (:data:`~dnnsafety.clustering.CLUSTERERS`).
    inner_params
        Its parameters.
    max_share
        Largest share of all inputs one cluster may hold before it is split further.
    group_share
        Largest mean share of their group's inputs that the inputs of a cluster spanning
        several groups may share with it before it is split per group (``1.0``: never; only
        with groups).
    max_k, flat_tol, min_silhouette
        Of the split (:func:`guarded_k_search`).
    max_rounds
        Most splits.
    silhouette_sample_size
        Rows the silhouettes are computed on at most.
    random_state
        Seed of the inner clusterer and the splits.
    """

    _test_params: ClassVar[dict[str, Any]] = {"inner": "kmeans", "inner_params": {"max_k": 4}}

    def __init__(
        self,
        *,
        by: str = "true",
        inner: str = "dbscan",
        inner_params: dict[str, Any] | None = None,
        max_share: float = 0.5,
        group_share: float = 0.5,
        max_k: int = 10,
        flat_tol: float = 0.05,
        min_silhouette: float = 0.25,
        max_rounds: int = 10,
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state=random_state)
        self.by = by
        self.inner = inner
        self.inner_params = inner_params
        self.max_share = max_share
        self.group_share = group_share
        self.max_k = max_k
        self.flat_tol = flat_tol
        self.min_silhouette = min_silhouette
        self.max_rounds = max_rounds
        self.silhouette_sample_size = silhouette_sample_size

    def _checked_params(self) -> dict[str, JSONValue]:
        if self.inner not in CLUSTERERS or self.inner == "guarded":
            known = ", ".join(n for n in CLUSTERERS.names() if n != "guarded")
            raise ConfigError(
                f"The 'inner' parameter of GuardedClusterer must be one of {known}. "
                f"Got {self.inner!r}."
            )
        if self.by not in GROUP_KEYS:
            raise ConfigError(
                f"The 'by' parameter of GuardedClusterer must be one of {GROUP_KEYS}. "
                f"Got {self.by!r}."
            )
        return {
            **super()._checked_params(),
            "by": self.by,
            "inner": self.inner,
            "inner_params": dict(self.inner_params or {}),
            "max_share": check_float(self, "max_share", self.max_share, 0.0, 1.0),
            "group_share": check_float(self, "group_share", self.group_share, 0.0, 1.0),
            "max_k": check_int(self, "max_k", self.max_k, 2),
            "flat_tol": check_float(self, "flat_tol", self.flat_tol, 0.0, 2.0),
            "min_silhouette": check_float(self, "min_silhouette", self.min_silhouette, -1.0, 1.0),
            "max_rounds": check_int(self, "max_rounds", self.max_rounds, 0),
            "silhouette_sample_size": check_int(
                self, "silhouette_sample_size", self.silhouette_sample_size, 3
            ),
        }

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        params = dict(self.inner_params or {})
        inner = CLUSTERERS.create(self.inner, params, random_state=self.random_state)
        # the inner clusterer sees every input (its own duplicate handling weighs them)
        first = np.concatenate(([0], np.cumsum(weights)[:-1])).astype(np.int64)
        labels = np.asarray(inner.fit_predict(np.repeat(arr, weights, axis=0)))[first].copy()
        chosen: dict[str, JSONValue] = {
            "reason": f"{self.inner}, then split while a cluster holds > {self.max_share:g}"
            + (
                f" (or, over several groups, > {self.group_share:g} of each one's)"
                if self._groups is not None and self.group_share < 1.0
                else ""
            ),
            "inner": dict(getattr(inner, "params_", {})),
        }
        labels, table = split_dominant(
            arr, weights, labels, self._groups, config, int(self.random_state)
        )
        chosen["splits"] = len(table)
        return labels, chosen, table


def split_dominant(
    arr: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    config: dict[str, JSONValue],
    seed: int,
) -> tuple[np.ndarray, list[dict[str, JSONValue]]]:
    """Split, up to ``max_rounds`` times, the cluster holding more than ``max_share`` of all
    inputs: by ``groups`` when it spans several, then each part by :func:`guarded_k_search`;
    then, with groups, every cluster that spans several groups and holds on average more than
    ``group_share`` (default 1.0: none) of its inputs' groups (:func:`group_share`) likewise.

    Returns the new labels (noise stays ``-1``) and one record per split.
    """
    labels = labels.copy()
    total = float(weights.sum())
    max_share = float(str(config["max_share"]))
    done: set[int] = set()
    table: list[dict[str, JSONValue]] = []
    for _ in range(int(str(config["max_rounds"]))):
        kept = labels >= 0
        if not kept.any():
            break
        sizes = np.bincount(labels[kept], weights=weights[kept])
        order = [c for c in np.argsort(-sizes, kind="stable") if int(c) not in done]
        if not order or sizes[order[0]] / total <= max_share:
            break
        big = int(order[0])
        done.add(big)
        rows = np.flatnonzero(labels == big)
        parts = [rows]
        if groups is not None and len(np.unique(groups[rows])) > 1:
            parts = [rows[groups[rows] == g] for g in np.unique(groups[rows])]
        record: dict[str, JSONValue] = {"cluster": big, "share": float(sizes[big] / total)}
        table.append(record | _split_parts(arr, weights, labels, big, parts, config, seed, done))
    limit = float(str(config.get("group_share", 1.0)))
    if groups is None or limit >= 1.0:
        return labels, table
    for big in np.unique(labels[labels >= 0]).tolist():
        rows = np.flatnonzero(labels == big)
        keys = np.unique(groups[rows])
        share = group_share(weights, labels == big, groups)
        if len(keys) < 2 or share <= limit:
            continue
        parts = [rows[groups[rows] == g] for g in keys]
        record = {"cluster": int(big), "group_share": share}
        table.append(record | _split_parts(arr, weights, labels, big, parts, config, seed, done))
    return labels, table


def group_share(weights: np.ndarray, members: np.ndarray, groups: np.ndarray) -> float:
    """Mean, over the inputs of a cluster, of the share of their group's inputs in it.

    Parameters
    ----------
    weights
        ``(M,)`` inputs per row.
    members
        ``(M,)`` bool, the cluster's rows.
    groups
        ``(M,)`` group key per row.

    Returns
    -------
    float
        In ``[0, 1]``: 1 when the cluster holds every input of each group it spans.
    """
    _, inverse = np.unique(groups, return_inverse=True)
    per_group = np.bincount(inverse, weights=weights)
    inside = np.bincount(inverse[members], weights=weights[members], minlength=len(per_group))
    held = inside[inverse[members]] / per_group[inverse[members]]
    return float(np.average(held, weights=weights[members]))


def _split_parts(
    arr: np.ndarray,
    weights: np.ndarray,
    labels: np.ndarray,
    big: int,
    parts: list[np.ndarray],
    config: dict[str, JSONValue],
    seed: int,
    done: set[int],
) -> dict[str, JSONValue]:
    """Split each part of cluster ``big`` by :func:`guarded_k_search`, in place in ``labels``."""
    next_id = int(labels.max()) + 1
    ks: list[JSONValue] = []
    for i, part in enumerate(parts):
        sub, info = guarded_k_search(
            arr[part],
            weights[part],
            max_k=int(str(config["max_k"])),
            max_share=float(str(config["max_share"])),
            flat_tol=float(str(config["flat_tol"])),
            min_silhouette=float(str(config["min_silhouette"])),
            sample_size=int(str(config["silhouette_sample_size"])),
            seed=seed,
        )
        ks.append(int(str(info["k"])))
        if i == 0:  # the first part keeps the old id for its first sub-cluster
            labels[part] = np.where(sub == 0, big, next_id + sub - 1)
            next_id += int(sub.max())
        else:
            labels[part] = next_id + sub
            next_id += int(sub.max()) + 1
        done.update(np.unique(labels[part]).tolist())
    return {"parts": len(parts), "k_per_part": ks}


__all__ = [
    "GROUP_KEYS",
    "GroupedClusterer",
    "GuardedClusterer",
    "error_groups",
    "group_share",
    "guarded_k_search",
    "split_dominant",
]
