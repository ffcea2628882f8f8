"""What each retraining strategy needs and takes: the inputs a selector requires
(:data:`REQUIREMENTS`, built by :class:`~dnnsafety.pipeline.retrain.RetrainSession`) and the
``[retrain.params.<strategy>]`` parameters of a selector, checked before any work."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from dnnsafety.exceptions import ConfigError
from dnnsafety.pipeline.mitigate import is_mitigation
from dnnsafety.selection import SELECTORS

REQUIREMENTS: dict[str, str] = {
    "probs": "the model's softmax outputs on the pool (PoolView.probs)",
    "space": "the pool and the root-cause clusters in the analysis feature space "
    "(PoolView.features, clusters; the analysis runs first; f = retrain.quota_factor)",
    "correct": "correctly classified inputs of the analysed split in that space "
    "(ClusterSpace.correct)",
    "activations": "penultimate activations of the pool and of the training set with its "
    "labels (PoolView.activations, PoolView.reference)",
}
"""What a selector may list in ``requires``, and what the orchestrator builds for it."""


def requirements(strategy: str, params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """What the selector ``strategy`` requires (its ``requires``), checked against
    :data:`REQUIREMENTS` (empty for a mitigation: it selects nothing).

    With ``params`` (its ``[retrain.params.<strategy>]``), what the selector built with them
    reads (:attr:`~dnnsafety.selection.Selector.needs`): e.g. ``distance = "contrastive"``
    of ``closest`` and ``hybrid`` adds ``"correct"``, the correctly classified inputs.
    """
    if is_mitigation(strategy):
        return frozenset()
    cls = SELECTORS.get(strategy)
    needs = frozenset(cls(**params).needs if params else getattr(cls, "requires", frozenset()))
    unknown = sorted(needs - set(REQUIREMENTS))
    if unknown:
        raise ConfigError(
            f"The {strategy} selector requires {', '.join(map(repr, unknown))}, which nothing "
            f"builds; a selector may require: {', '.join(REQUIREMENTS)}."
        )
    return needs


def needs_analysis(strategies: Iterable[str]) -> bool:
    """Whether any of ``strategies`` selects by the root-cause clusters (requires ``space``)."""
    return any("space" in requirements(name) for name in strategies)


def cluster_strategies() -> list[str]:
    """The registered strategies that select by the root-cause clusters, sorted."""
    return [name for name in SELECTORS.names() if "space" in requirements(name)]


def selector_params(strategy: str, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``[retrain.params.<strategy>]`` parameters of a selector, checked against its
    constructor (``--set 'retrain.params.hybrid={quota = "floor", floor = 10}'``).

    Raises
    ------
    ConfigError
        A parameter the selector does not take (the message lists those it takes).
    """
    given = dict(params.get(strategy) or {})
    accepted = set(inspect.signature(SELECTORS.get(strategy)).parameters)
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise ConfigError(
            f"retrain.params.{strategy} sets {', '.join(unknown)}, which the {strategy} "
            f"selector does not take; it takes: {', '.join(sorted(accepted)) or 'nothing'}."
        )
    return given
