"""Adversarial inputs (METHOD.md §7): attacks, robust accuracy and label-free detectors.

* :mod:`~dnnsafety.adversarial.attacks` - FGSM, PGD, CW-L2, DeepFool and Square from
  torchattacks / ART behind one contract, in the :data:`ATTACKS` registry; robust accuracy
  per budget.
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

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "has_gradients",
    "perturbation_norm",
    "robust_accuracy",
    "within_budget",
]
