"""The fast backbone runtimes give the features of the eager model read by a hook."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dnnsafety.exceptions import ConfigError
from dnnsafety.features import FeatureContext, make_source
from dnnsafety.features.runtime import PooledBlocks, penultimate_module
from dnnsafety.features.sources import (
    DEFAULT_BLOCKS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    _PenultimateHook,
    combine_blocks,
)


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
    source = make_source("backbone", image_size=64, runtime=runtime, blocks=()).fit(
        FeatureContext()
    )
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


def _block_reference(net: torch.nn.Module, images: torch.Tensor, size: int) -> np.ndarray:
    """Block 13's spatial mean, read by a hook on the eager model, beside the embedding, the
    two combined by ``combine_blocks`` (the rule the analysis uses for any two sources)."""
    seen: list[torch.Tensor] = []
    handle = net.get_submodule("features.13").register_forward_hook(
        lambda _m, _i, out: seen.append(out.mean(dim=(2, 3)))
    )
    try:
        last = _reference(net, images, size)
    finally:
        handle.remove()
    return combine_blocks([seen[0].detach().numpy(), last])


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_pooled_blocks_match_hooks_and_combine_blocks(runtime: str, images: torch.Tensor) -> None:
    source = make_source("backbone", image_size=64, runtime=runtime).fit(FeatureContext())
    assert DEFAULT_BLOCKS["mobilenet_v2"] == ("features.13",)  # the default holds block 13
    feats = source.transform(images)
    ref = _block_reference(source.net_, images, 64)
    assert feats.shape == ref.shape == (6, 96 + 1280)
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-4)
    # each block has the same norm per image, so the wide last block does not dominate
    np.testing.assert_allclose(np.linalg.norm(feats[:, :96], axis=1), 0.5**0.5, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-4)


def test_pooled_blocks_separate_what_the_last_block_pools_away() -> None:
    """Planted structure: two groups that differ only where the network keeps its mid-level
    channels apart. The last block's global mean cannot tell them apart (it is the same for
    both groups by construction), the pooled earlier block can."""
    torch.manual_seed(0)
    early = torch.nn.Conv2d(1, 2, 1, bias=False)
    early.weight.data = torch.tensor([[[[1.0]]], [[[-1.0]]]])
    net = torch.nn.Sequential(
        early,
        torch.nn.ReLU(),  # group A lights channel 0, group B channel 1
        torch.nn.Conv2d(2, 1, 1, bias=False),  # the last block sums both channels
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(1, 3),
    )
    net[2].weight.data.fill_(1.0)
    a = torch.ones(4, 1, 8, 8) * torch.rand(4, 1, 1, 1).add(1.0)
    x = torch.cat([a, -a])  # same |values|: the same sum, opposite channels
    plain = penultimate_module(net)(x).detach().numpy()
    both = PooledBlocks(penultimate_module(net), ("1",))(x).detach().numpy()
    np.testing.assert_allclose(plain[:4], plain[4:], rtol=1e-6)  # the groups coincide
    assert np.linalg.norm(both[:4, :2] - both[4:, :2], axis=1).min() > 0.9  # apart
    with pytest.raises(ConfigError, match="not modules"):
        PooledBlocks(penultimate_module(net), ("features.99",))
