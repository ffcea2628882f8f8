"""The ``adversarial`` mitigation: PGD examples in every batch, step size as a parameter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.exceptions import ConfigError
from dnnsafety.retraining.mitigations.adversarial import AdversarialFineTuning, PGDMixing

EPS = 8 / 255


def _linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(16, 3, 6, 6, generator=gen)  # far from the [0, 1] bounds
    return x, torch.arange(16) % 4


@pytest.mark.parametrize(
    ("fraction", "at_edge"),
    [(2.5 / 3, True), (0.25, False)],
)
def test_three_steps_of_the_madry_rule_land_every_pixel_on_the_edge(fraction, at_edge):
    """Hand-checked: from a uniform random start in the L-inf ball, 3 steps of ``2.5 eps / 3``
    in one gradient sign (a linear model at a tiny eps: the sign seldom changes) travel
    ``2.5 eps > 2 eps``, so after projection (nearly) every pixel sits at ``+-eps``. Steps of
    ``eps / 4`` travel ``0.75 eps``: only starts beyond ``0.25 eps`` on the gradient's side
    reach the edge, 37.5% of the pixels in expectation."""
    x, y = _batch()
    mix = PGDMixing(EPS, share=1.0, steps=3, step_fraction=fraction)
    adv, y_out = mix(_linear_model(), x, y, torch.Generator().manual_seed(1))
    delta = (adv - x).abs()
    assert torch.equal(y_out, y)
    assert float(delta.max()) <= EPS + 1e-6
    on_edge = float((delta > EPS - 1e-5).float().mean())
    assert (on_edge > 0.99) if at_edge else (0.3 < on_edge < 0.45)


def test_share_replaces_that_many_rows_and_keeps_the_rest():
    x, y = _batch()
    mix = PGDMixing(EPS, share=0.25, steps=1, step_fraction=1.0)
    adv, _ = mix(_linear_model(), x, y, torch.Generator().manual_seed(1))
    changed = (adv != x).flatten(1).any(dim=1)
    assert int(changed.sum()) == 4


def test_plan_reports_the_step_fraction_and_refuses_a_bad_one(digits):
    from dnnsafety.retraining.mitigation import MitigationContext

    context = MitigationContext(model=_linear_model(), train=digits["train"])
    plan = AdversarialFineTuning(steps=3, step_fraction=2.5 / 3).plan(context, random_state=0)
    assert plan.info["pgd_step_fraction"] == pytest.approx(2.5 / 3)
    assert len(plan.labels) == len(digits["train"].labels)
    assert plan.labels.dtype == np.int64
    with pytest.raises(ConfigError, match="step_fraction"):
        AdversarialFineTuning(step_fraction=0.0).plan(context, random_state=0)
