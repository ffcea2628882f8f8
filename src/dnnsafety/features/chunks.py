"""Features of one chunk of pool images, in the space the root-cause clusters live in.

The pool-scale path (METHOD.md §11) computes a chunk's features inside a task and reduces
them to distances at once, so no pool-sized feature matrix is ever written. A
:class:`ChunkFeatures` is a small picklable object (shipped once per worker) called as
``features(images, model)`` -> ``N x D`` float32:

* :class:`LayerHeatmaps` - LRP heatmaps (predicted class) at HUDD's selected layer, computed
  with the same batches as :func:`~dnnsafety.features.store.compute_heatmaps`, so the values
  equal those of the in-memory path;
* :class:`SourceEmbeddings` - a fitted black-box feature source (frozen backbone, ...), as
  SAFE's analysis space.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import nn

from dnnsafety.features.lrp.attribute import layer_relevance
from dnnsafety.features.lrp.layers import find_layers
from dnnsafety.features.lrp.rules import get_ruleset

__all__ = ["ChunkFeatures", "LayerHeatmaps", "SourceEmbeddings"]


class ChunkFeatures(ABC):
    """Features of a chunk of images; ``needs_model``: whether it uses the analysed model
    (each worker thread then passes its own copy, because LRP changes it while it runs)."""

    needs_model: bool = True

    @abstractmethod
    def __call__(self, images: torch.Tensor, model: nn.Module | None) -> np.ndarray:
        """``N x D`` float32 features of ``N x C x H x W`` images in ``[0, 1]``."""


class LayerHeatmaps(ChunkFeatures):
    """LRP heatmaps at one layer (HUDD's selected layer), flattened, explaining the predicted
    class (Bach et al. 2015; HUDD, Fahmy et al. 2021).

    Parameters
    ----------
    model
        The analysed classifier (only used here to find the layer).
    layer
        The layer name (``clusters.json`` ``layer``).
    sample
        One input (``1 x C x H x W``) to find the layer's shape.
    ruleset
        LRP rule set (``default`` or ``hudd``).
    batch_size
        Images per backward pass; equal to the analysis's ``batch_size`` (and a divisor of
        the chunk size) for results identical to the stored heatmaps.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        sample: torch.Tensor,
        ruleset: str = "default",
        batch_size: int = 64,
    ) -> None:
        self.layer = layer
        self.ruleset = ruleset
        self.batch_size = int(batch_size)
        self.plan = find_layers(model, sample, [layer])

    def __call__(self, images: torch.Tensor, model: nn.Module | None) -> np.ndarray:
        if model is None:
            raise ValueError("LayerHeatmaps needs the model.")
        rules = get_ruleset(self.ruleset)
        parts = []
        for lo in range(0, len(images), self.batch_size):
            result = layer_relevance(model, images[lo : lo + self.batch_size], self.plan, rules)
            maps = result.maps[self.layer].to(torch.float32)
            parts.append(maps.reshape(len(maps), -1).numpy())
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(parts)


class SourceEmbeddings(ChunkFeatures):
    """A fitted feature source's vectors (SAFE's space, before any reduction)."""

    needs_model = False

    def __init__(self, source: Any) -> None:
        self.source = source

    def __call__(self, images: torch.Tensor, model: nn.Module | None) -> np.ndarray:
        return np.asarray(self.source.transform(images, desc="pool features"), dtype=np.float32)
