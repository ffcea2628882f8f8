"""Scene backgrounds for the sign renderer: a sky-to-ground gradient, smooth colour noise and
a cluttered patch from a fixed bank of PIL-drawn scene textures under a random similarity
transform. Every draw comes from the per-image random values the renderer passes in.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

_BANK_SIZE = 64
_BANK_RES = 64
_BANK_SEED = 20240601

# Scene-like colours: foliage, sky, concrete, brick, asphalt, shadows, a few saturated
# distractors (cars, shop signs) that share colours with the signs.
_SCENE_COLOURS = np.array(
    [
        [70, 110, 60],
        [95, 140, 70],
        [40, 70, 40],
        [150, 180, 215],
        [190, 200, 210],
        [160, 160, 155],
        [120, 120, 118],
        [80, 80, 85],
        [150, 90, 70],
        [180, 150, 120],
        [110, 85, 60],
        [35, 35, 40],
        [210, 210, 200],
        [190, 40, 40],
        [30, 80, 160],
        [220, 180, 40],
    ],
    dtype=np.float64,
)


@functools.lru_cache(maxsize=1)
def _texture_bank() -> torch.Tensor:
    """A fixed bank of cluttered scene patches (``B x 3 x R x R``), drawn once with PIL."""
    rng = np.random.default_rng(_BANK_SEED)
    big = _BANK_RES * 4
    out = torch.empty(_BANK_SIZE, 3, _BANK_RES, _BANK_RES, dtype=torch.float32)

    def colour() -> tuple[int, int, int]:
        base = _SCENE_COLOURS[rng.integers(len(_SCENE_COLOURS))]
        jitter = rng.normal(0.0, 18.0, size=3)
        r, g, b = np.clip(base + jitter, 0, 255).astype(int).tolist()
        return int(r), int(g), int(b)

    for i in range(_BANK_SIZE):
        img = Image.new("RGB", (big, big), colour())
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(14, 26))):
            kind = rng.integers(5)
            x0, y0 = (rng.uniform(-0.2, 1.0, size=2) * big).tolist()
            w, h = (rng.uniform(0.05, 0.6, size=2) * big).tolist()
            if kind == 0:  # building block / window
                draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour())
            elif kind == 1:  # pole, wire or edge
                x1, y1 = (rng.uniform(-0.2, 1.2, size=2) * big).tolist()
                width = int(rng.integers(2, 14))
                draw.line([(x0, y0), (x1, y1)], fill=colour(), width=width)
            elif kind == 2:  # tree crown, lamp, wheel
                draw.ellipse([x0, y0, x0 + w, y0 + w], fill=colour())
            elif kind == 3:  # roof, awning
                pts = (rng.uniform(-0.1, 1.1, size=(3, 2)) * big).tolist()
                draw.polygon([(float(p[0]), float(p[1])) for p in pts], fill=colour())
            else:  # window grid
                step = int(rng.integers(8, 24))
                fill = colour()
                for gx in range(int(x0), int(x0 + w), step):
                    draw.line([(gx, y0), (gx, y0 + h)], fill=fill, width=3)
        small = img.resize((_BANK_RES, _BANK_RES), Image.Resampling.BOX)
        out[i] = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return out


_SKY = torch.tensor(
    [[0.55, 0.68, 0.85], [0.75, 0.77, 0.8], [0.62, 0.62, 0.6], [0.45, 0.55, 0.4], [0.7, 0.6, 0.5]]
)
_GROUND = torch.tensor(
    [[0.35, 0.35, 0.36], [0.3, 0.45, 0.25], [0.45, 0.4, 0.33], [0.55, 0.55, 0.53], [0.2, 0.2, 0.22]]
)


def _coords(size: int) -> torch.Tensor:
    """Pixel-centre coordinates in ``[-1, 1]`` (``align_corners=False`` convention)."""
    return (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0


def _sample_atlas(atlas: torch.Tensor, grid: torch.Tensor, n: int, size: int) -> torch.Tensor:
    """Bilinear samples of one atlas at ``N`` grids, returned as ``N x C x size x size``."""
    flat = grid.reshape(1, n * size, size, 2)
    out = F.grid_sample(atlas, flat, mode="bilinear", padding_mode="zeros", align_corners=False)
    c = atlas.shape[1]
    return out.view(c, n, size, size).transpose(0, 1)


@functools.lru_cache(maxsize=1)
def _bank_atlas() -> tuple[torch.Tensor, int]:
    """The texture bank tiled into one ``1 x 3 x H x W`` image; also returns tiles per row."""
    bank = _texture_bank()
    per_row = math.ceil(math.sqrt(_BANK_SIZE))
    rows = math.ceil(_BANK_SIZE / per_row)
    atlas = torch.zeros(1, 3, rows * _BANK_RES, per_row * _BANK_RES, dtype=torch.float32)
    for i in range(_BANK_SIZE):
        r, c = divmod(i, per_row)
        atlas[0, :, r * _BANK_RES : (r + 1) * _BANK_RES, c * _BANK_RES : (c + 1) * _BANK_RES] = (
            bank[i]
        )
    return atlas, per_row


@functools.lru_cache(maxsize=8)
def _upsample_matrix(size: int) -> torch.Tensor:
    """``size x 4`` bilinear interpolation matrix (``align_corners=False``) from 4 samples."""
    eye = torch.eye(4, dtype=torch.float32).view(1, 4, 4)
    return F.interpolate(eye, size=size, mode="linear", align_corners=False)[0].T.contiguous()


def _smooth_field(coarse: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinearly upsample ``N x C x 4 x 4`` noise to ``N x C x size x size`` (two matmuls)."""
    up = _upsample_matrix(size)
    return torch.matmul(torch.matmul(up, coarse), up.T)


def _background(
    rnd: Mapping[str, torch.Tensor], clutter: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene background ``N x 3 x S x S`` and the raw clutter texture used in it."""
    n = clutter.shape[0]
    ys = _coords(size).view(1, 1, size, 1)
    # Sky-to-ground gradient with a random horizon height and softness.
    sky = _SKY[rnd["sky"]] + 0.06 * rnd["palette_jitter"][:, 0]
    ground = _GROUND[rnd["ground"]] + 0.06 * rnd["palette_jitter"][:, 1]
    horizon = (rnd["horizon"][:, 0] * 1.2 - 0.6).view(n, 1, 1, 1)
    soft = (0.05 + 0.4 * rnd["horizon"][:, 1]).view(n, 1, 1, 1)
    t = torch.sigmoid((ys - horizon) / soft)
    base = sky.view(n, 3, 1, 1) * (1.0 - t) + ground.view(n, 3, 1, 1) * t
    base = base + 0.07 * _smooth_field(rnd["smooth"], size)

    # Cluttered scene patch from the bank under a random similarity transform that keeps the
    # sampled window inside its tile (zoom <= 0.75, rotation <= 0.3 rad: extent < 0.95).
    geo = rnd["bank_geo"]
    angle = (geo[:, 0] - 0.5) * 0.6
    zoom = 0.45 + 0.3 * geo[:, 1]
    flip = torch.where(geo[:, 2] < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    room = (1.0 - 1.0 / _BANK_RES) - (cos.abs() + sin.abs())
    tx, ty = (geo[:, 3] * 2.0 - 1.0) * room, (geo[:, 4] * 2.0 - 1.0) * room
    atlas, per_row = _bank_atlas()
    rows = atlas.shape[2] // _BANK_RES
    col = torch.remainder(rnd["bank"], per_row).to(torch.float32)
    row = torch.div(rnd["bank"], per_row, rounding_mode="floor").to(torch.float32)
    # Tile-local coordinates u = A p + t, then atlas x = u / per_row + (2 col + 1) / per_row - 1.
    theta = torch.stack(
        [
            torch.stack(
                [cos * flip / per_row, -sin / per_row, (tx + 2.0 * col + 1.0) / per_row - 1.0],
                dim=1,
            ),
            torch.stack(
                [sin * flip / rows, cos / rows, (ty + 2.0 * row + 1.0) / rows - 1.0], dim=1
            ),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    tex = _sample_atlas(atlas, grid, n, size)
    w = clutter.view(n, 1, 1, 1)
    return base.mul_(1.0 - w).add_(tex * w), tex
