"""Pool images read lazily, a slice of rows at a time (METHOD.md §11).

Every class here is an :class:`~dnnsafety.types.LazyImages`: ``len(rows)``, ``rows.shape``
(``N x C x H x W``) and ``rows[a:b]``, which reads only those rows and returns them as a
float32 :class:`torch.Tensor` in ``[0, 1]``. None of them holds the pool in memory, and each
pickles as its file path (opened again where it is unpickled), so a Dask worker reads its own
chunks from the file instead of receiving the pixels over the network.

* :class:`ArrayImages` - an array, memmap or tensor already at hand (tests, small pools).
* :class:`NpzImages` - the ``x_pool`` array of an ``.npz`` archive. An uncompressed member
  (``numpy.savez``) is memory-mapped where it lies inside the zip file: reading rows costs
  only those rows. A compressed member (``numpy.savez_compressed``) cannot be mapped; each
  read decompresses the member from its start up to the rows asked for (memory stays at one
  slice, time grows with the row position) and a warning suggests converting the pool to a
  zarr store (``dnnsafety datasets --convert-pool``).
* :class:`FolderImages` - ``root/pool/**.png|jpg|bmp``: the files are listed (sorted, as the
  image-folder loader does; ids are the paths relative to ``root``) and decoded per slice.
* :class:`~dnnsafety.data.pool.store.StoreImages` - a zarr store (the pool format for large
  pools), in :mod:`dnnsafety.data.pool.store`.
"""

from __future__ import annotations

import logging
import struct
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnsafety.exceptions import InvalidInputError

log = logging.getLogger(__name__)

__all__ = ["ArrayImages", "FolderImages", "LazyImagesBase", "NpzImages", "to_unit_float"]


def to_unit_float(block: np.ndarray, what: str, start: int = 0) -> torch.Tensor:
    """``N x C x H x W`` uint8 (0..255) or float images as a float32 tensor in ``[0, 1]``.

    Raises
    ------
    InvalidInputError
        Another dtype, or float values outside ``[0, 1]`` / not finite (the first bad row is
        named, counted from ``start``).
    """
    if block.dtype == np.uint8:
        return torch.from_numpy(block.astype(np.float32) / np.float32(255.0))
    if not np.issubdtype(block.dtype, np.floating):
        raise InvalidInputError(
            f"{what} holds {block.dtype} images; use uint8 (0..255) or floats in [0, 1]."
        )
    out = np.array(block, dtype=np.float32, order="C")  # a writable copy for torch
    bad = ~(np.isfinite(out) & (out >= 0.0) & (out <= 1.0)).reshape(len(out), -1).all(axis=1)
    if bad.any():
        raise InvalidInputError(
            f"{what} row {start + int(np.flatnonzero(bad)[0])} holds values outside [0, 1] "
            "(or NaN); float images must lie in [0, 1]."
        )
    return torch.from_numpy(out)


class LazyImagesBase(ABC):
    """Shared part of the lazy image sources: slicing rules and the float conversion."""

    what: str = "pool images"

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, C, H, W)``."""

    @abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored (uint8 or float), ``N x C x H x W``."""

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise InvalidInputError(
                f"{type(self).__name__} reads contiguous row slices (rows[a:b]); got {index!r}."
            )
        start, stop, _ = index.indices(len(self))
        stop = max(start, stop)
        return to_unit_float(self._read(start, stop), self.what, start)

    def blocks(self, size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, rows[start : start + size])`` over the whole pool, in order."""
        for start in range(0, len(self), size):
            yield start, self[start : start + size]

    def take(self, rows: np.ndarray, window: int = 1024) -> torch.Tensor:
        """Rows at the given positions (any order), reading one slice of at most ``window``
        rows per group of nearby positions (a store chunk is decoded once, not per row)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = torch.empty((len(rows), *self.shape[1:]), dtype=torch.float32)
        order = np.argsort(rows, kind="stable")
        i = 0
        while i < len(order):
            first = int(rows[order[i]])
            j = i
            while j < len(order) and rows[order[j]] < first + window:
                j += 1
            last = int(rows[order[j - 1]])
            block = self[first : last + 1]
            for k in order[i:j]:
                out[k] = block[int(rows[k]) - first]
            i = j
        return out


class ArrayImages(LazyImagesBase):
    """Images already in an array, memmap or tensor (``N x C x H x W``), served by slice."""

    def __init__(self, images: Any, what: str = "pool images") -> None:
        if tuple(getattr(images, "shape", ())).__len__() != 4:
            raise InvalidInputError(
                f"{what} must be N x C x H x W; got shape {tuple(getattr(images, 'shape', ()))}."
            )
        self.images = images
        self.what = what

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, c, h, w = (int(v) for v in self.images.shape)
        return n, c, h, w

    def _read(self, start: int, stop: int) -> np.ndarray:
        block = self.images[start:stop]
        if isinstance(block, torch.Tensor):
            block = block.detach().cpu().numpy()
        return np.asarray(block)


def _npz_member(path: Path, key: str) -> tuple[zipfile.ZipInfo, int, tuple[int, ...], np.dtype]:
    """The zip entry of ``key`` and, for a stored (uncompressed) one, the file offset of its
    data, its shape and dtype (offset ``-1`` for a compressed entry)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{key}.npy")
            with zf.open(info) as member:
                version = np.lib.format.read_magic(member)
                shape, fortran, dtype = _read_header(member, version)
                header = member.tell() if info.compress_type == zipfile.ZIP_STORED else -1
    except KeyError:
        raise InvalidInputError(
            f"{path} has no {key!r} array; a pool archive holds x_pool (and optionally ids_pool)."
        ) from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise InvalidInputError(f"{path} is not a readable .npz archive ({exc}).") from None
    if fortran:
        raise InvalidInputError(f"{path}: {key!r} is stored in Fortran order; save it C-ordered.")
    if header < 0:
        return info, -1, shape, dtype
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
    if local[:4] != b"PK\x03\x04":
        raise InvalidInputError(f"{path} is a damaged zip archive (entry {key!r}).")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info, info.header_offset + 30 + name_len + extra_len + header, shape, dtype


def _read_header(fh: Any, version: tuple[int, int]) -> tuple[tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(v) for v in shape), bool(fortran), np.dtype(dtype)


class NpzImages(LazyImagesBase):
    """The ``key`` array (default ``x_pool``) of an ``.npz`` archive, read lazily.

    Parameters
    ----------
    path
        The archive.
    key
        The images' array name.
    layout
        ``"NCHW"``, ``"NHWC"`` or ``None`` (guessed from the shape as the ``.npz`` loader
        does; 3-D arrays are greyscale ``N x H x W``).

    Raises
    ------
    InvalidInputError
        No such array, not 3-D/4-D, or an undecidable channel axis.
    """

    def __init__(self, path: str | Path, key: str = "x_pool", layout: str | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.what = f"{self.path}: {key}"
        _, self.offset, self.stored_shape, self.dtype = _npz_member(self.path, key)
        self.compressed = self.offset < 0
        shape = self.stored_shape
        if len(shape) == 3:
            layout = "NCHW"
            shape = (shape[0], 1, shape[1], shape[2])
        elif len(shape) == 4 and layout is None:
            first, last = shape[1] in (1, 3), shape[3] in (1, 3)
            if first == last:
                raise InvalidInputError(
                    f"{self.what} has shape {shape}, whose channel axis cannot be told; pass "
                    "layout='NHWC' or 'NCHW'."
                )
            layout = "NCHW" if first else "NHWC"
        elif len(shape) != 4:
            raise InvalidInputError(f"{self.what} must be 3-D or 4-D; got shape {shape}.")
        self.layout = layout
        n, a, b, c = shape
        self._shape = (n, c, a, b) if layout == "NHWC" else (n, a, b, c)
        self._map: np.ndarray | None = None
        if self.compressed:
            warnings.warn(
                f"{self.path} is compressed (numpy.savez_compressed): every chunk read "
                "decompresses it from the start. Save it with numpy.savez, or convert the pool to "
                "a zarr store once (dnnsafety datasets --convert-pool).",
                UserWarning,
                stacklevel=2,
            )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_map": None}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self._shape

    def _rows(self, start: int, stop: int) -> np.ndarray:
        if not self.compressed:
            if self._map is None:
                self._map = np.memmap(
                    self.path,
                    dtype=self.dtype,
                    mode="r",
                    offset=self.offset,
                    shape=self.stored_shape,
                )
            return np.array(self._map[start:stop])
        row = int(np.prod(self.stored_shape[1:])) * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{self.key}.npy") as member:
            _read_header(member, np.lib.format.read_magic(member))
            skip = start * row
            while skip > 0:
                skip -= len(member.read(min(skip, 1 << 24)))
            data = member.read((stop - start) * row)
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, *self.stored_shape[1:])

    def blocks(self, size: int) -> Iterator[tuple[int, torch.Tensor]]:
        """In order; a compressed member is decompressed once, not once per block."""
        if not self.compressed:
            yield from super().blocks(size)
            return
        row = int(np.prod(self.stored_shape[1:])) * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as zf, zf.open(f"{self.key}.npy") as member:
            _read_header(member, np.lib.format.read_magic(member))
            for start in range(0, len(self), size):
                stop = min(start + size, len(self))
                data = member.read((stop - start) * row)
                raw = np.frombuffer(data, dtype=self.dtype).reshape(
                    stop - start, *self.stored_shape[1:]
                )
                yield start, to_unit_float(self._arrange(raw), self.what, start)

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._arrange(self._rows(start, stop))

    def _arrange(self, block: np.ndarray) -> np.ndarray:
        """Stored rows as ``N x C x H x W`` uint8 or float."""
        if block.ndim == 3:
            block = block[:, None]
        elif self.layout == "NHWC":
            block = block.transpose(0, 3, 1, 2)
        if block.dtype != np.uint8 and np.issubdtype(block.dtype, np.integer):
            block = block.astype(np.uint8)  # 0..255 integers, as the .npz loader takes them
        return block

    def ids(self) -> np.ndarray:
        """``ids_pool`` of the archive, or ``pool/<index>`` as the ``.npz`` loader names them."""
        key = "ids_" + self.key.removeprefix("x_")
        with np.load(self.path, allow_pickle=False) as data:
            if key in data.files:
                return np.asarray(data[key]).astype(str)
        split = self.key.removeprefix("x_")
        return np.array([f"{split}/{i}" for i in range(len(self))], dtype=str)


class FolderImages(LazyImagesBase):
    """The image files below ``root/pool`` (or another split folder), decoded per slice.

    Parameters
    ----------
    root
        The data folder (``root/<split>/...``, as for the image-folder loader).
    split
        The split folder to read (default ``pool``).
    image_size
        ``(height, width)`` every image is resized to; ``None``: the size of the first file,
        which every other file must have.
    channels
        1 or 3; ``None``: the mode of the first file (grey or RGB).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "pool",
        image_size: tuple[int, int] | None = None,
        channels: int | None = None,
    ) -> None:
        from dnnsafety.data.imagefolder._common import _Problems
        from dnnsafety.data.imagefolder.decode import _decode, _is_grey
        from dnnsafety.data.imagefolder.walk import _Walker

        self.root = Path(root)
        self.what = f"{self.root / split}"
        walker = _Walker(self.root, _Problems("raise"))
        if not (self.root / split).is_dir():
            raise InvalidInputError(f"{self.root / split} is not a folder of pool images.")
        files, _ = walker.collect_split(split)
        files = sorted(files, key=lambda f: f.rel)
        if not files:
            raise InvalidInputError(f"{self.root / split} holds no PNG, JPEG or BMP images.")
        self.rels = [f.rel for f in files]
        first = _decode(files[0].path, channels, image_size)
        if isinstance(first, str):
            raise InvalidInputError(f"{files[0].path} {first}.")
        self.channels = channels or (1 if _is_grey(first.mode) else 3)
        self.resize = image_size
        self.size_hw = tuple(image_size or first.pixels.shape[:2])
        h, w = self.size_hw
        self._shape = (len(files), self.channels, int(h), int(w))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self._shape

    def ids(self) -> np.ndarray:
        """Sample ids: the files' paths relative to ``root`` (sorted)."""
        return np.array(self.rels, dtype=str)

    def _read(self, start: int, stop: int) -> np.ndarray:
        from dnnsafety.data.imagefolder.decode import _decode

        out = np.empty((stop - start, *self._shape[1:]), dtype=np.uint8)
        for i, rel in enumerate(self.rels[start:stop]):
            decoded = _decode(self.root / rel, self.channels, self.resize)
            if isinstance(decoded, str):
                raise InvalidInputError(f"{self.root / rel} {decoded}.")
            pixels = decoded.pixels
            if pixels.shape[:2] != self.size_hw:
                raise InvalidInputError(
                    f"{self.root / rel} is {pixels.shape[0]}x{pixels.shape[1]} pixels but the "
                    f"first pool image is {self.size_hw[0]}x{self.size_hw[1]}; pass an image size "
                    "(--image-size) to resize them all."
                )
            out[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        return out
