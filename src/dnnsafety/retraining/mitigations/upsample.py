"""Upsampling with augmentation of the groups the training set under-represents
(METHOD.md §8), and the augmentation it draws its copies with.

``upsample-groups`` finds the groups as the bias analysis does (:mod:`dnnsafety.bias.groups`):
the features of the training inputs and of the unlabelled pool (deployment-like data) are
reduced and clustered together (PCA + k-means with a fixed, large ``k``), and a group is
under-represented when its representation ratio ``pool share / train share`` is at least
``min_ratio``. No label of the pool, no test input and no scenario is read. Each training
member of such a group is repeated until the group's share of the training plan matches its
pool share (at most ``max_factor`` times), and every extra copy is a randomly augmented view
(random translation by ``shift`` pixels, brightness and contrast jitter, optional horizontal
flip), so that upsampling does not just memorise the few originals (the data-augmentation
remedy of Idrissi et al., "Simple data balancing achieves competitive worst-group-accuracy",
CLeaR 2022, and the importance weighting of covariate-shift correction, Shimodaira 2000).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from dnnsafety._validation import check_float_param, check_int_param
from dnnsafety.bias.groups import cluster_features
from dnnsafety.exceptions import InvalidInputError
from dnnsafety.retraining.mitigation import (
    MITIGATIONS,
    Mitigation,
    MitigationContext,
    TrainingPlan,
)

__all__ = ["GroupUpsampling", "augment_copies", "representation_factors"]


def augment_copies(
    images: torch.Tensor,
    rng: np.random.Generator,
    shift: int = 2,
    jitter: float = 0.2,
    flip: bool = False,
) -> torch.Tensor:
    """Randomly augmented views of ``images`` (one per input).

    Parameters
    ----------
    images
        ``N x C x H x W`` float32 in ``[0, 1]``.
    rng
        Random generator (one draw per image: shift, brightness, contrast, flip).
    shift
        Largest translation in pixels (edge-replicated padding, then a random crop back).
    jitter
        Brightness offset and contrast factor drawn from ``[-jitter, jitter]`` and
        ``[1 - jitter, 1 + jitter]``.
    flip
        Also flip half of the images horizontally (only where that keeps the label).

    Returns
    -------
    torch.Tensor
        ``N x C x H x W`` float32 in ``[0, 1]``.
    """
    if images.ndim != 4:
        raise InvalidInputError(f"Images must be N x C x H x W; got {tuple(images.shape)}.")
    n, _, h, w = images.shape
    out = images.clone()
    if n == 0:
        return out
    if shift > 0:
        padded = F.pad(images, (shift, shift, shift, shift), mode="replicate")
        dx = rng.integers(0, 2 * shift + 1, n)
        dy = rng.integers(0, 2 * shift + 1, n)
        for i in range(n):
            out[i] = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    if jitter > 0:
        bright = torch.as_tensor(rng.uniform(-jitter, jitter, n), dtype=out.dtype)
        contrast = torch.as_tensor(rng.uniform(1 - jitter, 1 + jitter, n), dtype=out.dtype)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast.view(-1, 1, 1, 1) + mean + bright.view(-1, 1, 1, 1)
    if flip:
        flipped = torch.as_tensor(rng.random(n) < 0.5)
        out[flipped] = out[flipped].flip(-1)
    return out.clamp_(0.0, 1.0)


def representation_factors(
    train_groups: np.ndarray, pool_groups: np.ndarray, min_ratio: float, min_pool: int
) -> dict[int, float]:
    """Representation ratio ``pool share / train share`` of every group that reaches
    ``min_ratio`` with at least ``min_pool`` pool members and one training member
    (``group id -> ratio``; noise ``-1`` is never a group)."""
    n_train, n_pool = max(len(train_groups), 1), max(len(pool_groups), 1)
    out: dict[int, float] = {}
    for g in np.unique(np.r_[train_groups, pool_groups]):
        if g < 0:
            continue
        in_train = int((train_groups == g).sum())
        in_pool = int((pool_groups == g).sum())
        if in_train == 0 or in_pool < min_pool:
            continue
        ratio = (in_pool / n_pool) / (in_train / n_train)
        if ratio >= min_ratio:
            out[int(g)] = float(ratio)
    return out


@MITIGATIONS.register(
    "upsample-groups",
    help="upsample (augmented copies) the train groups the unlabelled pool shows to be rare",
)
class GroupUpsampling(Mitigation):
    """Repeat, as augmented copies, the training members of under-represented groups.

    Parameters
    ----------
    n_groups
        k of the k-means over the training and pool features.
    min_ratio
        Representation ratio (pool share / train share) from which a group is upsampled.
    min_pool
        Pool members a group needs to be upsampled.
    max_factor
        Largest upsampling factor (copies per member, the original included).
    shift, jitter, flip
        Augmentation of the copies (:func:`augment_copies`).

    Notes
    -----
    Requires ``train_features`` and ``pool_features`` (the unlabelled pool, in the same
    feature space); the plan's ``info`` lists the groups upsampled and their ratios.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"train_features", "pool_features"})
    _test_params: ClassVar[dict[str, Any]] = {"n_groups": 3, "min_pool": 1}

    def __init__(
        self,
        n_groups: int = 30,
        min_ratio: float = 2.0,
        min_pool: int = 10,
        max_factor: float = 10.0,
        shift: int = 2,
        jitter: float = 0.2,
        flip: bool = False,
    ) -> None:
        self.n_groups = n_groups
        self.min_ratio = min_ratio
        self.min_pool = min_pool
        self.max_factor = max_factor
        self.shift = shift
        self.jitter = jitter
        self.flip = flip

    def _plan(self, context: MitigationContext, random_state: int) -> TrainingPlan:
        k = check_int_param(self, "n_groups", self.n_groups, 1)
        min_ratio = check_float_param(self, "min_ratio", self.min_ratio, 1.0, 1e6)
        min_pool = check_int_param(self, "min_pool", self.min_pool, 1)
        max_factor = check_float_param(self, "max_factor", self.max_factor, 1.0, 1e3)
        shift = check_int_param(self, "shift", self.shift, 0)
        jitter = check_float_param(self, "jitter", self.jitter, 0.0, 1.0)
        assert context.train_features is not None and context.pool_features is not None
        train_f = np.asarray(context.train_features, dtype=np.float32)
        pool_f = np.asarray(context.pool_features, dtype=np.float32)
        if pool_f.ndim != 2 or pool_f.shape[1:] != train_f.shape[1:]:
            raise InvalidInputError(
                f"Pool features {pool_f.shape} are not in the space of the training features "
                f"{train_f.shape}."
            )
        labels_all, _ = cluster_features(
            np.concatenate([train_f, pool_f]),
            "pca",
            None,
            "kmeans-fixed",
            {"n_clusters": min(k, len(train_f) + len(pool_f))},
            random_state,
        )
        train_groups, pool_groups = labels_all[: len(train_f)], labels_all[len(train_f) :]
        ratios = representation_factors(train_groups, pool_groups, min_ratio, min_pool)
        rng = np.random.default_rng(random_state)
        extra: list[np.ndarray] = []
        for g, ratio in ratios.items():
            members = np.flatnonzero(train_groups == g)
            copies = round(min(ratio, max_factor)) - 1
            if copies > 0:
                extra.append(np.tile(members, copies))
        rows = np.concatenate(extra).astype(np.int64) if extra else np.zeros(0, np.int64)
        train = context.train
        labels = np.asarray(train.labels, dtype=np.int64)
        copies_t = augment_copies(
            train.images[torch.from_numpy(rows)], rng, shift, jitter, bool(self.flip)
        )
        return TrainingPlan(
            torch.cat([train.images, copies_t]),
            np.concatenate([labels, labels[rows]]),
            info={
                "upsampled_groups": len(ratios),
                "upsampled_members": int(sum((train_groups == g).sum() for g in ratios)),
                "extra_copies": len(rows),
                "ratios": [round(r, 2) for r in sorted(ratios.values(), reverse=True)],
            },
        )
