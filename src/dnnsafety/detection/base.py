"""The detector contract (METHOD.md §6) and its registry.

A detector scores inputs, higher = more anomalous (PyOD's ``BaseDetector`` shape): it is fitted
on in-distribution reference data, calibrated on a held-out in-distribution split, and then
turns any score into a conformal p-value (:mod:`.conformal`) and a flag ``p <= alpha`` whose
false-alarm rate on in-distribution inputs is at most ``alpha``. No contamination rate is
guessed.

Template methods: :meth:`Detector.fit` validates the input and calls :meth:`Detector._fit`;
:meth:`Detector.decision_function` validates and calls :meth:`Detector._score`. A new detector
writes ``__init__`` (storing its parameters), ``_fit`` and ``_score`` and declares in
``requires`` what the orchestrator must pass:

``"logits"``
    ``X`` is ``(N, C)`` model outputs before the softmax.
``"features"``
    ``X`` is ``(N, D)`` features of any source: penultimate activations, backbone embeddings,
    an autoencoder's latent code or flattened pixels.
``"images"``
    ``X`` is ``(N, C, H, W)`` float32 images in ``[0, 1]``; a model or other object the
    detector needs is a constructor parameter.
``"labels"``
    ``fit`` also receives ``y``: the ``(N,)`` integer training labels.
``"head"``
    ``fit`` also receives ``head=(weight, bias)``: the classifier's last linear layer,
    ``weight`` ``(C, D)`` and ``bias`` ``(C,)``, mapping the features to the logits (ViM).

scikit-learn's estimator contract holds: ``__init__`` only stores, learned state ends in ``_``,
randomness comes from ``random_state``, ``clone`` works.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Self, TypeAlias

import numpy as np
from sklearn.base import BaseEstimator

from dnnsafety._validation import FittedStateMixin, check_features
from dnnsafety.detection.conformal import conformal_p_values, conformal_threshold
from dnnsafety.exceptions import InvalidInputError, NotFittedError
from dnnsafety.registry import Registry

__all__ = ["DETECTORS", "REQUIREMENTS", "Detector", "Head", "check_head"]

logger = logging.getLogger(__name__)

Head: TypeAlias = tuple[np.ndarray, np.ndarray]
"""The classifier's last linear layer: ``weight`` ``(C, D)`` and ``bias`` ``(C,)``."""

REQUIREMENTS = frozenset({"logits", "features", "images", "labels", "head"})
"""What a detector may declare in ``requires``."""


def check_head(head: object, n_features: int, owner: str) -> Head:
    """Validate ``head = (weight (C, D), bias (C,))`` against ``D = n_features``.

    Raises
    ------
    InvalidInputError
        If ``head`` is missing or its shapes do not match.
    """
    if not isinstance(head, tuple | list) or len(head) != 2:
        raise InvalidInputError(
            f"{owner} needs head=(weight, bias), the classifier's last linear layer "
            f"(weight C x D, bias C); got {type(head).__name__}."
        )
    weight = np.asarray(head[0], dtype=np.float64)
    bias = np.asarray(head[1], dtype=np.float64).reshape(-1)
    if weight.ndim != 2 or weight.shape[1] != n_features or bias.shape != (weight.shape[0],):
        raise InvalidInputError(
            f"{owner}: head weight must be C x {n_features} and bias C; got "
            f"{weight.shape} and {bias.shape}. Pass the layer that maps these features to logits."
        )
    return weight, bias


class Detector(FittedStateMixin, BaseEstimator):
    """Base class of the anomaly / out-of-distribution detectors (template methods).

    Subclasses set ``requires`` and implement :meth:`_fit` and :meth:`_score`.

    Attributes
    ----------
    n_features_in_
        Width of ``X`` in ``fit`` (``C * H * W`` for images).
    calibration_scores_
        Sorted ``(n,)`` float64 scores of the calibration inputs (set by :meth:`calibrate`).
    """

    #: Registered name (set by :meth:`~dnnsafety.registry.Registry.register`).
    name: str = "base"
    #: What the orchestrator must pass (see the module docstring).
    requires: ClassVar[frozenset[str]] = frozenset({"features"})
    #: Small, fast parameters for the contract checks (:mod:`dnnsafety.testing`).
    _test_params: ClassVar[dict[str, Any]] = {}

    n_features_in_: int
    calibration_scores_: np.ndarray

    # ------------------------------------------------------------------ validation

    def _check_x(self, x: object, *, min_rows: int, what: str) -> np.ndarray:
        if "images" in self.requires:
            arr = np.asarray(x, dtype=np.float32)
            if arr.ndim != 4:
                raise InvalidInputError(
                    f"{what} for {type(self).__name__} must be images N x C x H x W; got shape "
                    f"{arr.shape}."
                )
            if arr.shape[0] < min_rows:
                raise InvalidInputError(f"{what} needs at least {min_rows} images; got {len(arr)}.")
            if not np.isfinite(arr).all():
                raise InvalidInputError(f"{what} holds NaN or infinite pixel values.")
            return arr
        return check_features(x, min_rows=min_rows, what=what)

    def _check_width(self, arr: np.ndarray) -> None:
        width = int(np.prod(arr.shape[1:]))
        if width != self.n_features_in_:
            raise InvalidInputError(
                f"X has {width} values per input, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_}. Pass inputs from the same source (model, layer, image "
                "size) as in fit."
            )

    # ------------------------------------------------------------------ template methods

    def fit(self, x: object, y: object = None, **fit_params: Any) -> Self:
        """Fit on in-distribution reference inputs and return ``self``.

        Parameters
        ----------
        x
            ``(N, D)`` features or logits, or ``(N, C, H, W)`` images (see ``requires``);
            ``N >= 2``, finite.
        y
            ``(N,)`` integer labels; required when ``"labels"`` is in ``requires``.
        **fit_params
            ``head=(weight, bias)`` when ``"head"`` is in ``requires``.

        Raises
        ------
        InvalidInputError
            If ``x`` is not finite, has the wrong rank, fewer than 2 rows, or a required
            ``y`` / ``head`` is missing or does not match.
        ConfigError
            If a constructor parameter is invalid.
        """
        arr = self._check_x(x, min_rows=2, what="X")
        labels = None
        if "labels" in self.requires:
            if y is None:
                raise InvalidInputError(
                    f"{type(self).__name__} needs the training labels: call fit(X, y)."
                )
            labels = np.asarray(y).reshape(-1)
            if labels.shape != (len(arr),) or not np.issubdtype(labels.dtype, np.integer):
                raise InvalidInputError(
                    f"y must hold one integer label per row of X ({len(arr)}); got dtype "
                    f"{labels.dtype} and shape {labels.shape}."
                )
        for key in fit_params:
            if key not in self.requires:
                raise InvalidInputError(
                    f"{type(self).__name__} takes no fit argument {key!r} (it requires "
                    f"{sorted(self.requires)})."
                )
        for key in ("calibration_scores_",):
            self.__dict__.pop(key, None)
        self._fit(arr, labels, **fit_params)
        self.n_features_in_ = int(np.prod(arr.shape[1:]))
        return self

    def decision_function(self, x: object) -> np.ndarray:
        """Anomaly score of each input, higher = more anomalous.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` float64 scores.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        InvalidInputError
            If ``x`` does not match what ``fit`` saw.
        """
        self._require_fitted("decision_function(X)")
        arr = self._check_x(x, min_rows=0, what="X")
        self._check_width(arr)
        if len(arr) == 0:
            return np.zeros(0, dtype=np.float64)
        scores = np.asarray(self._score(arr), dtype=np.float64).reshape(-1)
        if scores.shape != (len(arr),):  # pragma: no cover - a broken plug-in
            raise AssertionError(f"{type(self).__name__}._score returned {scores.shape}")
        return scores

    def calibrate(self, x_cal: object) -> Self:
        """Score held-out in-distribution inputs and keep their sorted scores.

        Raises
        ------
        NotFittedError
            Before :meth:`fit`.
        InvalidInputError
            If ``x_cal`` is empty (use a validation split: ``data.val_fraction``).
        """
        return self.calibrate_scores(self.decision_function(x_cal))

    def calibrate_scores(self, scores: object) -> Self:
        """:meth:`calibrate` from the calibration inputs' scores, already computed.

        Raises
        ------
        InvalidInputError
            If there are no scores or some are not finite.
        """
        self._require_fitted("calibrate_scores(scores)")
        arr = np.asarray(scores, dtype=np.float64).reshape(-1)
        if arr.size == 0:
            raise InvalidInputError(
                "The calibration split is empty: hold out in-distribution inputs (e.g. a "
                "validation split, config data.val_fraction > 0) to calibrate on."
            )
        if not np.isfinite(arr).all():
            raise InvalidInputError(
                f"{type(self).__name__} gave non-finite scores on calibration inputs."
            )
        self.calibration_scores_ = np.sort(arr)
        return self

    def fit_calibrate(
        self, x_fit: object, x_cal: object, y: object = None, **fit_params: Any
    ) -> Self:
        """:meth:`fit` on ``x_fit`` (and ``y``), then :meth:`calibrate` on ``x_cal``."""
        return self.fit(x_fit, y, **fit_params).calibrate(x_cal)

    def _require_calibrated(self, what: str) -> np.ndarray:
        self._require_fitted(what)
        if "calibration_scores_" not in vars(self):
            raise NotFittedError(
                f"This {type(self).__name__} is not calibrated yet: call calibrate(X_cal) on "
                f"held-out in-distribution inputs before {what}."
            )
        return self.calibration_scores_

    def p_values(self, x: object) -> np.ndarray:
        """Conformal p-values ``(1 + #{cal >= s}) / (n + 1)`` of the inputs' scores.

        Raises
        ------
        NotFittedError
            Before :meth:`fit` or :meth:`calibrate`.
        """
        cal = self._require_calibrated("p_values(X)")
        return conformal_p_values(cal, self.decision_function(x))

    def predict(self, x: object, alpha: float = 0.05) -> np.ndarray:
        """``(N,)`` bool flags ``p <= alpha`` (``True`` = anomalous).

        The false-alarm rate on in-distribution inputs is at most ``alpha`` (marginally).
        """
        if not 0.0 < float(alpha) < 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1), got {alpha!r}.")
        return np.asarray(self.p_values(x) <= float(alpha), dtype=bool)

    def threshold(self, alpha: float = 0.05) -> float:
        """The score above which :meth:`predict` flags at level ``alpha`` (may be ``inf``)."""
        return conformal_threshold(self._require_calibrated("threshold(alpha)"), alpha)

    # ------------------------------------------------------------------ plug-in part

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        """Learn from validated ``x`` (and ``y`` / ``head``); set attributes ending in ``_``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _score(self, x: np.ndarray) -> np.ndarray:
        """``(N,)`` scores of validated ``x`` (``N >= 1``), higher = more anomalous."""
        raise NotImplementedError  # pragma: no cover - abstract


DETECTORS = Registry[type["Detector"]]("detector")
"""Detectors by name (see :mod:`dnnsafety.detection`)."""
