"""The per-batch training loss: mean, weighted mean, or online group DRO of cross-entropy.

:class:`Objective` is what :func:`dnnsafety.models.training.train_model` minimises. Without
weights or groups it is plain mean cross-entropy. With per-sample ``weights`` it is the
weighted mean ``sum(w_i l_i) / sum(w_i)`` over the batch (reweighting, Just Train Twice). With
``groups`` it is online group DRO (Sagawa et al., "Distributionally Robust Neural Networks for
Group Shifts", ICLR 2020, Algorithm 1): each batch updates the group weights
``q_g <- q_g exp(eta * loss_g)`` (renormalised to sum 1) for the groups it holds and returns
``sum_g q_g loss_g``, so the worst groups get the most weight.

With a ``consistency`` weight ``lambda > 0`` the batch holds the clean rows followed by ``k - 1``
augmented views of them (in the same order); the loss is the cross-entropy above on the clean
rows plus ``lambda`` times the Jensen-Shannon divergence among the ``k`` predictive
distributions of each input (:func:`jensen_shannon`), the consistency loss of AugMix (Hendrycks
et al., "AugMix", ICLR 2020; ``lambda = 12``, ``k = 3``). With ``divergence="kl"`` the
consistency term is instead the mean ``KL(p_clean || p_view)`` over the views
(:func:`kl_consistency`): with one adversarial view and ``lambda = beta`` this is the TRADES
loss (Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
ICML 2019).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError

__all__ = ["DIVERGENCES", "Objective", "jensen_shannon", "kl_consistency"]

DIVERGENCES = ("js", "kl")
"""The consistency losses of :class:`Objective`: Jensen-Shannon (AugMix), KL (TRADES)."""


def _check_views(logits: list[torch.Tensor] | tuple[torch.Tensor, ...], loss: str) -> None:
    if len(logits) < 2 or any(z.shape != logits[0].shape for z in logits):
        raise ConfigError(
            f"The {loss} consistency loss needs >= 2 logit tensors of one shape; got "
            f"{[tuple(z.shape) for z in logits]}."
        )


def jensen_shannon(logits: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean generalised Jensen-Shannon divergence among ``k`` predictive distributions.

    ``JS(p_1, ..., p_k) = (1/k) sum_i KL(p_i || M)`` with ``M = (1/k) sum_i p_i`` and
    ``p_i = softmax(logits_i)``, averaged over the batch, in nats; ``M`` is clamped to
    ``[1e-7, 1]`` before its log, as in AugMix's reference code.

    Parameters
    ----------
    logits
        ``k >= 2`` tensors ``(B, C)``: the same ``B`` inputs seen ``k`` ways.

    Returns
    -------
    torch.Tensor
        A scalar in ``[0, log k]``.

    Raises
    ------
    ConfigError
        If fewer than two tensors are given or their shapes differ.
    """
    _check_views(logits, "Jensen-Shannon")
    probs = [torch.softmax(z, dim=1) for z in logits]
    mixture = torch.clamp(torch.stack(probs).mean(dim=0), 1e-7, 1.0).log()
    kl = [nn.functional.kl_div(mixture, p, reduction="batchmean") for p in probs]
    return torch.stack(kl).mean()


def kl_consistency(logits: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean ``KL(p_0 || p_i)`` of the first predictive distribution to each of the others.

    ``p_i = softmax(logits_i)``; each KL is summed over classes and averaged over the batch,
    in nats, and the gradient flows through both distributions. With two tensors (the clean
    batch, then its adversarial examples) this is the robust term of the TRADES loss (Zhang
    et al., "Theoretically Principled Trade-off between Robustness and Accuracy", ICML 2019;
    reference code: ``KLDivLoss(sum)(log_softmax(f(x_adv)), softmax(f(x))) / B``).

    Parameters
    ----------
    logits
        ``k >= 2`` tensors ``(B, C)``: the clean inputs first, then ``k - 1`` views of them.

    Returns
    -------
    torch.Tensor
        A scalar ``>= 0``.

    Raises
    ------
    ConfigError
        If fewer than two tensors are given or their shapes differ.
    """
    _check_views(logits, "KL")
    p = torch.softmax(logits[0], dim=1)
    kl = [
        nn.functional.kl_div(torch.log_softmax(z, dim=1), p, reduction="batchmean")
        for z in logits[1:]
    ]
    return torch.stack(kl).mean()


class Objective:
    """Cross-entropy of a batch, optionally weighted per sample or as online group DRO.

    Parameters
    ----------
    n
        Number of training samples (rows the indices of :meth:`__call__` refer to).
    weights
        ``(n,)`` non-negative per-sample weights, or ``None``.
    groups
        ``(n,)`` integer group ids, or ``None``. Exclusive with ``weights``.
    dro_step
        Step size ``eta`` of the group weights (> 0).
    consistency
        Weight ``lambda >= 0`` of the consistency loss between the clean rows of a batch and
        its augmented views; 0: none.
    divergence
        The consistency loss: ``"js"``, the Jensen-Shannon divergence among all views
        (:func:`jensen_shannon`, AugMix), or ``"kl"``, the mean ``KL(p_clean || p_view)``
        (:func:`kl_consistency`, TRADES).

    Raises
    ------
    ConfigError
        If both ``weights`` and ``groups`` are given, their length is not ``n``,
        ``consistency`` is negative or not finite, or ``divergence`` is unknown.
    """

    def __init__(
        self,
        n: int,
        weights: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        dro_step: float = 0.01,
        consistency: float = 0.0,
        divergence: str = "js",
    ) -> None:
        if weights is not None and groups is not None:
            raise ConfigError("Give per-sample weights or groups for group DRO, not both.")
        for name, values in (("weights", weights), ("groups", groups)):
            if values is not None and len(values) != n:
                raise ConfigError(f"{name} has {len(values)} entries for {n} training samples.")
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.groups: torch.Tensor | None = None
        self.q: torch.Tensor | None = None
        if groups is not None:
            _, inverse = np.unique(np.asarray(groups), return_inverse=True)
            self.groups = torch.as_tensor(inverse, dtype=torch.long)
            n_groups = int(inverse.max()) + 1 if len(inverse) else 0
            self.q = torch.full((n_groups,), 1.0 / max(n_groups, 1))
        self.dro_step = float(dro_step)
        if not (np.isfinite(consistency) and consistency >= 0):
            raise ConfigError(f"The consistency weight must be >= 0. Got {consistency!r}.")
        self.consistency = float(consistency)
        if divergence not in DIVERGENCES:
            raise ConfigError(
                f"The consistency divergence must be one of {DIVERGENCES}. Got {divergence!r}."
            )
        self.divergence = divergence
        self._ce = nn.CrossEntropyLoss(reduction="none")

    @property
    def per_sample(self) -> bool:
        """Whether the loss needs each row's training index (weights or groups are set)."""
        return self.weights is not None or self.groups is not None

    def __call__(
        self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The batch loss (a scalar tensor).

        Parameters
        ----------
        logits
            ``(B, C)`` model outputs.
        y
            ``(B,)`` int64 labels.
        idx
            ``(B,)`` training indices of the rows; needed with weights or groups. With a
            consistency weight, ``logits`` and ``y`` hold ``k * B`` rows (the ``B`` clean
            rows, then ``k - 1`` views of them), and ``idx`` is needed to tell ``B``.

        Raises
        ------
        ConfigError
            If weights or groups are set and ``idx`` is missing or of another length (e.g.
            an augmentation changed the batch size), or with a consistency weight if the
            batch is not ``k >= 2`` blocks of ``len(idx)`` rows.
        """
        if self.consistency > 0:
            b = 0 if idx is None else len(idx)
            if b == 0 or len(logits) % b or len(logits) < 2 * b:
                raise ConfigError(
                    "The consistency loss needs the clean batch followed by >= 1 augmented "
                    f"view of it (k * B rows for B training indices); got {len(logits)} rows "
                    f"for {b} indices."
                )
            blocks = torch.split(logits, b)
            divergence = kl_consistency if self.divergence == "kl" else jensen_shannon
            return self._cross_entropy(blocks[0], y[:b], idx) + self.consistency * (
                divergence(blocks)
            )
        return self._cross_entropy(logits, y, idx)

    def _cross_entropy(
        self, logits: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None
    ) -> torch.Tensor:
        losses = self._ce(logits, y)
        if not self.per_sample:
            return losses.mean()
        if idx is None or len(idx) != len(losses):
            raise ConfigError(
                "Per-sample weights or groups need one training index per batch row; an "
                "augmentation that changes the batch size cannot be combined with them."
            )
        if self.weights is not None:
            w = self.weights[idx].to(losses.device)
            return (w * losses).sum() / w.sum().clamp_min(1e-12)
        assert self.groups is not None and self.q is not None
        g = self.groups[idx].to(losses.device)
        present = torch.unique(g)
        group_loss = torch.stack([losses[g == k].mean() for k in present])
        with torch.no_grad():
            self.q[present] *= torch.exp(self.dro_step * group_loss.detach().cpu())
            self.q /= self.q.sum()
        return (self.q[present].to(losses.device) * group_loss).sum()
