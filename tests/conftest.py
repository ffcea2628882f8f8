from __future__ import annotations

import logging

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


@pytest.fixture(autouse=True)
def _fresh_logging():
    """The CLI configures logging on the (captured) stderr of the test that calls it; drop
    those handlers afterwards so a later test does not log into a closed stream."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        ours = type(handler) is logging.StreamHandler  # pytest's own handlers are subclasses
        if ours:
            root.removeHandler(handler)
    logging.getLogger("dnnsafety").setLevel(logging.NOTSET)
