from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.config import DataConfig
from dnnsafety.data.builtin import load_dataset
from dnnsafety.data.dataset import Dataset

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """The tiny built-in digits set (with injected scenarios)."""
    return load_dataset(DataConfig(name="digits"), seed=0)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
