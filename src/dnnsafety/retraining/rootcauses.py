"""What a generation strategy knows of the root-cause clusters (the ``clusters`` context field).

:class:`RootCauses` gathers, for every root-cause cluster, its metadata rules
(:mod:`dnnsafety.explain.rules`) and, in the analysis feature space, its medoid and radius;
plus the function that maps images into that space and the dataset's simulator
(:class:`~dnnsafety.sim.Simulator`). The orchestrator builds it from a run folder; tests build
it by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dnnsafety.explain.rules import Rule
from dnnsafety.sim.simulator import Simulator

__all__ = ["FeatureFunction", "RootCause", "RootCauses"]

FeatureFunction = Callable[[torch.Tensor], np.ndarray]
"""``images (N x C x H x W) -> (N, D)`` features in the analysis feature space."""


@dataclass(frozen=True, eq=False)
class RootCause:
    """One root-cause cluster.

    Attributes
    ----------
    id
        Cluster id (as in ``clusters.json``).
    size
        Test errors in the cluster.
    rules
        Its metadata rules, best first (may be empty).
    medoid
        ``(D,)`` features of its medoid in the analysis space, or ``None``.
    radius
        Median distance of a member to the medoid (membership ``d / radius <= 1``: as near as
        the nearer half of the members), or ``None``.
    members
        The members' metadata (one row per member; the simulator's parameter columns), or
        ``None``: generation draws the parameters a rule leaves free from the members the
        rule covers.
    """

    id: int
    size: int
    rules: tuple[Rule, ...] = ()
    medoid: np.ndarray | None = None
    radius: float | None = None
    members: pd.DataFrame | None = None

    def membership(self, features: np.ndarray) -> np.ndarray:
        """``(N,)`` distance of each feature row to the medoid over the radius (SEDE's
        membership: ``<= 1`` inside the cluster).

        Raises
        ------
        ValueError
            Without a medoid and a positive radius.
        """
        if self.medoid is None or not self.radius:
            raise ValueError(f"root cause {self.id} has no medoid and radius")
        rows = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        return np.asarray(np.linalg.norm(rows - self.medoid.reshape(1, -1), axis=1) / self.radius)


@dataclass(frozen=True, eq=False)
class RootCauses:
    """The root-cause clusters, the analysis feature space and the simulator.

    Attributes
    ----------
    clusters
        One :class:`RootCause` per cluster.
    simulator
        The dataset's simulator, or ``None`` (no images can be generated).
    features
        Features of new images in the analysis space (:data:`FeatureFunction`), or ``None``.
    """

    clusters: tuple[RootCause, ...]
    simulator: Simulator | None = None
    features: FeatureFunction | None = None
