"""AugMix-style augmentation fine-tuning against corruptions (Hendrycks et al., ICLR 2020).

An AugMix image mixes ``width`` augmentation chains, each applying ``depth`` (1-3) random
operations, with Dirichlet weights, and blends the mix with the original by a Beta-drawn
weight. Here the operations are corruptions of the registry from the *training* families
(noise and blur by default), drawn at random severities; the fine-tuned model is judged on
corruption families held out from training (weather and digital by default). The optional
Jensen-Shannon consistency loss of AugMix ties the predictions on the clean image and two
AugMix views together.

Two ways in:

* :class:`AugMix` is a batch augmentation ``(model, x, y, generator) -> (x, y)``: the clean
  batch followed by one AugMix view of it (labels repeated), for fine-tuning loops that take
  a per-batch augmentation (the ``augmix`` retraining mitigation).
* :func:`augmix_finetune` fine-tunes a copy of a model itself, with the JSD loss when asked.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dnnsafety._validation import (
    check_float_param,
    check_int_param,
    check_random_generator,
    check_random_state,
)
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.progress import progress_bar
from dnnsafety.robustness.corruptions import CORRUPTIONS, check_images, names_of

__all__ = ["DEFAULT_TRAIN_FAMILIES", "AugMix", "AugMixConfig", "augmix_finetune", "augmix_images"]

DEFAULT_TRAIN_FAMILIES = ("noise", "blur")


def augmix_images(
    images: torch.Tensor,
    operations: Sequence[str],
    rng: np.random.Generator,
    width: int = 3,
    max_depth: int = 3,
    max_severity: int = 3,
    alpha: float = 1.0,
) -> torch.Tensor:
    """One AugMix view of every image of ``images``.

    Parameters
    ----------
    images
        Float32 ``N x C x H x W`` in [0, 1].
    operations
        Corruption names the chains draw from (uniformly, per image and step).
    rng
        The random generator.
    width
        Chains mixed per image.
    max_depth
        Each chain applies 1 to ``max_depth`` operations.
    max_severity
        Each operation runs at a severity drawn from 1 to ``max_severity``.
    alpha
        Concentration of the Dirichlet (chain weights) and Beta (blend) distributions.

    Returns
    -------
    torch.Tensor
        ``m * x + (1 - m) * sum_i w_i chain_i(x)`` per image, ``m ~ Beta(alpha, alpha)``,
        ``w ~ Dirichlet(alpha, ..., alpha)``.
    """
    x = check_images(images)
    n = len(x)
    ops = [CORRUPTIONS.get(o) for o in operations]
    weights = torch.as_tensor(rng.dirichlet([alpha] * width, size=n), dtype=torch.float32)
    blend = torch.as_tensor(rng.beta(alpha, alpha, size=n), dtype=torch.float32)
    mix = torch.zeros_like(x)
    for chain in range(width):
        out = x.clone()
        depth = rng.integers(1, max_depth + 1, size=n)
        for step in range(max_depth):
            active = depth > step
            op = rng.integers(0, len(ops), size=n)
            sev = rng.integers(1, max_severity + 1, size=n)
            for o in np.unique(op[active]):
                for s in np.unique(sev[active & (op == o)]):
                    idx = np.flatnonzero(active & (op == o) & (sev == s))
                    sel = torch.from_numpy(idx)
                    out[sel] = ops[o](out[sel], int(s), rng)
        mix += weights[:, chain, None, None, None] * out
    b = blend[:, None, None, None]
    return (b * x + (1 - b) * mix).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class AugMix:
    """A batch augmentation: the clean batch followed by one AugMix view of it.

    Calling it as ``augment(model, x, y, generator)`` returns ``(cat(x, view), cat(y, y))``;
    the model is not used. Randomness comes from the torch ``generator`` of the training
    loop, so a seeded loop gives the same views.

    Parameters
    ----------
    operations
        Corruption names or families the chains draw from (default: the noise and blur
        families).
    width, max_depth, max_severity, alpha
        As in :func:`augmix_images`.
    """

    operations: tuple[str, ...] = DEFAULT_TRAIN_FAMILIES
    width: int = 3
    max_depth: int = 3
    max_severity: int = 3
    alpha: float = 1.0

    def __post_init__(self) -> None:
        names_of(list(self.operations))  # raises ConfigError on unknown names
        check_int_param(self, "width", self.width, 1)
        check_int_param(self, "max_depth", self.max_depth, 1)
        if not 1 <= self.max_severity <= 5:
            raise ConfigError(f"max_severity must be 1 to 5. Got {self.max_severity!r}.")
        check_float_param(self, "alpha", self.alpha, 0.0, 100.0, open_low=True)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        view = self.view(x, np.random.default_rng(seed))
        return torch.cat([x, view]), torch.cat([y, y])

    def view(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """One AugMix view of ``x``."""
        return augmix_images(
            x, names_of(list(self.operations)), rng, self.width, self.max_depth,
            self.max_severity, self.alpha,
        )  # fmt: skip


@dataclass(frozen=True)
class AugMixConfig:
    """Settings of :func:`augmix_finetune`.

    Attributes
    ----------
    epochs, batch_size, lr
        Fine-tuning length, batch size and Adam's learning rate (cosine decay to 0).
    jsd
        Add AugMix's Jensen-Shannon consistency loss (two views per image).
    jsd_weight
        Weight of that loss (AugMix: 12).
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 3e-4
    jsd: bool = False
    jsd_weight: float = 12.0


_DEFAULT = AugMix()


def _jensen_shannon(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    probs = [F.softmax(z, dim=1) for z in logits]
    mixture = torch.clamp(sum(probs) / len(probs), 1e-7, 1.0).log()  # type: ignore[arg-type]
    return sum(F.kl_div(mixture, p, reduction="batchmean") for p in probs) / len(probs)  # type: ignore[return-value]


def augmix_finetune(
    model: nn.Module,
    images: torch.Tensor,
    labels: np.ndarray,
    augment: AugMix | None = _DEFAULT,
    config: AugMixConfig | None = None,
    random_state: int = 0,
) -> nn.Module:
    """Fine-tune a copy of ``model`` on clean images plus AugMix views of them.

    Parameters
    ----------
    model
        The trained classifier; it is copied, never changed.
    images, labels
        The training split (float32 ``N x C x H x W`` in [0, 1]; ``N`` integer labels).
    augment
        The AugMix settings (default :class:`AugMix` ()); ``None``: no augmentation, the
        same fine-tuning on clean images only (the control that shows what the views add).
    config
        Fine-tuning settings (default :class:`AugMixConfig` ()).
    random_state
        Seed of the batch order, the views and dropout.

    Returns
    -------
    nn.Module
        The fine-tuned copy, in eval mode.

    Raises
    ------
    InvalidInputError
        If images and labels differ in length or are empty.
    """
    seed = check_random_state("augmix_finetune", random_state)
    x_all = check_images(images)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(x_all) == 0 or len(x_all) != len(y_all):
        raise InvalidInputError(
            f"augmix_finetune needs one label per image; got {len(x_all)} images and "
            f"{len(y_all)} labels."
        )
    if augment is None and config is not None and config.jsd:
        raise ConfigError("The JSD loss needs AugMix views; pass an AugMix augment.")
    cfg = config or AugMixConfig()
    tuned = copy.deepcopy(model)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = check_random_generator("augmix_finetune", seed)
    opt = torch.optim.Adam(tuned.parameters(), lr=cfg.lr)
    steps = cfg.epochs * math.ceil(len(x_all) / cfg.batch_size)
    step = 0
    with progress_bar(total=steps, desc="augmix fine-tuning", unit="batch") as bar:
        for _ in range(cfg.epochs):
            order = torch.randperm(len(x_all), generator=gen)
            tuned.train()
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                x, y = x_all[idx], y_all[idx]
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
                if augment is None:
                    loss = F.cross_entropy(tuned(x), y)
                else:
                    views = [augment.view(x, rng) for _ in range(2 if cfg.jsd else 1)]
                    logits = tuned(torch.cat([x, *views]))
                    parts = list(torch.split(logits, len(x)))
                    if cfg.jsd:
                        jsd = _jensen_shannon(parts)
                        loss = F.cross_entropy(parts[0], y) + cfg.jsd_weight * jsd
                    else:
                        loss = F.cross_entropy(logits, y.repeat(len(parts)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                bar.update(1)
    return tuned.eval()
