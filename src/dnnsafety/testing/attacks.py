"""The attack contract check (:mod:`dnnsafety.adversarial.attacks`), shipped like
scikit-learn's estimator checks: run :func:`check_attack` on your own attack."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from dnnsafety.adversarial.attacks import Attack, perturbation_norm
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.testing._common import _build, _fail, _raises, check_estimator_contract
from dnnsafety.testing.checks import check_model_restored

__all__ = ["check_attack", "toy_attack_model"]


def toy_attack_model(seed: int = 0) -> nn.Module:
    """A small CNN with BatchNorm and Dropout (3 x 8 x 8 inputs, 3 classes), in training mode,
    so that an attack that forgets eval mode or changes a buffer is caught."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 64, 3),
    ).train()


def check_attack(attack: type[Attack] | Attack) -> None:
    """The attack contract on a toy model whose clean predictions are the labels.

    ``attack`` leaves the model as found (:func:`check_model_restored`, started in training
    mode) and returns ``N x C x H x W`` float32 images in ``[0, 1]`` with an ``(N,)`` bool
    success mask; a bounded attack stays within ``eps``; where success is claimed the model's
    prediction on the adversarial image differs from the clean one, and a large budget flips
    at least one input; the same ``random_state`` gives the same images; the global random
    state is untouched; bad ``eps`` / ``random_state`` raise :class:`ConfigError` and bad
    images :class:`InvalidInputError`.

    Raises
    ------
    AssertionError
        Naming the first rule the attack breaks.
    """
    est = _build(attack)
    check_estimator_contract(est)
    if est.norm not in ("linf", "l2"):
        raise _fail(est, "norm must be 'linf' or 'l2'")
    model = toy_attack_model()
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(12, 3, 8, 8, generator=gen)
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        labels = twin(images).argmax(1).numpy()
    eps = 0.3 if est.norm == "linf" else 3.0
    state = torch.get_rng_state()
    adv, success = check_model_restored(model, est.attack, model, images, labels, eps, 3)
    if not torch.equal(state, torch.get_rng_state()):
        raise _fail(est, "the global torch random state must be left untouched")
    if not model.training:
        raise _fail(est, "the model's training flag must be restored")
    if adv.dtype != torch.float32 or adv.shape != images.shape:
        raise _fail(est, "images must be N x C x H x W float32 like the input")
    if float(adv.min()) < 0.0 or float(adv.max()) > 1.0:
        raise _fail(est, "adversarial images must stay in [0, 1]")
    if success.dtype != np.bool_ or success.shape != (len(images),):
        raise _fail(est, "success must be an (N,) bool array")
    dist = perturbation_norm(adv, images, est.norm)
    if (dist > eps + 1e-5).any():
        raise _fail(est, f"perturbations must stay within eps = {eps} ({est.norm})")
    with torch.no_grad():
        pred = twin(adv).argmax(1).numpy()
    if (pred[success] == labels[success]).any():
        raise _fail(est, "where success is claimed the prediction must change")
    if not success.any():
        raise _fail(est, f"a budget of {eps} ({est.norm}) must flip at least one toy input")
    again, _ = est.attack(model, images, labels, eps, 3)
    if not torch.allclose(again, adv, atol=1e-6):
        raise _fail(est, "the same random_state must give the same images")
    if not _raises(ConfigError, lambda: clone(est).attack(model, images, labels, eps, -1)):
        raise _fail(est, "random_state=-1 must raise ConfigError")
    for bad_eps in (0.0, -0.1, math.nan):
        if not _raises(ConfigError, functools.partial(est.attack, model, images, labels, bad_eps)):
            raise _fail(est, f"eps={bad_eps} must raise ConfigError")
    for bad in (images[0], images * 2.0):
        if not _raises(InvalidInputError, functools.partial(est.attack, model, bad, labels, eps)):
            raise _fail(est, "images not N x C x H x W in [0, 1] must raise InvalidInputError")
