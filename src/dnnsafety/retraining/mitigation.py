"""Retraining strategies that need no new labels: what one fine-tuning run trains on.

A label-based strategy (a selector, :mod:`dnnsafety.selection`) chooses pool inputs to label;
a *mitigation* instead changes how the model is fine-tuned on the data it already has: it
reweights training inputs (reweighting, Just Train Twice), groups them for group DRO (George),
augments every batch (AugMix, adversarial examples) or adds images that cost no labels
(simulator-generated data). ``compare`` runs both kinds side by side, each as ``seeds``
fine-tuning runs scored the same way.

A mitigation is a scikit-learn estimator registered in :data:`MITIGATIONS`; it declares in
``requires`` which of the optional :class:`MitigationContext` fields it needs (the
orchestrator builds exactly those) and writes only :meth:`Mitigation._plan`, which returns a
:class:`TrainingPlan`. :func:`dnnsafety.models.training.train_model` carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from dnnsafety._validation import check_random_state
from dnnsafety.data.dataset import Split
from dnnsafety.exceptions import InvalidInputError
from dnnsafety.models.objective import DIVERGENCES
from dnnsafety.models.training import BatchAugment
from dnnsafety.registry import Registry
from dnnsafety.retraining.rootcauses import RootCauses
from dnnsafety.types import JSONValue

__all__ = [
    "CONTEXT_FIELDS",
    "MITIGATIONS",
    "BatchAugment",
    "Mitigation",
    "MitigationContext",
    "TrainingPlan",
]

# BatchAugment: ``(model, x, y, generator) -> (x, y)``, applied to every training batch. ``x`` is
# ``B x C x H x W`` float32 in [0, 1], ``y`` is ``(B,)`` int64; the model is the one being trained
# (training mode is restored after the call, so an augmentation may run it in eval mode, e.g. an
# attack). The returned batch may have another size (clean + augmented copies) unless the plan
# also has weights or groups; with a ``consistency`` weight it is the clean batch followed by its
# views, and weights or groups then apply to the clean rows.

CONTEXT_FIELDS: dict[str, str] = {
    "train_features": "features of the training split, (N_train, D): backbone embeddings for "
    "black-box models, penultimate activations for white-box ones",
    "pool_features": "features of the unlabelled pool, (N_pool, D), in the space of "
    "train_features (no pool label is read)",
    "train_probs": "the original model's softmax outputs on the training split, (N_train, C)",
    "clusters": "the root-cause clusters (RootCauses): each one's metadata rules, medoid and "
    "radius in the analysis feature space, that space's feature function, and the dataset's "
    "simulator",
}
"""What a mitigation may list in ``requires``, and what the orchestrator builds for it."""


@dataclass(frozen=True, eq=False)
class MitigationContext:
    """What a mitigation may use; the optional fields are set only when ``requires`` lists them.

    Attributes
    ----------
    model
        The original model. A mitigation must not change it (copy it first).
    train
        The labelled training split.
    val
        The validation split, or ``None``.
    train_features
        ``(N_train, D)`` float32 features of ``train`` in row order (``"train_features"``).
    pool_features
        ``(N_pool, D)`` float32 features of the unlabelled pool, in the space of
        ``train_features`` (``"pool_features"``).
    train_probs
        ``(N_train, C)`` float32 softmax outputs of ``model`` on ``train`` (``"train_probs"``).
    clusters
        The root-cause clusters with their rules and the simulator
        (:class:`~dnnsafety.retraining.rootcauses.RootCauses`, ``"clusters"``).
    """

    model: nn.Module
    train: Split
    val: Split | None = None
    train_features: np.ndarray | None = None
    train_probs: np.ndarray | None = None
    clusters: RootCauses | None = None
    pool_features: np.ndarray | None = None


@dataclass(eq=False)
class TrainingPlan:
    """What one fine-tuning run trains on.

    Attributes
    ----------
    images
        ``N x C x H x W`` float32 in ``[0, 1]``: the training split, plus any extra images.
    labels
        ``(N,)`` int64 labels of ``images``.
    weights
        ``(N,)`` non-negative per-sample loss weights, or ``None`` (all 1). The loss of a batch
        is the weighted mean ``sum(w_i l_i) / sum(w_i)``.
    groups
        ``(N,)`` int group id per sample, or ``None``. With groups, the loss is online group DRO
        (Sagawa et al., ICLR 2020): group weights ``q_g <- q_g exp(dro_step * loss_g)``,
        renormalised, and the batch loss is ``sum_g q_g loss_g``.
    dro_step
        Step size of the group DRO weights (``eta_q``; Sagawa et al. use 0.01).
    augment
        A :data:`BatchAugment` applied to every training batch, or ``None``.
    consistency
        Weight of a Jensen-Shannon consistency loss between each clean batch and the views
        ``augment`` appends after it (AugMix, Hendrycks et al. ICLR 2020: 12); 0: none
        (:class:`~dnnsafety.models.objective.Objective`).
    divergence
        The consistency loss: ``"js"`` (Jensen-Shannon among the clean batch and its views,
        AugMix) or ``"kl"`` (mean ``KL(p_clean || p_view)``: TRADES, Zhang et al. ICML 2019,
        with ``consistency = beta`` and one adversarial view).
    info
        Figures reported with the run in ``comparison.json`` (e.g. ``{"generated": 1000}``).
    """

    images: torch.Tensor
    labels: np.ndarray
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None
    dro_step: float = 0.01
    augment: BatchAugment | None = None
    info: dict[str, JSONValue] = field(default_factory=dict)
    consistency: float = 0.0
    divergence: str = "js"

    def validate(self) -> None:
        """Check shapes and values.

        Raises
        ------
        InvalidInputError
            If the labels, weights or groups do not have one entry per image, a weight is
            negative or not finite, or all weights are 0, or a consistency loss is asked
            without an augmentation, or the divergence is unknown.
        """
        n = len(self.images)
        if self.images.ndim != 4 or n == 0:
            raise InvalidInputError(
                f"A training plan needs N x C x H x W images with N >= 1; got shape "
                f"{tuple(self.images.shape)}."
            )
        for name, values in (("labels", self.labels), ("weights", self.weights)):
            if values is not None and len(values) != n:
                raise InvalidInputError(
                    f"The training plan has {n} images but {len(values)} {name}."
                )
        if self.groups is not None and len(self.groups) != n:
            raise InvalidInputError(
                f"The training plan has {n} images but {len(self.groups)} groups."
            )
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise InvalidInputError("Training weights must be finite, >= 0 and not all 0.")
        if not (np.isfinite(self.consistency) and self.consistency >= 0):
            raise InvalidInputError(f"The consistency weight must be >= 0. Got {self.consistency}.")
        if self.consistency > 0 and self.augment is None:
            raise InvalidInputError("A consistency loss needs an augment that adds views.")
        if self.divergence not in DIVERGENCES:
            raise InvalidInputError(
                f"The consistency divergence must be one of {DIVERGENCES}. Got {self.divergence!r}."
            )
        if not self.dro_step > 0:
            raise InvalidInputError(f"The group DRO step must be > 0. Got {self.dro_step}.")


class Mitigation(BaseEstimator):
    """A retraining strategy that needs no new labels (template: subclasses write ``_plan``).

    Subclasses declare ``requires`` (a subset of :data:`CONTEXT_FIELDS`), take their
    parameters in ``__init__`` (stored unchanged, scikit-learn style) and register with
    ``@MITIGATIONS.register("name", help=...)``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    cost: ClassVar[int] = 0
    """New labels a run needs (the labelling cost reported by ``compare``)."""
    needs_simulator: ClassVar[bool] = False
    """Whether it renders images with the dataset's simulator (:data:`dnnsafety.sim.SIMULATORS`),
    checked before any work: a dataset without one is refused up front."""
    _test_params: ClassVar[dict[str, object]] = {}

    def plan(self, context: MitigationContext, random_state: int = 0) -> TrainingPlan:
        """The training data of one fine-tuning run.

        Parameters
        ----------
        context
            The original model and data; the fields in ``requires`` are set.
        random_state
            Seed of this run (``>= 0``).

        Raises
        ------
        InvalidInputError
            If a field this mitigation requires is missing, or the plan is malformed.
        """
        seed = check_random_state(self, random_state)
        missing = sorted(f for f in self.requires if getattr(context, f) is None)
        if missing:
            raise InvalidInputError(
                f"The {self.name or type(self).__name__} mitigation needs "
                f"{', '.join(missing)} in its context."
            )
        plan = self._plan(context, seed)
        plan.validate()
        return plan

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        raise NotImplementedError

    def epoch_cost(self) -> float:
        """Time of one fine-tuning epoch relative to a plain one (for time estimates): 1.0
        unless the mitigation does more work per batch (an attack, extra views)."""
        return 1.0

    def threat_eps(self) -> float | None:
        """The L-infinity budget (pixel units of ``[0, 1]``) the mitigation trains the model
        to withstand, or ``None`` when it does not train against an attack. ``compare``
        then reports every model's robust accuracy at that budget (``[retrain] robust``)."""
        return None


MITIGATIONS: Registry[type[Mitigation]] = Registry("mitigation")
"""Name -> retraining strategy that needs no new labels (run by ``compare``)."""


def plain_plan(train: Split) -> TrainingPlan:
    """The plan of plain fine-tuning on the training split (the no-new-labels control)."""
    return TrainingPlan(train.images, np.asarray(train.labels, dtype=np.int64))
