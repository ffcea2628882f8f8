from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError
from dnnsafety.retraining.mitigation import MitigationContext
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.robustness.augmix import (
    PAPER_OPERATIONS,
    AugMix,
    AugMixConfig,
    augmix_finetune,
    augmix_images,
)
from dnnsafety.robustness.corruptions import IMAGENET_C
from dnnsafety.testing import check_model_restored
from dnnsafety.testing.retraining import toy_training_data
from dnnsafety.testing.robustness_checks import planted_images


def test_the_operations_are_the_papers_and_no_test_corruption():
    assert set(PAPER_OPERATIONS) == {
        "autocontrast", "equalize", "posterize", "solarize", "rotate",
        "shear_x", "shear_y", "translate_x", "translate_y",
    }  # fmt: skip
    assert not set(PAPER_OPERATIONS) & set(IMAGENET_C)
    with pytest.raises(ConfigError, match="not AugMix operations"):
        AugMix(("gaussian_noise",))


def test_augmix_views_are_convex_mixes_of_the_image_and_its_chains():
    x = planted_images(12, 3, 32)
    # solarize at its strongest inverts the bright square: the mix of x and 1 - x is darker
    # where x is bright
    view = augmix_images(x, np.random.default_rng(0), ["solarize"], severity=10.0)
    assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
    bright = x > 0.8
    assert (view[bright] <= x[bright] + 1e-6).all() and view[bright].mean() < 0.8
    again = augmix_images(x, np.random.default_rng(0), ["solarize"], severity=10.0)
    assert torch.equal(view, again)
    other = augmix_images(x, np.random.default_rng(1), ["solarize"], severity=10.0)
    assert not torch.equal(view, other)
    # one chain of one op, blend weights from Beta: every view lies between x and solarize(x)
    one = augmix_images(x, np.random.default_rng(2), ["posterize"], width=1, max_depth=1)
    assert float((one - x).abs().max()) < 16 / 255 + 1e-6  # posterize at level <= 3: 1 bit


def test_batch_augment_appends_the_views_with_repeated_labels():
    aug = AugMix(("rotate", "equalize"), width=2, views=2)
    x, y = planted_images(6, 1, 28), torch.arange(6)
    gen = torch.Generator().manual_seed(0)
    xa, ya = aug(nn.Identity(), x, y, gen)
    assert xa.shape == (18, 1, 28, 28) and torch.equal(ya, torch.cat([y, y, y]))
    assert torch.equal(xa[:6], x) and not torch.equal(xa[6:12], x)
    assert not torch.equal(xa[6:12], xa[12:])
    xb, _ = aug(nn.Identity(), x, y, torch.Generator().manual_seed(0))
    assert torch.equal(xa, xb)
    with pytest.raises(ConfigError):
        AugMix(("rain",))
    with pytest.raises(ConfigError):
        AugMix(severity=11)
    with pytest.raises(ConfigError):
        AugMix(views=0)


def test_finetune_copies_the_model_and_trains_with_the_consistency_loss():
    train, model = toy_training_data(n=60)
    tuned = check_model_restored(
        model, augmix_finetune, model, train.images, train.labels,
        AugMix(("rotate",), views=2), AugMixConfig(epochs=2, batch_size=20, lr=1e-2),
    )  # fmt: skip
    assert tuned is not model and not tuned.training
    changed = any(
        not torch.equal(a, b) for a, b in zip(tuned.parameters(), model.parameters(), strict=True)
    )
    assert changed
    control = augmix_finetune(model, train.images, train.labels, None, AugMixConfig(epochs=1))
    assert control is not model
    with pytest.raises(Exception, match="one label per image"):
        augmix_finetune(model, train.images, train.labels[:5], None)


def test_the_mitigation_plans_two_views_and_the_jsd_loss():
    train, model = toy_training_data()
    mitigation = MITIGATIONS.get("augmix")(operations=("rotate", "solarize"))
    plan = mitigation.plan(MitigationContext(model=model, train=train), random_state=0)
    assert torch.equal(plan.images, train.images)
    assert isinstance(plan.augment, AugMix) and plan.augment.operations == ("rotate", "solarize")
    assert plan.augment.views == 2 and plan.consistency == 12.0
    assert plan.info["operations"] == ["rotate", "solarize"]
    plain = MITIGATIONS.get("augmix")(consistency=0.0).plan(
        MitigationContext(model=model, train=train), random_state=0
    )
    assert isinstance(plain.augment, AugMix) and plain.augment.views == 1
    assert plain.consistency == 0.0 and plain.augment.operations == PAPER_OPERATIONS
    for bad in ({"operations": ("fog",)}, {"consistency": -1.0}):
        with pytest.raises(ConfigError):
            MITIGATIONS.get("augmix")(**bad).plan(
                MitigationContext(model=model, train=train), random_state=0
            )
