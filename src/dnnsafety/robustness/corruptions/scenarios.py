"""The injected failure scenarios (dark, rotation, occlusion, blur, noise) as corruptions.

:mod:`dnnsafety.data.inject` plants these on real datasets at their ``scenario_severity``
(5), which reproduces the ranges it always used; severities 1-4 are milder versions of the
same change, for sweeps. Each draws its strength per image and returns it as metadata.
"""

from __future__ import annotations

import numpy as np
import torch

from dnnsafety.robustness.corruptions._ops import gaussian_blur, per_image, rotate
from dnnsafety.robustness.corruptions.base import Params, corruption

DARK = ((0.6, 0.7), (0.45, 0.55), (0.3, 0.4), (0.15, 0.25), (0.04, 0.12))
"""Remaining brightness (factor) per severity."""
ROTATION = ((10, 20), (20, 35), (35, 50), (50, 70), (70, 110))
"""Rotation angle (degrees, either direction) per severity."""
OCCLUSION = ((0.15, 0.25), (0.25, 0.35), (0.35, 0.45), (0.45, 0.55), (0.55, 0.7))
"""Side of the grey square patch (share of the image side) per severity."""
BLUR = ((0.4, 0.6), (0.7, 1.0), (1.1, 1.5), (1.5, 2.0), (2.0, 2.8))
"""Gaussian sigma (pixels at 28 px; scaled with the image width) per severity."""
NOISE = ((0.05, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.55))
"""Standard deviation of the additive Gaussian noise per severity."""


@corruption("dark", "scenario", help="Darkened image (night)", scenario_severity=5)
def dark(x: torch.Tensor, severity: int, rng: np.random.Generator) -> tuple[torch.Tensor, Params]:
    """Multiply every image by a brightness factor drawn from :data:`DARK`."""
    b = rng.uniform(*DARK[severity - 1], len(x))
    return x * per_image(b), {"brightness": b}


@corruption("rotation", "scenario", help="Strong rotation (tilt)", scenario_severity=5)
def rotation(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Rotate every image by an angle drawn from :data:`ROTATION`, either direction."""
    deg = rng.uniform(*ROTATION[severity - 1], len(x)) * rng.choice([-1.0, 1.0], len(x))
    return rotate(x, deg), {"rotation": deg}


@corruption("occlusion", "scenario", help="Grey occluding square", scenario_severity=5)
def occlusion(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Paint a grey (0.5) square of side :data:`OCCLUSION` near the centre of every image."""
    n, _, h, w = x.shape
    frac = rng.uniform(*OCCLUSION[severity - 1], n)
    cx, cy = rng.uniform(0.35, 0.65, n), rng.uniform(0.35, 0.65, n)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    half = torch.as_tensor(frac / 2, dtype=torch.float32)[:, None]
    in_y = (ys[None, :] - torch.as_tensor(cy, dtype=torch.float32)[:, None]).abs() <= half
    in_x = (xs[None, :] - torch.as_tensor(cx, dtype=torch.float32)[:, None]).abs() <= half
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    out = torch.where(mask, torch.full_like(x, 0.5), x)
    return out, {"occlusion": frac, "occ_x": cx, "occ_y": cy}


@corruption("blur", "scenario", help="Strong Gaussian blur (out of focus)", scenario_severity=5)
def blur(x: torch.Tensor, severity: int, rng: np.random.Generator) -> tuple[torch.Tensor, Params]:
    """Gaussian blur with sigma from :data:`BLUR`, scaled by the image width / 28."""
    sigma = rng.uniform(*BLUR[severity - 1], len(x)) * x.shape[-1] / 28.0
    return gaussian_blur(x, sigma), {"blur": sigma}


@corruption("noise", "scenario", help="Strong Gaussian sensor noise", scenario_severity=5)
def noise(x: torch.Tensor, severity: int, rng: np.random.Generator) -> tuple[torch.Tensor, Params]:
    """Additive Gaussian noise with a standard deviation from :data:`NOISE`, clipped."""
    std = rng.uniform(*NOISE[severity - 1], len(x))
    draws = torch.as_tensor(rng.standard_normal(tuple(x.shape)), dtype=torch.float32)
    out = x + draws * per_image(std)
    return out.clamp_(0, 1), {"noise": std}
