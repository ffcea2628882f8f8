"""Typed run-folder artifacts: ``clusters.json``, ``analysis/layers.json``, ``comparison.json``.

Every stage that writes one of these files builds a frozen dataclass and writes its
:meth:`to_json` (:func:`write_artifact`); every reader parses the file with :meth:`from_json`
(:func:`read_artifact`), which checks the layout and names the file and the command that
writes it again when something is wrong.

Each file carries a ``schema_version`` (:data:`SCHEMA_VERSION`). A file without one was written
before the key existed and is read as version 0, the same layout without the key. A file of a
newer or unknown version, or a malformed one, raises :class:`ArtifactError`.

The per-cluster records of ``clusters.json`` (written by
:func:`dnnsafety.explain.describe_clusters`) and the per-run scores of ``comparison.json``
(:meth:`dnnsafety.retraining.finetune.TestScore.to_dict`, summaries from
:mod:`dnnsafety.evaluation.retraining`) are kept as the JSON objects their stages produce: the
report shows what it can of a damaged record, and :meth:`Clusters.labels` /
:meth:`Clusters.sizes` check the records before computing with them.
"""

from dnnsafety.pipeline.artifacts.adversarial import Adversarial, AttackRecord
from dnnsafety.pipeline.artifacts.agreement import AnalysisAgreement
from dnnsafety.pipeline.artifacts.base import (
    KNOWN_VERSIONS,
    SCHEMA_VERSION,
    ArtifactError,
    JSONObject,
    artifact_path,
    read_artifact,
    write_artifact,
)
from dnnsafety.pipeline.artifacts.bias import BiasReport
from dnnsafety.pipeline.artifacts.clusters import Clusters, LayerSummary, LayerTable
from dnnsafety.pipeline.artifacts.comparison import Comparison, StrategyResult
from dnnsafety.pipeline.artifacts.detection import Detection
from dnnsafety.pipeline.artifacts.robustness import Robustness

__all__ = [
    "KNOWN_VERSIONS",
    "SCHEMA_VERSION",
    "Adversarial",
    "AnalysisAgreement",
    "ArtifactError",
    "AttackRecord",
    "BiasReport",
    "Clusters",
    "Comparison",
    "Detection",
    "JSONObject",
    "LayerSummary",
    "LayerTable",
    "Robustness",
    "StrategyResult",
    "artifact_path",
    "read_artifact",
    "write_artifact",
]
