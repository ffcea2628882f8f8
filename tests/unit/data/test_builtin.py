from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.config import DataConfig
from dnnsafety.data.builtin import DATASETS, fashion_mnist_dir, load_dataset
from dnnsafety.exceptions import ConfigError, InvalidInputError


def test_registry_lists_the_builtins():
    assert {"signs", "fashion-mnist", "digits", "folder", "npz"} <= set(DATASETS.names())


def test_fashion_mnist_is_the_real_dataset_with_injected_scenarios():
    cfg = DataConfig(name="fashion-mnist", n_train=3000, n_val=500, n_test=2000, n_pool=2000)
    ds = load_dataset(cfg, seed=0)
    assert ds.class_names[0] == "t-shirt" and ds.num_classes == 10
    assert ds.image_shape == (1, 28, 28)
    assert {k: len(v) for k, v in ds.splits.items()} == {
        "train": 3000,
        "val": 500,
        "test": 2000,
        "pool": 2000,
    }
    # real data: all 10 classes, roughly balanced, plausible pixel statistics
    counts = np.bincount(ds["train"].labels, minlength=10)
    assert counts.min() > 200
    nominal = ds["test"].images[torch.from_numpy(ds["test"].scenarios == "nominal")]
    assert 0.2 < float(nominal.mean()) < 0.4
    # scenarios are rare in train and common in test and pool
    assert np.mean(ds["train"].scenarios != "nominal") < 0.08
    assert np.mean(ds["test"].scenarios != "nominal") > 0.4
    assert np.mean(ds["pool"].scenarios != "nominal") > 0.4
    meta = ds["test"].metadata
    assert meta is not None and {"brightness", "rotation", "blur", "noise"} <= set(meta.columns)


def test_fashion_mnist_split_is_deterministic_and_disjoint():
    cfg = DataConfig(name="fashion-mnist", n_train=500, n_val=100, n_test=100, n_pool=300)
    a, b = load_dataset(cfg, seed=3), load_dataset(cfg, seed=3)
    assert torch.equal(a["train"].images, b["train"].images)
    flat = {s: a[s].images.flatten(1) for s in ("train", "pool")}
    nominal_train = flat["train"][torch.from_numpy(a["train"].scenarios == "nominal")]
    nominal_pool = flat["pool"][torch.from_numpy(a["pool"].scenarios == "nominal")]
    # no pool image is also a training image
    dist = torch.cdist(nominal_pool[:100], nominal_train)
    assert float(dist.min()) > 0


def test_fashion_mnist_missing_package_message(monkeypatch, tmp_path):
    monkeypatch.setattr("dnnsafety.data.builtin.FASHION_DIRS", (str(tmp_path),))
    monkeypatch.delenv("DNNSAFETY_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(InvalidInputError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist_dir()


def test_too_many_samples_requested():
    with pytest.raises(ConfigError, match="60,000"):
        load_dataset(DataConfig(name="fashion-mnist", n_train=59000, n_pool=5000), 0)
    with pytest.raises(ConfigError, match="1797"):
        load_dataset(DataConfig(name="digits", n_train=1700), 0)


def test_digits_resize_and_scenarios(digits):
    assert digits.image_shape == (1, 8, 8)
    big = load_dataset(DataConfig(name="digits", image_size=16), 0)
    assert big.image_shape == (1, 16, 16)
    assert set(np.unique(digits["test"].scenarios)) == {
        "nominal",
        "dark",
        "occlusion",
        "rotation",
        "blur",
        "noise",
    }
