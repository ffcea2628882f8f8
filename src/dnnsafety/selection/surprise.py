"""Distance-based surprise adequacy (DSA; Kim, Feldt & Yoo, ICSE 2019) as a selector.

For a pool input ``x`` with predicted class ``c`` and activation trace ``a(x)``:

* ``x_a`` = the training input of class ``c`` whose trace is nearest to ``a(x)``;
  ``dist_a = ||a(x) - a(x_a)||``;
* ``dist_b = min ||a(x_a) - a(t)||`` over training inputs ``t`` of any other class;
* ``DSA(x) = dist_a / dist_b``.

The ``budget`` inputs with the highest DSA are chosen. Edge cases: ``0 / 0 = 0`` (an input
identical to its nearest trace, which coincides with another class's trace); ``dist_a > 0``
with ``dist_b = 0`` gives ``inf``; a predicted class without any training trace gives ``inf``
(most surprising; a warning is logged). ``dist_b`` is computed only for the distinct ``x_a``
actually used, never for the whole training set.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.selection._nearest import Reference, nearest_in_class
from dnnsafety.selection.selectors import (
    SELECTORS,
    ClusterSpace,
    Oracle,
    PoolView,
    Selection,
    Selector,
    check_batch_size,
    need_probs,
    top_by_score,
)

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


@SELECTORS.register("dsa", help="highest distance-based surprise adequacy (Kim et al. 2019)")
class DSASelector(Selector):
    """Highest distance-based surprise adequacy first.

    Needs ``pool.probs`` (predicted class), the pool's activation traces
    (``pool.activations``, or ``pool.features`` when that is ``None``) and
    ``pool.reference``: the training traces and classes in the same space.

    Parameters
    ----------
    batch_size
        Pool rows compared at a time; ``None`` picks about 64 MiB. Does not change the result.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "activations"})

    def __init__(self, *, batch_size: int | None = None) -> None:
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
        """Top ``budget`` pool inputs by DSA; ``clusters``, ``oracle``, ``rng`` unused."""
        batch_size = check_batch_size(self.batch_size, self.name)
        predicted = np.argmax(need_probs(pool, self.name), axis=1)
        traces = pool.activations if pool.activations is not None else pool.features
        # select() checked both (``requires`` holds "activations")
        assert traces is not None and pool.reference is not None
        scores = dsa_scores(
            traces,
            predicted,
            pool.reference.features,
            pool.reference.labels,
            batch_size=batch_size,
        )
        rows = top_by_score(scores, budget)
        info = {
            "selector": self.name,
            "traces": "activations" if pool.activations is not None else "features",
            "min_selected_score": float(scores[rows[-1]]),
            "n_infinite": int(np.isinf(scores).sum()),
        }
        return Selection(ids=pool.ids[rows], cost=budget, scores=scores[rows], info=info)
