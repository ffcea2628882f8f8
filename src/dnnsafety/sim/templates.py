"""Sign class templates: each class drawn once with PIL as an anti-aliased RGBA image.

Templates are drawn at 8x supersampling in normalised coordinates and box-filtered down, then
cached per resolution. :func:`sign_templates` returns them as a premultiplied ``K x 4 x R x R``
tensor for rendering; :func:`sign_template_image` as a PIL image for viewing.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from dnnsafety.exceptions import InvalidInputError

__all__ = [
    "LOOK_ALIKE_PAIRS",
    "SIGN_CLASSES",
    "SIGN_RADIUS",
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
