"""Procedural traffic-sign images: sign templates, batched rendering and dataset generation.

Each sign class is drawn once with PIL as an anti-aliased RGBA template (cached per
resolution). Images are then rendered in vectorised batches with torch: the template is placed
with an affine warp (rotation, scale, position) over a cluttered scene-like background, partly
hidden by an occluder, and passed through haze, colour cast, brightness, contrast, per-image
Gaussian blur and sensor noise. Every random choice not recorded in the parameter table
(background layout, occluder colour, noise pattern) comes from generators keyed by the seed and
the image's position, so the same parameters and seed give bit-identical images whatever the
chunk size.
"""

from __future__ import annotations

import functools
import math
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from dnnsafety.data.dataset import SPLITS, Dataset, Split, make_split
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.sim.scenarios import (
    OCCLUSION_SIDES,
    PARAMETER_COLUMNS,
    ScenarioConfig,
    sample_parameters,
)

__all__ = [
    "LOOK_ALIKE_PAIRS",
    "SIGN_CLASSES",
    "SIGN_RADIUS",
    "generate_signs",
    "render_signs",
    "sign_template_image",
    "sign_templates",
]

SIGN_CLASSES: tuple[str, ...] = (
    "stop",
    "yield",
    "speed_30",
    "speed_80",
    "no_entry",
    "turn_left",
    "turn_right",
    "keep_right",
    "priority_road",
    "pedestrian_crossing",
)
"""Sign class names; label ``i`` is ``SIGN_CLASSES[i]``."""

LOOK_ALIKE_PAIRS: tuple[tuple[str, str], ...] = (
    ("speed_30", "speed_80"),
    ("turn_left", "turn_right"),
    ("yield", "pedestrian_crossing"),
    ("stop", "no_entry"),
)
"""Class pairs that share shape and colours and differ mainly in the symbol or orientation."""

# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------

_RED = (200, 24, 32)
_WHITE = (245, 245, 242)
_BLUE = (22, 78, 172)
_YELLOW = (250, 196, 24)
_BLACK = (22, 22, 26)
_SUPERSAMPLE = 8
SIGN_RADIUS = 0.97
"""Radius of the sign inside its template, in template half-widths."""

Point = tuple[float, float]


class _Canvas:
    """PIL drawing in normalised coordinates: ``(-1, -1)`` top-left to ``(1, 1)`` bottom-right.

    Colour is drawn on black (so it is already premultiplied by coverage) and the coverage
    (alpha) is drawn separately as a greyscale mask.
    """

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels
        self.rgb = Image.new("RGB", (pixels, pixels), (0, 0, 0))
        self.alpha = Image.new("L", (pixels, pixels), 0)
        self._draw = ImageDraw.Draw(self.rgb)
        self._mask = ImageDraw.Draw(self.alpha)

    def px(self, p: Point) -> tuple[float, float]:
        return ((p[0] + 1.0) * 0.5 * self.pixels, (p[1] + 1.0) * 0.5 * self.pixels)

    def w(self, width: float) -> int:
        return max(1, round(width * 0.5 * self.pixels))

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        a, b = self.px((x0, y0))
        c, d = self.px((x1, y1))
        return [a, b, c, d]

    def polygon(self, pts: Sequence[Point], fill: tuple[int, int, int], shape: bool) -> None:
        xy = [self.px(p) for p in pts]
        self._draw.polygon(xy, fill=fill)
        if shape:
            self._mask.polygon(xy, fill=255)

    def disc(self, r: float, fill: tuple[int, int, int], shape: bool = False) -> None:
        xy = self.box(-r, -r, r, r)
        self._draw.ellipse(xy, fill=fill)
        if shape:
            self._mask.ellipse(xy, fill=255)

    def dot(self, centre: Point, r: float, fill: tuple[int, int, int]) -> None:
        x, y = centre
        self._draw.ellipse(self.box(x - r, y - r, x + r, y + r), fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: tuple[int, int, int]) -> None:
        self._draw.rectangle(self.box(x0, y0, x1, y1), fill=fill)

    def line(self, pts: Sequence[Point], width: float, fill: tuple[int, int, int]) -> None:
        self._draw.line([self.px(p) for p in pts], fill=fill, width=self.w(width), joint="curve")
        # Round the free ends so strokes look like paint, not cut tape.
        for end in (pts[0], pts[-1]):
            self.dot(end, width / 2, fill)

    def ring(
        self, box: tuple[float, float, float, float], width: float, fill: tuple[int, int, int]
    ) -> None:
        self._draw.ellipse(self.box(*box), outline=fill, width=self.w(width))

    def arc(
        self,
        box: tuple[float, float, float, float],
        start: float,
        end: float,
        width: float,
        fill: tuple[int, int, int],
    ) -> None:
        self._draw.arc(self.box(*box), start, end, fill=fill, width=self.w(width))


def _regular(n: int, r: float, phase_deg: float) -> list[Point]:
    return [
        (
            r * math.cos(math.radians(phase_deg + 360.0 * i / n)),
            r * math.sin(math.radians(phase_deg + 360.0 * i / n)),
        )
        for i in range(n)
    ]


def _triangle(up: bool, r: float) -> list[Point]:
    """Equilateral triangle centred in its bounding box, apex up or down."""
    h = r * math.sqrt(3.0) / 2.0
    if up:
        return [(0.0, -h), (r, h), (-r, h)]
    return [(0.0, h), (-r, -h), (r, -h)]


def _shrink(pts: Sequence[Point], factor: float) -> list[Point]:
    cx = sum(p[0] for p in pts) / len(pts)
    cy = sum(p[1] for p in pts) / len(pts)
    return [(cx + (x - cx) * factor, cy + (y - cy) * factor) for x, y in pts]


def _digit(c: _Canvas, digit: str, cx: float, half_w: float, half_h: float, sw: float) -> None:
    """Draw a bold digit (0, 3 or 8) centred at ``(cx, 0)``."""
    top, bot, left, right = -half_h, half_h, cx - half_w, cx + half_w
    mid = 0.0
    if digit == "0":
        c.ring((left, top, right, bot), sw, _BLACK)
    elif digit == "8":
        inset = half_w * 0.12
        c.ring((left + inset, top, right - inset, mid + sw * 0.5), sw, _BLACK)
        c.ring((left, mid - sw * 0.5, right, bot), sw, _BLACK)
    elif digit == "3":
        c.arc((left, top, right, mid + sw * 0.5), 195, 450, sw, _BLACK)
        c.arc((left, mid - sw * 0.5, right, bot), 270, 525, sw, _BLACK)
    else:  # pragma: no cover - internal use only
        raise ValueError(digit)


def _speed(c: _Canvas, digits: str) -> None:
    c.disc(SIGN_RADIUS, _RED, shape=True)
    c.disc(0.74, _WHITE)
    half_w, half_h, sw = 0.2, 0.38, 0.14
    _digit(c, digits[0], -0.235, half_w, half_h, sw)
    _digit(c, digits[1], 0.235, half_w, half_h, sw)


def _stop(c: _Canvas) -> None:
    c.polygon(_regular(8, SIGN_RADIUS / math.cos(math.pi / 8), 22.5), _WHITE, shape=True)
    c.polygon(_regular(8, 0.9 / math.cos(math.pi / 8), 22.5), _RED, shape=False)
    # "STOP" in block letters.
    sw, top, bot, mid = 0.09, -0.2, 0.2, 0.0
    lw, gap = 0.26, 0.09
    x = -(4 * lw + 3 * gap) / 2
    s0, s1 = x, x + lw
    c.line([(s1, top), (s0, top), (s0, mid), (s1, mid), (s1, bot), (s0, bot)], sw, _WHITE)
    x += lw + gap
    c.line([(x, top), (x + lw, top)], sw, _WHITE)
    c.line([(x + lw / 2, top), (x + lw / 2, bot)], sw, _WHITE)
    x += lw + gap
    c.line([(x, top), (x + lw, top), (x + lw, bot), (x, bot), (x, top)], sw, _WHITE)
    x += lw + gap
    c.line([(x, bot), (x, top), (x + lw, top), (x + lw, mid), (x, mid)], sw, _WHITE)


def _yield(c: _Canvas) -> None:
    outer = _triangle(up=False, r=SIGN_RADIUS)
    c.polygon(outer, _RED, shape=True)
    c.polygon(_shrink(outer, 0.58), _WHITE, shape=False)


def _pedestrian(c: _Canvas) -> None:
    outer = _triangle(up=True, r=SIGN_RADIUS)
    c.polygon(outer, _RED, shape=True)
    c.polygon(_shrink(outer, 0.62), _WHITE, shape=False)
    sw = 0.085
    c.dot((0.03, -0.06), 0.075, _BLACK)
    c.line([(0.0, 0.04), (-0.04, 0.3)], sw, _BLACK)
    c.line([(-0.04, 0.3), (-0.17, 0.52)], sw, _BLACK)
    c.line([(-0.04, 0.3), (0.1, 0.42), (0.14, 0.53)], sw, _BLACK)
    c.line([(-0.01, 0.1), (-0.16, 0.24)], sw, _BLACK)
    c.line([(-0.01, 0.1), (0.14, 0.2)], sw, _BLACK)


def _no_entry(c: _Canvas) -> None:
    c.disc(SIGN_RADIUS, _RED, shape=True)
    c.rect(-0.66, -0.17, 0.66, 0.17, _WHITE)


def _blue_disc(c: _Canvas) -> None:
    c.disc(SIGN_RADIUS, _WHITE, shape=True)
    c.disc(0.9, _BLUE)


def _turn_right(c: _Canvas) -> None:
    _blue_disc(c)
    sw = 0.24
    c.line([(-0.28, 0.62), (-0.28, 0.02), (0.18, 0.02)], sw, _WHITE)
    c.polygon([(0.12, -0.32), (0.62, 0.02), (0.12, 0.36)], _WHITE, shape=False)


def _keep_right(c: _Canvas) -> None:
    _blue_disc(c)
    sw = 0.24
    c.line([(-0.42, -0.42), (0.12, 0.12)], sw, _WHITE)
    tip, base, half = 0.5, 0.06, 0.34
    c.polygon(
        [(tip, tip), (base + half, base - half), (base - half, base + half)], _WHITE, shape=False
    )


def _priority(c: _Canvas) -> None:
    c.polygon(_regular(4, SIGN_RADIUS, -90.0), _BLACK, shape=True)
    c.polygon(_regular(4, SIGN_RADIUS - 0.05, -90.0), _WHITE, shape=False)
    c.polygon(_regular(4, 0.6, -90.0), _YELLOW, shape=False)


def _draw_class(name: str, pixels: int) -> _Canvas:
    c = _Canvas(pixels)
    if name == "stop":
        _stop(c)
    elif name == "yield":
        _yield(c)
    elif name == "speed_30":
        _speed(c, "30")
    elif name == "speed_80":
        _speed(c, "80")
    elif name == "no_entry":
        _no_entry(c)
    elif name in ("turn_right", "turn_left"):
        _turn_right(c)
        if name == "turn_left":
            c.rgb = c.rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            c.alpha = c.alpha.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif name == "keep_right":
        _keep_right(c)
    elif name == "priority_road":
        _priority(c)
    elif name == "pedestrian_crossing":
        _pedestrian(c)
    else:
        raise InvalidInputError(
            f"Unknown sign class {name!r}; choose one of {', '.join(SIGN_CLASSES)}."
        )
    return c


def _check_resolution(resolution: int) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, int | np.integer):
        raise InvalidInputError(f"resolution must be an integer, got {resolution!r}.")
    if not 8 <= int(resolution) <= 512:
        raise InvalidInputError(f"resolution must be between 8 and 512 pixels, got {resolution}.")
    return int(resolution)


@functools.lru_cache(maxsize=8)
def _templates(resolution: int) -> torch.Tensor:
    out = torch.empty(len(SIGN_CLASSES), 4, resolution, resolution, dtype=torch.float32)
    big = resolution * _SUPERSAMPLE
    for k, name in enumerate(SIGN_CLASSES):
        c = _draw_class(name, big)
        rgb = c.rgb.resize((resolution, resolution), Image.Resampling.BOX)
        alpha = c.alpha.resize((resolution, resolution), Image.Resampling.BOX)
        arr = np.concatenate(
            [np.asarray(rgb, dtype=np.float32), np.asarray(alpha, dtype=np.float32)[..., None]],
            axis=2,
        )
        t = torch.from_numpy(arr / 255.0).permute(2, 0, 1)
        # Colour was drawn on black, so it is premultiplied; it can never exceed the coverage.
        t[:3] = torch.minimum(t[:3], t[3:4])
        out[k] = t
    return out


def sign_templates(resolution: int = 64) -> torch.Tensor:
    """Anti-aliased templates of all sign classes.

    Parameters
    ----------
    resolution
        Side length of each template in pixels.

    Returns
    -------
    torch.Tensor
        Float32 tensor ``K x 4 x resolution x resolution`` in ``[0, 1]``, one template per
        entry of :data:`SIGN_CLASSES`: premultiplied RGB followed by alpha (coverage). The
        sign is centred and has radius :data:`SIGN_RADIUS` of the half-width.
    """
    return _templates(_check_resolution(resolution)).clone()


def sign_template_image(name: str, resolution: int = 64) -> Image.Image:
    """One class template as a PIL ``RGBA`` image (straight alpha), for viewing and docs.

    Parameters
    ----------
    name
        A class in :data:`SIGN_CLASSES`.
    resolution
        Side length in pixels.
    """
    if name not in SIGN_CLASSES:
        raise InvalidInputError(
            f"Unknown sign class {name!r}; choose one of {', '.join(SIGN_CLASSES)}."
        )
    t = _templates(_check_resolution(resolution))[SIGN_CLASSES.index(name)]
    alpha = t[3:4]
    rgb = torch.where(alpha > 0, t[:3] / alpha.clamp_min(1e-6), torch.zeros_like(t[:3]))
    arr = (torch.cat([rgb.clamp(0, 1), alpha]).permute(1, 2, 0).numpy() * 255.0).round()
    return Image.fromarray(arr.astype(np.uint8))


# --------------------------------------------------------------------------------------------
# Background texture bank
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

_RNG_BLOCK = 256
_HAZE = (0.78, 0.8, 0.83)
_SKY = torch.tensor(
    [[0.55, 0.68, 0.85], [0.75, 0.77, 0.8], [0.62, 0.62, 0.6], [0.45, 0.55, 0.4], [0.7, 0.6, 0.5]]
)
_GROUND = torch.tensor(
    [[0.35, 0.35, 0.36], [0.3, 0.45, 0.25], [0.45, 0.4, 0.33], [0.55, 0.55, 0.53], [0.2, 0.2, 0.22]]
)
_OCCLUDER = torch.tensor(
    [
        [0.2, 0.2, 0.22],
        [0.25, 0.38, 0.2],
        [0.45, 0.45, 0.47],
        [0.4, 0.3, 0.2],
        [0.75, 0.75, 0.72],
        [0.1, 0.12, 0.15],
        [0.7, 0.12, 0.12],
        [0.12, 0.25, 0.6],
        [0.85, 0.7, 0.15],
    ]
)
_SIDE_VECTORS = {
    "none": (0.0, 0.0),
    "top": (0.0, -1.0),
    "bottom": (0.0, 1.0),
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
}


def _block_seed(seed: int, block: int) -> int:
    state = np.random.SeedSequence(entropy=seed, spawn_key=(block,)).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class _Noise:
    """Per-image random draws for images ``start .. start + n - 1``, keyed by absolute index.

    Randomness is generated in fixed blocks of :data:`_RNG_BLOCK` images seeded from
    ``(seed, block index)``, then sliced, so an image gets the same draws however the rendering
    is chunked.
    """

    def __init__(self, seed: int, start: int, n: int, size: int) -> None:
        first, last = start // _RNG_BLOCK, (start + n - 1) // _RNG_BLOCK
        blocks = last - first + 1
        specs = self._specs(size)
        full = {
            key: torch.empty(
                (blocks * _RNG_BLOCK, *shape), dtype=torch.int64 if kind == "int" else None
            )
            for key, (kind, _, shape) in specs.items()
        }
        for i, block in enumerate(range(first, last + 1)):
            g = torch.Generator().manual_seed(_block_seed(seed, block))
            rows = slice(i * _RNG_BLOCK, (i + 1) * _RNG_BLOCK)
            for key, (kind, high, shape) in specs.items():
                dims = (_RNG_BLOCK, *shape)
                if kind == "int":
                    torch.randint(0, high, dims, generator=g, out=full[key][rows])
                elif kind == "uniform":
                    torch.rand(dims, generator=g, out=full[key][rows])
                else:
                    torch.randn(dims, generator=g, out=full[key][rows])
        offset = start - first * _RNG_BLOCK
        self.values = {k: v[offset : offset + n] for k, v in full.items()}

    @staticmethod
    def _specs(size: int) -> dict[str, tuple[str, int, tuple[int, ...]]]:
        """Name -> (distribution, integer upper bound, per-image shape), in draw order."""
        return {
            "bank": ("int", _BANK_SIZE, ()),
            "bank_geo": ("uniform", 0, (5,)),
            "sky": ("int", len(_SKY), ()),
            "ground": ("int", len(_GROUND), ()),
            "palette_jitter": ("normal", 0, (2, 3)),
            "horizon": ("uniform", 0, (2,)),
            "smooth": ("normal", 0, (3, 4, 4)),
            "occluder": ("int", len(_OCCLUDER), ()),
            "occluder_jitter": ("normal", 0, (3,)),
            "occluder_tex": ("normal", 0, (1, 4, 4)),
            "haze": ("normal", 0, (3,)),
            "sensor": ("normal", 0, (3, size, size)),
        }


def _column(params: pd.DataFrame, name: str, low: float, high: float) -> torch.Tensor:
    try:
        values = pd.to_numeric(params[name], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInputError(
            f"Parameter column {name!r} must be numeric; fix the parameter table."
        ) from None
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"Parameter {name!r} = {values[row]!r} at row {row} is outside [{low}, {high}]; "
            "fix the parameter table (see dnnsafety.sim.scenarios.PARAMETER_COLUMNS)."
        )
    return torch.from_numpy(values.astype(np.float32))


_LIMITS: Mapping[str, tuple[float, float]] = {
    "brightness": (0.0, 4.0),
    "contrast": (0.0, 4.0),
    "cast_r": (0.0, 4.0),
    "cast_g": (0.0, 4.0),
    "cast_b": (0.0, 4.0),
    "fog": (0.0, 1.0),
    "blur": (0.0, 8.0),
    "noise": (0.0, 1.0),
    "rotation": (-360.0, 360.0),
    "scale": (0.05, 4.0),
    "shift_x": (-1.0, 1.0),
    "shift_y": (-1.0, 1.0),
    "occlusion": (0.0, 1.0),
    "clutter": (0.0, 1.0),
}


def _parse_params(params: pd.DataFrame) -> dict[str, torch.Tensor]:
    if not isinstance(params, pd.DataFrame):
        raise InvalidInputError(
            f"params must be a pandas DataFrame (from sample_parameters), got "
            f"{type(params).__name__}."
        )
    needed = ("label", *PARAMETER_COLUMNS)
    missing = [c for c in needed if c not in params.columns]
    if missing:
        raise InvalidInputError(
            f"Parameter table lacks column(s) {', '.join(missing)}; build it with "
            "dnnsafety.sim.sample_parameters."
        )
    out = {name: _column(params, name, lo, hi) for name, (lo, hi) in _LIMITS.items()}
    labels = params["label"].to_numpy()
    if labels.dtype.kind not in "iu":
        raise InvalidInputError(f"Column 'label' must hold integers, got {labels.dtype}.")
    k = len(SIGN_CLASSES)
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise InvalidInputError(
            f"Column 'label' must lie in 0..{k - 1} (the {k} sign classes), got "
            f"{labels.min()}..{labels.max()}."
        )
    out["label"] = torch.from_numpy(labels.astype(np.int64))
    sides = params["occlusion_side"].astype(str).to_numpy()
    unknown = sorted(set(sides.tolist()) - set(OCCLUSION_SIDES))
    if unknown:
        raise InvalidInputError(
            f"Column 'occlusion_side' has unknown value(s) {', '.join(map(repr, unknown))}; "
            f"use {', '.join(OCCLUSION_SIDES)}."
        )
    vec = np.array([_SIDE_VECTORS[s] for s in sides], dtype=np.float32).reshape(-1, 2)
    out["side"] = torch.from_numpy(vec)
    return out


def _coords(size: int) -> torch.Tensor:
    """Pixel-centre coordinates in ``[-1, 1]`` (``align_corners=False`` convention)."""
    return (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0


_ATLAS_MARGIN = 2


@functools.lru_cache(maxsize=8)
def _sign_atlas(resolution: int) -> torch.Tensor:
    """All templates side by side in one ``1 x 4 x H x W`` image, each with a clear margin."""
    templ = _templates(resolution)
    m = _ATLAS_MARGIN
    tile = resolution + 2 * m
    atlas = torch.zeros(1, 4, tile, tile * templ.shape[0], dtype=torch.float32)
    for k in range(templ.shape[0]):
        atlas[0, :, m : m + resolution, k * tile + m : k * tile + m + resolution] = templ[k]
    return atlas


def _sign_grid(
    theta: torch.Tensor, label: torch.Tensor, resolution: int, count: int, size: int
) -> torch.Tensor:
    """Sampling grid into :func:`_sign_atlas` for template-space transforms ``theta``.

    ``theta`` (``N x 2 x 3``) maps output coordinates to template coordinates in ``[-1, 1]``.
    It is composed with the (affine) map from template to atlas coordinates, and the result is
    clamped to one pixel beyond each image's own tile, inside its transparent margin: that
    reproduces zero padding without ever reading a neighbouring template.
    """
    m = _ATLAS_MARGIN
    tile = resolution + 2 * m
    width, height = tile * count, tile
    n = theta.shape[0]
    sx, sy = resolution / width, resolution / height
    ox = (label.to(torch.float32) * tile + m + resolution / 2.0) * (2.0 / width) - 1.0
    oy = (m + resolution / 2.0) * (2.0 / height) - 1.0
    atlas_theta = theta.clone()
    atlas_theta[:, 0] *= sx
    atlas_theta[:, 1] *= sy
    atlas_theta[:, 0, 2] += ox
    atlas_theta[:, 1, 2] += oy
    grid = F.affine_grid(atlas_theta, [n, 1, size, size], align_corners=False)
    limit = 1.0 + 2.0 / resolution
    lo = torch.stack([ox - sx * limit, torch.full_like(ox, oy - sy * limit)], dim=1)
    hi = torch.stack([ox + sx * limit, torch.full_like(ox, oy + sy * limit)], dim=1)
    return grid.clamp_(lo.view(n, 1, 1, 2), hi.view(n, 1, 1, 2))


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


def _gaussian_matrices(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Transposed row-normalised Gaussian blur matrices ``N x size x size`` (sigma 0: identity)."""
    d = torch.arange(size, dtype=torch.float32)
    s = sigma.clamp_min(0.05).view(-1, 1)
    taps = torch.exp(-(d * d) / (2.0 * s * s))  # N x size, weight of offset |i - j|
    # Drop negligible tails: they would be denormal floats, which make matmul crawl.
    taps = torch.where(taps < 1e-7, torch.zeros_like(taps), taps)
    sym = torch.cat([taps.flip(1), taps[:, 1:]], dim=1)  # offsets -(size-1) .. size-1
    k = sym.unfold(1, size, 1).flip(1)  # k[n, i, j] = taps[n, |i - j|]
    k = k / k.sum(dim=2, keepdim=True)
    return k.transpose(1, 2).contiguous()


def _blur(img: torch.Tensor, kt: torch.Tensor) -> torch.Tensor:
    """Separable per-image blur; ``kt`` from :func:`_gaussian_matrices` (transposed kernels).

    Returns the blurred images as a transposed view (``N x C x H x W`` with swapped strides).
    """
    n, c, h, w = img.shape
    along_x = torch.matmul(img.reshape(n, c * h, w), kt).view(n, c, h, w)
    swapped = along_x.transpose(2, 3).contiguous().view(n, c * w, h)
    return torch.matmul(swapped, kt).view(n, c, w, h).transpose(2, 3)


def _render_chunk(
    p: Mapping[str, torch.Tensor], rnd: Mapping[str, torch.Tensor], size: int
) -> torch.Tensor:
    n = p["label"].shape[0]
    xs = _coords(size)
    img, tex = _background(rnd, p["clutter"], size)

    # Sign: inverse similarity transform from output pixels to template coordinates.
    angle = torch.deg2rad(p["rotation"])
    scale = p["scale"]
    cx, cy = 2.0 * p["shift_x"], 2.0 * p["shift_y"]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin, -(cos * cx - sin * cy)], dim=1),
            torch.stack([sin, cos, -(sin * cx + cos * cy)], dim=1),
        ],
        dim=1,
    )
    grid = _sign_grid(theta, p["label"], size, len(SIGN_CLASSES), size)
    sign = _sample_atlas(_sign_atlas(size), grid, n, size)
    img.mul_(1.0 - sign[:, 3:4]).add_(sign[:, :3])

    # Occluder: covers the sign's extent from one side up to the requested fraction.
    radius = (SIGN_RADIUS * scale).view(n, 1, 1)
    side = p["side"]
    along_x = side[:, 0].view(n, 1, 1) * (xs.view(1, 1, size) - cx.view(n, 1, 1))
    along_y = side[:, 1].view(n, 1, 1) * (xs.view(1, size, 1) - cy.view(n, 1, 1))
    edge = radius * (1.0 - 2.0 * p["occlusion"].view(n, 1, 1))
    mask = ((along_x + along_y - edge) * (size / 2.0) + 0.5).clamp_(0.0, 1.0)
    mask.mul_((p["occlusion"] > 0).to(torch.float32).view(n, 1, 1))
    occ = _OCCLUDER[rnd["occluder"]] + 0.05 * rnd["occluder_jitter"]
    occ_tex = _smooth_field(rnd["occluder_tex"], size)
    # A textured object: its own colour mixed with (mirrored) scene clutter.
    occ_img = occ.view(n, 3, 1, 1) * 0.6 + 0.4 * tex.flip(2) + 0.05 * occ_tex
    mask = mask.unsqueeze(1)
    img.mul_(1.0 - mask).add_(occ_img.mul_(mask))

    # Photometric chain: haze, colour cast and brightness, contrast, blur, sensor noise.
    fog = p["fog"].view(n, 1, 1, 1)
    haze = torch.tensor(_HAZE).view(1, 3) + 0.02 * rnd["haze"]
    gain = torch.stack([p["cast_r"], p["cast_g"], p["cast_b"]], dim=1) * p["brightness"].view(n, 1)
    # (img * (1 - fog) + haze * fog) * gain, folded into one multiply-add.
    img.mul_((1.0 - fog) * gain.view(n, 3, 1, 1)).add_((haze * gain).view(n, 3, 1, 1) * fog)
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    contrast = p["contrast"].view(n, 1, 1, 1)
    img.mul_(contrast).add_(mean * (1.0 - contrast))
    img = _blur(img, _gaussian_matrices(p["blur"], size))
    img.add_(rnd["sensor"] * p["noise"].view(n, 1, 1, 1))
    return img.clamp_(0.0, 1.0)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily use ``num_threads`` (default: no more than the CPUs this process may use)."""
    before = torch.get_num_threads()
    wanted = num_threads if num_threads is not None else min(before, _available_cpus())
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}.")
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise InvalidInputError(f"{name} must be {bound}, got {v}.")
    return v


def render_signs(
    params: pd.DataFrame,
    size: int = 32,
    seed: int = 0,
    *,
    chunk_size: int = 2048,
    progress: Callable[[int], None] | None = None,
    num_threads: int | None = None,
) -> torch.Tensor:
    """Render one image per row of a parameter table.

    Parameters
    ----------
    params
        Table as returned by :func:`~dnnsafety.sim.scenarios.sample_parameters`: a ``label``
        column (index into :data:`SIGN_CLASSES`) and every column of
        :data:`~dnnsafety.sim.scenarios.PARAMETER_COLUMNS`. Other columns are ignored.
    size
        Output side length in pixels (8..256).
    seed
        Seed (``>= 0``) for the randomness not recorded in ``params``: background layout,
        occluder colour and the sensor-noise pattern.
    chunk_size
        Images rendered at once; bounds memory. The output does not depend on it.
    progress
        Called with the number of images just rendered after each chunk.
    num_threads
        Torch threads to use while rendering; the previous setting is restored afterwards.
        Default: the current setting, capped at the CPUs available to this process.

    Returns
    -------
    torch.Tensor
        Float32 tensor ``N x 3 x size x size`` with values in ``[0, 1]``. The same ``params``
        and ``seed`` give bit-identical images.

    Raises
    ------
    InvalidInputError
        If a column is missing, a value is out of range, or an argument is invalid.
    """
    size = _check_int("size", size, 8, 256)
    seed = _check_int("seed", seed, 0)
    chunk_size = _check_int("chunk_size", chunk_size, 1)
    if num_threads is not None:
        num_threads = _check_int("num_threads", num_threads, 1)
    p = _parse_params(params)
    n = int(p["label"].shape[0])
    out = torch.empty(n, 3, size, size, dtype=torch.float32)
    with _torch_threads(num_threads), torch.inference_mode():
        _sign_atlas(size)
        _bank_atlas()
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            chunk = {k: v[start:stop] for k, v in p.items()}
            rnd = _Noise(seed, start, stop - start, size).values
            out[start:stop] = _render_chunk(chunk, rnd, size)
            if progress is not None:
                progress(stop - start)
    return out


def _split_seeds(seed: int, split: str) -> tuple[np.random.Generator, int]:
    """Independent parameter generator and render seed for one split of one dataset seed."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(split.encode("utf-8")),))
    param_ss, render_ss = ss.spawn(2)
    render_seed = int(render_ss.generate_state(1, np.uint32)[0])
    return np.random.default_rng(param_ss), render_seed


def generate_signs(
    sizes: Mapping[str, int],
    config: ScenarioConfig | None = None,
    size: int = 32,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Generate the simulated traffic-sign dataset.

    Parameters
    ----------
    sizes
        Number of images per split, keys among ``train``, ``val``, ``test``, ``pool``;
        ``train`` and ``test`` are required.
    config
        Scenario frequencies per split; default :class:`ScenarioConfig`.
    size
        Image side length in pixels.
    seed
        Dataset seed. Each split is seeded from ``(seed, split name)``, so adding or resizing
        one split leaves the others unchanged.
    progress
        Called with the number of images just rendered (e.g. to advance a progress bar).

    Returns
    -------
    Dataset
        Dataset ``"signs"`` with classes :data:`SIGN_CLASSES`. Sample ids look like
        ``signs-test-000123``; each split's metadata holds the rendering parameters and the
        pool's labels are hidden.

    Raises
    ------
    ConfigError
        If ``sizes`` names an unknown split, lacks ``train`` or ``test`` or has a negative
        size, or ``config`` is not a :class:`ScenarioConfig`.
    InvalidInputError
        If ``size`` or ``seed`` is invalid.
    """
    if not isinstance(sizes, Mapping):
        raise ConfigError(
            f"sizes must map split names to image counts, got {type(sizes).__name__}."
        )
    unknown = [str(s) for s in sizes if s not in SPLITS]
    if unknown:
        raise ConfigError(
            f"Unknown split(s) {', '.join(map(repr, unknown))} in sizes; use {', '.join(SPLITS)}."
        )
    for required in ("train", "test"):
        if required not in sizes:
            raise ConfigError(f"sizes must include the {required!r} split.")
    for name, count in sizes.items():
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ConfigError(f"sizes[{name!r}] must be a non-negative integer, got {count!r}.")
    if config is None:
        config = ScenarioConfig()
    elif not isinstance(config, ScenarioConfig):
        raise ConfigError(
            f"config must be a ScenarioConfig, got {type(config).__name__}; build one with "
            "ScenarioConfig.from_dict(...)."
        )
    size = _check_int("size", size, 8, 256)
    seed = _check_int("seed", seed, 0)

    splits: dict[str, Split] = {}
    for name in SPLITS:
        if name not in sizes:
            continue
        n = int(sizes[name])
        rng, render_seed = _split_seeds(seed, name)
        params = sample_parameters(n, name, config, rng, len(SIGN_CLASSES))
        images = render_signs(params, size=size, seed=render_seed, progress=progress)
        width = max(6, len(str(max(n - 1, 0))))
        ids = np.array([f"signs-{name}-{i:0{width}d}" for i in range(n)], dtype=object)
        metadata = params.drop(columns=["label", "scenario"])
        splits[name] = make_split(
            name,
            ids,
            images,
            params["label"].to_numpy(),
            params["scenario"].to_numpy(dtype=object),
            metadata,
        )
    return Dataset(name="signs", class_names=SIGN_CLASSES, splits=splits)
