"""``analysis/alt/<name>/agreement.json``: a second analysis of a run against the main one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from dnnsafety.pipeline.artifacts.base import (
    SCHEMA_VERSION,
    Artifact,
    ArtifactError,
    JSONObject,
    Problem,
    get_int,
    get_list,
    get_object,
    get_str,
    kind_of,
)


def _get_number(data: JSONObject, key: str) -> float | None:
    """``data[key]``, a number, or absent / null (the ARI of fewer than two errors)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Problem(f"{key!r} must be a number or null, not {kind_of(value)}")
    return float(value)


def _int_list(data: JSONObject, key: str) -> list[int]:
    values = get_list(data, key)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise Problem(f"{key!r} must be a list of integers")
    return [int(v) for v in values]


@dataclass(frozen=True)
class AnalysisAgreement(Artifact):
    """How a second analysis of a run (``analyze --as NAME``) agrees with the main one.

    Kept in ``analysis/alt/<name>/`` beside the second analysis's own ``clusters.json``; read
    it with :func:`~dnnsafety.pipeline.artifacts.read_artifact` on that folder.

    Attributes
    ----------
    first, second
        The two analyses' names: ``main`` (the run's ``clusters.json``) and ``<name>``.
    split
        The analysed split.
    n_common
        Errors both analysed (noise included).
    n_shared
        Errors both put in a cluster: the adjusted Rand index's inputs.
    ari
        Adjusted Rand index of the two partitions of the ``n_shared`` errors (``None``, absent
        from the file, with fewer than two).
    first_ids, second_ids
        Row / column cluster ids of ``contingency`` (``-1``: noise, last).
    contingency
        ``len(first_ids)`` rows of ``len(second_ids)`` counts: errors in both clusters.
    matches
        Per cluster of the first analysis, its best-matching cluster of the second:
        ``{first, second, shared, first_size, second_size, jaccard}``.
    analyses
        Per analysis name: ``method``, ``n_errors``, ``n_clusters``, ``n_noise``, ``sizes``
        and, when the data has ground-truth scenarios, ``scores`` (``purity``,
        ``purity_trivial``, ``coverage``, ``mean_f1``, ``min_f1``, ``causes``: per cause
        ``cluster``, ``recall``, ``precision``, ``f1``, ``n_errors``).
    heatmap
        The contingency heatmap PNG, relative to the run folder.
    schema_version
        Layout version (:data:`SCHEMA_VERSION`).
    """

    FILE: ClassVar[str] = "agreement.json"
    COMMAND: ClassVar[str] = "analyze"
    WHAT: ClassVar[str] = "agreement file"

    first: str
    second: str
    split: str
    n_common: int
    n_shared: int
    ari: float | None
    first_ids: list[int]
    second_ids: list[int]
    contingency: list[list[int]]
    matches: list[JSONObject]
    analyses: dict[str, JSONObject]
    heatmap: str = ""
    schema_version: int = SCHEMA_VERSION
    source: str | None = field(default=None, compare=False, repr=False, metadata={"json": False})
    """The file it was read from, for error messages (not part of the content)."""

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        first_ids, second_ids = _int_list(data, "first_ids"), _int_list(data, "second_ids")
        table = get_list(data, "contingency")
        if len(table) != len(first_ids) or any(
            not isinstance(row, list) or len(row) != len(second_ids) for row in table
        ):
            raise Problem(
                f"'contingency' must be {len(first_ids)} rows of {len(second_ids)} counts"
            )
        analyses = get_object(data, "analyses")
        if not all(isinstance(v, dict) for v in analyses.values()):
            raise Problem("every entry of 'analyses' must be an object")
        matches = get_list(data, "matches")
        if not all(isinstance(m, dict) for m in matches):
            raise Problem("every entry of 'matches' must be an object")
        return cls(
            first=get_str(data, "first"),
            second=get_str(data, "second"),
            split=get_str(data, "split"),
            n_common=get_int(data, "n_common"),
            n_shared=get_int(data, "n_shared"),
            ari=_get_number(data, "ari"),
            first_ids=first_ids,
            second_ids=second_ids,
            contingency=[[int(v) for v in row] for row in table],
            matches=matches,
            analyses=analyses,
            heatmap=get_str(data, "heatmap", optional=True) or "",
            schema_version=version,
            source=None if source is None else str(source),
        )

    @classmethod
    def _error(cls, problem: str, source: str | Path | None) -> ArtifactError:
        folder = Path(source).parent if source else Path("RUN/analysis/alt/NAME")
        name = str(source) if source else f"{folder}/{cls.FILE}"
        return ArtifactError(
            f"{name} is not an {cls.WHAT} this dnnsafety can read: {problem}. Re-run the "
            f"second analysis (`dnnsafety analyze RUN --features ... --as {folder.name}`) to "
            "write it again."
        )
