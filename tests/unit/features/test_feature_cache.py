"""Features are computed once per input and source identity, and recomputed when it changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.features import FeatureContext, make_source
from dnnsafety.features.cache import FeatureCache, cached_transform
from dnnsafety.features.sources import PixelFeatures
from dnnsafety.pipeline.analyze.safe import cached_features
from dnnsafety.runs import RunDir


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows embedded by the pixel source, per call."""
    calls: list[int] = []
    original = PixelFeatures._embed

    def embed(self: PixelFeatures, batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(PixelFeatures, "_embed", embed)
    return calls


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_second_call_computes_nothing_and_new_inputs_only(tmp_path, counted) -> None:
    source = make_source("pixels").fit(FeatureContext())
    images, ids = _images(10), [f"s{i}" for i in range(10)]
    first = cached_transform(tmp_path, source, images[:6], ids[:6])
    assert sum(counted) == 6
    again = cached_transform(tmp_path, source, images[:6], ids[:6])
    assert sum(counted) == 6  # nothing recomputed
    np.testing.assert_array_equal(again, first)
    both = cached_transform(tmp_path, source, images[[9, 0, 7, 3]], [ids[i] for i in (9, 0, 7, 3)])
    assert sum(counted) == 6 + 2  # only s9 and s7 are new
    np.testing.assert_array_equal(both, images[[9, 0, 7, 3]].reshape(4, -1).numpy())
    assert len(FeatureCache(tmp_path)) == 8  # kept on disk for the next process


def test_same_id_with_other_pixels_is_recomputed(tmp_path, counted) -> None:
    source = make_source("pixels").fit(FeatureContext())
    cached_transform(tmp_path, source, _images(3, seed=0), ["a", "b", "c"])
    out = cached_transform(tmp_path, source, _images(3, seed=1), ["a", "b", "c"])
    assert sum(counted) == 6
    np.testing.assert_array_equal(out, _images(3, seed=1).reshape(3, -1).numpy())


def test_a_changed_option_invalidates(tmp_path, counted) -> None:
    run = RunDir(tmp_path)
    images, ids = _images(4), ["a", "b", "c", "d"]
    wide = make_source("pixels", max_side=32).fit(FeatureContext())
    cached_features(run, wide, images, ids, key="k")
    cached_features(run, wide, images, ids, key="k")
    assert sum(counted) == 4
    narrow = make_source("pixels", max_side=4).fit(FeatureContext())
    out = cached_features(run, narrow, images, ids, key="k")
    assert sum(counted) == 8  # another parameter value: computed afresh
    assert out.shape == (4, 16)
    cached_features(run, wide, images, ids, key="other model")
    assert sum(counted) == 12  # the caller's key (model, seed) is part of the identity
