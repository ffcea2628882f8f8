from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.data.dataset import Dataset, make_split, reveal_labels
from dnnsafety.exceptions import HiddenLabelsError, InvalidInputError


def _split(name: str, n: int = 4, size: int = 8, labels: list[int] | None = None):
    images = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    ids = [f"{name}-{i}" for i in range(n)]
    return make_split(
        name, ids, images, labels if labels is not None else [i % 2 for i in range(n)]
    )


def test_make_split_converts_uint8_greyscale_to_float_nchw():
    s = _split("train")
    assert s.images.shape == (4, 1, 8, 8)
    assert s.images.dtype == torch.float32
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
    assert list(s.scenarios) == ["unknown"] * 4  # no scenarios given: unknown, not nominal


def test_pool_labels_are_hidden_and_revealed_only_by_the_oracle():
    pool = _split("pool", labels=[1, 0, 1, 1])
    with pytest.raises(HiddenLabelsError, match="held back"):
        _ = pool.labels
    assert reveal_labels(pool, ["pool-2", "pool-1"]) == {"pool-2": 1, "pool-1": 0}
    with pytest.raises(InvalidInputError, match="pool-9"):
        reveal_labels(pool, ["pool-9"])
    # a subset of the pool stays hidden
    with pytest.raises(HiddenLabelsError):
        _ = pool.subset([0, 1]).labels


def test_labels_outside_class_list_name_the_sample():
    train = _split("train", labels=[0, 1, 5, 1])
    with pytest.raises(InvalidInputError, match="train-2"):
        Dataset("x", ("a", "b"), {"train": train, "test": _split("test")})


def test_inconsistent_image_sizes_are_refused():
    with pytest.raises(InvalidInputError, match="image_size"):
        Dataset("x", ("a", "b"), {"train": _split("train"), "test": _split("test", size=10)})


def test_missing_test_split_and_duplicate_ids_are_refused():
    with pytest.raises(InvalidInputError, match="'test'"):
        Dataset("x", ("a", "b"), {"train": _split("train")})
    with pytest.raises(InvalidInputError, match="not unique"):
        make_split("train", ["a", "a"], np.zeros((2, 4, 4), np.uint8), [0, 0])


def test_float_images_out_of_range_and_bad_labels_are_refused():
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        make_split("train", ["a"], np.full((1, 4, 4), 255.0, np.float32), [0])
    with pytest.raises(InvalidInputError, match="integers"):
        make_split("train", ["a"], np.zeros((1, 4, 4), np.uint8), [0.5])


def test_subset_keeps_order_and_metadata(digits):
    test = digits["test"]
    sub = test.subset([5, 2])
    assert list(sub.ids) == [test.ids[5], test.ids[2]]
    assert torch.equal(sub.images[0], test.images[5])
    assert sub.metadata is not None and len(sub.metadata) == 2
