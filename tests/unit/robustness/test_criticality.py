from __future__ import annotations

import torch
from torch import nn

from dnnsafety.robustness.criticality import neuron_relevance, relevance_vs_random
from dnnsafety.testing import check_model_restored


def _planted() -> nn.Module:
    """8 hidden units; the classifier reads unit 0 strongly (it decides class 0 against the
    bias of class 1), units 1-7 barely."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        model[1].bias.fill_(0.5)
        head = model[3].weight
        head[:, 1:] *= 0.01
        head[:, 0] = torch.tensor([3.0, -1.0, -2.0])
        model[3].bias.copy_(torch.tensor([0.0, 0.5, 0.0]))  # without unit 0, class 1 wins
    return model


def test_the_planted_critical_unit_is_the_most_relevant_and_beats_random_units():
    model = _planted()
    x = torch.rand(200, 1, 4, 4)
    relevance = neuron_relevance(model, x, "3")
    assert relevance.shape == (8,) and relevance.argmax() == 0
    result = check_model_restored(model, relevance_vs_random, model, x, "3", 1, 30, 0)
    assert result.top_sdc > 0.2
    assert result.random_sdc.mean() < result.top_sdc
    assert result.p_value < 0.2
    assert result.spearman > 0.3
    assert set(result.to_dict()) >= {"layer", "top_sdc", "random_sdc_mean", "p_value"}
