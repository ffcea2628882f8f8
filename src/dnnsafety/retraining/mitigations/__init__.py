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

__all__ = ["MITIGATIONS", "Mitigation", "MitigationContext", "TrainingPlan"]

from dnnsafety.retraining.mitigations import generated  # noqa: F401  (registers "generated")
