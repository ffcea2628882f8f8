"""The retraining strategies that need no new labels, one module each (see
:mod:`dnnsafety.retraining.mitigation` for the contract). Importing this package registers them
all in :data:`MITIGATIONS`; a new strategy adds its module and one import line here.
"""

from __future__ import annotations

from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
)

# one module per family of strategies; importing it registers them
from dnnsafety.retraining.mitigations import adversarial, augmix, bias, generated, upsample

__all__ = [
    "MITIGATIONS",
    "Mitigation",
    "MitigationContext",
    "TrainingPlan",
    "adversarial",
    "augmix",
    "bias",
    "generated",
    "upsample",
]
