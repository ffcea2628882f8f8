"""Contract check of the retraining strategies without new labels (mitigations).

:func:`check_mitigation` builds a mitigation with its ``_test_params``, plans one run on a tiny
planted training split and trains one epoch on the plan; :func:`dnnsafety.testing.registry_cases`
runs it over :data:`~dnnsafety.retraining.mitigations.MITIGATIONS`.
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnnsafety.testing.checks import (
    _build,
    _fail,
    check_estimator_contract,
    check_model_restored,
)

__all__ = ["ToySimulator", "check_mitigation", "toy_root_causes", "toy_training_data"]


def toy_training_data(n: int = 48, classes: int = 3, seed: int = 0) -> tuple[Any, nn.Module]:
    """A labelled 1 x 8 x 8 training split with scenarios and a tiny CNN for it."""
    from dnnsafety.data.dataset import Split

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.random((n, 1, 8, 8)).astype(np.float32) * 0.3
    for k in range(classes):
        images[labels == k, 0, k * 2 : k * 2 + 2, :] += 0.6
    scenarios = np.where(np.arange(n) % 8 == 0, "rare", "nominal")
    split = Split(
        "train",
        np.array([f"t{i}" for i in range(n)], dtype=object),
        torch.from_numpy(np.clip(images, 0, 1)),
        labels.astype(np.int64),
        scenarios.astype(object),
    )
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, classes)
    ).eval()
    return split, model


class ToySimulator:
    """A simulator of :func:`toy_training_data`'s images: parameter ``brightness`` in
    ``[0, 1]`` scales the class band, ``haze`` in ``[0, 0.5]`` is added everywhere."""

    parameter_space: ClassVar[dict[str, tuple[float, float]]] = {
        "brightness": (0.0, 1.0),
        "haze": (0.0, 0.5),
    }

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Nominal rows: bright, no haze, uniform labels."""
        return pd.DataFrame(
            {
                "label": rng.integers(0, 3, size=n),
                "brightness": rng.uniform(0.8, 1.0, size=n),
                "haze": np.zeros(n),
            }
        )

    def render(self, params: pd.DataFrame, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """``N x 1 x 8 x 8`` images and their labels."""
        rng = np.random.default_rng(seed)
        labels = params["label"].to_numpy(dtype=np.int64)
        images = rng.random((len(params), 1, 8, 8)).astype(np.float32) * 0.3
        bright = params["brightness"].to_numpy(dtype=np.float32)
        for i, k in enumerate(labels):
            images[i, 0, k * 2 : k * 2 + 2, :] += 0.6 * bright[i]
        images += params["haze"].to_numpy(dtype=np.float32)[:, None, None, None]
        return torch.from_numpy(np.clip(images, 0, 1)), labels


def toy_root_causes() -> Any:
    """Two root causes of the toy data: dark inputs (a rule on ``brightness``) and hazy ones
    (a rule on ``haze``), with the :class:`ToySimulator`."""
    from dnnsafety.explain.rules import Condition, Rule
    from dnnsafety.retraining.rootcauses import RootCause, RootCauses

    dark = Rule((Condition("brightness", None, 0.3),), 0.9, 0.8, 8, 9)
    hazy = Rule((Condition("haze", 0.2, None),), 0.8, 0.9, 4, 5)
    return RootCauses(
        (RootCause(0, 10, (dark,)), RootCause(1, 5, (hazy,))), simulator=ToySimulator()
    )


def check_mitigation(mitigation: Any) -> None:
    """Contract of a retraining strategy without new labels
    (:class:`~dnnsafety.retraining.mitigation.Mitigation`).

    ``requires`` names only context fields; ``plan`` leaves the model unchanged, returns a
    valid :class:`~dnnsafety.retraining.mitigation.TrainingPlan` with at least as many rows as
    the training split, the same plan for the same seed, and
    a plan that :func:`~dnnsafety.models.training.train_model` can train one epoch on.
    """
    from dnnsafety.config import TrainConfig
    from dnnsafety.models.training import predict, train_model
    from dnnsafety.retraining.mitigation import CONTEXT_FIELDS, MitigationContext, TrainingPlan

    est = _build(mitigation)
    check_estimator_contract(est)
    unknown = set(est.requires) - set(CONTEXT_FIELDS)
    if unknown:
        raise _fail(est, f"requires names unknown context fields {sorted(unknown)}")
    train, model = toy_training_data()
    extra: dict[str, Any] = {}
    if "train_features" in est.requires:
        extra["train_features"] = train.images.flatten(1).numpy()
    if "pool_features" in est.requires:
        extra["pool_features"] = train.images.flatten(1).numpy()[::-1].copy()
    if "train_probs" in est.requires:
        extra["train_probs"] = predict(model, train.images).probs.astype(np.float32)
    if "clusters" in est.requires:
        extra["clusters"] = toy_root_causes()
    context = MitigationContext(model=model, train=train, val=None, **extra)
    plan = check_model_restored(model, est.plan, context, random_state=0)
    if not isinstance(plan, TrainingPlan):
        raise _fail(est, f"plan must return a TrainingPlan, got {type(plan).__name__}")
    if len(plan.labels) < len(train.labels):
        raise _fail(est, "a plan must train on at least the whole training split")
    again = _build(mitigation).plan(context, random_state=0)
    same = np.array_equal(plan.labels, again.labels) and torch.equal(plan.images, again.images)
    if plan.weights is not None:
        same = same and again.weights is not None and np.allclose(plan.weights, again.weights)
    if not same:
        raise _fail(est, "the same random_state must give the same plan")
    cfg = TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.01, select_by="train")
    copy_ = copy.deepcopy(model)
    train_model(
        copy_,
        plan.images,
        plan.labels,
        None,
        None,
        cfg,
        weights=plan.weights,
        groups=plan.groups,
        dro_step=plan.dro_step,
        augment=plan.augment,
        consistency=plan.consistency,
        divergence=plan.divergence,
    )
    json.dumps(plan.info)
