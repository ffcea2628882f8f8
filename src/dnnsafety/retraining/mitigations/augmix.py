"""AugMix-style augmentation fine-tuning: a retraining strategy against corruptions that
needs no new labels (Hendrycks et al., ICLR 2020; :mod:`dnnsafety.robustness.augmix`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
    plain_plan,
)
from dnnsafety.robustness.augmix import DEFAULT_TRAIN_FAMILIES, AugMix
from dnnsafety.robustness.corruptions import names_of

__all__ = ["AugMixMitigation"]


@MITIGATIONS.register(
    "augmix", help="AugMix: fine-tune on mixed chains of corruptions (noise, blur by default)"
)
class AugMixMitigation(Mitigation):
    """Fine-tune on every training batch plus one AugMix view of it.

    The views mix ``width`` chains of 1 to ``max_depth`` corruptions drawn from
    ``operations`` (names or families of the corruption registry) at severities 1 to
    ``max_severity``; judge the result on corruption families left out of ``operations``
    (``dnnsafety robustness --reference``).

    Parameters
    ----------
    operations
        Corruption names or families the chains draw from.
    width, max_depth, max_severity, alpha
        As in :func:`dnnsafety.robustness.augmix.augmix_images`.

    Raises
    ------
    ConfigError
        From :meth:`plan`, on an unknown operation or a bad parameter.
    """

    _test_params: ClassVar[dict[str, object]] = {"operations": ("gaussian_noise", "defocus_blur")}

    def __init__(
        self,
        operations: Sequence[str] = DEFAULT_TRAIN_FAMILIES,
        width: int = 3,
        max_depth: int = 3,
        max_severity: int = 3,
        alpha: float = 1.0,
    ) -> None:
        self.operations = operations
        self.width = width
        self.max_depth = max_depth
        self.max_severity = max_severity
        self.alpha = alpha

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        augment = AugMix(
            tuple(self.operations), self.width, self.max_depth, self.max_severity, self.alpha
        )
        plan = plain_plan(context.train)
        plan.augment = augment
        plan.info = {"augment": "augmix", "operations": names_of(list(self.operations))}
        return plan
