"""Adversarial fine-tuning (METHOD.md §7): a share of every batch replaced by PGD examples.

Madry et al. ("Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018)
train on PGD examples of the training inputs; mixing clean and adversarial inputs in each
batch (Goodfellow et al., ICLR 2015: half and half) keeps most of the clean accuracy. The
examples are made against the model being fine-tuned, at every batch, with the registered
``pgd`` attack (torchattacks, :mod:`dnnsafety.adversarial.attacks`) in eval mode; no new
label is needed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety._validation import check_float_param, check_int_param
from dnnsafety.adversarial.attacks import ATTACKS
from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
)

__all__ = ["AdversarialFineTuning", "PGDMixing"]


class PGDMixing:
    """Batch augmentation: replace ``share`` of each batch by PGD examples of those rows.

    Parameters
    ----------
    eps
        L-infinity budget of the examples (pixel units of ``[0, 1]``).
    share
        Share of each batch replaced (rounded; at least one row when > 0).
    steps
        PGD steps (random start).
    step_fraction
        PGD step size as a fraction of ``eps`` (``alpha = step_fraction * eps``).
    """

    def __init__(self, eps: float, share: float, steps: int, step_fraction: float = 0.25) -> None:
        self.eps = eps
        self.share = share
        self.attack = ATTACKS.create("pgd", {"steps": steps, "step_fraction": step_fraction})

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """The batch with ``share`` of its rows (drawn with ``generator``) made adversarial."""
        k = round(self.share * len(x))
        if k == 0 and self.share > 0 and len(x):
            k = 1
        if k == 0:
            return x, y
        rows = torch.randperm(len(x), generator=generator)[:k]
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        adv, _ = self.attack.attack(model, x[rows], y[rows].cpu().numpy(), self.eps, seed)
        out = x.clone()
        out[rows] = adv.to(device=x.device, dtype=x.dtype)
        return out, y


@MITIGATIONS.register(
    "adversarial",
    help="Adversarial fine-tuning (Madry et al. 2018): a share of each batch replaced by PGD "
    "examples",
)
class AdversarialFineTuning(Mitigation):
    """Fine-tune on the training split with a share of every batch replaced by PGD examples.

    Parameters
    ----------
    eps
        L-infinity budget of the PGD examples, pixel units of ``[0, 1]`` (default 8/255).
    share
        Share of each training batch replaced by its PGD examples (default 0.5).
    steps
        PGD steps per example (step size ``step_fraction * eps``, random start; default 7,
        Madry et al.'s CIFAR-10 training attack: 7 steps of 2/255 at 8/255).
    step_fraction
        PGD step size as a fraction of ``eps`` (default 0.25: 2/255 at 8/255). Fewer, larger
        steps are cheaper: ``2.5 / steps`` (Madry et al.'s rule, step ``2.5 eps / steps``)
        lets 3 steps reach the edge of the ball from any random start.

    Raises
    ------
    ConfigError
        From :meth:`plan`, if ``eps`` is not in ``(0, 1]``, ``share`` or ``step_fraction`` is
        not in ``[0, 1]`` / ``(0, 1]``, or ``steps`` is not an int >= 1.
    """

    _test_params: ClassVar[dict[str, Any]] = {"steps": 1}

    def __init__(
        self,
        eps: float = 8 / 255,
        share: float = 0.5,
        steps: int = 7,
        step_fraction: float = 0.25,
    ) -> None:
        self.eps = eps
        self.share = share
        self.steps = steps
        self.step_fraction = step_fraction

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        eps = check_float_param(self, "eps", self.eps, 0.0, 1.0, open_low=True)
        share = check_float_param(self, "share", self.share, 0.0, 1.0)
        steps = check_int_param(self, "steps", self.steps)
        frac = check_float_param(self, "step_fraction", self.step_fraction, 0.0, 1.0, open_low=True)
        train = context.train
        return TrainingPlan(
            train.images,
            np.asarray(train.labels, dtype=np.int64),
            augment=PGDMixing(eps, share, steps, frac),
            info={"eps": eps, "share": share, "pgd_steps": steps, "pgd_step_fraction": frac},
        )
