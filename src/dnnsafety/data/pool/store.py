"""The chunked pool store: a zarr group holding a pool of any size (METHOD.md §11).

Layout of ``pool.zarr`` (zarr format 3)::

    images      N x C x H x W   uint8 (0..255), float16 or float32 (in [0, 1])
    ids         N               strings, unique
    labels      N               int64, optional: held-back labels (simulated pools, experiments)
    scenario    N               strings, optional: ground-truth scenario tags
    meta/<col>  N               optional per-image metadata (numbers or strings)
    attributes  format, version, n, class_names, chunk_rows, complete, rows_written

Every array is split along the rows into chunks of the same ``chunk_rows``, so writers that
each fill whole chunks (the simulator's tasks,
:func:`dnnsafety.data.pool.simulate.write_signs_pool`) can run in parallel processes
without touching each other's files. A store is readable once its ``complete`` attribute is
true; :func:`open_pool_store` refuses one that is not.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dnnsafety.data.pool.rows import LazyImagesBase
from dnnsafety.exceptions import ConfigError, InvalidInputError

log = logging.getLogger(__name__)

__all__ = [
    "STORE_DTYPES",
    "PoolStore",
    "PoolStoreWriter",
    "StoreImages",
    "convert_pool",
    "open_pool_store",
]

FORMAT = "dnnsafety-pool"
VERSION = 1
STORE_DTYPES = ("uint8", "float16", "float32")
"""How images may be stored: uint8 (4x smaller, quantised to 1/255) or floats."""


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise ConfigError(
            "Pool stores need the zarr package: `.venv/bin/pip install zarr`."
        ) from None
    return zarr


class StoreImages(LazyImagesBase):
    """The ``images`` array of a pool store, read by row slices (pickles as its path)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.what = f"{self.path}: images"
        self._array: Any = None
        array = self._open()
        n, c, h, w = (int(v) for v in array.shape)
        self._shape = (n, c, h, w)
        self.dtype = np.dtype(str(array.dtype))
        self.chunk_rows = int(array.chunks[0])

    def _open(self) -> Any:
        if self._array is None:
            self._array = _zarr().open_array(str(self.path / "images"), mode="r")
        return self._array

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self._shape

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._open()[start:stop])


@dataclass
class PoolStore:
    """An opened pool store (see the module docstring); nothing is read until asked for."""

    path: Path
    attrs: dict[str, Any]

    @property
    def images(self) -> StoreImages:
        """The images, lazily (:class:`StoreImages`)."""
        return StoreImages(self.path)

    def __len__(self) -> int:
        return int(self.attrs["n"])

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in self.attrs.get("class_names", []))

    def _group(self) -> Any:
        return _zarr().open_group(str(self.path), mode="r")

    def ids(self) -> np.ndarray:
        """``(N,)`` sample ids as a numpy ``str`` array."""
        return _as_str(self._group()["ids"][:])

    def labels(self) -> np.ndarray | None:
        """Held-back labels (``None`` when the store has none)."""
        group = self._group()
        return np.asarray(group["labels"][:], dtype=np.int64) if "labels" in group else None

    def scenarios(self) -> np.ndarray | None:
        group = self._group()
        return _as_str(group["scenario"][:]) if "scenario" in group else None

    def metadata(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Per-image metadata columns (all by default) as a frame of ``N`` rows."""
        group = self._group()
        if "meta" not in group:
            return pd.DataFrame(index=range(len(self)))
        meta = group["meta"]
        names = sorted(meta.array_keys()) if columns is None else columns
        data = {}
        for name in names:
            values = np.asarray(meta[name][:])
            data[name] = _as_str(values) if values.dtype.kind in "OUT" else values
        return pd.DataFrame(data)


def _as_str(values: Any) -> np.ndarray:
    """Strings read from zarr (numpy ``StringDType``) as a plain ``str`` array."""
    return np.asarray(np.asarray(values, dtype=object).tolist(), dtype=str)


def open_pool_store(path: str | Path) -> PoolStore:
    """Open a complete pool store for reading.

    Raises
    ------
    InvalidInputError
        Not a pool store, another format version, or an unfinished write.
    """
    path = Path(path)
    if not path.is_dir():
        raise InvalidInputError(
            f"{path} is not a pool store (a folder written by `dnnsafety datasets --write-pool` "
            "or PoolStoreWriter)."
        )
    try:
        attrs = dict(_zarr().open_group(str(path), mode="r").attrs)
    except Exception as exc:  # zarr raises several kinds for a folder that is not a store
        raise InvalidInputError(f"{path} is not a readable zarr store ({exc}).") from None
    if attrs.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is a zarr store but not a dnnsafety pool store.")
    if attrs.get("version") != VERSION:
        raise InvalidInputError(
            f"{path} is a pool store of version {attrs.get('version')}; this version reads "
            f"version {VERSION}. Write it again."
        )
    if not attrs.get("complete"):
        raise InvalidInputError(
            f"{path} is incomplete ({attrs.get('rows_written', 0)} of {attrs.get('n')} rows): "
            "its writing was interrupted. Write it again."
        )
    return PoolStore(path, attrs)


class PoolStoreWriter:
    """Creates a pool store and fills it chunk by chunk.

    Parameters
    ----------
    path
        The store folder to create (``.zarr`` by convention).
    n
        Number of images.
    image_shape
        ``(C, H, W)``.
    dtype
        ``"uint8"`` (default), ``"float16"`` or ``"float32"``.
    chunk_rows
        Rows per chunk of every array. Parallel writers must each write whole chunks.
    class_names
        The classes the labels index (recorded in the attributes).
    labels, scenarios
        Whether the store holds held-back labels / scenario tags.
    meta
        Metadata columns and their dtypes (``"float64"``, ``"int64"``, ``"str"``).
    overwrite
        Replace an existing folder (otherwise an error).

    Raises
    ------
    ConfigError
        Bad arguments, or ``path`` exists and ``overwrite`` is false.
    """

    def __init__(
        self,
        path: str | Path,
        n: int,
        image_shape: tuple[int, int, int],
        *,
        dtype: str = "uint8",
        chunk_rows: int = 4096,
        class_names: tuple[str, ...] = (),
        labels: bool = False,
        scenarios: bool = False,
        meta: dict[str, str] | None = None,
        overwrite: bool = False,
    ) -> None:
        zarr = _zarr()
        if dtype not in STORE_DTYPES:
            raise ConfigError(
                f"Pool images are stored as {', '.join(STORE_DTYPES)}; got {dtype!r}."
            )
        if n < 1 or chunk_rows < 1:
            raise ConfigError(
                f"A pool store needs n >= 1 and chunk_rows >= 1; got {n}, {chunk_rows}."
            )
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise ConfigError(f"{self.path} exists; remove it or pass overwrite.")
            shutil.rmtree(self.path)
        self.n, self.chunk_rows, self.dtype = int(n), int(chunk_rows), dtype
        group = zarr.open_group(str(self.path), mode="w")
        rows = (self.chunk_rows,)
        group.create_array(
            "images",
            shape=(self.n, *image_shape),
            chunks=(self.chunk_rows, *image_shape),
            dtype=dtype,
        )
        group.create_array("ids", shape=(self.n,), chunks=rows, dtype=str)
        if labels:
            group.create_array("labels", shape=(self.n,), chunks=rows, dtype="int64", fill_value=-1)
        if scenarios:
            group.create_array("scenario", shape=(self.n,), chunks=rows, dtype=str)
        if meta:
            sub = group.create_group("meta")
            for name, kind in meta.items():
                sub.create_array(name, shape=(self.n,), chunks=rows, dtype=kind)
        group.attrs.update(
            {
                "format": FORMAT,
                "version": VERSION,
                "n": self.n,
                "image_shape": list(image_shape),
                "dtype": dtype,
                "chunk_rows": self.chunk_rows,
                "class_names": list(class_names),
                "complete": False,
                "rows_written": 0,
            }
        )

    def write(
        self,
        start: int,
        images: torch.Tensor | np.ndarray,
        ids: Any,
        labels: np.ndarray | None = None,
        scenarios: np.ndarray | None = None,
        meta: pd.DataFrame | None = None,
    ) -> None:
        """Write rows ``start : start + len(images)`` (floats in ``[0, 1]``).

        Safe to call from several processes at once when each call covers whole chunks
        (``start`` a multiple of ``chunk_rows``; the last call may end at ``n``).
        """
        write_rows(self.path, start, images, ids, labels, scenarios, meta)

    def finish(self) -> PoolStore:
        """Mark the store complete and return it opened."""
        group = _zarr().open_group(str(self.path), mode="r+")
        group.attrs.update({"complete": True, "rows_written": self.n})
        return open_pool_store(self.path)


def encode_images(images: torch.Tensor | np.ndarray, dtype: str) -> np.ndarray:
    """Float images in ``[0, 1]`` as stored: uint8 ``round(255 x)`` or float16/float32."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if dtype == "uint8":
        return np.clip(np.rint(x.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return x.astype(dtype)


def write_rows(
    path: str | Path,
    start: int,
    images: torch.Tensor | np.ndarray,
    ids: Any,
    labels: np.ndarray | None = None,
    scenarios: np.ndarray | None = None,
    meta: pd.DataFrame | None = None,
) -> None:
    """Write rows into an existing store (what :meth:`PoolStoreWriter.write` does; a plain
    function so that Dask tasks can call it with just the path).

    Raises
    ------
    InvalidInputError
        Rows outside the store, or a block whose length differs from the images'.
    """
    group = _zarr().open_group(str(path), mode="r+")
    stop = start + len(images)
    if start < 0 or stop > int(group.attrs["n"]):
        raise InvalidInputError(f"Rows {start}:{stop} lie outside the store of {group.attrs['n']}.")
    arr = group["images"]
    arr[start:stop] = encode_images(images, str(arr.dtype))
    group["ids"][start:stop] = np.asarray(ids).astype(str)
    if labels is not None:
        group["labels"][start:stop] = np.asarray(labels, dtype=np.int64)
    if scenarios is not None:
        group["scenario"][start:stop] = np.asarray(scenarios).astype(str)
    if meta is not None and len(meta.columns):
        sub = group["meta"]
        for name in meta.columns:
            values = meta[name].to_numpy()
            sub[name][start:stop] = values.astype(str) if values.dtype == object else values


def convert_pool(
    images: LazyImagesBase,
    ids: Any,
    path: str | Path,
    *,
    dtype: str = "uint8",
    chunk_rows: int = 4096,
    class_names: tuple[str, ...] = (),
    overwrite: bool = False,
) -> PoolStore:
    """Copy a lazily read pool (``.npz``, image folder) into a new pool store, one block of
    ``chunk_rows`` at a time (memory: one block).

    Raises
    ------
    ConfigError
        ``path`` exists (without ``overwrite``) or bad arguments.
    InvalidInputError
        Unreadable images.
    """
    ids = np.asarray(ids).astype(str)
    n, c, h, w = images.shape
    writer = PoolStoreWriter(
        path,
        n,
        (c, h, w),
        dtype=dtype,
        chunk_rows=chunk_rows,
        class_names=class_names,
        overwrite=overwrite,
    )
    for start, block in images.blocks(chunk_rows):
        writer.write(start, block, ids[start : start + len(block)])
    return writer.finish()
