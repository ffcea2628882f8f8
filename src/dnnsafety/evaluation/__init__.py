"""Scoring against ground truth (benchmarks only; never used by the method)."""

from dnnsafety.evaluation.clusters import ClusterScores, score_clusters
from dnnsafety.evaluation.stats import (
    improved_worsened,
    mann_whitney,
    mean_ci,
    vargha_delaney_a12,
)

__all__ = [
    "ClusterScores",
    "improved_worsened",
    "mann_whitney",
    "mean_ci",
    "score_clusters",
    "vargha_delaney_a12",
]
