from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.robustness.sweep import (
    CellStore,
    cell_seed,
    corruption_errors,
    corruption_sweep,
    mean_corruption_error,
    missing_sweep,
    predict_labels,
)
from dnnsafety.testing import check_model_restored


class _Brightness(nn.Module):
    """Class 1 when the image's mean is above 0.3: a planted, fully known classifier."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([0.3 - m, m - 0.3], dim=1)


def _data() -> tuple[torch.Tensor, np.ndarray]:
    x = torch.cat([torch.full((20, 1, 8, 8), 0.1), torch.full((20, 1, 8, 8), 0.6)])
    return x, np.array([0] * 20 + [1] * 20)


def test_corruption_error_and_mce_by_hand():
    model = {"fog": {1: 0.9, 2: 0.7}, "snow": {1: 0.8, 2: 0.8}}
    ref = {"fog": {1: 0.8, 2: 0.6}, "snow": {1: 0.6, 2: 0.6}}
    ce = corruption_errors(model, ref)
    assert ce["fog"] == pytest.approx((0.1 + 0.3) / (0.2 + 0.4))
    assert ce["snow"] == pytest.approx(0.4 / 0.8)
    assert mean_corruption_error(ce) == pytest.approx((0.4 / 0.6 + 0.5) / 2)
    assert corruption_errors(ref, ref) == {"fog": 1.0, "snow": 1.0}
    with pytest.raises(ConfigError, match="no error"):
        corruption_errors(model, {"fog": {1: 1.0, 2: 1.0}})


def test_sweep_measures_the_planted_weakness_and_resumes():
    model = _Brightness()
    x, y = _data()
    saved: dict[str, object] = {}
    acc = check_model_restored(
        model, corruption_sweep, model, x, y, ["dark", "gaussian_noise"], (1, 5), 0,
        CellStore({}, saved.__setitem__),
    )  # fmt: skip
    assert acc["dark"][1] == 1.0  # brightness x0.6-0.7 keeps 0.6 above 0.3
    assert acc["dark"][5] == 0.5  # x0.04-0.12 turns every bright image dark
    assert set(saved) == {"dark/1", "dark/5", "gaussian_noise/1", "gaussian_noise/5"}
    calls: list[str] = []
    partial = {k: v for k, v in saved.items() if k != "dark/5"}
    again = corruption_sweep(
        model, x, y, ["dark", "gaussian_noise"], (1, 5), 0,
        CellStore(partial, lambda k, v: calls.append(k)),
    )  # fmt: skip
    assert calls == ["dark/5"] and again == acc
    assert cell_seed(0, "dark/5") != cell_seed(0, "dark/1") != cell_seed(1, "dark/1")


def test_missing_sweep_rate_zero_is_the_clean_accuracy():
    model = _Brightness()
    x, y = _data()
    curves = missing_sweep(model, x, y, ["dropped_pixels", "dropped_channel"], (0.0, 0.9))
    clean = float(np.mean(predict_labels(model, x) == y))
    assert curves["dropped_pixels"][0.0] == clean == 1.0
    assert curves["dropped_pixels"][0.9] == 0.5  # 90% black: every bright image reads dark
    with pytest.raises(InvalidInputError):
        missing_sweep(model, x, y[:3])


def test_non_finite_outputs_count_as_a_wrong_class():
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(len(x), 2)
            out[0, 0] = float("nan")
            return out

    assert predict_labels(Broken(), torch.zeros(3, 1, 2, 2)).tolist() == [-1, 0, 0]
