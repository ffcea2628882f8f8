"""DBSCAN with ``eps`` and ``min_samples`` chosen without ground truth (registered as ``dbscan``).

For each ``min_samples`` of a small grid, candidate ``eps`` values come from the sorted
k-distance curve (its Kneedle knee and quantiles around it plus a fixed quantile grid); every
candidate is scored by ``silhouette(non-noise) * (1 - noise share)`` and the best one with at
least 2 clusters and a positive silhouette wins. If none qualifies, the candidate with the
least noise that forms one cluster is used (``reason = "single-cluster"``). Noise stays noise
(label -1).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dnnsafety._validation import check_float_param as check_float
from dnnsafety._validation import check_int_param as check_int
from dnnsafety._validation import check_sequence_param
from dnnsafety.clustering.base import CLUSTERERS, DEFAULT_SILHOUETTE_SAMPLE, Clusterer
from dnnsafety.clustering.hudd import kneedle
from dnnsafety.clustering.silhouette import SilhouetteScorer
from dnnsafety.types import JSONValue

logger = logging.getLogger(__name__)


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
    random_state
        Seed of the silhouette subsample (DBSCAN itself is deterministic).
    """

    def __init__(
        self,
        *,
        min_samples_grid: Sequence[int] = (3, 5, 10),
        quantiles: Sequence[float] = (0.5, 0.75, 0.9, 0.95),
        knee_offsets: Sequence[float] = (-0.1, -0.05, 0.0, 0.05, 0.1),
        silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
        random_state: int = 0,
    ) -> None:
        super().__init__(random_state=random_state)
        self.min_samples_grid = min_samples_grid
        self.quantiles = quantiles
        self.knee_offsets = knee_offsets
        self.silhouette_sample_size = silhouette_sample_size

    def _checked_params(self) -> dict[str, JSONValue]:
        grid = check_sequence_param(self, "min_samples_grid", self.min_samples_grid)
        quantiles = check_sequence_param(self, "quantiles", self.quantiles)
        offsets = check_sequence_param(self, "knee_offsets", self.knee_offsets)
        return {
            **super()._checked_params(),
            "min_samples_grid": [check_int(self, "min_samples_grid", m, 2) for m in grid],
            "quantiles": [check_float(self, "quantiles", q, 0.0, 1.0) for q in quantiles],
            "knee_offsets": [check_float(self, "knee_offsets", o, -1.0, 1.0) for o in offsets],
            "silhouette_sample_size": check_int(
                self, "silhouette_sample_size", self.silhouette_sample_size, 3
            ),
        }

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        from sklearn.cluster import DBSCAN

        n = int(weights.sum())
        scorer = SilhouetteScorer(
            arr,
            sample_size=int(config["silhouette_sample_size"]),
            seed=int(self.random_state),
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


__all__ = ["DBSCANClusterer"]
