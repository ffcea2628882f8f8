"""Post-hoc detectors on the classifier's logits (METHOD.md §6): nothing to train.

Each score is "higher = more anomalous" and computed in float64.

``msp``
    Maximum softmax probability, score ``-max_i p_i`` (Hendrycks & Gimpel, ICLR 2017).
``maxlogit``
    Max logit, score ``-max_i z_i`` (Hendrycks et al., ICML 2022).
``energy``
    Energy, score ``-T logsumexp(z / T)`` (Liu et al., NeurIPS 2020).
``entropy``
    Predictive entropy ``-sum_i p_i log p_i`` (natural log, ``0 log 0 = 0``).
``deepgini``
    DeepGini impurity ``1 - sum_i p_i^2`` (Feng et al., ISSTA 2020).

The softmax-based detectors also score probabilities directly (:meth:`SoftmaxDetector.score_probs`),
which is what selection's uncertainty selectors rank by when a model gives only probabilities.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.special import entr, logsumexp, softmax

from dnnsafety._validation import check_float_param
from dnnsafety.detection.base import DETECTORS, Detector

__all__ = [
    "DeepGiniDetector",
    "EnergyDetector",
    "EntropyDetector",
    "MSPDetector",
    "MaxLogitDetector",
    "SoftmaxDetector",
    "deepgini_score",
    "entropy_score",
    "max_softmax_uncertainty",
]


def entropy_score(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy of each row of ``(N, C)`` probabilities (natural log)."""
    return np.asarray(entr(np.asarray(probs, dtype=np.float64)).sum(axis=1))


def deepgini_score(probs: np.ndarray) -> np.ndarray:
    """DeepGini impurity ``1 - sum p^2`` of each row of ``(N, C)`` probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    return np.asarray(1.0 - np.einsum("ij,ij->i", p, p))


def max_softmax_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - max p`` of each row of ``(N, C)`` probabilities."""
    return np.asarray(1.0 - np.asarray(probs, dtype=np.float64).max(axis=1))


class _LogitDetector(Detector):
    """A detector on ``(N, C)`` logits that learns only the number of classes."""

    requires: ClassVar[frozenset[str]] = frozenset({"logits"})

    n_classes_: int

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        self.n_classes_ = int(x.shape[1])


class SoftmaxDetector(_LogitDetector):
    """A detector whose score is a function of the softmax probabilities only."""

    @staticmethod
    def score_probs(probs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """``(N,)`` scores of ``(N, C)`` probabilities, higher = more anomalous."""
        raise NotImplementedError

    def _score(self, x: np.ndarray) -> np.ndarray:
        return self.score_probs(softmax(x, axis=1))


@DETECTORS.register("msp", help="maximum softmax probability, score -max p (Hendrycks 2017)")
class MSPDetector(SoftmaxDetector):
    """Maximum softmax probability: score ``-max_i softmax(z)_i``."""

    @staticmethod
    def score_probs(probs: np.ndarray) -> np.ndarray:
        """``-max p`` of each row."""
        return -np.asarray(probs, dtype=np.float64).max(axis=1)


@DETECTORS.register("entropy", help="predictive entropy of the softmax output")
class EntropyDetector(SoftmaxDetector):
    """Predictive entropy of the softmax output."""

    @staticmethod
    def score_probs(probs: np.ndarray) -> np.ndarray:
        """Predictive entropy of each row."""
        return entropy_score(probs)


@DETECTORS.register("deepgini", help="DeepGini impurity 1 - sum p^2 (Feng et al. 2020)")
class DeepGiniDetector(SoftmaxDetector):
    """DeepGini impurity ``1 - sum_i p_i^2`` of the softmax output."""

    @staticmethod
    def score_probs(probs: np.ndarray) -> np.ndarray:
        """DeepGini impurity of each row."""
        return deepgini_score(probs)


@DETECTORS.register("maxlogit", help="max logit, score -max z (Hendrycks et al. 2022)")
class MaxLogitDetector(_LogitDetector):
    """Max logit: score ``-max_i z_i``."""

    def _score(self, x: np.ndarray) -> np.ndarray:
        return -x.max(axis=1)


@DETECTORS.register("energy", help="energy score -T logsumexp(z/T) (Liu et al. 2020)")
class EnergyDetector(_LogitDetector):
    """Energy score ``-T logsumexp(z / T)`` (Liu et al., NeurIPS 2020).

    Parameters
    ----------
    temperature
        ``T > 0``; the paper uses 1.
    """

    def __init__(self, *, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        check_float_param(self, "temperature", self.temperature, 0.0, 1e6, open_low=True)
        super()._fit(x, y)

    def _score(self, x: np.ndarray) -> np.ndarray:
        t = float(self.temperature)
        return np.asarray(-t * logsumexp(x / t, axis=1))
