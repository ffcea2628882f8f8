"""Batched image operations shared by the corruptions (torch, ``N x C x H x W``)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Blur every image of ``x`` (``N x C x H x W``) with its own Gaussian ``sigma`` (pixels)."""
    n, c, h, w = x.shape
    if n == 0:
        return x
    radius = max(1, math.ceil(3 * float(np.max(sigma))))
    offs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    sig = torch.as_tensor(np.maximum(sigma, 1e-3), dtype=torch.float32)[:, None]
    kern = torch.exp(-0.5 * (offs[None, :] / sig) ** 2)
    kern = kern / kern.sum(dim=1, keepdim=True)  # n x k
    kern = kern.repeat_interleave(c, dim=0)  # (n*c) x k
    flat = x.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kern[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, kern[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def rotate(x: torch.Tensor, degrees: np.ndarray, fill: float = 0.0) -> torch.Tensor:
    """Rotate every image about its centre by its own angle; corners are filled with ``fill``."""
    if len(x) == 0:
        return x
    rad = torch.as_tensor(np.deg2rad(degrees), dtype=torch.float32)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def per_image(values: np.ndarray) -> torch.Tensor:
    """A length-N array as an ``N x 1 x 1 x 1`` float32 tensor (broadcasts over images)."""
    return torch.as_tensor(np.asarray(values), dtype=torch.float32)[:, None, None, None]
