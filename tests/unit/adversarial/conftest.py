from __future__ import annotations

import pytest
import torch

from dnnsafety.config import TrainConfig
from dnnsafety.data.dataset import Dataset
from dnnsafety.models.training import train_model
from dnnsafety.models.zoo import SmallCNN


@pytest.fixture(scope="package")
def digits_model(digits: Dataset) -> torch.nn.Module:
    """The zoo CNN trained for a few epochs on the 8x8 digits (about 90% test accuracy)."""
    torch.manual_seed(0)
    model = SmallCNN(1, 10, 8)
    train = digits["train"]
    cfg = TrainConfig(epochs=8, batch_size=64, lr=3e-3, select_by="train")
    train_model(model, train.images, train.labels, None, None, cfg, seed=0)
    return model.eval()
