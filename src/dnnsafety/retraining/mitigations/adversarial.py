"""Adversarial fine-tuning (METHOD.md §7): a share of every batch replaced by PGD examples.

Madry et al. ("Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018)
train on PGD examples of the training inputs; mixing clean and adversarial inputs in each
batch (Goodfellow et al., ICLR 2015: half and half) keeps most of the clean accuracy. The
examples are made against the model being fine-tuned, at every batch, with the registered
``pgd`` attack (torchattacks, :mod:`dnnsafety.adversarial.attacks`) in eval mode; no new
label is needed.

With ``loss="trades"`` the fine-tuning loss is TRADES' instead (Zhang et al., "Theoretically
Principled Trade-off between Robustness and Accuracy", ICML 2019):
``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv))`` on every row, where ``x_adv`` is
found by PGD maximising that KL term from a small random start (the registered ``tpgd``
attack, torchattacks ``TPGD``), not the cross-entropy. Each batch is the clean rows followed by
their examples (:class:`TRADESPairing`); the training loop's consistency loss with
``divergence="kl"`` and weight ``beta`` is the TRADES loss
(:func:`dnnsafety.models.objective.kl_consistency`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety._validation import check_float_param, check_int_param
from dnnsafety.adversarial.attacks import ATTACKS
from dnnsafety.exceptions import ConfigError
from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
)

__all__ = ["LOSSES", "AdversarialFineTuning", "PGDMixing", "TRADESPairing"]

LOSSES = ("pgd", "trades")
"""The fine-tuning losses of :class:`AdversarialFineTuning`."""


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


class TRADESPairing:
    """Batch augmentation of TRADES: the clean batch followed by its KL-PGD examples.

    Returns ``(cat([x, x_adv]), cat([y, y]))``; the training loss then takes cross-entropy on
    the first half and ``beta * KL(p(x) || p(x_adv))`` between the halves
    (``TrainingPlan(consistency=beta, divergence="kl")``).

    Parameters
    ----------
    eps
        L-infinity budget of the examples (pixel units of ``[0, 1]``).
    steps
        KL-PGD steps (from ``x + 0.001 N(0, I)``).
    step_fraction
        Step size as a fraction of ``eps``.
    """

    def __init__(self, eps: float, steps: int, step_fraction: float = 0.25) -> None:
        self.eps = eps
        self.attack = ATTACKS.create("tpgd", {"steps": steps, "step_fraction": step_fraction})

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """``(2B, C, H, W)`` clean then adversarial rows, and ``(2B,)`` labels."""
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        adv, _ = self.attack.attack(model, x, y.cpu().numpy(), self.eps, seed)
        adv = adv.to(device=x.device, dtype=x.dtype)
        return torch.cat([x, adv]), torch.cat([y, y])


@MITIGATIONS.register(
    "adversarial",
    help="Adversarial fine-tuning (Madry et al. 2018): a share of each batch replaced by PGD "
    "examples; loss='trades': the TRADES loss (Zhang et al. 2019)",
)
class AdversarialFineTuning(Mitigation):
    """Fine-tune on the training split with a share of every batch replaced by PGD examples.

    With ``loss="trades"`` the loss is TRADES' (Zhang et al., ICML 2019) on every row:
    ``CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv))``, ``x_adv`` from ``steps``
    steps of PGD on that KL at budget ``eps`` (``share`` is then unused).

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
    loss
        ``"pgd"`` (default): cross-entropy on the batch with ``share`` of it replaced by PGD
        examples (Madry et al.). ``"trades"``: the TRADES loss above.
    beta
        TRADES' weight of the KL term (default 6.0, the paper's; 0: plain fine-tuning, no
        attack is run). Unused with ``loss="pgd"``.

    Raises
    ------
    ConfigError
        From :meth:`plan`, if ``eps`` is not in ``(0, 1]``, ``share`` or ``step_fraction`` is
        not in ``[0, 1]`` / ``(0, 1]``, ``steps`` is not an int >= 1, ``loss`` is not one of
        :data:`LOSSES` or ``beta`` is not in ``[0, 1e6]``.
    """

    _test_params: ClassVar[dict[str, Any]] = {"steps": 1}

    def __init__(
        self,
        eps: float = 8 / 255,
        share: float = 0.5,
        steps: int = 7,
        step_fraction: float = 0.25,
        loss: str = "pgd",
        beta: float = 6.0,
    ) -> None:
        self.eps = eps
        self.share = share
        self.steps = steps
        self.step_fraction = step_fraction
        self.loss = loss
        self.beta = beta

    def epoch_cost(self) -> float:
        """About ``1 + share * steps`` plain epochs with PGD (an attack step costs about one
        training step on the rows it attacks), ``steps + 2`` with TRADES (every row attacked,
        then trained on twice the rows); 1.0 for parameters :meth:`plan` would refuse."""
        try:
            steps = check_int_param(self, "steps", self.steps)
            if self.loss == "trades":
                return float(steps + 2)
            return 1.0 + check_float_param(self, "share", self.share, 0.0, 1.0) * steps
        except ConfigError:
            return 1.0

    def threat_eps(self) -> float | None:
        """``eps``: the budget it trains against.

        Raises
        ------
        ConfigError
            If ``eps`` is not in ``(0, 1]``.
        """
        return check_float_param(self, "eps", self.eps, 0.0, 1.0, open_low=True)

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        eps = check_float_param(self, "eps", self.eps, 0.0, 1.0, open_low=True)
        share = check_float_param(self, "share", self.share, 0.0, 1.0)
        steps = check_int_param(self, "steps", self.steps)
        frac = check_float_param(self, "step_fraction", self.step_fraction, 0.0, 1.0, open_low=True)
        train = context.train
        if self.loss not in LOSSES:
            raise ConfigError(
                f"The 'loss' parameter of {type(self).__name__} must be one of {LOSSES}. "
                f"Got {self.loss!r}."
            )
        if self.loss == "trades":
            beta = check_float_param(self, "beta", self.beta, 0.0, 1e6)
            return TrainingPlan(
                train.images,
                np.asarray(train.labels, dtype=np.int64),
                augment=TRADESPairing(eps, steps, frac) if beta > 0 else None,
                consistency=beta,
                divergence="kl",
                info={
                    "loss": "trades",
                    "beta": beta,
                    "eps": eps,
                    "kl_pgd_steps": steps,
                    "kl_pgd_step_fraction": frac,
                },
            )
        return TrainingPlan(
            train.images,
            np.asarray(train.labels, dtype=np.int64),
            augment=PGDMixing(eps, share, steps, frac),
            info={"eps": eps, "share": share, "pgd_steps": steps, "pgd_step_fraction": frac},
        )
