"""Attacks on a trained model: the library's success claim checked against the predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.adversarial import ATTACKS, robust_accuracy, within_budget
from dnnsafety.adversarial.attacks import AttackResult, perturbation_norm
from dnnsafety.data.dataset import Dataset
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.training import predict
from dnnsafety.testing import check_model_restored

BUDGET = {"linf": 0.15, "l2": math.inf}


@pytest.fixture(scope="module")
def batch(digits: Dataset) -> tuple[torch.Tensor, np.ndarray]:
    test = digits["test"]
    return test.images[:30], test.labels[:30]


FAST = {"square": {"n_queries": 100}, "deepfool": {"steps": 10}, "cw": {"steps": 50}}


@pytest.mark.parametrize(
    "name",
    ["fgsm", "pgd", "tpgd", "cw", pytest.param("deepfool", marks=pytest.mark.slow), "square"],
)
def test_claimed_successes_change_the_prediction(name, digits_model, batch):
    images, labels = batch
    attack = ATTACKS.create(name, FAST.get(name, {}))
    digits_model.train()
    try:
        adv, success = check_model_restored(
            digits_model, attack.attack, digits_model, images, labels, BUDGET[attack.norm], 0
        )
        assert digits_model.training  # restored
    finally:
        digits_model.eval()
    clean = predict(digits_model, images).pred
    after = predict(digits_model, adv).pred
    assert success.mean() > 0.3, f"{name} flipped only {success.mean():.0%}"
    assert (clean[success] == labels[success]).all()  # only correct inputs count
    assert (after[success] != clean[success]).all()  # no silent no-op
    unchanged = ~success & (clean == labels)
    assert (after[unchanged] == labels[unchanged]).all()  # no success left unclaimed
    if not attack.minimal:
        assert perturbation_norm(adv, images).max() <= BUDGET["linf"] + 1e-6


def test_pgd_is_at_least_as_strong_as_fgsm(digits_model, batch):
    images, labels = batch
    eps = [2 / 255, 8 / 255, 0.1]
    fgsm = robust_accuracy(digits_model, ATTACKS.create("fgsm"), images, labels, eps)
    pgd = robust_accuracy(digits_model, ATTACKS.create("pgd"), images, labels, eps)
    for f, p in zip(fgsm, pgd, strict=True):
        assert p["robust_accuracy"] <= f["robust_accuracy"] + 1e-9
    assert pgd[-1]["robust_accuracy"] < pgd[-1]["clean_accuracy"] - 0.2


@pytest.mark.slow
def test_minimal_attack_curve_is_cut_from_one_run(digits_model, batch):
    images, labels = batch
    cw = ATTACKS.create("cw", FAST["cw"])
    rows = robust_accuracy(digits_model, cw, images, labels, [1e-4, 1, 50])
    accs = [r["robust_accuracy"] for r in rows]
    assert accs[0] == pytest.approx(rows[0]["clean_accuracy"])  # nothing fits a tiny budget
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[2] < 0.2


def test_within_budget_returns_the_clean_image_beyond_eps():
    clean = torch.zeros(3, 1, 2, 2)
    adv = clean.clone()
    adv[0, 0, 0, 0] = 0.3  # L2 0.3
    adv[1] += 0.5  # L2 1.0
    result = within_budget(clean, AttackResult(adv, np.array([True, True, False])), 0.5, "l2")
    assert result.success.tolist() == [True, False, False]
    assert torch.equal(result.images[0], adv[0])
    assert torch.equal(result.images[1], clean[1])
    assert perturbation_norm(adv, clean, "linf").tolist() == pytest.approx([0.3, 0.5, 0.0])


class _ScoresOnly(nn.Module):
    """A model seen only through its outputs, like an ONNX file: no parameters."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "inner", inner)  # hidden from parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner(x)


def test_black_box_model_gets_square_from_art_and_no_gradient_attack(digits_model, batch):
    images, labels = batch
    black = _ScoresOnly(digits_model)
    with pytest.raises(ConfigError, match="square"):
        ATTACKS.create("pgd").attack(black, images, labels, 0.1)
    adv, success = ATTACKS.create("square", {"n_queries": 50}).attack(
        black, images, labels, 0.15, random_state=0
    )
    assert success.any()
    after = predict(digits_model, adv).pred
    assert (after[success] != labels[success]).all()
    assert perturbation_norm(adv, images).max() <= 0.15 + 1e-6
