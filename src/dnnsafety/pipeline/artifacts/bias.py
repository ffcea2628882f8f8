"""``bias.json``: the under-represented, high-error groups and metadata slices of
``dnnsafety bias``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from dnnsafety.pipeline.artifacts.base import (
    SCHEMA_VERSION,
    Artifact,
    JSONObject,
    Problem,
    get_int,
    get_list,
    get_object,
    get_str,
)


@dataclass(frozen=True)
class BiasReport(Artifact):
    """``bias.json`` (``dnnsafety bias``).

    Attributes
    ----------
    features
        The feature source the groups were found in (``activations``, ``backbone``, ...).
    reduce, cluster
        Reducer and clusterer, each ``{name, params}`` as configured.
    rule
        The flagging rule (:class:`dnnsafety.bias.FlagRule` fields) and its ``text``.
    baseline_error
        The error rate the groups were tested against.
    n_train, n_test
        Training and test inputs clustered.
    groups
        One record per group (:meth:`dnnsafety.bias.BiasGroup.to_json` plus
        ``dominant_class``, ``scenarios`` where known and the ``thumbnails`` PNG path), flagged
        first, by risk.
    slices
        SliceLine's top metadata slices (:meth:`dnnsafety.bias.Slice.to_json`), best first.
    params
        The reducer's and clusterer's fitted parameters.
    slice_settings
        SliceLine's settings.
    schema_version
        Layout version (:data:`SCHEMA_VERSION`).
    """

    FILE: ClassVar[str] = "bias.json"
    COMMAND: ClassVar[str] = "bias"
    WHAT: ClassVar[str] = "bias analysis"

    features: str
    reduce: JSONObject
    cluster: JSONObject
    rule: JSONObject
    baseline_error: float
    n_train: int
    n_test: int
    groups: list[JSONObject]
    slices: list[JSONObject]
    params: JSONObject | None = None
    slice_settings: JSONObject | None = None
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        baseline = data.get("baseline_error")
        if isinstance(baseline, bool) or not isinstance(baseline, int | float):
            raise Problem("'baseline_error' must be a number")
        groups = get_list(data, "groups")
        slices = get_list(data, "slices")
        for what, items in (("groups", groups), ("slices", slices)):
            if not all(isinstance(item, dict) for item in items):
                raise Problem(f"every entry of {what!r} must be an object")
        return cls(
            features=get_str(data, "features"),
            reduce=get_object(data, "reduce"),
            cluster=get_object(data, "cluster"),
            rule=get_object(data, "rule"),
            baseline_error=float(baseline),
            n_train=get_int(data, "n_train"),
            n_test=get_int(data, "n_test"),
            groups=groups,
            slices=slices,
            params=get_object(data, "params", optional=True),
            slice_settings=get_object(data, "slice_settings", optional=True),
            schema_version=version,
        )
