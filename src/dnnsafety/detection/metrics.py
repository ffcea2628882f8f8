"""Detection metrics (OpenOOD conventions, METHOD.md §6): out-of-distribution inputs are the
positives, scores are "higher = more anomalous"."""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "detection_metrics", "fpr_at_tpr"]


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve, OOD positive (ties count half); NaN if a side is empty."""
    a = np.asarray(id_scores, dtype=np.float64)
    b = np.asarray(ood_scores, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([a, b]))
    return float((ranks[a.size :].sum() - b.size * (b.size + 1) / 2) / (a.size * b.size))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate on ID inputs at the threshold that flags ``tpr`` of the OOD inputs
    (FPR@95 for ``tpr = 0.95``); NaN if a side is empty."""
    a = np.asarray(id_scores, dtype=np.float64)
    b = np.asarray(ood_scores, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return float("nan")
    threshold = np.quantile(b, 1.0 - tpr, method="lower")
    return float(np.mean(a >= threshold))


def detection_metrics(id_scores: np.ndarray, ood_scores: np.ndarray) -> dict[str, float]:
    """``{"auroc", "fpr95", "n_id", "n_ood"}`` of one ID-vs-OOD comparison."""
    return {
        "auroc": auroc(id_scores, ood_scores),
        "fpr95": fpr_at_tpr(id_scores, ood_scores),
        "n_id": int(np.size(id_scores)),
        "n_ood": int(np.size(ood_scores)),
    }
