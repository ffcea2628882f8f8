from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError
from dnnsafety.retraining.mitigation import MitigationContext
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.robustness.augmix import AugMix, AugMixConfig, augmix_finetune, augmix_images
from dnnsafety.testing import check_model_restored
from dnnsafety.testing.retraining import toy_training_data
from dnnsafety.testing.robustness_checks import planted_images


def test_augmix_views_mix_the_operations_with_the_original():
    x = planted_images(12, 3, 32)
    view = augmix_images(x, ["dark"], np.random.default_rng(0))
    assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
    # a convex mix of x and darkened copies of x: never brighter than x, darker on average
    assert (view <= x + 1e-6).all() and view.mean() < 0.95 * x.mean()
    again = augmix_images(x, ["dark"], np.random.default_rng(0))
    assert torch.equal(view, again)


def test_batch_augment_doubles_the_batch_with_repeated_labels():
    aug = AugMix(("gaussian_noise",), width=2)
    x, y = planted_images(6, 1, 28), torch.arange(6)
    gen = torch.Generator().manual_seed(0)
    xa, ya = aug(nn.Identity(), x, y, gen)
    assert xa.shape == (12, 1, 28, 28) and torch.equal(ya, torch.cat([y, y]))
    assert torch.equal(xa[:6], x) and not torch.equal(xa[6:], x)
    xb, _ = aug(nn.Identity(), x, y, torch.Generator().manual_seed(0))
    assert torch.equal(xa, xb)
    with pytest.raises(ConfigError):
        AugMix(("rain",))
    with pytest.raises(ConfigError):
        AugMix(max_severity=7)


def test_finetune_copies_the_model_and_learns_the_augmented_task():
    train, model = toy_training_data(n=60)
    tuned = check_model_restored(
        model, augmix_finetune, model, train.images, train.labels,
        AugMix(("gaussian_noise",)), AugMixConfig(epochs=2, batch_size=20, lr=1e-2, jsd=True),
    )  # fmt: skip
    assert tuned is not model and not tuned.training
    changed = any(
        not torch.equal(a, b) for a, b in zip(tuned.parameters(), model.parameters(), strict=True)
    )
    assert changed
    control = augmix_finetune(model, train.images, train.labels, None, AugMixConfig(epochs=1))
    assert control is not model
    with pytest.raises(ConfigError, match="JSD"):
        augmix_finetune(model, train.images, train.labels, None, AugMixConfig(jsd=True))


def test_the_mitigation_plans_clean_data_with_the_augmix_batch_augment():
    train, model = toy_training_data()
    mitigation = MITIGATIONS.get("augmix")(operations=("noise",))
    plan = mitigation.plan(MitigationContext(model=model, train=train), random_state=0)
    assert torch.equal(plan.images, train.images)
    assert isinstance(plan.augment, AugMix) and plan.augment.operations == ("noise",)
    assert plan.info["operations"] == ["gaussian_noise", "shot_noise", "impulse_noise"]
    with pytest.raises(ConfigError):
        MITIGATIONS.get("augmix")(operations=("rain",)).plan(
            MitigationContext(model=model, train=train), random_state=0
        )
