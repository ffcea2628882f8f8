"""Bias mitigations without new labels (METHOD.md §8): reweighting by inferred group, Just
Train Twice and George.

* ``reweight-groups`` - cluster the training inputs' features into groups (PCA + k-means with
  a fixed, large ``k``, as the bias analysis does) and weight every input by the inverse size
  of its group, so a small region of feature space (an under-represented condition) weighs as
  much in the loss as a large one.
* ``jtt`` - Just Train Twice (Liu et al., "Just Train Twice: Improving Group Robustness
  without Training Group Information", ICML 2021): an identification model (the model's
  architecture, re-initialised, trained with plain ERM for ``id_epochs`` epochs only) marks
  the training inputs it gets wrong; the second training upweights them by ``lambda_up``.
* ``george`` - George (Sohoni et al., "No Subclass Left Behind: Fine-Grained Robustness in
  Coarse-Grained Classification Problems", NeurIPS 2020): cluster the features of every class
  separately into subclasses (``k`` per class by silhouette), then train with group DRO
  (Sagawa et al., ICLR 2020) over the subclasses. Subclasses smaller than ``min_group_size``
  are oversampled up to it with augmented copies, so that they turn up in training batches
  without being memorised.

None of them reads a scenario, a test label or a pool label.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, ClassVar

import numpy as np
import torch

from dnnsafety._validation import check_float_param, check_int_param
from dnnsafety.bias.groups import cluster_features
from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
)

log = logging.getLogger(__name__)


@MITIGATIONS.register(
    "reweight-groups", help="inverse-size weights of feature-space groups of the training set"
)
class GroupReweighting(Mitigation):
    """Weight each training input by ``(1 / size of its group) ** power`` (mean weight 1).

    Parameters
    ----------
    n_groups
        Groups (k-means clusters) of the training features.
    power
        1: every group weighs the same in the loss; 0.5: square-root balancing; 0: no change.
    max_weight
        Largest weight, relative to the mean weight of 1 (caps tiny groups).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"train_features"})
    _test_params: ClassVar[dict[str, Any]] = {"n_groups": 3}

    def __init__(self, n_groups: int = 30, power: float = 1.0, max_weight: float = 20.0) -> None:
        self.n_groups = n_groups
        self.power = power
        self.max_weight = max_weight

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        k = check_int_param(self, "n_groups", self.n_groups, 1)
        power = check_float_param(self, "power", self.power, 0.0, 4.0)
        cap = check_float_param(self, "max_weight", self.max_weight, 1.0, 1e6)
        assert context.train_features is not None
        groups, _ = cluster_features(
            context.train_features,
            "pca",
            None,
            "kmeans-fixed",
            {"n_clusters": min(k, len(context.train_features))},
            random_state,
        )
        sizes = np.bincount(groups[groups >= 0], minlength=int(groups.max()) + 1).astype(float)
        size = np.where(groups >= 0, sizes[np.maximum(groups, 0)], np.median(sizes))
        weights = size ** (-power)
        weights = np.minimum(weights / weights.mean(), cap)
        weights = weights / weights.mean()
        train = context.train
        return TrainingPlan(
            train.images,
            np.asarray(train.labels, dtype=np.int64),
            weights=weights,
            info={"groups": len(sizes), "max_weight": float(weights.max())},
        )


@MITIGATIONS.register("jtt", help="Just Train Twice: upweight an early-stopped ERM model's errors")
class JustTrainTwice(Mitigation):
    """Upweight the training inputs an identification model misclassifies by ``lambda_up``.

    As in Liu et al. (ICML 2021, Algorithm 1), the identification model is trained with plain
    ERM for only ``id_epochs`` epochs from a fresh initialisation (the original model's
    architecture, its parameters reset), so that it has not yet memorised the rare inputs; its
    training errors form the error set, which the second training upweights. A converged
    model fits nearly all its training inputs and leaves an error set of a few outliers, so
    ``id_epochs = 0`` (the original model's errors) is kept only as an option, and is used when
    the model's parameters cannot be reset (a TorchScript model).

    Parameters
    ----------
    lambda_up
        Weight of an error-set input (the others weigh 1); Liu et al. used 6 to 100.
    id_epochs
        Epochs of the identification model (Liu et al.'s ``T``: 1-2 epochs on CelebA, 60 on
        Waterbirds); 0: the original model's errors.
    id_lr
        Adam learning rate of the identification model.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"train_probs"})
    _test_params: ClassVar[dict[str, Any]] = {"id_epochs": 1}

    def __init__(self, lambda_up: float = 20.0, id_epochs: int = 1, id_lr: float = 1e-3) -> None:
        self.lambda_up = lambda_up
        self.id_epochs = id_epochs
        self.id_lr = id_lr

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        lam = check_float_param(self, "lambda_up", self.lambda_up, 1.0, 1e6)
        epochs = check_int_param(self, "id_epochs", self.id_epochs, 0)
        lr = check_float_param(self, "id_lr", self.id_lr, 1e-8, 10.0)
        assert context.train_probs is not None
        labels = np.asarray(context.train.labels, dtype=np.int64)
        identifier = "original model"
        pred = np.asarray(context.train_probs).argmax(axis=1)
        if epochs > 0:
            from dnnsafety.config import TrainConfig
            from dnnsafety.models.training import predict, train_model

            with torch.random.fork_rng():
                torch.manual_seed(random_state)
                fresh = fresh_copy(context.model)
                if fresh is not None:
                    log.info(
                        "JTT: training the identification model (ERM, %d epoch(s) from "
                        "scratch); the training inputs it gets wrong are upweighted",
                        epochs,
                    )
                    cfg = TrainConfig(epochs=epochs, optimizer="adam", lr=lr, select_by="train")
                    train_model(
                        fresh, context.train.images, labels, None, None, cfg, seed=random_state
                    )
                    pred = predict(fresh, context.train.images, desc="JTT identification").pred
                    identifier = f"ERM, {epochs} epoch(s) from scratch"
        errors = pred != labels
        weights = np.where(errors, lam, 1.0)
        return TrainingPlan(
            context.train.images,
            labels,
            weights=weights,
            info={"error_set": int(errors.sum()), "identification": identifier},
        )


def fresh_copy(model: torch.nn.Module) -> torch.nn.Module | None:
    """A copy of ``model`` with every parameterised layer re-initialised
    (``reset_parameters``), or ``None`` when that cannot be done (TorchScript, a layer
    without ``reset_parameters``)."""
    if isinstance(model, torch.jit.ScriptModule) or any(
        isinstance(m, torch.jit.ScriptModule) for m in model.modules()
    ):
        return None
    new = copy.deepcopy(model)
    for m in new.modules():
        has_own = any(True for _ in m.parameters(recurse=False)) or any(
            True for _ in m.buffers(recurse=False)
        )
        if not has_own:
            continue
        reset = getattr(m, "reset_parameters", None)
        if not callable(reset):
            return None
        reset()
    new.train()
    return new


@MITIGATIONS.register("george", help="George: per-class subclass clusters, then group DRO")
class George(Mitigation):
    """Subclasses by clustering each class's training features; group DRO over them.

    Parameters
    ----------
    max_subclasses
        Largest number of subclasses per class (k-means, ``k`` chosen by silhouette).
    min_group_size
        Subclasses smaller than this are oversampled (their inputs repeated) up to it.
    dro_step
        Step size of the group DRO weights (``eta_q``; Sagawa et al. 0.01, up to 0.1).
    shift, jitter
        Augmentation of the oversampled copies
        (:func:`~dnnsafety.retraining.mitigations.upsample.augment_copies`), so that
        oversampling a small subclass does not just repeat it; 0 and 0: plain duplicates.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"train_features"})
    _test_params: ClassVar[dict[str, Any]] = {"max_subclasses": 2, "min_group_size": 4}

    def __init__(
        self,
        max_subclasses: int = 5,
        min_group_size: int = 50,
        dro_step: float = 0.01,
        shift: int = 2,
        jitter: float = 0.2,
    ) -> None:
        self.max_subclasses = max_subclasses
        self.min_group_size = min_group_size
        self.dro_step = dro_step
        self.shift = shift
        self.jitter = jitter

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        max_k = check_int_param(self, "max_subclasses", self.max_subclasses, 1)
        min_size = check_int_param(self, "min_group_size", self.min_group_size, 1)
        step = check_float_param(self, "dro_step", self.dro_step, 1e-6, 10.0)
        shift = check_int_param(self, "shift", self.shift, 0)
        jitter = check_float_param(self, "jitter", self.jitter, 0.0, 1.0)
        assert context.train_features is not None
        feats = np.asarray(context.train_features, dtype=np.float32)
        labels = np.asarray(context.train.labels, dtype=np.int64)
        groups = subclasses(feats, labels, max_k, random_state)
        rows = oversample(groups, min_size)
        images = context.train.images
        extra = torch.from_numpy(rows[len(groups) :])
        if len(extra) and (shift > 0 or jitter > 0):
            from dnnsafety.retraining.mitigations.upsample import augment_copies

            rng = np.random.default_rng(random_state)
            copies = augment_copies(images[extra], rng, shift, jitter)
        else:
            copies = images[extra]
        return TrainingPlan(
            torch.cat([images, copies]),
            labels[rows],
            groups=groups[rows],
            dro_step=step,
            info={
                "subclasses": len(np.unique(groups)),
                "oversampled": len(rows) - len(groups),
            },
        )


def subclasses(
    features: np.ndarray, labels: np.ndarray, max_k: int, random_state: int = 0
) -> np.ndarray:
    """George's subclass id per input: each class's features clustered on their own
    (PCA, then k-means with ``k <= max_k`` by silhouette; one subclass when ``max_k == 1`` or
    the class is tiny). Ids are global: ``0..S-1`` over all classes."""
    out = np.zeros(len(labels), dtype=np.int64)
    next_id = 0
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if max_k == 1 or len(rows) < 6:
            local = np.zeros(len(rows), dtype=np.int64)
        else:
            local, _ = cluster_features(
                features[rows], "pca", None, "kmeans", {"max_k": max_k}, random_state
            )
            local = np.maximum(local, 0)
        out[rows] = local + next_id
        next_id += int(local.max()) + 1
    return out


def oversample(groups: np.ndarray, min_size: int) -> np.ndarray:
    """Row indices: every row once, plus repeats of the rows of each group smaller than
    ``min_size`` (cycled) until it has ``min_size`` rows."""
    extra = []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) < min_size:
            extra.append(np.resize(rows, min_size - len(rows)))
    return np.concatenate([np.arange(len(groups)), *extra]).astype(np.int64)
