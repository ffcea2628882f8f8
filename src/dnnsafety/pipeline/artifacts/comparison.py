"""``comparison.json``: the strategy comparison of ``dnnsafety compare``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

from dnnsafety.pipeline.artifacts.base import (
    SCHEMA_VERSION,
    Artifact,
    JSONObject,
    Problem,
    fields_to_json,
    get_int,
    get_list,
    get_object,
    kind_of,
)


@dataclass(frozen=True)
class StrategyResult:
    """One strategy of ``comparison.json`` (or the no-new-labels ``control``).

    Attributes
    ----------
    cost
        Labels spent (the largest over seeds).
    summary
        Mean and 95% CI over runs: ``overall``, ``rare``, ``per_scenario``, ``per_cluster``.
    runs
        One score per seed (``seed``, ``overall``, ``per_scenario``, ...).
    bag_size
        New training images per run.
    versus
        A12 and p-value against every other strategy (absent for the control).
    """

    cost: int
    summary: JSONObject
    runs: list[JSONObject] | None = None
    bag_size: int | None = None
    versus: JSONObject | None = None

    def to_json(self) -> JSONObject:
        """The entry as written."""
        return fields_to_json(self)

    @classmethod
    def from_json(cls, data: Any, name: str = "") -> StrategyResult:
        """Parse one entry (a problem raises :class:`Problem`; see
        :class:`Comparison`)."""
        if not isinstance(data, dict):
            raise Problem(f"strategy {name!r} holds {kind_of(data)}, not a JSON object")
        return cls(
            cost=get_int(data, "cost"),
            summary=get_object(data, "summary"),
            runs=get_list(data, "runs", optional=True),
            bag_size=get_int(data, "bag_size", optional=True),
            versus=get_object(data, "versus", optional=True),
        )


@dataclass(frozen=True)
class Comparison(Artifact):
    """``comparison.json``: strategies x seeds at one labelling budget (``dnnsafety compare``).

    Attributes
    ----------
    budget
        Labels per strategy.
    seeds
        The seeds every strategy ran with.
    scenarios
        Scenarios of the test split, sorted.
    original
        The original model's test scores.
    strategies
        One :class:`StrategyResult` per strategy, in the order they ran.
    bag_size
        New training images per run (every bag topped up to it).
    clusters
        Root-cause cluster ids scored per cluster.
    settings
        The ``retrain`` configuration.
    control
        The same fine-tuning without new images, when it ran.
    robust
        How robust accuracy was measured (:class:`~dnnsafety.pipeline.robust_eval.RobustEval`:
        ``eps``, ``n``, ``seed``, ``attack``, ``steps``), when it was: every run and
        ``original`` then hold ``robust_accuracy``.
    schema_version
        Layout version (:data:`SCHEMA_VERSION`).
    """

    FILE: ClassVar[str] = "comparison.json"
    COMMAND: ClassVar[str] = "compare"
    WHAT: ClassVar[str] = "strategy comparison"

    budget: int
    seeds: list[int]
    scenarios: list[str]
    original: JSONObject
    strategies: dict[str, StrategyResult]
    bag_size: int | None = None
    clusters: list[int] | None = None
    settings: JSONObject | None = None
    control: StrategyResult | None = None
    robust: JSONObject | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        strategies = get_object(data, "strategies")
        control = get_object(data, "control", optional=True)
        return cls(
            budget=get_int(data, "budget"),
            seeds=get_list(data, "seeds"),
            scenarios=get_list(data, "scenarios"),
            original=get_object(data, "original"),
            strategies={str(k): StrategyResult.from_json(v, str(k)) for k, v in strategies.items()},
            bag_size=get_int(data, "bag_size", optional=True),
            clusters=get_list(data, "clusters", optional=True),
            settings=get_object(data, "settings", optional=True),
            control=None if control is None else StrategyResult.from_json(control, "control"),
            robust=get_object(data, "robust", optional=True),
            schema_version=version,
        )
