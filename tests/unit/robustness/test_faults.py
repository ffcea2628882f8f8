from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError
from dnnsafety.robustness.faults import (
    EXPONENT_BITS,
    activation_fault,
    flip_bit,
    flip_float32,
    injectable_parameters,
    sample_bit_flips,
    stuck_at,
    weight_noise,
)
from dnnsafety.robustness.sweep import CellStore, fault_campaign, predict_labels
from dnnsafety.testing import check_model_restored


def _reference_flip(value: float, bit: int) -> float:
    (as_int,) = struct.unpack("<I", struct.pack("<f", value))
    return struct.unpack("<f", struct.pack("<I", as_int ^ (1 << bit)))[0]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3)
    ).eval()


@pytest.mark.parametrize("bit", [0, 5, 22, 23, 29, 30, 31])
@pytest.mark.parametrize("value", [0.0123, -1.5, 3.75e-3])
def test_flip_float32_matches_the_ieee754_reference(bit, value):
    got = float(flip_float32(torch.tensor([value]), bit)[0])
    want = _reference_flip(value, bit)
    assert got == want or (np.isnan(got) and np.isnan(want))


def test_sign_and_top_exponent_bits_do_what_ieee754_says():
    assert float(flip_float32(torch.tensor([0.5]), 31)[0]) == -0.5
    assert float(flip_float32(torch.tensor([0.5]), 30)[0]) == pytest.approx(0.5 * 2.0**128)
    assert float(flip_float32(torch.tensor([1.0]), 22)[0]) == 1.5


def test_flip_bit_changes_one_weight_in_the_block_and_restores_it_even_on_error():
    model = _net()
    w = model.get_parameter("3.weight")
    w = w.detach()
    original = float(w.view(-1)[7])

    def inject() -> None:
        with flip_bit(model, "3.weight", 7, 30) as faulty:
            assert float(w.view(-1)[7]) == faulty == _reference_flip(original, 30)
            assert (w.view(-1) != faulty).sum() == w.numel() - 1
            raise RuntimeError("inside the block")

    with pytest.raises(RuntimeError):
        check_model_restored(model, inject)
    assert float(w.view(-1)[7]) == original
    with pytest.raises(ConfigError, match="no parameter"), flip_bit(model, "nope.weight", 0, 1):
        pass
    with pytest.raises(ConfigError, match="index"), flip_bit(model, "3.weight", 10**6, 1):
        pass


def test_stuck_at_zeroes_the_chosen_channels_of_output_or_input():
    model = _net()
    x = torch.rand(5, 1, 6, 6)
    seen = {}
    hook = model[1].register_forward_hook(lambda m, i, o: seen.__setitem__("relu_in", i[0]))

    def run(layer: str, neurons: list[int], at: str) -> torch.Tensor:
        with stuck_at(model, layer, neurons, at=at):
            return model(x)

    check_model_restored(model, run, "0", [1, 3], "output")
    assert (seen["relu_in"][:, [1, 3]] == 0).all() and (seen["relu_in"][:, 0] != 0).any()
    hook.remove()
    out = check_model_restored(model, run, "3", list(range(144)), "input")
    assert torch.allclose(out, model[3].bias.expand(5, 3))
    with pytest.raises(ConfigError, match="neuron indices"), stuck_at(model, "0", [9]):
        model(x)


def test_activation_fault_flips_one_element_per_input():
    model = _net()
    x = torch.rand(4, 1, 6, 6)
    clean = model[0](x).flatten(1)
    seen = {}
    model[1].register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].flatten(1)))
    with activation_fault(model, "0", index=5, bit=31):
        model(x)
    diff = (seen["x"] != clean).float().sum(dim=0)
    assert diff[5] == 4 and diff.sum() == 4
    assert torch.equal(seen["x"][:, 5], -clean[:, 5])
    with pytest.raises(ConfigError, match="exactly one"), activation_fault(model, "0", 1):
        pass


def test_weight_noise_moves_outputs_in_the_block_and_restores_the_weights():
    model = _net()
    x = torch.rand(4, 1, 6, 6)
    before = model(x).detach()

    def noisy() -> torch.Tensor:
        with weight_noise(model, 0.5, random_state=0):
            return model(x).detach()

    out = check_model_restored(model, noisy)
    assert not torch.allclose(out, before)
    assert torch.equal(noisy(), out)  # same seed, same noise


def test_random_flips_are_seeded_and_hit_layers_by_size():
    model = _net()
    a = sample_bit_flips(model, 2000, random_state=3)
    assert a == sample_bit_flips(model, 2000, random_state=3)
    sizes = {n: model.get_parameter(n).numel() for n in injectable_parameters(model)}
    share = np.mean([f.parameter == "3.weight" for f in a])
    assert share == pytest.approx(sizes["3.weight"] / sum(sizes.values()), abs=0.03)
    exp = sample_bit_flips(model, 200, bits=EXPONENT_BITS, random_state=0)
    assert {f.bit for f in exp} <= set(EXPONENT_BITS)
    assert all(0 <= f.index < sizes[f.parameter] for f in a)


def test_campaign_exponent_flips_corrupt_more_than_low_mantissa_flips_and_resume():
    model = _net()
    x = torch.rand(64, 1, 6, 6)
    y = predict_labels(model, x)
    low = sample_bit_flips(model, 40, bits=[0, 1, 2], random_state=0)
    high = sample_bit_flips(model, 40, bits=[30], random_state=0)
    c_low = check_model_restored(model, fault_campaign, model, x, y, low)
    c_high = fault_campaign(model, x, y, high)
    assert c_low.rate() == 0.0 and c_high.rate() > 0.05
    assert c_high.clean_accuracy == 1.0
    assert set(c_high.by("bit")) == {"30"} and c_high.by("bit")["30"]["n"] == 40
    saved: dict[str, object] = {}
    fault_campaign(model, x, y, high, CellStore({}, saved.__setitem__))
    assert len(saved) == 40
    calls: list[str] = []
    again = fault_campaign(model, x, y, high, CellStore(dict(saved), lambda k, v: calls.append(k)))
    assert calls == [] and np.array_equal(again.sdc, c_high.sdc)
