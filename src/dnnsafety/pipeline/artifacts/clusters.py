"""``clusters.json`` (HUDD and SAFE) and HUDD's layer table ``analysis/layers.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from dnnsafety.pipeline.artifacts.base import (
    SCHEMA_VERSION,
    Artifact,
    JSONObject,
    Problem,
    fields_to_json,
    get_bool,
    get_int,
    get_list,
    get_object,
    get_plugin,
    get_str,
    kind_of,
)


@dataclass(frozen=True)
class Clusters(Artifact):
    """``clusters.json``: the root-cause clusters of one analysis (HUDD or SAFE).

    Attributes
    ----------
    split
        The analysed split.
    layer
        HUDD: the selected layer (``""`` when no hidden layer was analysed); SAFE: ``""``.
    n_errors
        Error-inducing inputs analysed.
    clusters
        One record per cluster as :func:`~dnnsafety.explain.describe_clusters` writes it
        (``id``, ``size``, ``members``, label distributions, metadata, representatives ...).
    method
        The analysis that wrote the file (``"hudd"``, ``"safe"``); absent in files written
        before it was recorded (HUDD ones).
    settings
        HUDD: ``k_rule``, ``ruleset``, ``selection``; SAFE: the feature source's parameters and
        the seed.
    features, reduce, cluster, params, n_noise
        SAFE only: feature source, reducer and clusterer (names, or ``{name, ...}`` objects),
        their fitted parameters and the number of errors left as noise.
    schema_version
        Layout version (:data:`SCHEMA_VERSION`; 0 for files written before it was recorded).
    """

    FILE: ClassVar[str] = "clusters.json"
    COMMAND: ClassVar[str] = "analyze"
    WHAT: ClassVar[str] = "root-cause clusters file"

    split: str
    layer: str
    n_errors: int
    clusters: list[JSONObject]
    method: str | None = None
    settings: JSONObject | None = None
    features: str | None = None
    reduce: str | JSONObject | None = None
    cluster: str | JSONObject | None = None
    params: JSONObject | None = None
    n_noise: int | None = None
    schema_version: int = SCHEMA_VERSION
    source: str | None = field(default=None, compare=False, repr=False, metadata={"json": False})
    """The file it was read from, for error messages (not part of the content)."""

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        method = get_str(data, "method", optional=True)
        safe = method == "safe"
        return cls(
            split=get_str(data, "split"),
            layer=get_str(data, "layer"),
            n_errors=get_int(data, "n_errors"),
            clusters=get_list(data, "clusters"),
            method=method,
            settings=get_object(data, "settings", optional=True),
            features=get_str(data, "features", optional=not safe),
            reduce=get_plugin(data, "reduce") if safe or "reduce" in data else None,
            cluster=get_plugin(data, "cluster") if safe or "cluster" in data else None,
            params=get_object(data, "params", optional=True),
            n_noise=get_int(data, "n_noise", optional=not safe),
            schema_version=version,
            source=None if source is None else str(source),
        )

    def _records(self) -> list[tuple[int, list[str]]]:
        out = []
        for i, record in enumerate(self.clusters):
            ok = isinstance(record, dict) and isinstance(record.get("members"), list)
            cid = record.get("id") if ok else None
            if not ok or isinstance(cid, bool) or not isinstance(cid, int):
                raise self._error(
                    f"cluster record {i} has no integer 'id' and list 'members'", self.source
                )
            out.append((cid, [str(m) for m in record["members"]]))
        return out

    def sizes(self) -> list[int]:
        """Number of members of each cluster, in file order."""
        return [len(members) for _, members in self._records()]

    def labels(self) -> dict[str, int]:
        """Cluster id of every member."""
        return {sid: cid for cid, members in self._records() for sid in members}


@dataclass(frozen=True)
class LayerSummary:
    """One row of the layer table: the Ward cut of one layer's heatmaps (HUDD).

    Attributes
    ----------
    k, k_reason, knee_k
        Clusters of the chosen cut, why that number, the WICD curve's knee.
    is_input
        Whether the layer is the input (pixel relevance; never selected).
    indices
        Clustering indices of the cut (:mod:`dnnsafety.clustering.hudd.indices`).
    sizes
        Cluster sizes of the cut, largest first.
    ks, wicd, gradient
        The WICD curve: numbers of clusters, WICD and its gradient.
    selected
        Whether this is the selected layer.
    """

    k: int
    k_reason: str
    knee_k: int | None
    is_input: bool
    indices: JSONObject
    sizes: list[int]
    ks: list[int] | None = None
    wicd: list[float | None] | None = None
    gradient: list[float | None] | None = None
    selected: bool | None = None

    def to_json(self) -> JSONObject:
        """The row as written (``knee_k`` always, as ``null`` when there is none)."""
        return {"knee_k": self.knee_k, **fields_to_json(self)}

    @classmethod
    def from_json(cls, data: Any) -> LayerSummary:
        """Parse one row (a problem raises :class:`Problem`; see :class:`LayerTable`)."""
        if not isinstance(data, dict):
            raise Problem(f"a layer entry holds {kind_of(data)}, not a JSON object")
        return cls(
            k=get_int(data, "k"),
            k_reason=get_str(data, "k_reason"),
            knee_k=get_int(data, "knee_k", optional=True),
            is_input=get_bool(data, "is_input"),
            indices=get_object(data, "indices"),
            sizes=get_list(data, "sizes"),
            ks=get_list(data, "ks", optional=True),
            wicd=get_list(data, "wicd", optional=True),
            gradient=get_list(data, "gradient", optional=True),
            selected=get_bool(data, "selected", optional=True),
        )


@dataclass(frozen=True)
class LayerTable(Artifact):
    """``analysis/layers.json``: HUDD's clustering of every candidate layer.

    Attributes
    ----------
    selected
        The selected layer (``""`` when none was).
    settings
        ``k_rule``, ``ruleset``, ``selection``.
    layers
        One :class:`LayerSummary` per analysed layer, in analysis order.
    schema_version
        Layout version (:data:`SCHEMA_VERSION`).
    """

    FILE: ClassVar[str] = "analysis/layers.json"
    COMMAND: ClassVar[str] = "analyze"
    WHAT: ClassVar[str] = "layer table"

    selected: str
    settings: JSONObject
    layers: dict[str, LayerSummary]
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def _parse(cls, data: JSONObject, version: int, source: str | Path | None) -> Self:
        layers = get_object(data, "layers")
        return cls(
            selected=get_str(data, "selected"),
            settings=get_object(data, "settings"),
            layers={str(k): LayerSummary.from_json(v) for k, v in layers.items()},
            schema_version=version,
        )
