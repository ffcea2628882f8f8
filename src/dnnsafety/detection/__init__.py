"""Anomaly and out-of-distribution detection (METHOD.md §6).

Detectors follow one contract (:class:`Detector`, PyOD's shape): ``fit(X) -> self``,
``decision_function(X)`` (higher = more anomalous), ``calibrate(X_cal)`` on held-out
in-distribution inputs, then conformal ``p_values(X)`` and ``predict(X, alpha)`` flags whose
false-alarm rate is at most ``alpha``. They register by name in :data:`DETECTORS`.
"""

from dnnsafety.detection.autoencoder import AutoencoderDetector
from dnnsafety.detection.base import DETECTORS, REQUIREMENTS, Detector, Head, check_head
from dnnsafety.detection.conformal import conformal_p_values, conformal_threshold
from dnnsafety.detection.features import (
    KNNDetector,
    MahalanobisDetector,
    RelativeMahalanobisDetector,
    ViMDetector,
    knn_distances,
)
from dnnsafety.detection.logits import (
    DeepGiniDetector,
    EnergyDetector,
    EntropyDetector,
    MaxLogitDetector,
    MSPDetector,
    SoftmaxDetector,
    deepgini_score,
    entropy_score,
    max_softmax_uncertainty,
)
from dnnsafety.detection.metrics import auroc, detection_metrics, fpr_at_tpr
from dnnsafety.detection.persist import load_detector, save_detector
from dnnsafety.detection.surprise import DSADetector, dsa_scores
from dnnsafety.detection.unsupervised import (
    HDBSCANDetector,
    IForestDetector,
    LOFDetector,
    OCSVMDetector,
    PyODDetector,
)

__all__ = [
    "DETECTORS",
    "REQUIREMENTS",
    "AutoencoderDetector",
    "DSADetector",
    "DeepGiniDetector",
    "Detector",
    "EnergyDetector",
    "EntropyDetector",
    "HDBSCANDetector",
    "Head",
    "IForestDetector",
    "KNNDetector",
    "LOFDetector",
    "MSPDetector",
    "MahalanobisDetector",
    "MaxLogitDetector",
    "OCSVMDetector",
    "PyODDetector",
    "RelativeMahalanobisDetector",
    "SoftmaxDetector",
    "ViMDetector",
    "auroc",
    "check_head",
    "conformal_p_values",
    "conformal_threshold",
    "deepgini_score",
    "detection_metrics",
    "dsa_scores",
    "entropy_score",
    "fpr_at_tpr",
    "knn_distances",
    "load_detector",
    "max_softmax_uncertainty",
    "save_detector",
]
