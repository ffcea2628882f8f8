"""The seam for retraining strategies without new labels: the loss, the plan, ``compare``."""

from __future__ import annotations

import json
import shutil
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.cli.main import main
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.models.objective import Objective
from dnnsafety.retraining.mitigation import MitigationContext, TrainingPlan
from dnnsafety.retraining.mitigations import MITIGATIONS, Mitigation
from dnnsafety.testing import check_mitigation

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]


class UpweightErrors(Mitigation):
    """Toy Just-Train-Twice: the original model's training errors weigh ``factor`` times more."""

    requires: ClassVar[frozenset[str]] = frozenset({"train_probs"})

    def __init__(self, factor: float = 5.0) -> None:
        self.factor = factor

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        assert context.train_probs is not None
        wrong = context.train_probs.argmax(1) != context.train.labels
        weights = np.where(wrong, self.factor, 1.0)
        return TrainingPlan(
            context.train.images,
            context.train.labels,
            weights=weights,
            info={"upweighted": int(wrong.sum())},
        )


@pytest.fixture
def toy_registered():
    MITIGATIONS.register("toy-upweight", help="toy: upweight training errors")(UpweightErrors)
    yield
    MITIGATIONS.unregister("toy-upweight")


def test_objective_without_weights_is_mean_cross_entropy():
    torch.manual_seed(0)
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    expected = nn.functional.cross_entropy(logits, y)
    assert torch.allclose(Objective(6)(logits, y, torch.arange(6)), expected)


def test_weighted_objective_is_the_weighted_mean():
    torch.manual_seed(0)
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    w = np.array([1.0, 3.0, 0.0, 2.0])
    each = nn.functional.cross_entropy(logits, y, reduction="none").numpy()
    got = Objective(4, weights=w)(logits, y, torch.arange(4))
    assert got.item() == pytest.approx((w * each).sum() / w.sum(), rel=1e-6)


def test_group_dro_moves_weight_to_the_worse_group():
    # group 1's rows are misclassified with high confidence: its loss is larger
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [5.0, 0.0], [5.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    obj = Objective(4, groups=np.array([7, 7, 9, 9]), dro_step=0.5)
    idx = torch.arange(4)
    loss = obj(logits, y, idx)
    assert obj.q is not None and obj.q[1] > obj.q[0]
    losses = nn.functional.cross_entropy(logits, y, reduction="none")
    g0, g1 = losses[:2].mean(), losses[2:].mean()
    q1 = (
        0.5
        * np.exp(0.5 * g1.item())
        / (0.5 * np.exp(0.5 * g0.item()) + 0.5 * np.exp(0.5 * g1.item()))
    )
    assert loss.item() == pytest.approx((1 - q1) * g0.item() + q1 * g1.item(), rel=1e-5)
    # the update compounds over batches
    obj(logits, y, idx)
    assert obj.q[1].item() > q1


def test_objective_refuses_bad_combinations():
    with pytest.raises(ConfigError, match="not both"):
        Objective(2, weights=np.ones(2), groups=np.zeros(2))
    with pytest.raises(ConfigError, match="one training index per batch row"):
        Objective(2, weights=np.ones(2))(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))


def test_plan_validation_names_the_problem():
    images = torch.zeros(3, 1, 4, 4)
    with pytest.raises(InvalidInputError, match="3 images but 2 labels"):
        TrainingPlan(images, np.zeros(2, dtype=np.int64)).validate()
    with pytest.raises(InvalidInputError, match="not all 0"):
        TrainingPlan(images, np.zeros(3, dtype=np.int64), weights=np.zeros(3)).validate()


def test_missing_context_field_is_refused():
    from dnnsafety.testing.retraining import toy_training_data

    train, model = toy_training_data()
    with pytest.raises(InvalidInputError, match="train_probs"):
        UpweightErrors().plan(MitigationContext(model=model, train=train))


def test_toy_mitigation_passes_the_contract_and_a_broken_one_fails():
    check_mitigation(UpweightErrors)

    class Shrinks(Mitigation):
        def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
            return TrainingPlan(context.train.images[:5], context.train.labels[:5])

    with pytest.raises(AssertionError, match="whole training split"):
        check_mitigation(Shrinks)


@pytest.mark.slow
def test_compare_runs_a_mitigation_beside_a_selector(toy_registered, tmp_path):
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    argv = ["--quiet", "compare", str(run), "--strategies", "random,toy-upweight"]
    quick = ["--budget", "10", "--seeds", "1", "--set", "retrain.epochs=1"]
    assert main([*argv, *quick, "--set", "retrain.params.toy-upweight={factor = 3.0}"]) == 0
    data = json.loads((run / "comparison.json").read_text())
    entry = data["strategies"]["toy-upweight"]
    assert entry["cost"] == 0
    (r,) = entry["runs"]
    assert 0 <= r["overall"] <= 1 and r["plan"]["upweighted"] >= 0
    assert 0 <= r["worst_scenario"] <= r["mean_scenario"] <= 1
    assert "toy-upweight" in data["strategies"]["random"]["versus"]
    # a rerun reuses the mitigation's run; another factor is another run
    shutil.copy(run / "run.log", tmp_path / "before.log")
    assert main([*argv, *quick, "--set", "retrain.params.toy-upweight={factor = 3.0}"]) == 0
    assert "toy-upweight, seed 0): reused" in (run / "run.log").read_text()
    assert len(list((run / "retraining" / "runs").glob("toy-upweight_0_*.json"))) == 1
    assert main([*argv, *quick, "--set", "retrain.params.toy-upweight={factor = 9.0}"]) == 0
    assert len(list((run / "retraining" / "runs").glob("toy-upweight_0_*.json"))) == 2


def test_unknown_strategy_lists_mitigations_too(toy_registered, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "none"), "--strategies", "nope"]) != 0
    err = capsys.readouterr().err
    assert "toy-upweight" in err and "closest" in err


@pytest.mark.slow
def test_compare_builds_pool_features_for_upsample_groups(tmp_path):
    run = tmp_path / "run"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    argv = ["--quiet", "compare", str(run), "--strategies", "upsample-groups"]
    params = "retrain.params.upsample-groups={n_groups = 10, min_pool = 3}"
    quick = ["--seeds", "1", "--set", "retrain.epochs=1", "--set", params]
    assert main([*argv, *quick]) == 0
    data = json.loads((run / "comparison.json").read_text())
    (r,) = data["strategies"]["upsample-groups"]["runs"]
    # digits: injected scenarios at 1% of train and 10% of the pool, so some group is rarer in
    # train than in the pool and its members are copied
    assert r["plan"]["upsampled_groups"] >= 1 and r["extra_images"] == r["plan"]["extra_copies"] > 0
    assert all(ratio >= 2 for ratio in r["plan"]["ratios"])
