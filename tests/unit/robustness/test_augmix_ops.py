"""AugMix's operations against PIL's ImageOps (the reference code's library) and by geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from dnnsafety.robustness.augmix_ops import OPERATIONS, sample_levels


def _u8_images(n: int = 4, c: int = 3, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(40, 200, size=(n, c, size, size)).astype(np.uint8)
    x[0] = rng.integers(0, 256, size=(c, size, size))  # full range
    x[1, :, :, : size // 2] = 90  # few distinct values
    return x


def _pil(x: np.ndarray, fn) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Apply a PIL op to every channel of every image (each channel as an 'L' image)."""
    out = np.empty_like(x)
    for i in range(len(x)):
        for k in range(x.shape[1]):
            out[i, k] = np.asarray(fn(Image.fromarray(x[i, k], mode="L")))
    return out


def _ours(name: str, x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(x.astype(np.float32) / 255.0)
    return OPERATIONS[name](t, levels, np.random.default_rng(0)).numpy() * 255.0


@pytest.mark.parametrize("name", ["autocontrast", "equalize"])
def test_colour_ops_match_pil(name: str):
    x = _u8_images()
    ref = _pil(x, getattr(ImageOps, name)).astype(np.float64)
    diff = np.abs(_ours(name, x, np.full(len(x), 3.0)) - ref)
    if name == "equalize":
        assert diff.max() < 1e-3
    else:  # PIL truncates x * scale + offset; float rounding moves < 1% of values by 1
        assert diff.max() <= 1.0 + 1e-4 and np.mean(diff > 1e-3) < 0.01


def test_posterize_and_solarize_match_pil_at_the_papers_magnitudes():
    x = _u8_images()
    levels = np.array([0.5, 3.0, 6.0, 9.9])
    bits = 4 - (levels * 4 / 10).astype(int)
    thresholds = 256 - (levels * 256 / 10).astype(int)
    post = np.stack([_pil(x[i : i + 1], lambda im, b=b: ImageOps.posterize(im, b))[0]
                     for i, b in enumerate(bits)])  # fmt: skip
    sol = np.stack([_pil(x[i : i + 1], lambda im, t=t: ImageOps.solarize(im, t))[0]
                    for i, t in enumerate(thresholds)])  # fmt: skip
    np.testing.assert_allclose(_ours("posterize", x, levels), post, atol=1e-3)
    np.testing.assert_allclose(_ours("solarize", x, levels), sol, atol=1e-3)


def test_geometric_ops_move_a_planted_dot_as_told():
    x = torch.zeros(2, 1, 31, 31)
    x[:, :, 15, 20] = 1.0  # a dot 5 px right of the centre
    rng = np.random.default_rng(0)
    shifted = OPERATIONS["translate_x"](x, np.array([10.0, 10.0]), rng)  # int(31 / 3) = 10 px
    cols = shifted[:, 0, 15].argmax(dim=1).tolist()
    assert set(cols) <= {10, 30}
    up = OPERATIONS["translate_y"](x, np.array([3.0, 3.0]), rng)  # int(3 * 31 / 30) = 3 px
    assert set(up[:, 0, :, 20].argmax(dim=1).tolist()) <= {12, 18}
    turned = OPERATIONS["rotate"](x, np.array([10.0, 10.0]), rng)  # 30 degrees
    for img in turned[:, 0]:
        r, c = divmod(int(img.argmax()), 31)
        assert abs(np.hypot(r - 15, c - 15) - 5) < 1.0 and abs(r - 15) >= 2  # on the circle
    still = OPERATIONS["shear_x"](x, np.zeros(2), rng)
    torch.testing.assert_close(still, x)  # level 0: no shear


def test_every_op_keeps_shape_range_and_grey_and_colour_images():
    rng = np.random.default_rng(1)
    for c, size in ((1, 28), (3, 32)):
        x = torch.rand(5, c, size, size)
        for name, op in OPERATIONS.items():
            y = op(x, sample_levels(3, 5, rng), rng)
            assert y.shape == x.shape and y.dtype == torch.float32, name
            assert float(y.min()) >= 0 and float(y.max()) <= 1, name
    levels = sample_levels(3, 10_000, rng)
    assert levels.min() >= 0.1 and levels.max() <= 3
