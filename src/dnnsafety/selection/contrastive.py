"""The contrastive distance of ``closest-contrast`` and of the selectors' ``distance``
parameter: a pool input's distance to a root-cause cluster relative to its distance to the
nearest correctly classified input, so that look-alikes of inputs the model already gets right
rank behind inputs that resemble only the errors (see :mod:`dnnsafety.selection.closest`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from dnnsafety.exceptions import ConfigError
from dnnsafety.selection._nearest import Reference, group_min_distances
from dnnsafety.types import FeatureRows

DISTANCES = ("nearest", "contrastive")
"""The values of a selector's ``distance`` parameter."""


def contrastive_scores(dist: np.ndarray, d_ok: np.ndarray) -> np.ndarray:
    """``d / (d + d_ok)`` per pool input and cluster, 0.5 where both are 0.

    Parameters
    ----------
    dist
        ``P x K`` distances to the clusters' nearest members.
    d_ok
        ``(P,)`` distances to the nearest correctly classified reference input.

    Both must be finite and non-negative (the selectors' inputs are checked for that).
    """
    dist = np.asarray(dist, dtype=np.float64)
    total = dist + np.asarray(d_ok, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(total > 0, dist / np.where(total > 0, total, 1.0), 0.5)
    return score


class DistanceParameter:
    """Mixin of the selectors with a ``distance`` parameter (``"nearest"`` or
    ``"contrastive"``): a contrastive distance also needs the correctly classified inputs."""

    distance: str
    requires: ClassVar[frozenset[str]]

    @property
    def needs(self) -> frozenset[str]:
        """``requires``, plus ``"correct"`` with ``distance="contrastive"``."""
        return self.requires | {"correct"} if self.distance == "contrastive" else self.requires


def contrastive_to_correct(
    features: FeatureRows,
    dist: np.ndarray,
    correct: np.ndarray | None,
    batch_size: int | None,
    who: str,
    distance: str = "contrastive",
) -> np.ndarray:
    """``dist`` (``P x K``) as ``distance`` asks: unchanged for ``"nearest"``,
    :func:`contrastive_scores` against the distance of each of the ``P`` pool ``features`` to
    its nearest ``correct`` reference input for ``"contrastive"``.

    Raises
    ------
    ConfigError
        Another ``distance``.
    """
    if distance not in DISTANCES:
        raise ConfigError(
            f"The 'distance' parameter of {who} must be one of "
            f"{', '.join(DISTANCES)}. Got {distance!r}."
        )
    if distance == "nearest":
        return dist
    assert correct is not None  # Selector.select checked it: ``needs`` holds "correct"
    reference = Reference(correct, "ClusterSpace.correct")
    d_ok = group_min_distances(
        features,
        reference,
        np.zeros(reference.n, dtype=np.int64),
        1,
        batch_size=batch_size,
        what="PoolView.features",
    )[:, 0]
    return contrastive_scores(dist, d_ok)


__all__ = ["DISTANCES", "DistanceParameter", "contrastive_scores", "contrastive_to_correct"]
