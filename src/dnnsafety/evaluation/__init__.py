"""Scoring against ground truth (benchmarks only; never used by the method)."""

from dnnsafety.evaluation.clusters import ClusterScores, score_clusters

__all__ = ["ClusterScores", "score_clusters"]
