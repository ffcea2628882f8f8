"""Decoding image files to uint8 pixels, in parallel, with one colour mode and size."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from dnnsafety.data.imagefolder._common import _Problems
from dnnsafety.data.imagefolder.walk import _File, _Walker
from dnnsafety.exceptions import InvalidInputError

logger = logging.getLogger(__name__)


_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
_PROGRESS_EVERY = 64


def _is_grey(mode: str) -> bool:
    return mode in _GREY_MODES or mode.startswith("I;")


@dataclass(frozen=True)
class _Decoded:
    pixels: np.ndarray  # uint8, H x W (greyscale) or H x W x 3 (RGB)
    mode: str  # the file's own PIL mode
    size: tuple[int, int]  # the file's own (height, width)


def _convert(img: Image.Image, target: Literal["L", "RGB"]) -> Image.Image:
    """``img`` as 8-bit greyscale or RGB (16-bit grey is rescaled, alpha is dropped)."""
    mode = img.mode
    if mode == "F" or mode == "I" or mode.startswith("I;"):
        values = np.asarray(img, dtype=np.float64)
        if mode != "F":
            values = values / 257.0  # 16-bit range 0..65535 -> 0..255
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        img = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    elif mode in ("P", "PA"):
        img = img.convert("RGBA")
    return img if img.mode == target else img.convert(target)


def _upright(img: Image.Image, path: Path) -> Image.Image:
    """``img`` turned the way image viewers show it (its EXIF orientation tag applied).

    Phone cameras store the sensor's pixels as they are and record the rotation in the tag;
    ignoring it would hand the model a turned (and, when resized, squashed) picture. A tag
    that cannot be applied is ignored with a debug message: the pixels are still usable.
    """
    try:
        turned = ImageOps.exif_transpose(img)
    except Exception as exc:  # a damaged EXIF block must not make the image unreadable
        logger.debug("Ignoring the EXIF orientation of %s (%s)", path, exc)
        return img
    return img if turned is None else turned


def _decode(path: Path, channels: int | None, size_hw: tuple[int, int] | None) -> _Decoded | str:
    """Decode one file fully, or say (as text) why it cannot be used."""
    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        with Image.open(path) as opened:
            opened.load()
            img = _upright(opened, path)
            mode = img.mode
            width, height = img.size
            if channels is None:
                target: Literal["L", "RGB"] = "L" if _is_grey(mode) else "RGB"
            else:
                target = "L" if channels == 1 else "RGB"
            out = _convert(img, target)
            if size_hw is not None and out.size != (size_hw[1], size_hw[0]):
                out = out.resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(out, dtype=np.uint8)
    except MemoryError:
        raise
    except Exception as exc:  # untrusted file: PIL raises many kinds of errors on bad data
        return f"cannot be read as an image ({type(exc).__name__}: {exc})"
    if width < 1 or height < 1:
        return f"has no pixels (size {width}x{height})"
    return _Decoded(pixels, mode, (height, width))


def _decode_all(
    files: list[_File],
    channels: int | None,
    size_hw: tuple[int, int] | None,
    walker: _Walker,
    problems: _Problems,
    progress: Callable[[int], None] | None,
    num_workers: int | None,
) -> list[_Decoded | None]:
    """Decode ``files`` in parallel; ``None`` marks a skipped file."""
    workers = num_workers or min(8, os.cpu_count() or 1)
    workers = max(1, min(workers, len(files)))
    out: list[_Decoded | None] = []
    first_of_kind: dict[bool, tuple[str, str]] = {}  # grey? -> (file, mode)
    first_of_size: dict[tuple[int, int], str] = {}
    pending = 0
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dnnsafety-load")
    try:
        results = executor.map(lambda f: _decode(f.path, channels, size_hw), files)
        for file, result in zip(files, results, strict=True):
            pending += 1
            if progress is not None and pending >= _PROGRESS_EVERY:
                progress(pending)
                pending = 0
            if isinstance(result, str):
                problems.report(
                    f"Image {walker.show(file.rel)} {result}",
                    "Replace or delete the file (or load with on_error='skip').",
                )
                out.append(None)
                continue
            if channels is None:
                grey = _is_grey(result.mode)
                first_of_kind.setdefault(grey, (walker.show(file.rel), result.mode))
                if len(first_of_kind) > 1:
                    g_file, g_mode = first_of_kind[True]
                    c_file, c_mode = first_of_kind[False]
                    raise InvalidInputError(
                        f"The images mix greyscale and colour: {g_file} is greyscale (mode "
                        f"{g_mode}) and {c_file} is colour (mode {c_mode}). Pass channels=1 "
                        "to load all as greyscale or channels=3 to load all as RGB."
                    )
            if size_hw is None:
                first_of_size.setdefault(result.size, walker.show(file.rel))
                if len(first_of_size) > 1:
                    (s1, f1), (s2, f2) = list(first_of_size.items())[:2]
                    raise InvalidInputError(
                        f"The images have different sizes: {f1} is {s1[0]}x{s1[1]} and {f2} is "
                        f"{s2[0]}x{s2[1]} (height x width). Pass image_size (e.g. "
                        f"image_size={s1[0]} or ({s1[0]}, {s1[1]})) to resize them all."
                    )
            out.append(result)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    if progress is not None and pending:
        progress(pending)
    return out
