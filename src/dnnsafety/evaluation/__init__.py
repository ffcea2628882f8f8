"""Scoring against ground truth: accuracy tables, cluster scores, statistics, summaries."""

from dnnsafety.evaluation.clusters import ClusterScores, score_clusters
from dnnsafety.evaluation.metrics import compute_metrics
from dnnsafety.evaluation.stats import (
    improved_worsened,
    mann_whitney,
    mean_ci,
    vargha_delaney_a12,
)

__all__ = [
    "ClusterScores",
    "compute_metrics",
    "improved_worsened",
    "mann_whitney",
    "mean_ci",
    "score_clusters",
    "vargha_delaney_a12",
]
