"""The 15 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) for small images.

Seven run the reference code of the ``imagecorruptions`` package with its ImageNet-C
parameters, which do not depend on the image size: Gaussian and shot noise, zoom blur, snow,
brightness, contrast and the elastic transform (scaled to the image by the package). Eight
are our own code, because the package fails on current NumPy / scikit-image / Pillow (fog,
glass blur, pixelate, JPEG), is not reproducible under a seed (impulse noise draws from a
fresh generator), measures its parameters in pixels of 224 px images (defocus, glass and
motion blur wipe out a 28 px image at severity 1) or crops a few pixels of a full-size frost
photograph, re-read for every image (frost: our code on the package's bundled photographs):
they follow Hendrycks' CIFAR-10-C code (``make_cifar_c.py``) and its parameters for 32 px
images. Defocus and motion blur match the package's kernels (tested).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

from dnnsafety.robustness.corruptions import _library
from dnnsafety.robustness.corruptions.base import Params, corruption

__all__ = ["disk_kernel", "motion_kernel_shifts", "plasma_fractal"]

LIB = "imagecorruptions"


def _library_fn(name: str) -> Callable[[torch.Tensor, int, np.random.Generator], torch.Tensor]:
    def run(x: torch.Tensor, severity: int, rng: np.random.Generator) -> torch.Tensor:
        fn = getattr(_library.library(), name)
        return _library.per_image(x, lambda img: fn(img, severity), rng)

    return run


def _register_library(name: str, family: str, help: str) -> None:
    run = _library_fn(name)

    def sample(
        x: torch.Tensor, severity: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, Params]:
        return run(x, severity, rng), {}

    sample.__name__ = name
    corruption(name, family, LIB, help)(sample)


_register_library("gaussian_noise", "noise", "Additive Gaussian noise (ImageNet-C)")
_register_library("shot_noise", "noise", "Poisson (shot) noise (ImageNet-C)")
_register_library("zoom_blur", "blur", "Zoom blur: the image averaged over zooms (ImageNet-C)")
_register_library("snow", "weather", "Snow flakes with motion streaks (ImageNet-C)")
_register_library("brightness", "weather", "Brighter image (HSV value + c; ImageNet-C)")
_register_library("contrast", "digital", "Reduced contrast (ImageNet-C)")
_register_library("elastic_transform", "digital", "Elastic deformation (ImageNet-C)")


# --------------------------------------------------------------------------- own code

IMPULSE = (0.03, 0.06, 0.09, 0.17, 0.27)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))
MOTION = ((10, 1.0), (10, 1.5), (10, 2.0), (10, 2.5), (12, 3.0))
FOG = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)
JPEG = (80, 65, 58, 50, 40)
LUMA = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


@corruption("impulse_noise", "noise", help="Salt-and-pepper noise (ImageNet-C parameters)")
def impulse_noise(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Set a share ``IMPULSE[severity]`` of the values to 0 or 1 (half each)."""
    amount = IMPULSE[severity - 1]
    u = torch.as_tensor(rng.random(tuple(x.shape)), dtype=torch.float32)
    out = torch.where(u < amount / 2, torch.zeros_like(x), x)
    out = torch.where((u >= amount / 2) & (u < amount), torch.ones_like(x), out)
    return out, {}


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: an aliased disk, smoothed by a 3x3 Gaussian, summing to 1."""
    half = 8 if radius <= 8 else math.ceil(radius)
    grid = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(grid, grid)
    kernel = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    kernel /= kernel.sum()
    kernel = gaussian_filter(kernel, sigma=alias_blur, mode="mirror", truncate=1.0 / alias_blur)
    return kernel / kernel.sum()


def _convolve(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolve every channel with one odd-sized kernel, borders reflected."""
    k = torch.as_tensor(kernel, dtype=torch.float32)
    kh, kw = k.shape
    n, c, h, w = x.shape
    pad_h, pad_w = kh // 2, kw // 2
    flat = x.reshape(n * c, 1, h, w)
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    flat = F.pad(flat, (pad_w, pad_w, pad_h, pad_h), mode=mode)
    return F.conv2d(flat, k[None, None]).reshape(n, c, h, w)


@corruption("defocus_blur", "blur", help="Defocus (disk) blur (CIFAR-10-C parameters)")
def defocus_blur(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Convolve with :func:`disk_kernel` of ``DEFOCUS[severity]`` (radius, alias blur)."""
    return _convolve(x, disk_kernel(*DEFOCUS[severity - 1])), {}


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    arr = x.numpy()
    out = gaussian_filter(arr, sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0)
    return torch.from_numpy(out.astype(np.float32))


@corruption("glass_blur", "blur", help="Glass blur: blur, shuffle neighbours, blur (CIFAR-10-C)")
def glass_blur(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Gaussian blur, swap each pixel with a random neighbour within ``delta``, blur again."""
    sigma, delta, iterations = GLASS[severity - 1]
    out = _gaussian(x, sigma)
    n, _, h, w = out.shape
    rows = torch.arange(n)
    for _ in range(iterations):
        for i in range(h - delta, delta, -1):
            for j in range(w - delta, delta, -1):
                d = rng.integers(-delta, delta, size=(2, n))
                ii = torch.as_tensor(i + d[1])
                jj = torch.as_tensor(j + d[0])
                here = out[:, :, i, j].clone()
                out[:, :, i, j] = out[rows, :, ii, jj]
                out[rows, :, ii, jj] = here
    return _gaussian(out, sigma), {}


def motion_kernel_shifts(radius: int, sigma: float, angle: float) -> list[tuple[int, int, float]]:
    """The ``(dy, dx, weight)`` taps of ImageNet-C's motion blur along ``angle`` (degrees)."""
    width = 2 * radius + 1
    taps = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    py, px = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(py, px)
    return [
        (-math.ceil(i * py / hyp - 0.5), -math.ceil(i * px / hyp - 0.5), float(taps[i]))
        for i in range(width)
    ]


@corruption("motion_blur", "blur", help="Motion blur at a random angle (CIFAR-10-C parameters)")
def motion_blur(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Gaussian-weighted average of the image shifted along a random angle in [-45, 45]
    (edges repeated), as one grouped convolution with a per-image kernel."""
    radius, sigma = MOTION[severity - 1]
    angles = rng.uniform(-45, 45, len(x))
    n, c, h, w = x.shape
    reach = 2 * radius  # the taps shift by 0 .. 2 * radius pixels
    size = 2 * reach + 1
    kernels = np.zeros((n, size, size), dtype=np.float32)
    for k, angle in enumerate(angles):
        for dy, dx, weight in motion_kernel_shifts(radius, sigma, float(angle)):
            if abs(dy) >= h or abs(dx) >= w:
                break
            kernels[k, reach - dy, reach - dx] += weight
    weight_t = torch.from_numpy(kernels).repeat_interleave(c, dim=0)[:, None]
    flat = F.pad(x.reshape(1, n * c, h, w), (reach,) * 4, mode="replicate")
    out = F.conv2d(flat, weight_t, groups=n * c).reshape(n, c, h, w)
    return out, {"angle": angles}


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A ``size x size`` diamond-square height map in [0, 1] (ImageNet-C's fog).

    ``size`` must be a power of two.
    """
    arr = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled(a: np.ndarray) -> np.ndarray:
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = arr[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square += np.roll(square, -1, axis=1)
        arr[half:size:step, half:size:step] = wibbled(square)
        down_right = arr[half:size:step, half:size:step]
        up_left = arr[0:size:step, 0:size:step]
        left = down_right + np.roll(down_right, 1, axis=0) + up_left + np.roll(up_left, -1, axis=1)
        arr[0:size:step, half:size:step] = wibbled(left)
        top = down_right + np.roll(down_right, 1, axis=1) + up_left + np.roll(up_left, -1, axis=0)
        arr[half:size:step, 0:size:step] = wibbled(top)
        step //= 2
        wibble /= decay
    arr -= arr.min()
    return arr / max(arr.max(), 1e-12)


@corruption("fog", "weather", help="Fog: a plasma-fractal haze (CIFAR-10-C parameters)")
def fog(x: torch.Tensor, severity: int, rng: np.random.Generator) -> tuple[torch.Tensor, Params]:
    """Add ``c * plasma_fractal`` and rescale so the brightest value keeps its level."""
    strength, decay = FOG[severity - 1]
    h, w = x.shape[-2:]
    size = 1 << (max(h, w, 2) - 1).bit_length()
    haze = np.stack([plasma_fractal(size, decay, rng)[:h, :w] for _ in range(len(x))])
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    out = x + strength * torch.as_tensor(haze, dtype=torch.float32)[:, None]
    return out * top / (top + strength), {}


FROST = ((1.0, 0.2), (1.0, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
FROST_SCALE = 0.2


@functools.cache
def frost_textures() -> tuple[np.ndarray, ...]:
    """ImageNet-C's frost photographs (bundled with ``imagecorruptions``), RGB in [0, 1],
    shrunk by :data:`FROST_SCALE` as CIFAR-10-C does, read once."""
    folder = Path(_library.library().__file__).parent / "frost"
    out = []
    for name in FROST_FILES:
        with Image.open(folder / name) as img:
            rgb = img.convert("RGB")
            size = (round(rgb.width * FROST_SCALE), round(rgb.height * FROST_SCALE))
            small = rgb.resize(size, Image.Resampling.BICUBIC)
        out.append(np.asarray(small, dtype=np.float32) / 255.0)
    return tuple(out)


@corruption("frost", "weather", LIB, help="Frost photo blended over the image (CIFAR-10-C)")
def frost(x: torch.Tensor, severity: int, rng: np.random.Generator) -> tuple[torch.Tensor, Params]:
    """``a * x + b * frost``: a random crop of one of ImageNet-C's frost photographs (the
    first five, as ImageNet-C draws), shrunk as in CIFAR-10-C; grey images get its luma."""
    a, b = FROST[severity - 1]
    textures = frost_textures()
    n, c, h, w = x.shape
    layer = np.empty((n, c, h, w), dtype=np.float32)
    for i in range(n):
        tex = textures[int(rng.integers(5))]
        top = int(rng.integers(0, tex.shape[0] - h + 1))
        left = int(rng.integers(0, tex.shape[1] - w + 1))
        crop = tex[top : top + h, left : left + w]
        layer[i] = (crop @ LUMA)[None] if c == 1 else crop.transpose(2, 0, 1)
    return a * x + b * torch.from_numpy(layer), {}


@corruption("pixelate", "digital", help="Pixelation: box downsampling (CIFAR-10-C parameters)")
def pixelate(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Shrink by ``PIXELATE[severity]`` with box averaging and enlarge back (nearest)."""
    h, w = x.shape[-2:]
    c = PIXELATE[severity - 1]
    small = F.adaptive_avg_pool2d(x, (max(1, int(h * c)), max(1, int(w * c))))
    return F.interpolate(small, size=(h, w), mode="nearest"), {}


@corruption("jpeg_compression", "digital", help="JPEG artefacts (CIFAR-10-C quality levels)")
def jpeg_compression(
    x: torch.Tensor, severity: int, rng: np.random.Generator
) -> tuple[torch.Tensor, Params]:
    """Save every image as JPEG at quality ``JPEG[severity]`` (Pillow) and read it back."""
    quality = JPEG[severity - 1]
    arr = (x.numpy() * 255.0).round().astype(np.uint8)
    out = np.empty(arr.shape, dtype=np.float32)
    for i, img in enumerate(arr):
        pil = Image.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, "JPEG", quality=quality)
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0
        out[i] = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
    return torch.from_numpy(out), {}
