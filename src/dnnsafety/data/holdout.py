"""A validation split held out of the training data, for datasets that come without one.

Training picks its best epoch on the validation split (``train.select_by = "val"``, the
default), and so does retraining. An image folder without ``val/`` or an ``.npz`` without
``x_val`` still trains: :func:`hold_out_validation` moves a stratified, seeded share of the
training images (``data.val_fraction``, 10% by default) into a ``val`` split.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from dnnsafety.data.dataset import SPLITS, Dataset, Split
from dnnsafety.exceptions import ConfigError

__all__ = [
    "check_val_fraction",
    "hold_out_validation",
    "validation_quotas",
]

logger = logging.getLogger(__name__)

_SEED_SALT = 0x76616C  # "val": keeps this draw independent of other draws from the same seed


def validation_quotas(counts: np.ndarray, fraction: float) -> np.ndarray:
    """How many images of each class go to validation.

    Parameters
    ----------
    counts
        Training images per class, shape ``(K,)``.
    fraction
        Share of all training images to hold out, in ``[0, 1)``.

    Returns
    -------
    numpy.ndarray
        Images per class, shape ``(K,)``. They add up to ``round(fraction * N)`` (at least 1
        when ``fraction > 0``), shared in proportion to the class sizes (largest remainders
        first); every class keeps at least one training image, so the total can be smaller.
    """
    counts = np.asarray(counts, dtype=np.int64)
    room = np.maximum(counts - 1, 0)
    if fraction <= 0 or not room.any():
        return np.zeros_like(counts)
    total = int(counts.sum())
    target = min(int(room.sum()), max(1, round(fraction * total)))
    exact = fraction * counts.astype(np.float64)
    quotas = np.minimum(np.floor(exact).astype(np.int64), room)
    # hand out what is left by largest remainder (ties: smaller class index), as room allows
    order = sorted(range(len(counts)), key=lambda k: (-(exact[k] - np.floor(exact[k])), k))
    while quotas.sum() < target:
        for k in order:
            if quotas.sum() >= target:
                break
            if quotas[k] < room[k]:
                quotas[k] += 1
    return quotas


def check_val_fraction(fraction: object) -> None:
    """Raise :class:`ConfigError` unless ``fraction`` is a number in ``[0, 1)``."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ConfigError(f"data.val_fraction must be a number in [0, 1). Got {fraction!r}.")
    if not 0.0 <= float(fraction) < 1.0:
        raise ConfigError(
            f"data.val_fraction must be in [0, 1) (e.g. 0.1 for 10%). Got {fraction!r}."
        )


def hold_out_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """``dataset`` with a ``val`` split drawn from its training images.

    Parameters
    ----------
    dataset
        A dataset without a ``val`` split (returned unchanged when it has one).
    fraction
        Share of the training images to move to ``val``, in ``[0, 1)``; 0 leaves the dataset
        as it is.
    seed
        Seeds the draw: the same seed, fraction and data give the same split.

    Returns
    -------
    Dataset
        The same dataset with ``train`` reduced and a new ``val`` split. Each class keeps its
        share (stratified; see :func:`validation_quotas`). Sample ids are unchanged, so a
        validation image of an image folder keeps its ``train/...`` path as id.

    Raises
    ------
    ConfigError
        When ``fraction`` is not in ``[0, 1)``.
    """
    check_val_fraction(fraction)
    if "val" in dataset.splits or fraction == 0:
        return dataset
    train = dataset["train"]
    labels = train.labels
    classes, counts = np.unique(labels, return_counts=True)
    quotas = validation_quotas(counts, float(fraction))
    if not quotas.sum():
        logger.warning(
            "%s has no validation split and too few training images to hold one out (at "
            "least one class needs two images); add a val split or set train.select_by = "
            "'train'.",
            dataset.name,
        )
        return dataset
    rng = np.random.default_rng([seed, _SEED_SALT])
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quotas, strict=True)
    ]
    val_index = np.sort(np.concatenate(picked))
    keep = np.ones(len(train), dtype=bool)
    keep[val_index] = False
    splits: dict[str, Split] = dict(dataset.splits)
    splits["train"] = train.subset(np.flatnonzero(keep))
    splits["val"] = dataclasses.replace(train.subset(val_index), name="val")
    ordered = {name: splits[name] for name in SPLITS if name in splits}
    logger.info(
        "No validation split in %s: holding out %d of %d training images (%.0f%%, stratified "
        "by class, seed %d) as validation; set data.val_fraction to change the share (0: none).",
        dataset.name,
        len(val_index),
        len(train),
        100 * float(fraction),
        seed,
    )
    return Dataset(name=dataset.name, class_names=dataset.class_names, splits=ordered)
