"""Batched rendering of sign images from a parameter table.

The template is placed with an affine warp (rotation, scale, position) over a cluttered
scene-like background (:mod:`dnnsafety.sim.backgrounds`), partly hidden by an occluder, and
passed through haze, colour cast, brightness, contrast, per-image Gaussian blur and sensor
noise. Every random choice not recorded in the parameter table (background layout, occluder
colour, noise pattern) comes from generators keyed by the seed and the image's position, so the
same parameters and seed give bit-identical images whatever the chunk size.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dnnsafety._validation import check_int
from dnnsafety.exceptions import InvalidInputError
from dnnsafety.sim.backgrounds import (
    _BANK_SIZE,
    _GROUND,
    _SKY,
    _background,
    _bank_atlas,
    _coords,
    _sample_atlas,
    _smooth_field,
)
from dnnsafety.sim.scenarios import OCCLUSION_SIDES, PARAMETER_COLUMNS
from dnnsafety.sim.templates import SIGN_CLASSES, SIGN_RADIUS, _templates

__all__ = ["render_signs"]

_RNG_BLOCK = 256
_HAZE = (0.78, 0.8, 0.83)
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
    size = check_int("size", size, 8, 256)
    seed = check_int("seed", seed, 0)
    chunk_size = check_int("chunk_size", chunk_size, 1)
    if num_threads is not None:
        num_threads = check_int("num_threads", num_threads, 1)
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
