"""The per-batch training loss: mean, weighted mean, or online group DRO of cross-entropy.

:class:`Objective` is what :func:`dnnsafety.models.training.train_model` minimises. Without
weights or groups it is plain mean cross-entropy. With per-sample ``weights`` it is the
weighted mean ``sum(w_i l_i) / sum(w_i)`` over the batch (reweighting, Just Train Twice). With
``groups`` it is online group DRO (Sagawa et al., "Distributionally Robust Neural Networks for
Group Shifts", ICLR 2020, Algorithm 1): each batch updates the group weights
``q_g <- q_g exp(eta * loss_g)`` (renormalised to sum 1) for the groups it holds and returns
``sum_g q_g loss_g``, so the worst groups get the most weight.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError


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

    Raises
    ------
    ConfigError
        If both ``weights`` and ``groups`` are given, or their length is not ``n``.
    """

    def __init__(
        self,
        n: int,
        weights: np.ndarray | None = None,
        groups: np.ndarray | None = None,
        dro_step: float = 0.01,
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
            ``(B,)`` training indices of the rows; needed with weights or groups.

        Raises
        ------
        ConfigError
            If weights or groups are set and ``idx`` is missing or of another length (e.g.
            an augmentation changed the batch size).
        """
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
