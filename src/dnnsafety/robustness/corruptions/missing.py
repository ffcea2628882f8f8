"""Missing data: dropped pixels, rows and columns, patches and channels, at rising rates.

Each corruption here removes a share ``rate`` of the image's values in expectation and puts
:data:`FILL` (0: a dead sensor reads black) in their place. Severity ``s`` means the rate
``RATES[s - 1]``; :func:`drop` takes any rate in [0, 1] directly, for curves of accuracy
against the missing rate.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dnnsafety._validation import check_float_param, check_random_generator
from dnnsafety.exceptions import ConfigError
from dnnsafety.robustness.corruptions.base import Params, check_images, corruption

__all__ = ["FILL", "MISSING", "PATCH_GRID", "RATES", "drop", "missing_mask"]

RATES = (0.1, 0.2, 0.3, 0.4, 0.5)
"""Missing rate per severity."""
FILL = 0.0
PATCH_GRID = 4
"""Patches: the image is cut into a PATCH_GRID x PATCH_GRID grid of cells."""
MISSING = ("dropped_pixels", "dropped_lines", "dropped_patches", "dropped_channel")


def missing_mask(
    kind: str, shape: tuple[int, int, int, int], rate: float, rng: np.random.Generator
) -> torch.Tensor:
    """A boolean mask of ``shape`` (``N x C x H x W``), True where a value is missing.

    Parameters
    ----------
    kind
        One of :data:`MISSING`: ``dropped_pixels`` (each pixel, all channels, with
        probability ``rate``), ``dropped_lines`` (each row and each column with probability
        ``1 - sqrt(1 - rate)``, so that a share ``rate`` of pixels is hit), ``dropped_patches``
        (each cell of a :data:`PATCH_GRID` grid with probability ``rate``) or
        ``dropped_channel`` (each channel of each image with probability ``rate``).
    rate
        Expected share of missing values, in [0, 1].
    """
    n, c, h, w = shape
    if kind == "dropped_pixels":
        return torch.as_tensor(rng.random((n, 1, h, w)) < rate).expand(n, c, h, w)
    if kind == "dropped_lines":
        p = 1.0 - math.sqrt(1.0 - rate)
        rows = torch.as_tensor(rng.random((n, 1, h, 1)) < p)
        cols = torch.as_tensor(rng.random((n, 1, 1, w)) < p)
        return (rows | cols).expand(n, c, h, w)
    if kind == "dropped_patches":
        cells = torch.as_tensor(rng.random((n, 1, PATCH_GRID, PATCH_GRID)) < rate)
        ys = torch.clamp(torch.arange(h) * PATCH_GRID // h, max=PATCH_GRID - 1)
        xs = torch.clamp(torch.arange(w) * PATCH_GRID // w, max=PATCH_GRID - 1)
        return cells[:, :, ys][:, :, :, xs].expand(n, c, h, w)
    if kind == "dropped_channel":
        return torch.as_tensor(rng.random((n, c, 1, 1)) < rate).expand(n, c, h, w)
    raise ConfigError(f"Unknown missing-data kind {kind!r}. Choose one of: {', '.join(MISSING)}.")


def drop(
    images: torch.Tensor,
    kind: str,
    rate: float,
    random_state: int | np.random.Generator | None = 0,
    fill: float = FILL,
) -> torch.Tensor:
    """A copy of ``images`` with a share ``rate`` of its values missing (set to ``fill``).

    Parameters
    ----------
    images
        Float32 ``N x C x H x W`` in [0, 1].
    kind
        One of :data:`MISSING` (see :func:`missing_mask`).
    rate
        Expected share of missing values, in [0, 1].
    random_state
        Seed or generator.
    fill
        The value of a missing entry.

    Raises
    ------
    InvalidInputError
        If ``images`` is not such a batch.
    ConfigError
        If ``kind`` is unknown or ``rate`` / ``fill`` lie outside [0, 1].
    """
    x = check_images(images)
    rate = check_float_param("drop", "rate", rate, 0.0, 1.0)
    fill = check_float_param("drop", "fill", fill, 0.0, 1.0)
    rng = check_random_generator("drop", random_state)
    mask = missing_mask(kind, tuple(x.shape), rate, rng)  # type: ignore[arg-type]
    return torch.where(mask, torch.full_like(x, fill), x)


def _register(kind: str, help: str) -> None:
    def sample(
        x: torch.Tensor, severity: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, Params]:
        mask = missing_mask(kind, tuple(x.shape), RATES[severity - 1], rng)  # type: ignore[arg-type]
        return torch.where(mask, torch.full_like(x, FILL), x), {}

    sample.__name__ = kind
    corruption(kind, "missing", help=help)(sample)


_register("dropped_pixels", "Missing pixels (all channels), at rate 0.1-0.5")
_register("dropped_lines", "Missing rows and columns, at rate 0.1-0.5")
_register("dropped_patches", "Missing square patches (4x4 grid cells), at rate 0.1-0.5")
_register("dropped_channel", "Missing channels (a grey image goes black), at rate 0.1-0.5")
