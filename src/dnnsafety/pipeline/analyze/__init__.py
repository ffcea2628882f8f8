"""Root-cause analyses of a run folder's errors, registered by name in :data:`ANALYSES`.

* ``hudd`` (:mod:`~dnnsafety.pipeline.analyze.hudd`): white-box, LRP heatmaps per layer;
* ``safe`` (:mod:`~dnnsafety.pipeline.analyze.safe`): black-box, features -> reducer ->
  clusterer.

Each entry declares its outputs and its feature space for selection
(:class:`~dnnsafety.pipeline.analyze.base.Analysis`); the orchestrator picks the one the
configuration asks for (:func:`analysis_for`) and dispatches to it.
"""

from dnnsafety.pipeline.analyze.base import (
    ANALYSES,
    ANALYSIS_DIR,
    CLUSTERS_FILE,
    LAYERS_FILE,
    Analysis,
    AnalysisSpace,
    RunContext,
    analysis_for,
    analysis_key,
    analysis_of,
    cluster_labels,
    stale_outputs,
)
from dnnsafety.pipeline.analyze.hudd import HuddAnalysis
from dnnsafety.pipeline.analyze.safe import SafeAnalysis

__all__ = [
    "ANALYSES",
    "ANALYSIS_DIR",
    "CLUSTERS_FILE",
    "LAYERS_FILE",
    "Analysis",
    "AnalysisSpace",
    "HuddAnalysis",
    "RunContext",
    "SafeAnalysis",
    "analysis_for",
    "analysis_key",
    "analysis_of",
    "cluster_labels",
    "stale_outputs",
]
