"""Uncertainty baselines (METHOD.md §2.12): rank the pool by a score of the softmax output.

Weiss & Tonella (ISSTA 2022) found these about equal to each other and hard to beat. Every
score is "higher = more uncertain"; the ``budget`` highest are chosen, highest first, ties
broken by pool order. Scores are computed in float64.

``entropy``
    Predictive entropy ``-sum_i p_i log p_i`` (natural log, ``0 log 0 = 0``).
``deepgini``
    DeepGini impurity ``1 - sum_i p_i^2``.
``margin``
    Max-softmax uncertainty: ``1 - max_i p_i``, i.e. the inputs with the lowest top softmax
    value (not the gap between the two top classes).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import entr

from dnnsafety.selection.selectors import (
    SELECTORS,
    ClusterSpace,
    Oracle,
    PoolView,
    Selection,
    Selector,
    need_probs,
    top_by_score,
)


def entropy_score(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy of each row (natural log)."""
    return np.asarray(entr(np.asarray(probs, dtype=np.float64)).sum(axis=1))


def deepgini_score(probs: np.ndarray) -> np.ndarray:
    """DeepGini impurity ``1 - sum p^2`` of each row."""
    p = np.asarray(probs, dtype=np.float64)
    return np.asarray(1.0 - np.einsum("ij,ij->i", p, p))


def max_softmax_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - max p`` of each row."""
    return np.asarray(1.0 - np.asarray(probs, dtype=np.float64).max(axis=1))


class _RankingSelector(Selector):
    """Chooses the ``budget`` pool inputs with the highest :meth:`score`."""

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})

    def score(self, probs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        """Top ``budget`` pool inputs by score; ``clusters``, ``oracle``, ``rng`` unused."""
        scores = self.score(need_probs(pool, self.name))
        rows = top_by_score(scores, budget)
        info = {"selector": self.name, "min_selected_score": float(scores[rows[-1]])}
        return Selection(ids=pool.ids[rows], cost=budget, scores=scores[rows], info=info)


@SELECTORS.register("entropy", help="highest predictive entropy of the softmax output")
class EntropySelector(_RankingSelector):
    """Highest predictive entropy first."""

    def score(self, probs: np.ndarray) -> np.ndarray:
        """Predictive entropy."""
        return entropy_score(probs)


@SELECTORS.register("deepgini", help="highest DeepGini impurity 1 - sum p^2")
class DeepGiniSelector(_RankingSelector):
    """Highest DeepGini impurity first."""

    def score(self, probs: np.ndarray) -> np.ndarray:
        """DeepGini impurity."""
        return deepgini_score(probs)


@SELECTORS.register("margin", help="max-softmax uncertainty: lowest top softmax value")
class MaxSoftmaxSelector(_RankingSelector):
    """Lowest top softmax value first (score ``1 - max p``)."""

    def score(self, probs: np.ndarray) -> np.ndarray:
        """``1 - max p``."""
        return max_softmax_uncertainty(probs)
