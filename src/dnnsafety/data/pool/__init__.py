"""Unlabeled pools larger than memory: lazy image rows, the zarr pool store, simulated pools.

:func:`open_pool` opens any supported pool format as a :class:`PoolSource` whose ``images``
are read a slice at a time (see :mod:`dnnsafety.data.pool.rows`):

* a pool store (``pool.zarr``, :mod:`dnnsafety.data.pool.store`): the format for large pools;
* an ``.npz`` archive (its ``x_pool`` and ``ids_pool``);
* an image folder: ``root`` holding ``pool/`` (or the pool folder itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnsafety.data.pool.rows import ArrayImages, FolderImages, LazyImagesBase, NpzImages
from dnnsafety.data.pool.simulate import write_signs_pool
from dnnsafety.data.pool.store import (
    STORE_DTYPES,
    PoolStore,
    PoolStoreWriter,
    StoreImages,
    convert_pool,
    open_pool_store,
)
from dnnsafety.exceptions import InvalidInputError

__all__ = [
    "STORE_DTYPES",
    "ArrayImages",
    "FolderImages",
    "LazyImagesBase",
    "NpzImages",
    "PoolSource",
    "PoolStore",
    "PoolStoreWriter",
    "StoreImages",
    "convert_pool",
    "open_pool",
    "open_pool_store",
    "write_signs_pool",
]


@dataclass(frozen=True)
class PoolSource:
    """A pool opened lazily: its images (row slices), ids and, for stores, held-back labels.

    Attributes
    ----------
    path
        Where it was opened from.
    images
        ``N x C x H x W`` rows, read on demand (float32 tensors in [0, 1]).
    ids
        ``(N,)`` sample ids (str), unique.
    labels
        Held-back labels when the pool carries them (simulated stores), else ``None``.
    class_names
        Class names recorded with the pool (empty when unknown).
    """

    path: Path
    images: LazyImagesBase
    ids: np.ndarray
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


def open_pool(
    path: str | Path,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> PoolSource:
    """Open a pool store, ``.npz`` archive or image folder without reading its images.

    Parameters
    ----------
    path
        ``pool.zarr`` (a store), ``data.npz`` or an image folder (``root`` with ``pool/``, or
        the pool folder itself).
    image_size, channels
        Image folders only: resize to ``(height, width)``; convert to 1 or 3 channels.

    Raises
    ------
    InvalidInputError
        A path that is none of these, an unreadable file, or duplicate ids.
    """
    p = Path(path)
    if p.is_dir() and (p / "zarr.json").is_file():
        store = open_pool_store(p)
        source = PoolSource(p, store.images, store.ids(), store.labels(), store.class_names)
    elif p.suffix == ".npz":
        images = NpzImages(p)
        source = PoolSource(p, images, images.ids())
    elif p.is_dir():
        folder = (
            FolderImages(p, "pool", image_size, channels)
            if (p / "pool").is_dir()
            else (FolderImages(p.parent, p.name, image_size, channels))
        )
        source = PoolSource(p, folder, folder.ids())
    else:
        raise InvalidInputError(
            f"{p} is not a pool: pass a pool store (.zarr folder), an .npz archive with x_pool, "
            "or an image folder."
        )
    if len(source.ids) != len(source.images):
        raise InvalidInputError(
            f"{p} has {len(source.ids)} ids for {len(source.images)} images; give one id per image."
        )
    if len(np.unique(source.ids)) != len(source.ids):
        raise InvalidInputError(f"{p} repeats sample ids; ids must be unique.")
    return source
