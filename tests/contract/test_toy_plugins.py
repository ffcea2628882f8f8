"""A new clusterer or selector is one class plus its registration, and the contract picks it up.

The toys below are registered at run time (as a module in ``clustering/`` or ``selection/``
would be when imported); the cases the contract test runs then include them, and they pass.
A toy that breaks a rule is caught.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from dnnsafety.clustering import CLUSTERERS
from dnnsafety.clustering.base import Clusterer
from dnnsafety.features import FEATURE_SOURCES, FeatureContext, FeatureSource
from dnnsafety.selection import SELECTORS
from dnnsafety.selection.selectors import (
    ClusterSpace,
    Oracle,
    PoolView,
    Selection,
    Selector,
)
from dnnsafety.testing import registry_cases
from dnnsafety.types import JSONValue


class FirstCoordinateClusterer(Clusterer):
    """Two clusters: rows whose first coordinate is above or below the median."""

    def _fit(
        self, arr: np.ndarray, config: dict[str, JSONValue], weights: np.ndarray
    ) -> tuple[np.ndarray, dict[str, JSONValue], list[dict[str, JSONValue]]]:
        labels = (arr[:, 0] > np.median(arr[:, 0])).astype(np.int64)
        return labels, {"reason": "median"}, []


class RandomOrderSelector(Selector):
    """``budget`` pool inputs in a seeded random order."""

    seeded = True

    def _select(
        self,
        pool: PoolView,
        budget: int,
        *,
        clusters: ClusterSpace | None,
        oracle: Oracle | None,
        rng: np.random.Generator,
    ) -> Selection:
        pick = rng.permutation(len(pool))[:budget]
        return Selection(ids=pool.ids[pick], cost=budget, info={"selector": self.name})


class StatefulClusterer(FirstCoordinateClusterer):
    """Breaks the contract: ``__init__`` sets learned state."""

    def __init__(self, *, random_state: int = 0) -> None:
        super().__init__(random_state=random_state)
        self.labels_ = np.zeros(0, dtype=np.int64)


class LeavesEvalModeSource(FeatureSource):
    """Breaks the contract: ``fit`` switches the user's model to eval mode for good."""

    requires = frozenset({"model"})

    def fit(self, context: FeatureContext) -> LeavesEvalModeSource:
        if context.model is not None:
            context.model.eval()
        self.fitted_ = True
        return self

    def _embed(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(1)


@pytest.fixture
def toys() -> Iterator[dict[str, Any]]:
    CLUSTERERS.register("toy-median")(FirstCoordinateClusterer)
    SELECTORS.register("toy-random")(RandomOrderSelector)
    try:
        yield {"clusterer:toy-median": FirstCoordinateClusterer}
    finally:
        CLUSTERERS.unregister("toy-median")
        SELECTORS.unregister("toy-random")


def test_contract_picks_up_toys_registered_at_run_time(toys: dict[str, Any]) -> None:
    cases = {case: (check, plugin) for case, check, plugin in registry_cases()}
    assert cases["clusterer:toy-median"][1] is FirstCoordinateClusterer
    assert cases["selector:toy-random"][1] is RandomOrderSelector
    assert FirstCoordinateClusterer.name == "toy-median"  # set by the registry
    for case in ("clusterer:toy-median", "selector:toy-random"):
        check, plugin = cases[case]
        check(plugin)


def test_contract_catches_a_toy_that_breaks_a_rule() -> None:
    CLUSTERERS.register("toy-stateful")(StatefulClusterer)
    try:
        cases = {case: (check, plugin) for case, check, plugin in registry_cases()}
        check, plugin = cases["clusterer:toy-stateful"]
        with pytest.raises(AssertionError, match="__init__ must only store parameters"):
            check(plugin)
    finally:
        CLUSTERERS.unregister("toy-stateful")
    assert "toy-stateful" not in CLUSTERERS


def test_registry_names_a_class_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        CLUSTERERS.register("dbscan")(FirstCoordinateClusterer)


def test_contract_catches_a_source_that_changes_a_training_model() -> None:
    FEATURE_SOURCES.register("toy-eval")(LeavesEvalModeSource)
    try:
        cases = {case: (check, plugin) for case, check, plugin in registry_cases()}
        check, plugin = cases["feature source:toy-eval"]
        with pytest.raises(AssertionError, match="training flag"):
            check(plugin)
    finally:
        FEATURE_SOURCES.unregister("toy-eval")
