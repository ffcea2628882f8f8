"""Checks that every plug-in must pass, shipped with the package (like scikit-learn's
``check_estimator``): run them on your own clusterer, reducer, selector, feature source or
detector."""

from dnnsafety.testing.attacks import check_attack
from dnnsafety.testing.checks import (
    check_clusterer,
    check_detector,
    check_estimator_contract,
    check_feature_source,
    check_model_restored,
    check_reducer,
    check_selector,
)
from dnnsafety.testing.registries import registry_cases
from dnnsafety.testing.retraining import check_mitigation
from dnnsafety.testing.robustness_checks import check_corruption

__all__ = [
    "check_attack",
    "check_clusterer",
    "check_corruption",
    "check_detector",
    "check_estimator_contract",
    "check_feature_source",
    "check_mitigation",
    "check_model_restored",
    "check_reducer",
    "check_selector",
    "registry_cases",
]
