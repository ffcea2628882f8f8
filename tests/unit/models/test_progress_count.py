"""The training progress counts training images, not the rows an augmentation adds."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dnnsafety import progress
from dnnsafety.config import TrainConfig
from dnnsafety.models.training import train_model


def test_progress_counts_images_when_the_augmentation_adds_rows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """TRADES pairing (clean + adversarial rows) and AugMix views double or triple a batch:
    the epoch still covers the training set once, so the progress must end at N/N (100%)."""
    monkeypatch.setattr(progress, "LOG_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "_ENABLED", False)
    monkeypatch.setattr(progress, "_LOG_LINES", True)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((40, 1, 4, 4)).astype(np.float32))
    y = rng.integers(0, 2, size=40)

    def doubled(model, xb, yb, gen):  # type: ignore[no-untyped-def]
        return torch.cat([xb, xb]), torch.cat([yb, yb])

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    cfg = TrainConfig(epochs=1, batch_size=16, select_by="train")
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        train_model(model, x, y, None, None, cfg, augment=doubled)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1:")]
    assert lines and lines[-1].startswith("epoch 1/1: 40/40 img (100%), done in")
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert max(counts) == 40
