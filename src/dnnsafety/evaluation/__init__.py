"""Scoring against ground truth: accuracy tables, cluster scores, statistics, summaries."""

from dnnsafety.evaluation.clusters import (
    Agreement,
    CauseScore,
    ClusterScores,
    cause_scores,
    cluster_agreement,
    score_clusters,
)
from dnnsafety.evaluation.metrics import compute_metrics
from dnnsafety.evaluation.retraining import add_versus, summarize_runs
from dnnsafety.evaluation.stats import (
    improved_worsened,
    mann_whitney,
    mean_ci,
    vargha_delaney_a12,
)

__all__ = [
    "Agreement",
    "CauseScore",
    "ClusterScores",
    "add_versus",
    "cause_scores",
    "cluster_agreement",
    "compute_metrics",
    "improved_worsened",
    "mann_whitney",
    "mean_ci",
    "score_clusters",
    "summarize_runs",
    "vargha_delaney_a12",
]
