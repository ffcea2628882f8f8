"""What a root-cause analysis is to the orchestrator, and the registry that holds them.

An :class:`Analysis` clusters the error-inducing inputs of a run folder and writes
``clusters.json`` (its ``method`` field is the analysis's registered name) plus its own files,
which it declares in :attr:`Analysis.outputs`. It also declares the feature space its clusters
live in, so selection can measure pool inputs there (:meth:`Analysis.space`,
:meth:`Analysis.reference_features`). Adding an analysis means one module in this folder with
a class decorated ``@ANALYSES.register("name")``, imported from ``analyze/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch

from dnnsafety.pipeline.artifacts import Clusters, LayerTable
from dnnsafety.registry import Registry
from dnnsafety.runs import fingerprint

if TYPE_CHECKING:
    from torch import nn

    from dnnsafety.config import AnalysisConfig, RunConfig
    from dnnsafety.data.dataset import Dataset
    from dnnsafety.features.chunks import ChunkFeatures
    from dnnsafety.runs import RunDir

ANALYSIS_DIR = "analysis"
CLUSTERS_FILE = Clusters.FILE
LAYERS_FILE = LayerTable.FILE
LEGACY_METHOD = "hudd"
"""The analysis of a ``clusters.json`` written before it recorded its ``method``."""


class RunContext(Protocol):
    """What an analysis reads from the orchestrator (a :class:`~dnnsafety.pipeline.Pipeline`)."""

    run: RunDir
    config: RunConfig

    @property
    def dataset(self) -> Dataset: ...

    @property
    def model_key(self) -> str: ...

    def model(self) -> nn.Module: ...


@dataclass(frozen=True)
class AnalysisSpace:
    """Clustered error inputs and pool inputs in one feature space.

    Attributes
    ----------
    error_ids
        Ids of the analysed error inputs.
    error_features
        Their features (``M x D``; may be a memory map).
    labels
        Their cluster ids (``-1``: noise).
    pool_ids
        Ids of the pool inputs.
    pool_features
        Their features in the same space (``P x D``; may be a memory map).
    method
        The analysis that found the clusters (``"hudd"``, ``"safe"``).
    """

    error_ids: list[str]
    error_features: Any
    labels: np.ndarray
    pool_ids: list[str]
    pool_features: Any
    method: str


@dataclass(frozen=True)
class ChunkedSpace:
    """Clustered error inputs, and how to compute a pool chunk's features in their space.

    Attributes
    ----------
    error_ids, error_features, labels
        As in :class:`AnalysisSpace` (``M x D`` features, cluster ids with ``-1`` for noise).
    features
        The per-chunk feature step (:class:`~dnnsafety.features.chunks.ChunkFeatures`).
    """

    error_ids: list[str]
    error_features: Any
    labels: np.ndarray
    features: ChunkFeatures


class Analysis(ABC):
    """One root-cause analysis of a run folder's errors.

    Attributes
    ----------
    name
        Registered name; also ``clusters.json``'s ``method``.
    outputs
        Files (relative to the run folder) the analysis writes and the ``analyze`` stage checks
        before reusing a finished analysis. A file another analysis declares and this one does
        not is removed after this one ran (it would describe other clusters).
    white_box
        Whether it reads the model's layers whatever its configuration.
    black_box_fallback
        For a white-box analysis: the ``analysis`` settings that switch to a black-box one
        when the model gives no white-box access.
    """

    name: ClassVar[str] = ""
    outputs: ClassVar[tuple[str, ...]] = (CLUSTERS_FILE,)
    white_box: ClassVar[bool] = False
    black_box_fallback: ClassVar[dict[str, Any]] = {}

    @classmethod
    @abstractmethod
    def handles(cls, config: AnalysisConfig) -> bool:
        """Whether ``config`` asks for this analysis."""

    @abstractmethod
    def run(self, ctx: RunContext) -> dict[str, Any]:
        """Analyse the errors of ``ctx.config.analysis.split`` and write the outputs.

        Returns what the stage record keeps (e.g. ``clusters``, ``layer``, ``noise``).
        """

    @abstractmethod
    def space(self, ctx: RunContext, data: dict[str, Any], pool_ids: list[str]) -> AnalysisSpace:
        """The clustered errors of ``data`` (``clusters.json``) and the pool, in one space."""

    @abstractmethod
    def reference_features(
        self,
        ctx: RunContext,
        data: dict[str, Any],
        images: torch.Tensor,
        ids: list[str],
        split: str,
    ) -> Any:
        """Features, in the space of :meth:`space`, of the inputs ``ids`` of ``split``."""

    @staticmethod
    @abstractmethod
    def describe(data: dict[str, Any]) -> str:
        """How the clusters of ``data`` were found, in a few words (for the CLI summary)."""

    def chunked_space(self, ctx: RunContext, data: dict[str, Any]) -> ChunkedSpace:
        """The clustered errors of ``data`` and the per-chunk feature step of their space, for
        selection over a pool read chunk by chunk (:mod:`dnnsafety.pipeline.scale`).

        Raises
        ------
        ConfigError
            The analysis has no chunked feature step.
        """
        from dnnsafety.exceptions import ConfigError

        raise ConfigError(
            f"The {self.name} analysis cannot measure a chunked pool in its feature space; "
            "use a ranking strategy (entropy) or a hudd/safe analysis."
        )


ANALYSES: Registry[type[Analysis]] = Registry("analysis")
"""Root-cause analyses by name (``clusters.json`` ``method``)."""


def analysis_for(config: AnalysisConfig) -> Analysis:
    """The analysis the configuration asks for (the one registered analysis that handles it)."""
    found = [name for name in ANALYSES if ANALYSES.get(name).handles(config)]
    if len(found) != 1:  # pragma: no cover - the registered analyses partition the configs
        raise RuntimeError(f"{len(found)} analyses handle this configuration: {found}")
    return ANALYSES.get(found[0])()


def analysis_of(data: dict[str, Any]) -> Analysis:
    """The analysis that wrote ``data`` (a ``clusters.json``)."""
    return ANALYSES.get(str(data.get("method") or LEGACY_METHOD))()


def analysis_key(eval_key: str, config: RunConfig) -> str:
    """The cache key of an analysis with ``config``'s settings of a model evaluated as
    ``eval_key`` (the run's own analysis, or a second one kept beside it)."""
    return fingerprint(eval_key, config.section("analysis"), "analyze-v1")


def stale_outputs(analysis: Analysis) -> list[str]:
    """Files other analyses write and ``analysis`` does not (they describe other clusters)."""
    own = set(analysis.outputs)
    return sorted({f for n in ANALYSES for f in ANALYSES.get(n).outputs if f not in own})


def cluster_labels(data: dict[str, Any], ids: list[str]) -> np.ndarray:
    """Cluster id per error id from ``clusters.json`` (``-1`` for noise)."""
    of = {sid: int(c["id"]) for c in data["clusters"] for sid in c["members"]}
    return np.array([of.get(s, -1) for s in ids], dtype=np.int64)


def rows_of(split: Any, ids: list[str]) -> torch.Tensor:
    """Row positions of ``ids`` in ``split``."""
    pos = {str(sid): i for i, sid in enumerate(split.ids.tolist())}
    return torch.tensor([pos[s] for s in ids], dtype=torch.long)
