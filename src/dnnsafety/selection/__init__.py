"""Unsafe-set selection from the unlabeled pool: HUDD's ClosestU and the baselines.

Selectors are registered by name in :data:`SELECTORS`; see
:mod:`dnnsafety.selection.selectors` for the contract (inputs, result).
"""

from dnnsafety.selection.baselines import MispredictedSelector, RandomSelector
from dnnsafety.selection.closest import (
    ClosestSelector,
    ContrastiveClosestSelector,
    closest_assignment,
    natural_quotas,
    scale_quotas,
)
from dnnsafety.selection.contrastive import contrastive_scores
from dnnsafety.selection.hybrid import ClusterMarginSelector, HybridSelector
from dnnsafety.selection.selectors import (
    SELECTORS,
    ClusterSpace,
    FeatureRows,
    Oracle,
    PoolView,
    ReferenceSet,
    Selection,
    Selector,
)
from dnnsafety.selection.surprise import DSASelector, dsa_scores
from dnnsafety.selection.uncertainty import (
    DeepGiniSelector,
    DetectorSelector,
    EntropySelector,
    MaxSoftmaxSelector,
    deepgini_score,
    entropy_score,
    max_softmax_uncertainty,
)

__all__ = [
    "SELECTORS",
    "ClosestSelector",
    "ClusterMarginSelector",
    "ClusterSpace",
    "ContrastiveClosestSelector",
    "DSASelector",
    "DeepGiniSelector",
    "DetectorSelector",
    "EntropySelector",
    "FeatureRows",
    "HybridSelector",
    "MaxSoftmaxSelector",
    "MispredictedSelector",
    "Oracle",
    "PoolView",
    "RandomSelector",
    "ReferenceSet",
    "Selection",
    "Selector",
    "closest_assignment",
    "contrastive_scores",
    "deepgini_score",
    "dsa_scores",
    "entropy_score",
    "max_softmax_uncertainty",
    "natural_quotas",
    "scale_quotas",
]
