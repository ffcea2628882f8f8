"""Distance-based surprise adequacy (DSA; Kim, Feldt & Yoo, ICSE 2019) as a selector.

The scores (:func:`dsa_scores`) live in :mod:`dnnsafety.detection.surprise`; the ``budget``
inputs with the highest DSA are chosen.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dnnsafety.detection.surprise import dsa_scores, take_rows
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

__all__ = ["DSASelector", "dsa_scores", "take_rows"]


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
