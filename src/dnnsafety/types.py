"""Types shared by the stages: row sources, image batches, sample ids and JSON values.

Stage packages type their public functions with these names instead of ``Any`` where the
shape of a value is known; the package ships ``py.typed`` so that type checkers read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch stays unimported for modules that only need the other names
    import torch

__all__ = ["FeatureRows", "ImageRows", "JSONValue", "LazyImages", "SampleIds"]


@runtime_checkable
class FeatureRows(Protocol):
    """Anything with a length whose row slices ``x[a:b]`` give arrays (ndarray, memmap).

    Named ``FeatureRows`` rather than ``FeatureSource`` to keep it apart from
    :class:`dnnsafety.features.sources.FeatureSource` (images -> features).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> Any: ...


@runtime_checkable
class LazyImages(Protocol):
    """Images read a row slice at a time: ``rows[a:b]`` is an ``N x C x H x W`` float32
    tensor in ``[0, 1]``; only those rows are read (pool stores, ``.npz``, image folders:
    :mod:`dnnsafety.data.pool`)."""

    @property
    def shape(self) -> tuple[int, int, int, int]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> torch.Tensor: ...


ImageRows: TypeAlias = "torch.Tensor | np.ndarray | LazyImages"
"""Images, ``N x C x H x W`` floats in ``[0, 1]``: a tensor, an array, or rows read lazily."""

SampleIds: TypeAlias = np.ndarray | list[str]
"""Sample ids (strings), one per row, in row order."""

JSONValue: TypeAlias = Any
"""A value that :func:`json.dumps` accepts (``params_`` entries, artifact fields).

Kept as ``Any``: a recursive alias would make every reader narrow values by hand.
"""
