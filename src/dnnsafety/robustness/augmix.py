"""AugMix fine-tuning against corruptions (Hendrycks et al., "AugMix: A Simple Data Processing
Method to Improve Robustness and Uncertainty", ICLR 2020).

An AugMix view of an image mixes ``width`` (3) augmentation chains, each applying 1 to
``max_depth`` (3) operations drawn from :data:`~dnnsafety.robustness.augmix_ops.OPERATIONS`
(autocontrast, equalize, posterize, solarize, rotate, shear, translate: none of them is an
ImageNet-C corruption) with Dirichlet(``alpha``) weights, then blends the mix with the image by
a Beta(``alpha``, ``alpha``) weight. Training adds the Jensen-Shannon consistency loss between
the predictions on the clean image and on two views (weight 12), so the model learns to be
stable on inputs it never saw corrupted; it is judged on held-out corruptions
(:mod:`dnnsafety.robustness.corruptions`), none of which is used in training.

Two ways in:

* :class:`AugMix` is a batch augmentation ``(model, x, y, generator) -> (x, y)``: the clean
  batch followed by ``views`` AugMix views of it (labels repeated); with
  ``TrainingPlan.consistency`` (or ``train_model(consistency=...)``) the loss is AugMix's
  (the ``augmix`` retraining mitigation).
* :func:`augmix_finetune` fine-tunes a copy of a model with it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dnnsafety._validation import check_float_param, check_int_param, check_random_state
from dnnsafety.config import TrainConfig
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.models.training import train_model
from dnnsafety.robustness.augmix_ops import OPERATIONS, sample_levels
from dnnsafety.robustness.corruptions import check_images

__all__ = ["PAPER_OPERATIONS", "AugMix", "AugMixConfig", "augmix_finetune", "augmix_images"]

PAPER_OPERATIONS = tuple(OPERATIONS)
"""AugMix's default operations (all of :data:`~dnnsafety.robustness.augmix_ops.OPERATIONS`)."""


def check_operations(operations: Sequence[str]) -> tuple[str, ...]:
    """``operations`` as a tuple of known AugMix operation names (``"all"``: every one).

    Raises
    ------
    ConfigError
        If it is empty or names an unknown operation (the message lists the known ones).
    """
    names = [operations] if isinstance(operations, str) else list(operations)
    if names == ["all"]:
        return PAPER_OPERATIONS
    unknown = [n for n in names if n not in OPERATIONS]
    if unknown or not names:
        raise ConfigError(
            f"Unknown AugMix operation(s) {unknown or names}; choose from "
            f"{', '.join(OPERATIONS)} (or 'all'). ImageNet-C corruptions are not AugMix "
            "operations: they are the test set."
        )
    return tuple(names)


def augmix_images(
    images: torch.Tensor,
    rng: np.random.Generator,
    operations: Sequence[str] = PAPER_OPERATIONS,
    width: int = 3,
    max_depth: int = 3,
    severity: float = 3.0,
    alpha: float = 1.0,
) -> torch.Tensor:
    """One AugMix view of every image of ``images`` (the paper's ``augment_and_mix``).

    Parameters
    ----------
    images
        Float32 ``N x C x H x W`` in [0, 1].
    rng
        The random generator.
    operations
        AugMix operation names the chains draw from (uniformly, per image and step).
    width
        Chains mixed per image.
    max_depth
        Each chain applies 1 to ``max_depth`` operations (drawn per image and chain).
    severity
        Operation levels are drawn from ``U(0.1, severity)`` on the scale 0-10 (paper: 3).
    alpha
        Concentration of the Dirichlet (chain weights) and Beta (blend) distributions.

    Returns
    -------
    torch.Tensor
        ``m * x + (1 - m) * sum_i w_i chain_i(x)`` per image, ``m ~ Beta(alpha, alpha)``,
        ``w ~ Dirichlet(alpha, ..., alpha)``; the input's shape, values in [0, 1].

    Raises
    ------
    InvalidInputError
        If ``images`` is not such a tensor.
    ConfigError
        On an unknown operation.
    """
    x = check_images(images)
    ops = [OPERATIONS[o] for o in check_operations(operations)]
    n = len(x)
    weights = torch.as_tensor(rng.dirichlet([alpha] * width, size=n), dtype=torch.float32)
    blend = torch.as_tensor(rng.beta(alpha, alpha, size=n), dtype=torch.float32)
    mix = torch.zeros_like(x)
    for chain in range(width):
        out = x.clone()
        depth = rng.integers(1, max_depth + 1, size=n)
        for step in range(max_depth):
            active = depth > step
            op = rng.integers(0, len(ops), size=n)
            levels = sample_levels(severity, n, rng)
            for o in np.unique(op[active]):
                idx = np.flatnonzero(active & (op == o))
                sel = torch.from_numpy(idx)
                out[sel] = ops[o](out[sel], levels[idx], rng)
        mix += weights[:, chain, None, None, None] * out
    b = blend[:, None, None, None]
    return (b * x + (1 - b) * mix).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class AugMix:
    """A batch augmentation: the clean batch followed by ``views`` AugMix views of it.

    Calling it as ``augment(model, x, y, generator)`` returns
    ``(cat(x, view_1, ..., view_k), cat(y, ..., y))``; the model is not used. Randomness comes
    from the torch ``generator`` of the training loop, so a seeded loop gives the same views.

    Parameters
    ----------
    operations
        AugMix operation names the chains draw from (default: the paper's nine).
    width, max_depth, severity, alpha
        As in :func:`augmix_images` (paper: 3, 3, 3, 1).
    views
        Views appended per image (2 for the Jensen-Shannon consistency loss, as in the paper).

    Raises
    ------
    ConfigError
        On an unknown operation or a parameter out of range.
    """

    operations: tuple[str, ...] = PAPER_OPERATIONS
    width: int = 3
    max_depth: int = 3
    severity: float = 3.0
    alpha: float = 1.0
    views: int = 1

    def __post_init__(self) -> None:
        check_operations(self.operations)
        check_int_param(self, "width", self.width, 1)
        check_int_param(self, "max_depth", self.max_depth, 1)
        check_float_param(self, "severity", self.severity, 0.1, 10.0)
        check_float_param(self, "alpha", self.alpha, 0.0, 100.0, open_low=True)
        check_int_param(self, "views", self.views, 1)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        views = [self.view(x, rng) for _ in range(self.views)]
        return torch.cat([x, *views]), y.repeat(1 + self.views)

    def view(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """One AugMix view of ``x``."""
        return augmix_images(
            x, rng, self.operations, self.width, self.max_depth, self.severity, self.alpha
        )


@dataclass(frozen=True)
class AugMixConfig:
    """Settings of :func:`augmix_finetune`.

    Attributes
    ----------
    epochs, batch_size, lr
        Fine-tuning length, batch size (clean images per batch) and Adam's learning rate
        (cosine decay to 0).
    weight_decay
        Adam's weight decay.
    consistency
        Weight of AugMix's Jensen-Shannon consistency loss (paper: 12; 0: plain cross-entropy
        on the clean images and the views).
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.0
    consistency: float = 12.0


_PAPER = AugMix(views=2)


def augmix_finetune(
    model: nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    augment: AugMix | None = _PAPER,
    config: AugMixConfig | None = None,
    random_state: int = 0,
) -> nn.Module:
    """Fine-tune a copy of ``model`` with AugMix (through :func:`~dnnsafety.models.training.
    train_model`, the loop every retraining strategy uses).

    Parameters
    ----------
    model
        The trained classifier; it is copied, never changed.
    images, labels
        The training split (float32 ``N x C x H x W`` in [0, 1]; ``N`` integer labels).
    augment
        The AugMix settings (default: ``AugMix(views=2)``, the paper's); ``None``: the same
        fine-tuning on the clean images only (the control that shows what the views add; the
        consistency weight is then unused).
    config
        Fine-tuning settings (default :class:`AugMixConfig` ()).
    random_state
        Seed of the batch order, the views and dropout.

    Returns
    -------
    nn.Module
        The fine-tuned copy, in eval mode (the epoch of best training accuracy, with the
        cosine schedule in practice the last).

    Raises
    ------
    InvalidInputError
        If images and labels differ in length or are empty.
    """
    seed = check_random_state("augmix_finetune", random_state)
    x_all = check_images(images)
    y_all = np.asarray(labels, dtype=np.int64)
    if len(x_all) == 0 or len(x_all) != len(y_all):
        raise InvalidInputError(
            f"augmix_finetune needs one label per image; got {len(x_all)} images and "
            f"{len(y_all)} labels."
        )
    cfg = config or AugMixConfig()
    tuned = copy.deepcopy(model)
    train_cfg = TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
        weight_decay=cfg.weight_decay, select_by="train", schedule="cosine",
    )  # fmt: skip
    train_model(
        tuned, x_all, y_all, None, None, train_cfg, seed=seed, augment=augment,
        consistency=cfg.consistency if augment is not None else 0.0,
    )  # fmt: skip
    return tuned.eval()
