"""Bias mitigations without new labels (METHOD.md §8): reweighting by inferred group, Just
Train Twice and George.

* ``reweight-groups`` - cluster the training inputs' features into groups (PCA + k-means with
  a fixed, large ``k``, as the bias analysis does) and weight every input by the inverse size
  of its group, so a small region of feature space (an under-represented condition) weighs as
  much in the loss as a large one.
* ``jtt`` - Just Train Twice (Liu et al., "Just Train Twice: Improving Group Robustness
  without Training Group Information", ICML 2021): the training inputs the first model gets
  wrong form the error set; the second training upweights them by ``lambda_up``. The first
  model is the analysed model (its softmax on the training split), as in JTT's identification
  step with the model trained once already.
* ``george`` - George (Sohoni et al., "No Subclass Left Behind: Fine-Grained Robustness in
  Coarse-Grained Classification Problems", NeurIPS 2020): cluster the features of every class
  separately into subclasses (``k`` per class by silhouette), then train with group DRO
  (Sagawa et al., ICLR 2020) over the subclasses. Subclasses smaller than ``min_group_size``
  are oversampled (duplicated) up to it, so that they turn up in training batches.

None of them reads a scenario, a test label or a pool label.
"""

from __future__ import annotations

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


@MITIGATIONS.register("jtt", help="Just Train Twice: upweight the original model's train errors")
class JustTrainTwice(Mitigation):
    """Upweight the training inputs the original model misclassifies by ``lambda_up``.

    Parameters
    ----------
    lambda_up
        Weight of an error-set input (the others weigh 1); Liu et al. used 6 to 100.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"train_probs"})

    def __init__(self, lambda_up: float = 20.0) -> None:
        self.lambda_up = lambda_up

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        lam = check_float_param(self, "lambda_up", self.lambda_up, 1.0, 1e6)
        assert context.train_probs is not None
        labels = np.asarray(context.train.labels, dtype=np.int64)
        errors = np.asarray(context.train_probs).argmax(axis=1) != labels
        weights = np.where(errors, lam, 1.0)
        return TrainingPlan(
            context.train.images,
            labels,
            weights=weights,
            info={"error_set": int(errors.sum())},
        )


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
        Step size of the group DRO weights.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"train_features"})
    _test_params: ClassVar[dict[str, Any]] = {"max_subclasses": 2, "min_group_size": 4}

    def __init__(
        self, max_subclasses: int = 5, min_group_size: int = 50, dro_step: float = 0.01
    ) -> None:
        self.max_subclasses = max_subclasses
        self.min_group_size = min_group_size
        self.dro_step = dro_step

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        max_k = check_int_param(self, "max_subclasses", self.max_subclasses, 1)
        min_size = check_int_param(self, "min_group_size", self.min_group_size, 1)
        step = check_float_param(self, "dro_step", self.dro_step, 1e-6, 10.0)
        assert context.train_features is not None
        feats = np.asarray(context.train_features, dtype=np.float32)
        labels = np.asarray(context.train.labels, dtype=np.int64)
        groups = subclasses(feats, labels, max_k, random_state)
        rows = oversample(groups, min_size)
        index = torch.from_numpy(rows)
        return TrainingPlan(
            context.train.images[index],
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
