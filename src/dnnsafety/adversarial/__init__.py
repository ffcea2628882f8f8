"""Adversarial inputs (METHOD.md §7): attacks, robust accuracy and label-free detectors.

* :mod:`~dnnsafety.adversarial.attacks` - FGSM, PGD, TPGD, CW-L2, DeepFool and Square from
  torchattacks / ART behind one contract, in the :data:`ATTACKS` registry; robust accuracy
  per budget.
* :mod:`~dnnsafety.adversarial.detectors` - label-free detectors registered in
  :data:`dnnsafety.detection.DETECTORS`: feature squeezing (``squeeze``), MagNet
  (``magnet``) and LRP relevance statistics (``lrp``).
* :mod:`~dnnsafety.adversarial.ensemble` - more label-free detectors in the same registry:
  prediction consistency under noise (``noise``), noise-residual statistics (``residual``),
  multi-layer Mahalanobis (``layers``) and conformal p-value fusion (``fusion``).
"""

from dnnsafety.adversarial.attacks import (
    ATTACKS,
    Attack,
    AttackResult,
    has_gradients,
    perturbation_norm,
    robust_accuracy,
    within_budget,
)
from dnnsafety.adversarial.detectors import (
    FeatureSqueezingDetector,
    LRPStatisticsDetector,
    MagNetDetector,
)
from dnnsafety.adversarial.ensemble import (
    FusionDetector,
    MultiLayerMahalanobisDetector,
    NoiseConsistencyDetector,
    ResidualDetector,
)

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "FeatureSqueezingDetector",
    "FusionDetector",
    "LRPStatisticsDetector",
    "MagNetDetector",
    "MultiLayerMahalanobisDetector",
    "NoiseConsistencyDetector",
    "ResidualDetector",
    "has_gradients",
    "perturbation_norm",
    "robust_accuracy",
    "within_budget",
]
