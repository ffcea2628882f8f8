"""One retraining run (METHOD.md §2 step 11) and how its model is scored.

:func:`finetune` copies the original model, trains it on the training set plus the labelled
bag (from the original weights, or from scratch on request) and keeps the best epoch.
:func:`score_run` measures a model on the test split the way the comparison reports it:
overall accuracy, accuracy per ground-truth scenario and per root-cause cluster (on the test
errors each cluster holds), and the inputs improved and worsened against the original model.
"""

from __future__ import annotations

import copy
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dnnsafety.config import RetrainConfig
from dnnsafety.data.dataset import NOMINAL, Split, known_scenarios
from dnnsafety.evaluation.stats import improved_worsened
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.training import TrainResult, predict, train_model
from dnnsafety.retraining.mitigation import TrainingPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestScore:
    """A model's results on the test split."""

    overall: float
    rare: float
    per_scenario: dict[str, float]
    per_cluster: dict[str, float]
    improved: int
    worsened: int
    correct: np.ndarray

    @property
    def worst_scenario(self) -> float:
        """Worst-group accuracy: the lowest accuracy over the ground-truth scenarios (NaN
        without them)."""
        return min(self.per_scenario.values()) if self.per_scenario else float("nan")

    @property
    def mean_scenario(self) -> float:
        """Accuracy averaged over the scenarios, each counting once (NaN without them)."""
        values = list(self.per_scenario.values())
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready figures (without the per-input array)."""
        return {
            "overall": self.overall,
            "rare": self.rare,
            "worst_scenario": self.worst_scenario,
            "mean_scenario": self.mean_scenario,
            "per_scenario": self.per_scenario,
            "per_cluster": self.per_cluster,
            "improved": self.improved,
            "worsened": self.worsened,
        }


def finetune(
    model: nn.Module,
    train: Split,
    bag_images: torch.Tensor,
    bag_labels: np.ndarray,
    val: Split | None,
    cfg: RetrainConfig,
    seed: int,
    reset: nn.Module | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Train a copy of ``model`` on ``train`` + the bag; returns it and the training history.

    Parameters
    ----------
    model
        The original model; left unchanged.
    train
        The training split.
    bag_images, bag_labels
        The labelled (and balanced) retraining bag.
    val
        The validation split for the best-epoch choice (``cfg.select_by = "val"``).
    cfg
        Retraining settings.
    seed
        Seed of this run (shuffling, dropout).
    reset
        A freshly initialised model of the same architecture, used when ``cfg.from_scratch``.
    """
    images = torch.cat([train.images, bag_images]) if len(bag_labels) else train.images
    labels = np.concatenate([train.labels, np.asarray(bag_labels, dtype=np.int64)])
    return finetune_plan(model, TrainingPlan(images, labels), val, cfg, seed, reset=reset)


def finetune_plan(
    model: nn.Module,
    plan: TrainingPlan,
    val: Split | None,
    cfg: RetrainConfig,
    seed: int,
    reset: nn.Module | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Train a copy of ``model`` as ``plan`` says (its images, weights, groups, augmentation).

    Parameters are those of :func:`finetune`, with the training data given as a
    :class:`~dnnsafety.retraining.mitigation.TrainingPlan`; ``model`` is left unchanged.
    """
    plan.validate()
    if cfg.from_scratch:
        if reset is None:
            raise ConfigError("finetune(from_scratch=True) needs a freshly built `reset` model.")
        new = copy_model(reset)
    else:
        new = copy_model(model)
    result = train_model(
        new,
        plan.images,
        plan.labels,
        None if val is None else val.images,
        None if val is None else val.labels,
        cfg.train_config(),
        seed=seed,
        weights=plan.weights,
        groups=plan.groups,
        dro_step=plan.dro_step,
        augment=plan.augment,
        consistency=plan.consistency,
        divergence=plan.divergence,
    )
    new.eval()
    return new, result


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy of ``model`` whose parameters can be trained.

    ``copy.deepcopy`` of a TorchScript module returns parameters that are not leaf tensors
    (an optimizer then fails with "can't optimize a non-leaf Tensor"); a TorchScript module
    is therefore copied by saving it to memory and loading it back.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return _copy_script(model)
    # an eager wrapper around TorchScript parts (e.g. an output adapter): deep-copy the wrapper,
    # with each TorchScript part copied by save/load (deepcopy's memo hands those copies out)
    memo: dict[int, Any] = {
        id(m): _copy_script(m) for m in model.modules() if isinstance(m, torch.jit.ScriptModule)
    }
    return copy.deepcopy(model, memo)


def _copy_script(model: torch.jit.ScriptModule) -> nn.Module:
    from dnnsafety.models.loading import quiet_torchscript_notice

    buffer = io.BytesIO()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with quiet_torchscript_notice():
        torch.jit.save(model, buffer)
        buffer.seek(0)
        copied: nn.Module = torch.jit.load(buffer, map_location=device)
    return copied


def score_run(
    model: nn.Module,
    test: Split,
    original_correct: np.ndarray | None,
    clusters: Mapping[str, int] | None = None,
) -> TestScore:
    """Score ``model`` on ``test``.

    Parameters
    ----------
    model
        The model to score.
    test
        The labelled test split.
    original_correct
        Per test input, whether the original model was right (for improved/worsened).
    clusters
        Test sample id -> cluster id (noise excluded) of the analysed errors; accuracy per
        cluster is the share of its members the model now gets right.
    """
    pred = predict(model, test.images, desc="predict test").pred
    correct = pred == test.labels
    return score_predictions(correct, test, original_correct, clusters)


def score_predictions(
    correct: np.ndarray,
    test: Split,
    original_correct: np.ndarray | None,
    clusters: Mapping[str, int] | None = None,
) -> TestScore:
    """Figures of :func:`score_run` from per-input correctness."""
    frame = pd.DataFrame({"correct": correct, "scenario": test.scenarios.astype(str)})
    known = known_scenarios(frame["scenario"])  # no per-scenario figures without ground truth
    per_scenario = (
        {str(k): float(v) for k, v in frame.groupby("scenario")["correct"].mean().items()}
        if known.any()
        else {}
    )
    per_cluster: dict[str, float] = {}
    if clusters:
        pos = {sid: i for i, sid in enumerate(test.ids.tolist())}
        by_cluster: dict[int, list[int]] = {}
        for sid, cid in clusters.items():
            if sid in pos and cid >= 0:
                by_cluster.setdefault(int(cid), []).append(pos[sid])
        per_cluster = {
            str(cid): float(correct[idx].mean()) for cid, idx in sorted(by_cluster.items())
        }
    improved = worsened = 0
    if original_correct is not None:
        improved, worsened = improved_worsened(original_correct, correct)
    rare = known & (frame["scenario"] != NOMINAL).to_numpy()
    return TestScore(
        float(correct.mean()) if len(correct) else float("nan"),
        float(frame.loc[rare, "correct"].mean()) if rare.any() else float("nan"),
        per_scenario,
        per_cluster,
        int(improved),
        int(worsened),
        correct,
    )
