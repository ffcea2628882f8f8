"""Selection from per-chunk results, for pools read chunk by chunk (METHOD.md §11).

The pool-scale path (:mod:`dnnsafety.pipeline.scale`) scores the pool one chunk at a time,
possibly on many workers; these functions turn the chunks' results into the same
:class:`~dnnsafety.selection.selectors.Selection` the in-memory selectors return:

* ranking selectors (``entropy``, ``deepgini``, ``margin``): each chunk keeps only its
  ``budget`` highest scores (:func:`chunk_top_k`), and :func:`merge_top_k` merges them, so
  memory stays at ``chunks x budget`` values whatever the pool size. Ties go to the lower
  pool row, as :func:`~dnnsafety.selection.selectors.top_by_score` breaks them.
* ClosestU (``closest``, ``closest-contrast``): each chunk returns its rows' distances to the
  ``K`` root-cause clusters; the greedy global assignment needs all of them (``P x K``
  float64 on the client: 104 MB for a million inputs and 13 clusters), then
  :func:`closest_from_distances` applies HUDD's quotas and assignment exactly as
  :class:`~dnnsafety.selection.closest.ClosestSelector` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.selection.closest import (
    closest_assignment,
    eligible_clusters,
    natural_quotas,
    scale_quotas,
)
from dnnsafety.selection.contrastive import contrastive_scores
from dnnsafety.selection.selectors import Selection

log = logging.getLogger(__name__)

__all__ = ["chunk_top_k", "closest_from_distances", "merge_top_k", "ranking_selection"]


def chunk_top_k(scores: np.ndarray, start: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest scores of one chunk and their pool rows.

    Parameters
    ----------
    scores
        ``(n,)`` scores of pool rows ``start .. start + n - 1`` (higher = chosen first).
    start
        Pool row of the chunk's first row.
    k
        How many to keep (the labelling budget).

    Returns
    -------
    tuple of numpy.ndarray
        ``(scores, rows)``: float64 scores, highest first (ties: lower row first), and their
        int64 pool rows.
    """
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")[:k]
    return s[order], order.astype(np.int64) + int(start)


def merge_top_k(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the chunks' :func:`chunk_top_k` results into the pool's top ``k``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(scores, rows)`` of the ``k`` highest scores over all chunks, highest first, ties
        to the lower pool row: the rows :func:`~dnnsafety.selection.selectors.top_by_score`
        gives on the whole pool's scores.
    """
    if not parts:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    scores = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts])
    order = np.lexsort((rows, -scores))[:k]
    return scores[order], rows[order]


def ranking_selection(
    name: str, ids: np.ndarray, scores: np.ndarray, rows: np.ndarray, budget: int
) -> Selection:
    """The :class:`Selection` a ranking selector returns, from the merged top ``budget``."""
    info = {"selector": name, "min_selected_score": float(scores[len(rows) - 1])}
    return Selection(ids=np.asarray(ids)[rows], cost=budget, scores=scores, info=info)


def closest_from_distances(
    name: str,
    ids: np.ndarray,
    dist: np.ndarray,
    cluster_labels: np.ndarray,
    budget: int,
    *,
    f: float = 2.0,
    d_ok: np.ndarray | None = None,
    n_correct: int | None = None,
) -> tuple[Selection, np.ndarray]:
    """HUDD's ClosestU from the pool's distances to the eligible root-cause clusters.

    Parameters
    ----------
    name
        ``closest`` or ``closest-contrast`` (recorded in ``info``).
    ids
        ``(P,)`` pool ids.
    dist
        ``P x K`` distance of every pool input to the nearest member of each eligible
        cluster (clusters with >= 2 members, ascending id; see
        :func:`~dnnsafety.selection.closest.eligible_clusters`).
    cluster_labels
        ``(M,)`` cluster id of every clustered input (``-1``: noise).
    budget
        Labels to spend (``1..P``).
    f
        Quota factor (HUDD: 2).
    d_ok
        ``(P,)`` distances to the nearest correctly classified input: the contrastive
        ClosestU (``closest-contrast``); ``None`` for HUDD's.
    n_correct
        Size of the correct reference (recorded for the contrastive variant).

    Returns
    -------
    tuple
        The :class:`Selection` (as :class:`~dnnsafety.selection.closest.ClosestSelector`
        returns it for the same inputs) and the chosen pool rows.

    Raises
    ------
    InvalidInputError
        ``dist`` does not have one column per eligible cluster.
    """
    labels = np.asarray(cluster_labels)
    cluster_ids, sizes = eligible_clusters(labels)
    if dist.ndim != 2 or dist.shape[1] != len(cluster_ids):
        raise InvalidInputError(
            f"The distances have shape {dist.shape}; expected one column per eligible cluster "
            f"({len(cluster_ids)})."
        )
    natural = natural_quotas(sizes, f)
    quotas = scale_quotas(natural, budget)
    raw = None
    if d_ok is not None:
        raw = dist
        dist = contrastive_scores(raw, d_ok)
    rows, position, last_rank = closest_assignment(dist, quotas, tiebreak=raw)
    all_ids, all_sizes = np.unique(labels[labels >= 0], return_counts=True)
    info: dict[str, Any] = {
        "selector": name,
        "params": {"f": float(f), "distance": "nearest" if d_ok is None else "contrastive"},
        "cluster_sizes": {str(c): int(s) for c, s in zip(cluster_ids, sizes, strict=True)},
        "natural_quotas": {str(c): int(q) for c, q in zip(cluster_ids, natural, strict=True)},
        "natural_budget": int(natural.sum()),
        "quotas": {str(c): int(q) for c, q in zip(cluster_ids, quotas, strict=True)},
        "ignored_clusters": [int(c) for c, s in zip(all_ids, all_sizes, strict=True) if s < 2],
        "n_noise": int((labels < 0).sum()),
        "last_rank": int(last_rank),
    }
    if d_ok is not None:
        info["n_correct_reference"] = int(n_correct or 0)
    selection = Selection(
        ids=np.asarray(ids)[rows],
        cost=len(rows),
        cluster=cluster_ids[position],
        distance=dist[rows, position],
        info=info,
    )
    return selection, rows
