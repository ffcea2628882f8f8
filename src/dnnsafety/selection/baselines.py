"""HUDD's baselines (METHOD.md §2.12): random pool inputs (BL2) and mispredicted ones (BL1)."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from dnnsafety.exceptions import InvalidInputError
from dnnsafety.selection.selectors import (
    SELECTORS,
    ClusterSpace,
    Oracle,
    PoolView,
    Selection,
    Selector,
    check_int_param,
    need_probs,
)

logger = logging.getLogger(__name__)


@SELECTORS.register("random", help="BL2: uniformly random pool inputs")
class RandomSelector(Selector):
    """BL2: ``budget`` pool inputs drawn uniformly without replacement; cost = budget."""

    seeded = True
    requires: ClassVar[frozenset[str]] = frozenset()

    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        """Draw ``budget`` pool ids uniformly at random (deterministic for a seed)."""
        rows = rng.choice(len(pool), size=budget, replace=False)
        return Selection(ids=pool.ids[rows], cost=budget, info={"selector": self.name})


@SELECTORS.register(
    "mispredicted", help="BL1: random pool inputs the model gets wrong (every draw is labelled)"
)
class MispredictedSelector(Selector):
    """BL1: random pool inputs whose label (from the oracle) differs from the prediction.

    Pool inputs are drawn in a random order (fixed by the seed) and labelled by the oracle;
    those the model mispredicts (``argmax probs != label``) are kept, in draw order. Drawing
    stops when ``budget`` inputs are kept, the pool is exhausted or ``max_cost`` labels are
    spent. ``Selection.cost`` counts **every** labelled input, kept or not, so it is usually
    larger than the budget (about ``budget / error rate``); fewer than ``budget`` inputs are
    returned when the pool or ``max_cost`` runs out first (a warning is logged and
    ``info["stopped"]`` says why).

    Parameters
    ----------
    max_cost
        Most labels to spend; ``None`` = unbounded (until the pool is exhausted).
    oracle_batch
        Fewest inputs sent to the oracle per call. Each call asks for
        ``max(still needed, oracle_batch)`` labels (within the pool and ``max_cost``), so the
        default 1 never labels more than needed; a larger value means fewer oracle calls at
        the price of some labels that are paid for but not needed. The kept inputs are the
        first ``budget`` mispredicted ones in draw order either way.
    """

    seeded = True
    requires: ClassVar[frozenset[str]] = frozenset({"probs"})

    def __init__(self, *, max_cost: int | None = None, oracle_batch: int = 1) -> None:
        self.max_cost = max_cost
        self.oracle_batch = oracle_batch

    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        """Draw, label and keep mispredicted pool inputs (see the class docstring)."""
        max_cost = (
            None if self.max_cost is None else check_int_param(self.max_cost, "max_cost", self.name)
        )
        oracle_batch = check_int_param(self.oracle_batch, "oracle_batch", self.name)
        predicted = np.argmax(need_probs(pool, self.name), axis=1)
        if oracle is None:
            raise InvalidInputError(
                "The mispredicted selector needs labels: pass oracle=..., a function mapping an "
                "array of pool ids to their int labels."
            )
        order = rng.permutation(len(pool))
        kept: list[np.ndarray] = []
        n_kept = n_wrong = cost = calls = 0
        while n_kept < budget and cost < len(pool) and (max_cost is None or cost < max_cost):
            need = budget - n_kept
            size = min(max(need, oracle_batch), len(pool) - cost)
            if max_cost is not None:
                size = min(size, max_cost - cost)
            rows = order[cost : cost + size]
            labels = _check_labels(oracle(pool.ids[rows]), size)
            cost += size
            calls += 1
            wrong = rows[predicted[rows] != labels]
            n_wrong += len(wrong)
            kept.append(wrong[:need])
            n_kept += len(kept[-1])
        stopped = (
            "budget" if n_kept == budget else "max_cost" if cost == max_cost else "pool exhausted"
        )
        if stopped != "budget":
            logger.warning(
                "mispredicted: only %d of %d inputs found after labelling %d (%s).",
                n_kept,
                budget,
                cost,
                stopped,
            )
        rows = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        info = {
            "selector": self.name,
            "params": {"max_cost": max_cost, "oracle_batch": oracle_batch},
            "labelled": cost,
            "kept": n_kept,
            "mispredicted_among_labelled": n_wrong,
            "oracle_calls": calls,
            "stopped": stopped,
        }
        return Selection(ids=pool.ids[rows], cost=cost, info=info)


def _check_labels(labels: object, size: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (size,):
        raise InvalidInputError(
            f"The oracle must return one label per id ({size}); got an array of shape {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"The oracle must return int class labels; got dtype {arr.dtype}.")
    return arr
