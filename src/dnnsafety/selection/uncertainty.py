"""Rank the pool by a detector's score (METHOD.md §2.12 and §6).

The ``detector`` selector chooses the ``budget`` pool inputs with the highest score of any
detector in :data:`dnnsafety.detection.DETECTORS` (higher = more anomalous), highest first,
ties broken by pool order. Softmax detectors score the pool's probabilities directly; other
logit detectors score ``log p`` (logits up to a constant per row); feature detectors are
fitted on the training reference (``PoolView.reference``) and score the pool's activation
traces (``PoolView.activations``, else ``PoolView.features``).

The uncertainty baselines are aliases (Weiss & Tonella, ISSTA 2022, found them about equal):

``entropy``
    ``detector`` with the ``entropy`` detector: predictive entropy ``-sum_i p_i log p_i``.
``deepgini``
    ``detector`` with the ``deepgini`` detector: DeepGini impurity ``1 - sum_i p_i^2``.
``margin``
    Max-softmax uncertainty ``1 - max_i p_i`` (the ``msp`` detector's ranking), i.e. the
    inputs with the lowest top softmax value (not the gap between the two top classes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from dnnsafety.detection import (
    DETECTORS,
    SoftmaxDetector,
    deepgini_score,
    entropy_score,
    max_softmax_uncertainty,
)
from dnnsafety.exceptions import ConfigError, InvalidInputError
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

__all__ = [
    "DeepGiniSelector",
    "DetectorSelector",
    "EntropySelector",
    "MaxSoftmaxSelector",
    "deepgini_score",
    "entropy_score",
    "max_softmax_uncertainty",
]


def _rows(rows: Any) -> np.ndarray:
    return np.asarray(rows[0 : len(rows)], dtype=np.float64).reshape(len(rows), -1)


@SELECTORS.register("detector", help="highest score of a detector (any name in DETECTORS)")
class DetectorSelector(Selector):
    """Highest detector score first.

    Parameters
    ----------
    detector
        A name in :data:`~dnnsafety.detection.DETECTORS` (``msp``, ``energy``, ``knn``, ...).
    detector_params
        Parameters of that detector.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})

    def __init__(self, *, detector: str = "msp", detector_params: dict[str, Any] | None = None):
        self.detector = detector
        self.detector_params = detector_params

    def score(self, pool: PoolView) -> np.ndarray:
        """``(P,)`` detector scores of the pool inputs (see the module docstring).

        Raises
        ------
        ConfigError
            If the detector needs what a pool cannot give (images, the classifier head).
        InvalidInputError
            If a feature detector finds no traces or training reference in ``pool``.
        """
        cls = DETECTORS.get(self.detector)
        probs = need_probs(pool, self.name)
        if issubclass(cls, SoftmaxDetector):
            return np.asarray(cls.score_probs(probs), dtype=np.float64)
        est = DETECTORS.create(self.detector, self.detector_params)
        if cls.requires == frozenset({"logits"}):
            logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None))
            return np.asarray(est.fit(logp).decision_function(logp))
        if not cls.requires <= {"features", "labels"}:
            raise ConfigError(
                f"The detector selector cannot run the {self.detector!r} detector: it "
                f"requires {sorted(cls.requires)}; a pool offers probabilities, traces and a "
                "training reference. Use `dnnsafety detect` for it."
            )
        traces = pool.activations if pool.activations is not None else pool.features
        if traces is None or pool.reference is None:
            raise InvalidInputError(
                f"The {self.detector!r} detector needs the pool's traces and the training "
                "reference: pass PoolView(activations=..., reference=ReferenceSet(...))."
            )
        labels = pool.reference.labels if "labels" in cls.requires else None
        est.fit(_rows(pool.reference.features), labels)
        return np.asarray(est.decision_function(_rows(traces)))

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
        scores = self.score(pool)
        rows = top_by_score(scores, budget)
        info = {"selector": self.name, "min_selected_score": float(scores[rows[-1]])}
        if type(self) is DetectorSelector:
            info["detector"] = self.detector
        return Selection(ids=pool.ids[rows], cost=budget, scores=scores[rows], info=info)


class _AliasSelector(DetectorSelector):
    """The ``detector`` selector with a fixed softmax detector and no parameters."""

    detector: str
    detector_params: dict[str, Any] | None = None

    def __init__(self) -> None:
        pass


@SELECTORS.register("entropy", help="highest predictive entropy of the softmax output")
class EntropySelector(_AliasSelector):
    """Highest predictive entropy first (the ``entropy`` detector)."""

    detector = "entropy"


@SELECTORS.register("deepgini", help="highest DeepGini impurity 1 - sum p^2")
class DeepGiniSelector(_AliasSelector):
    """Highest DeepGini impurity first (the ``deepgini`` detector)."""

    detector = "deepgini"


@SELECTORS.register("margin", help="max-softmax uncertainty: lowest top softmax value")
class MaxSoftmaxSelector(_AliasSelector):
    """Lowest top softmax value first (score ``1 - max p``; the ``msp`` detector's ranking)."""

    detector = "msp"

    def score(self, pool: PoolView) -> np.ndarray:
        """``1 - max p`` of each pool input."""
        return max_softmax_uncertainty(need_probs(pool, self.name))
