"""Clusterers of the black-box (SAFE) pipeline (METHOD.md §3).

The features of the error-inducing inputs, optionally reduced (:mod:`.reducers`), are grouped
into root-cause clusters. Four clusterers are registered in :data:`CLUSTERERS`:

``dbscan``
    DBSCAN with ``eps`` and ``min_samples`` chosen without ground truth: for each
    ``min_samples`` of a small grid, candidate ``eps`` values come from the sorted k-distance
    curve (its Kneedle knee and quantiles around it plus a fixed quantile grid); every
    candidate is scored by ``silhouette(non-noise) * (1 - noise share)`` and the best one
    with at least 2 clusters and a positive silhouette wins. If none qualifies, the
    candidate with the least noise that forms one cluster is used (``reason =
    "single-cluster"``). Noise stays noise (label -1).
``hdbscan``
    scikit-learn's HDBSCAN (excess-of-mass selection); noise is -1.
``kmeans``, ``ward``
    k-means and Ward linkage with ``k`` in ``2..min(max_k, N - 1, distinct rows)`` chosen by
    the highest silhouette (smallest ``k`` on ties). Neither can answer "one cluster" for
    ``N >= 3`` distinct rows: silhouette is undefined for ``k = 1``.

Every silhouette is computed on the same random subsample of at most
``silhouette_sample_size`` rows (seeded), from one distance matrix, so that the candidates
are compared on equal terms and the cost stays bounded for large ``N``.

Contract (scikit-learn style): ``__init__`` stores keyword arguments; ``fit(X)`` returns
``self``; ``labels_`` (int64; -1 = noise, clusters ``0..K-1`` by decreasing size, ties by
smallest member index), ``n_clusters_``, ``n_noise_``, ``params_`` (the parameters used and
``reason``, how they were chosen; JSON-serialisable) and ``search_`` (one dict per tried
candidate) are set by ``fit``; reading them earlier raises
:class:`~dnnsafety.exceptions.NotFittedError`. ``fit_predict(X)`` returns ``labels_``.

Identical rows (repeated frames) always get the same label: every clusterer runs on the
distinct rows and maps the labels back (:mod:`.duplicates`). DBSCAN (``sample_weight``),
k-means (``sample_weight``), Ward (built on all rows, where identical rows merge first) and
every silhouette weigh a distinct row by how often it occurs, so they give what they would
give on all rows; HDBSCAN has no weights and sees each distinct row once.
``params_["n_distinct"]`` is the number of distinct rows.

Inputs every clusterer handles the same way (``params_["reason"]``): ``N = 0`` gives empty
labels and 0 clusters (``"empty"``); ``N = 1`` one cluster (``"single-input"``); ``N = 2``,
or only two distinct rows, one cluster (``"two-inputs"``: two singletons or two noise points
would be no root cause at all, and nothing distinguishes the cases); all rows identical: one
cluster (``"identical-inputs"``). Non-finite values raise
:class:`~dnnsafety.exceptions.InvalidInputError`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np

from dnnsafety.clustering.duplicates import identical_rows
from dnnsafety.clustering.hudd import kneedle, ward_tree
from dnnsafety.clustering.indices import canonical_labels, silhouette_from_sums
from dnnsafety.clustering.reducers import (
    FittedStateMixin,
    JSONValue,
    check_features,
    check_float,
    check_int,
)
from dnnsafety.exceptions import ConfigError
from dnnsafety.registry import Registry

logger = logging.getLogger(__name__)

DEFAULT_SILHOUETTE_SAMPLE = 2000

REASONS = {
    "empty": "nothing to cluster",
    "single-input": "a single input",
    "two-inputs": "two distinct inputs make one cluster",
    "identical-inputs": "all inputs are identical",
    "silhouette": "parameters chosen by the best silhouette",
    "no-silhouette": "no silhouette defined; the first candidate kept",
    "single-cluster": "no split scored well; the candidate with the least noise kept",
    "all-noise": "every candidate left all inputs as noise",
    "hdbscan": "HDBSCAN's own choice",
}
"""``params_["reason"]`` in words, for log messages."""


# --------------------------------------------------------------------------- helpers


def finalize_labels(labels: np.ndarray) -> np.ndarray:
    """Noise (any negative label) -> -1; clusters renumbered ``0..K-1`` by decreasing size.

    Parameters
    ----------
    labels
        Integer label per input; negative values mean noise.

    Returns
    -------
    numpy.ndarray
        int64 labels; ties in size are ordered by the smallest member index.
    """
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    out = np.full(lab.shape, -1, dtype=np.int64)
    keep = lab >= 0
    if keep.any():
        out[keep] = canonical_labels(lab[keep])
    return out


class SilhouetteScorer:
    """Mean silhouette of partitions of ``X``, on one fixed subsample.

    The pairwise Euclidean distances of at most ``sample_size`` rows (drawn once, seeded)
    are computed once; every partition is then scored on those rows, leaving out noise.

    Parameters
    ----------
    x
        ``N x d`` data (validated float64).
    sample_size
        Largest number of rows used; all rows when ``N <= sample_size``.
    seed
        Seed of the subsample.
    weights
        How many inputs each row stands for (identical inputs kept once); ``None`` = 1 each.
        The score is then the silhouette of the data with every row repeated that often.
    """

    def __init__(
        self, x: np.ndarray, *, sample_size: int, seed: int, weights: np.ndarray | None = None
    ) -> None:
        from sklearn.metrics import pairwise_distances

        n = x.shape[0]
        if n > sample_size:
            rng = np.random.default_rng(seed)
            self.index = np.sort(rng.choice(n, size=sample_size, replace=False))
        else:
            self.index = np.arange(n)
        # Whether the subsample is the whole data (then ``distances`` is ``N x N``, in order).
        self.covers_all = n <= sample_size
        self.distances = pairwise_distances(x[self.index])
        np.fill_diagonal(self.distances, 0.0)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self.weights = w[self.index]

    def __call__(self, labels: np.ndarray) -> float:
        """Mean silhouette of the non-noise sampled rows; NaN unless ``2 <= K <= M - 1``.

        ``M`` counts inputs, i.e. the weights of the non-noise sampled rows.
        """
        lab = np.asarray(labels)[self.index]
        keep = lab >= 0
        clusters, own = np.unique(lab[keep], return_inverse=True)
        k = clusters.size
        w = self.weights[keep]
        m = float(w.sum())
        if not 2 <= k <= m - 1:
            return math.nan
        d = self.distances[np.ix_(keep, keep)] if keep.sum() < lab.size else self.distances
        onehot = np.zeros((own.size, k))
        onehot[np.arange(own.size), own] = w
        sums = d @ onehot
        sizes = onehot.sum(axis=0)
        s = silhouette_from_sums(sums, sizes, own.reshape(-1))
        return float(np.dot(s, w) / m)


def search_k_by_silhouette(
    labels_for_k: Callable[[int], np.ndarray], ks: Sequence[int], scorer: SilhouetteScorer
) -> tuple[int, np.ndarray, list[dict[str, JSONValue]], bool]:
    """Try every ``k`` and keep the partition with the highest silhouette.

    Parameters
    ----------
    labels_for_k
        Partition of the data into ``k`` clusters.
    ks
        Candidate numbers of clusters (increasing, non-empty).
    scorer
        Silhouette of a partition.

    Returns
    -------
    tuple
        ``(k, labels, table, scored)``: the chosen ``k`` (smallest on ties), its labels, one
        ``{"k", "silhouette"}`` row per candidate, and whether any silhouette was defined
        (else the first candidate is returned).
    """
    best_k, best_labels, best_score = -1, np.zeros(0, dtype=np.int64), -math.inf
    first: np.ndarray | None = None
    table: list[dict[str, JSONValue]] = []
    for k in ks:
        labels = labels_for_k(int(k))
        if first is None:
            first = labels
        score = scorer(labels)
        table.append({"k": int(k), "silhouette": None if math.isnan(score) else score})
        if not math.isnan(score) and score > best_score:
            best_k, best_labels, best_score = int(k), labels, score
    if best_k < 0:
        if first is None:
            raise ValueError("search_k_by_silhouette needs at least one candidate k")
        return int(ks[0]), first, table, False
    return best_k, best_labels, table, True


# --------------------------------------------------------------------------- base class


class Clusterer(FittedStateMixin):
    """Base class of the clusterers; subclasses implement :meth:`_cluster`.

    Attributes
    ----------
    labels_
        int64 label per input: -1 = noise, clusters ``0..K-1`` by decreasing size.
    n_clusters_
        Number of clusters ``K`` (noise excluded).
    n_noise_
        Number of inputs labelled -1.
    n_features_in_
        Number of columns seen in ``fit``.
    params_
        Parameters used, plus ``"reason"`` (how they were chosen). JSON-serialisable.
    search_
        One JSON-serialisable dict per candidate tried (empty when nothing was searched).
    """

    labels_: np.ndarray
    n_clusters_: int
    n_noise_: int
    n_features_in_: int
    params_: dict[str, JSONValue]
    search_: list[dict[str, JSONValue]]

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, x: object) -> Self:
        """Cluster the rows of ``x`` (``n_samples x n_features``) and return ``self``.

        Raises
        ------
        InvalidInputError
            If ``x`` is not a finite 2-D numeric array.
        ConfigError
            If a constructor parameter is invalid.
        """
        check_int(self, "seed", self.seed, 0)
        config = self._checked_params()
        arr = check_features(x)
        n = arr.shape[0]
        groups = identical_rows(arr)
        reason = self._trivial_reason(n, groups.n_distinct)
        if reason is not None:
            labels = np.zeros(n, dtype=np.int64)
            params: dict[str, JSONValue] = {**config, "reason": reason}
            search: list[dict[str, JSONValue]] = []
        else:
            distinct, chosen, search = self._cluster(arr[groups.first], config, groups.counts)
            labels = groups.expand(distinct)
            params = {**config, **chosen}
        params["n_distinct"] = groups.n_distinct
        self.labels_ = finalize_labels(labels)
        self.n_clusters_ = int(self.labels_.max()) + 1 if n else 0
        self.n_noise_ = int(np.sum(self.labels_ < 0))
        self.n_features_in_ = int(arr.shape[1])
        self.params_ = params
        self.search_ = search
        copies = f" ({groups.n_distinct} distinct)" if groups.has_duplicates else ""
        logger.info(
            "%s: %d inputs%s -> %d clusters, %d noise points (%s).",
            type(self).__name__.removesuffix("Clusterer").lower(),
            n,
            copies,
            self.n_clusters_,
            self.n_noise_,
            REASONS.get(str(params.get("reason")), params.get("reason")),
        )
        return self

    def fit_predict(self, x: object) -> np.ndarray:
        """``fit(x)`` and return a copy of ``labels_``."""
        return self.fit(x).labels_.copy()

    @staticmethod
    def _trivial_reason(n: int, n_distinct: int) -> str | None:
        if n == 0:
            return "empty"
        if n == 1:
            return "single-input"
        if n_distinct == 1:
            return "identical-inputs" if n > 2 else "two-inputs"
        if n_distinct == 2:
            return "two-inputs"
        return None

    def _checked_params(self) -> dict[str, JSONValue]:
        """Validate the constructor parameters; return them as a JSON-serialisable dict."""
        return {"seed": int(self.seed)}

    def _cluster(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        """Labels (negative = noise), chosen parameters and search table.

        ``arr`` holds the distinct rows (at least 3), ``weights`` how many inputs each stands
        for.
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({args})"


CLUSTERERS: Registry[type[Clusterer]] = Registry("clusterer")
"""Clusterers by name: ``dbscan``, ``hdbscan``, ``kmeans``, ``ward``."""


class _SilhouetteK(Clusterer):
    """Shared parameters and search of the clusterers whose ``k`` is chosen by silhouette."""

    def __init__(
        self,
        *,
        max_k: int = 30,
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.max_k = max_k
        self.silhouette_sample_size = silhouette_sample_size

    def _checked_params(self) -> dict[str, JSONValue]:
        return {
            **super()._checked_params(),
            "max_k": check_int(self, "max_k", self.max_k, 2),
            "silhouette_sample_size": check_int(
                self, "silhouette_sample_size", self.silhouette_sample_size, 3
            ),
        }

    def _cluster(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        n = int(weights.sum())
        hi = min(int(config["max_k"]), n - 1, arr.shape[0])
        ks = list(range(2, hi + 1))
        scorer = SilhouetteScorer(
            arr,
            sample_size=int(config["silhouette_sample_size"]),
            seed=int(self.seed),
            weights=weights,
        )
        k, labels, table, scored = search_k_by_silhouette(
            self._labels_factory(arr, config, weights), ks, scorer
        )
        best = max(
            (row["silhouette"] for row in table if row["silhouette"] is not None), default=None
        )
        chosen = {"k": k, "silhouette": best, "reason": "silhouette" if scored else "no-silhouette"}
        return labels, chosen, table

    def _labels_factory(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> Callable[[int], np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract


# --------------------------------------------------------------------------- k-means, Ward


@CLUSTERERS.register("kmeans", help="k-means, k in 2..30 by silhouette.")
class KMeansClusterer(_SilhouetteK):
    """k-means (k-means++ initialisation) with ``k`` chosen by silhouette.

    Parameters
    ----------
    max_k
        Largest ``k`` tried (also at most ``N - 1`` and the number of distinct rows).
    n_init
        k-means restarts per ``k`` (best inertia kept).
    silhouette_sample_size
        Rows used for the silhouette (see the module docstring).
    seed
        Random state of k-means and of the silhouette subsample.
    """

    def __init__(
        self,
        *,
        max_k: int = 30,
        n_init: int = 10,
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        seed: int = 0,
    ) -> None:
        super().__init__(max_k=max_k, silhouette_sample_size=silhouette_sample_size, seed=seed)
        self.n_init = n_init

    def _checked_params(self) -> dict[str, JSONValue]:
        return {**super()._checked_params(), "n_init": check_int(self, "n_init", self.n_init, 1)}

    def _labels_factory(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> Callable[[int], np.ndarray]:
        from sklearn.cluster import KMeans

        def labels_for_k(k: int) -> np.ndarray:
            model = KMeans(n_clusters=k, n_init=int(config["n_init"]), random_state=self.seed)
            return np.asarray(model.fit_predict(arr, sample_weight=weights), dtype=np.int64)

        return labels_for_k


@CLUSTERERS.register("ward", help="Agglomerative Ward linkage, k in 2..30 by silhouette.")
class WardClusterer(_SilhouetteK):
    """Agglomerative clustering with Ward linkage (Euclidean), ``k`` chosen by silhouette.

    The tree is built once; the cut into exactly ``k`` clusters is read from it for every
    candidate (:class:`~dnnsafety.clustering.hudd.WardTree`). Memory grows as ``N^2``.

    Parameters
    ----------
    max_k
        Largest ``k`` tried (also at most ``N - 1`` and the number of distinct rows).
    silhouette_sample_size
        Rows used for the silhouette (see the module docstring).
    seed
        Seed of the silhouette subsample (Ward itself is deterministic).
    """

    def _labels_factory(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> Callable[[int], np.ndarray]:
        # Ward has no weights, but on all rows identical ones merge first (at height 0), which
        # is Ward with weights; each distinct row then reads the label of its first copy
        first = np.concatenate(([0], np.cumsum(weights)[:-1])).astype(np.int64)
        tree = ward_tree(np.repeat(arr, weights, axis=0), optimal_ordering=False)

        def labels_for_k(k: int) -> np.ndarray:
            return tree.labels(k)[first]

        return labels_for_k


# --------------------------------------------------------------------------- DBSCAN


@CLUSTERERS.register("dbscan", help="DBSCAN, eps and min_samples chosen by silhouette.")
class DBSCANClusterer(Clusterer):
    """DBSCAN with ``eps`` and ``min_samples`` chosen automatically (no ground truth).

    For each ``min_samples`` in ``min_samples_grid`` (clamped to ``2..N - 1``) the distance
    of every input to its ``(min_samples - 1)``-th nearest other input is sorted (the
    k-distance curve, on which DBSCAN's core points are those at or below ``eps``).
    Candidate ``eps`` values are the curve's Kneedle knee (convex, increasing), the curve at
    quantiles ``q_knee + knee_offsets`` and at the fixed ``quantiles``. Each candidate is
    scored by ``silhouette(non-noise) * (1 - noise share)``; the best one with at least two
    clusters and a positive silhouette wins (first in grid order on ties). Otherwise the
    candidate with the least noise and one cluster is used; if every candidate is all noise,
    all inputs stay noise. Identical inputs are clustered once with their count as
    ``sample_weight`` and count in the k-distance curve, the noise share and the silhouette
    as often as they occur: the result is DBSCAN's on all inputs, with copies never split.

    Parameters
    ----------
    min_samples_grid
        Values of DBSCAN's ``min_samples`` (the point itself included) to try.
    quantiles
        Fixed quantiles of the k-distance curve tried as ``eps``.
    knee_offsets
        Offsets, in quantile units, around the knee's quantile tried as ``eps``.
    silhouette_sample_size
        Rows used for the silhouette (see the module docstring).
    seed
        Seed of the silhouette subsample (DBSCAN itself is deterministic).
    """

    def __init__(
        self,
        *,
        min_samples_grid: Sequence[int] = (3, 5, 10),
        quantiles: Sequence[float] = (0.5, 0.75, 0.9, 0.95),
        knee_offsets: Sequence[float] = (-0.1, -0.05, 0.0, 0.05, 0.1),
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.min_samples_grid = min_samples_grid
        self.quantiles = quantiles
        self.knee_offsets = knee_offsets
        self.silhouette_sample_size = silhouette_sample_size

    def _checked_params(self) -> dict[str, JSONValue]:
        grid = _as_sequence(self, "min_samples_grid", self.min_samples_grid)
        quantiles = _as_sequence(self, "quantiles", self.quantiles)
        offsets = _as_sequence(self, "knee_offsets", self.knee_offsets)
        return {
            **super()._checked_params(),
            "min_samples_grid": [check_int(self, "min_samples_grid", m, 2) for m in grid],
            "quantiles": [check_float(self, "quantiles", q, 0.0, 1.0) for q in quantiles],
            "knee_offsets": [check_float(self, "knee_offsets", o, -1.0, 1.0) for o in offsets],
            "silhouette_sample_size": check_int(
                self, "silhouette_sample_size", self.silhouette_sample_size, 3
            ),
        }

    def _cluster(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        from sklearn.cluster import DBSCAN

        n = int(weights.sum())
        scorer = SilhouetteScorer(
            arr,
            sample_size=int(config["silhouette_sample_size"]),
            seed=int(self.seed),
            weights=weights,
        )
        full = scorer.distances if scorer.covers_all else None
        grid = sorted({min(max(int(m), 2), n - 1) for m in config["min_samples_grid"]})
        table: list[dict[str, JSONValue]] = []
        results: list[np.ndarray] = []
        neighbour_d, neighbour_w = _neighbours(arr, full, weights, max(grid))
        for ms in grid:
            k_dist = _k_distances(neighbour_d, neighbour_w, weights, ms)
            for eps, source in _eps_candidates(k_dist, config):
                if full is not None:
                    model = DBSCAN(eps=eps, min_samples=ms, metric="precomputed")
                    labels = model.fit_predict(full, sample_weight=weights)
                else:
                    labels = DBSCAN(eps=eps, min_samples=ms).fit_predict(arr, sample_weight=weights)
                labels = np.asarray(labels, dtype=np.int64)
                n_clusters = int(labels.max()) + 1
                noise_share = float(weights[labels < 0].sum() / n)
                sil = scorer(labels) if n_clusters >= 2 else math.nan
                score = sil * (1.0 - noise_share) if not math.isnan(sil) else None
                table.append(
                    {
                        "min_samples": ms,
                        "eps": eps,
                        "eps_source": source,
                        "n_clusters": n_clusters,
                        "noise_share": noise_share,
                        "silhouette": None if math.isnan(sil) else sil,
                        "score": score,
                    }
                )
                results.append(labels)
        pick, reason = _pick_dbscan(table)
        chosen = {
            "reason": reason,
            "eps": table[pick]["eps"],
            "min_samples": table[pick]["min_samples"],
            "eps_source": table[pick]["eps_source"],
            "silhouette": table[pick]["silhouette"],
            "score": table[pick]["score"],
        }
        if reason == "all-noise":
            logger.warning(
                "dbscan: every (eps, min_samples) tried leaves all %d inputs as noise, in no "
                "cluster; try another clusterer, e.g. --cluster kmeans.",
                n,
            )
        return results[pick], chosen, table


def _neighbours(
    arr: np.ndarray, full: np.ndarray | None, weights: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the ``k`` nearest rows (the row itself first) and those rows' weights.

    Every weight is at least 1, so ``k`` rows always hold the ``k`` nearest inputs.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(k, arr.shape[0])
    if full is not None:
        order = np.argsort(full, axis=1, kind="stable")[:, :k]
        dist = np.take_along_axis(full, order, axis=1)
    else:
        dist, order = NearestNeighbors(n_neighbors=k).fit(arr).kneighbors(arr)
    return dist, weights[order]


def _k_distances(
    neighbour_d: np.ndarray, neighbour_w: np.ndarray, weights: np.ndarray, ms: int
) -> np.ndarray:
    """DBSCAN's sorted k-distance curve over all inputs: for each input, the distance within
    which ``ms`` inputs (itself and its copies included) lie; one value per input."""
    enough = np.cumsum(neighbour_w, axis=1) >= ms
    per_row = neighbour_d[np.arange(neighbour_d.shape[0]), np.argmax(enough, axis=1)]
    return np.sort(np.repeat(per_row, weights))


def _eps_candidates(k_dist: np.ndarray, config: dict[str, JSONValue]) -> list[tuple[float, str]]:
    """Candidate ``eps`` values (positive, distinct) from a sorted k-distance curve."""
    n = k_dist.size
    sources: dict[float, str] = {}
    knee = kneedle(np.arange(n, dtype=np.float64), k_dist, curve="convex", direction="increasing")
    wanted: list[tuple[float, str]] = []
    if knee is not None:
        q_knee = knee / max(n - 1, 1)
        wanted.append((float(k_dist[knee]), "knee"))
        for off in config["knee_offsets"]:
            q = min(max(q_knee + float(off), 0.0), 1.0)
            if off != 0:
                wanted.append((float(np.quantile(k_dist, q)), f"knee{float(off):+.2f}"))
    for q in config["quantiles"]:
        wanted.append((float(np.quantile(k_dist, float(q))), f"q{float(q):.2f}"))
    for eps, source in wanted:
        if eps > 0 and eps not in sources:
            sources[eps] = source
    return sorted(sources.items())


def _pick_dbscan(table: list[dict[str, Any]]) -> tuple[int, str]:
    """Index of the chosen candidate and the reason (see :class:`DBSCANClusterer`)."""
    best, best_score = -1, -math.inf
    for i, row in enumerate(table):
        if row["score"] is not None and row["silhouette"] > 0 and row["score"] > best_score:
            best, best_score = i, row["score"]
    if best >= 0:
        return best, "silhouette"
    single = [i for i, row in enumerate(table) if row["n_clusters"] >= 1]
    if single:
        return min(single, key=lambda i: (table[i]["noise_share"], i)), "single-cluster"
    return 0, "all-noise"


def _as_sequence(owner: object, name: str, value: object) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
        raise ConfigError(
            f"The {name!r} parameter of {type(owner).__name__} must be a non-empty list of "
            f"numbers. Got {value!r}."
        )
    items = list(value)
    if not items:
        raise ConfigError(
            f"The {name!r} parameter of {type(owner).__name__} must be a non-empty list of "
            f"numbers. Got {value!r}."
        )
    return items


# --------------------------------------------------------------------------- HDBSCAN


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
    seed
        Unused (HDBSCAN is deterministic); accepted so that every clusterer takes it.
    """

    def __init__(
        self,
        *,
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        allow_single_cluster: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.allow_single_cluster = allow_single_cluster

    def _checked_params(self) -> dict[str, JSONValue]:
        if self.min_cluster_size is not None:
            check_int(self, "min_cluster_size", self.min_cluster_size, 2)
        if self.min_samples is not None:
            check_int(self, "min_samples", self.min_samples, 1)
        if not isinstance(self.allow_single_cluster, bool):
            raise ConfigError(
                f"The 'allow_single_cluster' parameter of HDBSCANClusterer must be a bool. "
                f"Got {self.allow_single_cluster!r}."
            )
        return {**super()._checked_params(), "allow_single_cluster": self.allow_single_cluster}

    def _cluster(
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


__all__ = [
    "CLUSTERERS",
    "Clusterer",
    "DBSCANClusterer",
    "HDBSCANClusterer",
    "KMeansClusterer",
    "SilhouetteScorer",
    "WardClusterer",
    "finalize_labels",
    "search_k_by_silhouette",
]
