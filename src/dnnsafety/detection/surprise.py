"""Distance-based surprise adequacy (DSA; Kim, Feldt & Yoo, ICSE 2019) as a detector.

For a pool input ``x`` with predicted class ``c`` and activation trace ``a(x)``:

* ``x_a`` = the training input of class ``c`` whose trace is nearest to ``a(x)``;
  ``dist_a = ||a(x) - a(x_a)||``;
* ``dist_b = min ||a(x_a) - a(t)||`` over training inputs ``t`` of any other class;
* ``DSA(x) = dist_a / dist_b``.

Higher DSA = more surprising. Edge cases: ``0 / 0 = 0`` (an input
identical to its nearest trace, which coincides with another class's trace); ``dist_a > 0``
with ``dist_b = 0`` gives ``inf``; a predicted class without any training trace gives ``inf``
(most surprising; a warning is logged). ``dist_b`` is computed only for the distinct ``x_a``
actually used, never for the whole training set.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from dnnsafety.detection._nearest import Reference, nearest_in_class
from dnnsafety.detection.base import DETECTORS, Detector, check_head
from dnnsafety.exceptions import InvalidInputError

__all__ = ["DSADetector", "dsa_scores", "take_rows"]

logger = logging.getLogger(__name__)


def take_rows(rows: Any, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of an array, a memmap or any row-sliceable source."""
    if isinstance(rows, np.ndarray) or len(index) == 0:
        return np.asarray(rows[index] if isinstance(rows, np.ndarray) else rows[0:0])
    return np.concatenate([np.asarray(rows[i : i + 1]) for i in index.tolist()])


def dsa_scores(
    pool_traces: Any,
    predicted: np.ndarray,
    train_traces: Any,
    train_labels: np.ndarray,
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """DSA of every pool input (see the module docstring).

    Parameters
    ----------
    pool_traces
        ``P x D`` activation traces of the pool (array or memmap), read in batches.
    predicted
        ``(P,)`` predicted class of each pool input.
    train_traces
        ``R x D`` activation traces of the training inputs.
    train_labels
        ``(R,)`` class of each training input.
    batch_size
        Pool rows per batch (``None``: automatic).

    Returns
    -------
    numpy.ndarray
        ``(P,)`` float64 DSA values (``>= 0``, possibly ``inf``).
    """
    reference = Reference(train_traces, "ReferenceSet.features")
    if len(np.unique(train_labels)) < 2:
        raise InvalidInputError(
            "DSA needs training traces of at least two classes (dist_b is the distance to "
            "another class); the reference set has one."
        )
    dist_a, nearest = nearest_in_class(
        pool_traces,
        reference,
        train_labels,
        predicted,
        same=True,
        batch_size=batch_size,
        what="pool activation traces",
    )
    found = nearest >= 0
    if not found.all():
        missing = sorted({int(c) for c in predicted[~found]})
        logger.warning(
            "dsa: %d pool inputs are predicted as classes without training traces %s; their "
            "DSA is inf.",
            int((~found).sum()),
            missing,
        )
    anchors, inverse = np.unique(nearest[found], return_inverse=True)
    dist_b_anchor, _ = nearest_in_class(
        take_rows(train_traces, anchors),
        reference,
        train_labels,
        train_labels[anchors],
        same=False,
        batch_size=batch_size,
        what="training activation traces",
    )
    dist_b = np.full(len(predicted), np.inf)
    dist_b[found] = dist_b_anchor[inverse]
    scores = np.full(len(predicted), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = dist_a[found] / dist_b[found]
    ratio[dist_a[found] == 0] = 0.0
    scores[found] = ratio
    return scores


@DETECTORS.register("dsa", help="distance-based surprise adequacy (Kim et al. 2019)")
class DSADetector(Detector):
    """Distance-based surprise adequacy of each input's features (activation traces).

    ``fit(features, labels, head=(weight, bias))``: the training traces and classes are the
    reference; the predicted class of a new input is ``argmax(W z + b)`` from the
    classifier's last linear layer. Infinite DSA (no training trace of the predicted class)
    is reported as ``finfo(float64).max``, so scores stay finite.

    Attributes
    ----------
    traces_
        ``(R, D)`` training traces.
    trace_labels_
        ``(R,)`` their classes.
    weight_, bias_
        The head.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"features", "labels", "head"})

    traces_: np.ndarray
    trace_labels_: np.ndarray
    weight_: np.ndarray
    bias_: np.ndarray

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        assert y is not None  # the base checked "labels"
        if len(np.unique(y)) < 2:
            raise InvalidInputError("DSA needs training traces of at least two classes.")
        self.weight_, self.bias_ = check_head(fit_params.get("head"), x.shape[1], "DSADetector")
        self.traces_, self.trace_labels_ = x, y.astype(np.int64)

    def _score(self, x: np.ndarray) -> np.ndarray:
        predicted = np.argmax(x @ self.weight_.T + self.bias_, axis=1)
        scores = dsa_scores(x, predicted, self.traces_, self.trace_labels_)
        return np.nan_to_num(scores, posinf=np.finfo(np.float64).max)
