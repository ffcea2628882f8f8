"""AugMix fine-tuning: a retraining strategy against corruptions that needs no new labels
(Hendrycks et al., ICLR 2020; :mod:`dnnsafety.robustness.augmix`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from dnnsafety._validation import check_float_param
from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
    plain_plan,
)
from dnnsafety.robustness.augmix import PAPER_OPERATIONS, AugMix, check_operations

__all__ = ["AugMixMitigation"]


@MITIGATIONS.register(
    "augmix",
    help="AugMix: fine-tune on mixed augmentation chains with a Jensen-Shannon consistency loss",
)
class AugMixMitigation(Mitigation):
    """Fine-tune on every training batch plus two AugMix views of it, with AugMix's
    Jensen-Shannon consistency loss (weight ``consistency``, paper: 12).

    The views mix ``width`` chains of 1 to ``max_depth`` operations drawn from ``operations``
    (AugMix's: autocontrast, equalize, posterize, solarize, rotate, shear, translate; no
    ImageNet-C corruption) at levels ``U(0.1, severity)``; judge the result on the corruptions
    (``dnnsafety robustness --reference``), none of which it trained on.

    Parameters
    ----------
    operations
        AugMix operation names (default: the paper's nine).
    width, max_depth, severity, alpha
        As in :func:`dnnsafety.robustness.augmix.augmix_images`.
    consistency
        Weight of the consistency loss; 0: one view per image and plain cross-entropy.

    Raises
    ------
    ConfigError
        From :meth:`plan`, on an unknown operation or a bad parameter.
    """

    _test_params: ClassVar[dict[str, object]] = {"operations": ("rotate", "equalize")}

    def __init__(
        self,
        operations: Sequence[str] = PAPER_OPERATIONS,
        width: int = 3,
        max_depth: int = 3,
        severity: float = 3.0,
        alpha: float = 1.0,
        consistency: float = 12.0,
    ) -> None:
        self.operations = operations
        self.width = width
        self.max_depth = max_depth
        self.severity = severity
        self.alpha = alpha
        self.consistency = consistency

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        weight = check_float_param(self, "consistency", self.consistency, 0.0, 1e6)
        ops = check_operations(self.operations)
        augment = AugMix(
            ops, self.width, self.max_depth, self.severity, self.alpha, 2 if weight > 0 else 1
        )
        plan = plain_plan(context.train)
        plan.augment = augment
        plan.consistency = weight
        plan.info = {"augment": "augmix", "operations": list(ops), "consistency": weight}
        return plan
