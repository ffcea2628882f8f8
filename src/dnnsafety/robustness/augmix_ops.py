"""AugMix's augmentation operations, batched in torch with one level per image.

The operations of AugMix (Hendrycks et al., "AugMix: A Simple Data Processing Method to Improve
Robustness and Uncertainty", ICLR 2020, and its reference code): ``autocontrast``, ``equalize``,
``posterize``, ``solarize``, ``rotate``, ``shear_x``, ``shear_y``, ``translate_x``,
``translate_y``. The paper leaves out contrast, brightness, colour, sharpness, noise and blur
because they overlap the test corruptions of ImageNet-C; so does :data:`OPERATIONS`.

Every operation has the signature ``op(images, levels, rng) -> images``: ``images`` float32
``N x C x H x W`` in [0, 1], ``levels`` ``(N,)`` floats in ``[0, 10]`` (the paper draws
``U(0.1, severity)``), ``rng`` a :class:`numpy.random.Generator` (the random sign of a
geometric op). Magnitudes follow the reference code: posterize drops ``int(level * 4 / 10)``
bits, solarize inverts pixels at or above ``256 - int(level * 256 / 10)`` (in 8-bit units),
rotate turns by ``int(level * 30 / 10)`` degrees, shear by ``level * 0.3 / 10``, translate by
``int(level * (size / 3) / 10)`` pixels. The colour operations work on the 8-bit values as
PIL's ``ImageOps`` do (tested against it); the geometric ones resample bilinearly about the
image centre and fill with 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["OPERATIONS", "Operation", "sample_levels"]

Operation = Callable[[torch.Tensor, np.ndarray, np.random.Generator], torch.Tensor]


def _u8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 255.0).to(torch.int64)


def autocontrast(x: torch.Tensor, levels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Stretch every channel to the full range (PIL ``ImageOps.autocontrast``); no level."""
    v = _u8(x).float()
    lo = v.amin(dim=(2, 3), keepdim=True)
    hi = v.amax(dim=(2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp_min(1.0)
    out = torch.floor(((v - lo) * scale).clamp(0, 255)) / 255.0
    return torch.where(hi > lo, out, x)


def equalize(x: torch.Tensor, levels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Histogram equalisation per channel (PIL ``ImageOps.equalize``); no level."""
    n, c, h, w = x.shape
    v = _u8(x).reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.int64).scatter_add_(1, v, torch.ones_like(v))
    last = hist.gather(1, (v.amax(dim=1, keepdim=True)))  # count of the highest value present
    step = (h * w - last) // 255
    cum = torch.cumsum(hist, dim=1) - hist  # pixels below each value
    lut = ((cum + step // 2) // step.clamp_min(1)).clamp(0, 255)
    out = lut.gather(1, v).float() / 255.0
    keep = (step == 0).expand_as(out)  # one value only, or too few pixels: PIL leaves it
    return torch.where(keep, x.reshape(n * c, -1), out).reshape(n, c, h, w)


def posterize(x: torch.Tensor, levels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Keep the ``4 - int(level * 4 / 10)`` highest bits of every 8-bit value."""
    drop = 4 + torch.as_tensor((levels * 4 / 10).astype(np.int64))  # bits cleared: 4 to 8
    mask = (255 - (2**drop - 1)).view(-1, 1, 1, 1)
    return (_u8(x) & mask).float() / 255.0


def solarize(x: torch.Tensor, levels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Invert the 8-bit values at or above ``256 - int(level * 256 / 10)``."""
    threshold = 256 - torch.as_tensor((levels * 256 / 10).astype(np.int64)).view(-1, 1, 1, 1)
    v = _u8(x)
    return torch.where(v >= threshold, 255 - v, v).float() / 255.0


def _affine(x: torch.Tensor, theta: np.ndarray) -> torch.Tensor:
    """Resample ``x`` at ``theta @ (u, v, 1)`` (normalised coordinates), bilinear, fill 0."""
    t = torch.as_tensor(theta, dtype=torch.float32)
    grid = F.affine_grid(t, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _signs(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def rotate(x: torch.Tensor, levels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Rotate by ``int(level * 3)`` degrees, either way, about the centre."""
    angle = np.radians((levels * 30 / 10).astype(np.int64) * _signs(len(x), rng))
    cos, sin = np.cos(angle), np.sin(angle)
    theta = np.zeros((len(x), 2, 3))
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    return _affine(x, theta)


def _shear(axis: int) -> Operation:
    def op(x: torch.Tensor, levels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        theta = np.zeros((len(x), 2, 3))
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, axis, 1 - axis] = levels * 0.3 / 10 * _signs(len(x), rng)
        return _affine(x, theta)

    op.__doc__ = f"Shear along {'xy'[axis]} by ``level * 0.03``, either way, about the centre."
    return op


def _translate(axis: int) -> Operation:
    def op(x: torch.Tensor, levels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        size = x.shape[3 - axis]
        pixels = (levels * (size / 3) / 10).astype(np.int64) * _signs(len(x), rng)
        theta = np.zeros((len(x), 2, 3))
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, axis, 2] = 2.0 * pixels / size
        return _affine(x, theta)

    op.__doc__ = f"Shift along {'xy'[axis]} by ``int(level * size / 30)`` pixels, either way."
    return op


OPERATIONS: dict[str, Operation] = {
    "autocontrast": autocontrast,
    "equalize": equalize,
    "posterize": posterize,
    "solarize": solarize,
    "rotate": rotate,
    "shear_x": _shear(0),
    "shear_y": _shear(1),
    "translate_x": _translate(0),
    "translate_y": _translate(1),
}
"""AugMix's operations by name (the paper's default set, none of ImageNet-C's corruptions)."""


def sample_levels(severity: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` levels drawn from ``U(0.1, severity)`` (AugMix's ``sample_level``)."""
    return rng.uniform(0.1, max(float(severity), 0.1 + math.ulp(0.1)), size=n)
