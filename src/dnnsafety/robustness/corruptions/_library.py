"""Loading the ``imagecorruptions`` package (ImageNet-C's reference code) and running it.

``imagecorruptions`` 1.1.2 imports ``pkg_resources`` only to find its bundled frost images,
and setuptools >= 81 no longer ships ``pkg_resources``. :func:`library` imports it with a
stand-in ``pkg_resources`` offering just ``resource_filename`` (the package's folder joined
with the file name), placed in ``sys.modules`` for the import only.

Its functions work on one ``H x W`` (grey) or ``H x W x 3`` image in ``[0, 255]`` and draw
their randomness from NumPy's global generator; :func:`per_image` runs one over a batch with
the global generator seeded from the caller's and restored afterwards.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from dnnsafety.exceptions import ConfigError

ImageFn = Callable[[np.ndarray], np.ndarray]


def _resource_filename(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:  # pragma: no cover - the package just imported
        raise FileNotFoundError(f"cannot locate package {package!r}")
    return os.path.join(os.path.dirname(spec.origin), name)


@functools.cache
def library() -> Any:
    """The ``imagecorruptions.corruptions`` module.

    Raises
    ------
    ConfigError
        If ``imagecorruptions`` is not installed.
    """
    if importlib.util.find_spec("imagecorruptions") is None:
        raise ConfigError(
            "The ImageNet-C corruptions need the 'imagecorruptions' package: "
            "pip install imagecorruptions==1.1.2"
        )
    shim = None
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = _resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import imagecorruptions.corruptions as module
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    return module


@contextmanager
def global_numpy_seed(rng: np.random.Generator) -> Iterator[None]:
    """Seed NumPy's global generator from ``rng`` for the block; restore its state after."""
    state = np.random.get_state()
    np.random.seed(int(rng.integers(2**32)))
    try:
        yield
    finally:
        np.random.set_state(state)


def per_image(x: torch.Tensor, fn: ImageFn, rng: np.random.Generator) -> torch.Tensor:
    """Apply ``fn`` (an ``H x W [x 3]`` array in [0, 255] -> same) to every image of ``x``.

    Grey images go in as ``H x W``, colour ones as ``H x W x 3``; the result is divided by
    255 and clipped to [0, 1].
    """
    arr = x.detach().cpu().numpy().astype(np.float64) * 255.0
    out = np.empty_like(arr)
    grey = arr.shape[1] == 1
    with global_numpy_seed(rng), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, img in enumerate(arr):
            hw = img[0] if grey else img.transpose(1, 2, 0)
            res = np.asarray(fn(hw), dtype=np.float64)
            out[i] = res[None] if grey else res.transpose(2, 0, 1)
    return torch.from_numpy(np.clip(out / 255.0, 0.0, 1.0).astype(np.float32))
