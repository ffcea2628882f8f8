from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError
from dnnsafety.robustness.faults import EXPONENT_BITS, sample_bit_flips
from dnnsafety.robustness.ranger import ClippedActivation, Ranger, activation_layers, profile_bounds
from dnnsafety.robustness.sweep import fault_campaign, predict_labels
from dnnsafety.testing import check_model_restored


def _net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(6 * 16, 16), nn.ReLU(), nn.Linear(16, 4),
    ).eval()  # fmt: skip


def test_bounds_are_the_range_of_each_activation_on_training_data():
    model = _net()
    x = torch.rand(50, 1, 8, 8)
    bounds = check_model_restored(model, profile_bounds, model, x, None, 1.0, 7)
    assert list(bounds) == activation_layers(model) == ["1", "5"]
    with torch.no_grad():
        a1 = model[1](model[0](x))
        a5 = model[:6](x)
    assert bounds["1"] == (float(a1.min()), pytest.approx(float(a1.max())))
    assert bounds["5"][1] == pytest.approx(float(a5.max()))
    tight = profile_bounds(model, x, quantile=0.9)
    assert tight["1"][1] < bounds["1"][1]


def test_ranger_keeps_clean_outputs_clips_faults_and_exports():
    model = _net()
    x = torch.rand(80, 1, 8, 8)
    hardened = check_model_restored(model, Ranger.from_training_data, model, x)
    assert torch.allclose(hardened(x), model(x))
    assert isinstance(hardened.model.get_submodule("1"), ClippedActivation)
    assert [n for n, _ in hardened.model.named_parameters()] == [
        n for n, _ in model.named_parameters()
    ]
    clip = hardened.model.get_submodule("5")
    y = clip(torch.tensor([-1.0, 1e30, float("nan")]))
    assert y.tolist() == [0.0, float(clip.high), float(clip.low)]
    scripted = torch.jit.script(hardened)
    assert torch.allclose(scripted(x), model(x))
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    assert torch.allclose(torch.jit.load(buf)(x), model(x))
    state = hardened.state_dict()
    assert "model.1.high" in state and "model.5.low" in state
    assert hardened.bounds()["1"] == pytest.approx(profile_bounds(model, x)["1"])


def test_ranger_cuts_exponent_bit_corruptions_on_a_planted_task():
    torch.manual_seed(0)
    x = torch.rand(120, 1, 8, 8)
    model = _net()
    y = predict_labels(model, x)
    hardened = Ranger.from_training_data(model, x)
    faults = sample_bit_flips(model, 60, bits=EXPONENT_BITS, random_state=0)
    plain = fault_campaign(model, x, y, faults).rate()
    clipped = fault_campaign(hardened.model, x, y, faults).rate()
    assert plain > 0.01 and clipped < plain / 2


def test_bad_bounds_are_refused():
    model = _net()
    with pytest.raises(ConfigError, match="no module"):
        Ranger(model, {"9": (0.0, 1.0)})
    with pytest.raises(ConfigError, match="low <= high"):
        Ranger(model, {"1": (1.0, 0.0)})
    with pytest.raises(ConfigError, match="no activation"):
        profile_bounds(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), torch.rand(2, 1, 8, 8))
    assert np.isfinite(list(profile_bounds(model, torch.rand(3, 1, 8, 8)).values())).all()
