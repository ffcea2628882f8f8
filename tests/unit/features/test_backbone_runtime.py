"""The fast backbone runtimes give the features of the eager model read by a hook."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dnnsafety.exceptions import ConfigError
from dnnsafety.features import FeatureContext, make_source
from dnnsafety.features.runtime import penultimate_module
from dnnsafety.features.sources import IMAGENET_MEAN, IMAGENET_STD, _PenultimateHook


def _reference(net: torch.nn.Module, images: torch.Tensor, size: int) -> np.ndarray:
    """The previous path: eager model, contiguous memory, no_grad, last-linear input hook."""
    x = images.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        return _PenultimateHook(net)(x).numpy()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_fast_runtime_matches_the_eager_hook_path(runtime: str, images: torch.Tensor) -> None:
    source = make_source("backbone", image_size=64, runtime=runtime).fit(FeatureContext())
    assert source.runner_.runtime == runtime
    feats = source.transform(images)
    ref = _reference(source.net_, images, 64)
    assert feats.shape == ref.shape == (6, 1280)
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-4)

    # the nearest neighbour of every image is the same in both spaces
    def nn_of(f: np.ndarray) -> np.ndarray:
        d = ((f[:, None] - f[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return d.argmin(1)

    np.testing.assert_array_equal(nn_of(feats), nn_of(ref))


def test_fitted_onnx_source_pickles(images: torch.Tensor) -> None:
    source = make_source("backbone", image_size=32, runtime="onnxruntime").fit(FeatureContext())
    first = source.transform(images[:2])
    again = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(again.transform(images[:2]), first)


def test_penultimate_module_cuts_at_the_last_linear() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    cut = penultimate_module(net)
    x = torch.rand(2, 4)
    assert cut(x).shape == (2, 3)
    assert net(x).shape == (2, 2)  # the original is left unchanged
    with pytest.raises(ConfigError, match="no nn\\.Linear"):
        penultimate_module(torch.nn.Flatten())


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ConfigError, match="runtime"):
        make_source("backbone", image_size=32, runtime="tensorrt").fit(FeatureContext())
