"""TRADES fine-tuning: the loss against a hand computation, the KL attack, params, old path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dnnsafety.adversarial import ATTACKS
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.models.objective import Objective, jensen_shannon, kl_consistency
from dnnsafety.retraining.mitigation import MitigationContext, TrainingPlan
from dnnsafety.retraining.mitigations.adversarial import (
    AdversarialFineTuning,
    PGDMixing,
    TRADESPairing,
)

EPS = 8 / 255


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 4)
    ).eval()


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 6, 6, generator=gen)
    x[0] = 0.0  # pixels on both bounds: the examples must stay in [0, 1]
    x[1] = 1.0
    return x, torch.arange(n) % 4


def _context(digits_or_batch: tuple[torch.Tensor, torch.Tensor]) -> MitigationContext:
    from dnnsafety.data.dataset import Split

    x, y = digits_or_batch
    ids = np.array([f"i{k}" for k in range(len(x))])
    train = Split("train", ids, x, y.numpy(), np.array(["nominal"] * len(x)))
    return MitigationContext(model=_model(), train=train)


def _hand_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> float:
    """sum_c p_c (log p_c - log q_c), averaged over rows, in float64 NumPy."""
    p = np.exp(p_logits.double().numpy())
    p /= p.sum(axis=1, keepdims=True)
    q = np.exp(q_logits.double().numpy())
    q /= q.sum(axis=1, keepdims=True)
    return float((p * (np.log(p) - np.log(q))).sum(axis=1).mean())


def test_trades_loss_matches_the_reference_and_a_hand_computation():
    """The loss of a clean + adversarial batch is CE(f(x), y) + beta KL(p(x) || p(x_adv)),
    computed as TRADES' reference code does (``KLDivLoss(sum) / B``) and by hand; the
    gradient reaches the weights through both halves as in the reference."""
    model = _model().train()
    x, y = _batch()
    x_adv = (x + EPS * torch.sign(torch.randn_like(x))).clamp(0, 1)
    beta = 6.0
    objective = Objective(len(x), consistency=beta, divergence="kl")
    ours = objective(model(torch.cat([x, x_adv])), torch.cat([y, y]), torch.arange(len(x)))
    (g_ours,) = torch.autograd.grad(ours, [model[-1].weight])

    clean, adv = model(x), model(x_adv)
    reference = F.cross_entropy(clean, y) + beta * (
        F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="sum") / len(x)
    )
    (g_ref,) = torch.autograd.grad(reference, [model[-1].weight])
    assert float(ours.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
    assert torch.allclose(g_ours, g_ref, rtol=1e-4, atol=1e-6)

    hand_ce = float(
        -np.log(F.softmax(clean, 1).detach().double().numpy()[np.arange(len(y)), y]).mean()
    )
    hand = hand_ce + beta * _hand_kl(clean.detach(), adv.detach())
    assert float(ours.detach()) == pytest.approx(hand, rel=1e-5)
    assert float(kl_consistency([clean, adv]).detach()) > 0


def test_kl_consistency_is_zero_for_equal_views_and_refuses_one_view():
    z = torch.randn(5, 3)
    assert float(kl_consistency([z, z.clone()])) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ConfigError, match="KL consistency loss needs >= 2"):
        kl_consistency([z])


def test_the_kl_attack_raises_the_kl_above_random_noise_and_stays_in_the_ball():
    model = _model()
    x, y = _batch(32)
    attack = ATTACKS.create("tpgd", {"steps": 5, "step_fraction": 0.5})
    adv, _ = attack.attack(model, x, y.numpy(), EPS, random_state=0)
    assert float((adv - x).abs().max()) <= EPS + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    with torch.no_grad():
        clean = model(x)
        kl_adv = _hand_kl(clean, model(adv))
        gen = torch.Generator().manual_seed(1)
        noise = (x + EPS * torch.sign(torch.rand(x.shape, generator=gen) - 0.5)).clamp(0, 1)
        kl_noise = _hand_kl(clean, model(noise))
    assert kl_adv > 3 * kl_noise > 0


def test_trades_pairing_puts_the_clean_batch_first_and_is_seeded():
    x, y = _batch()
    pair = TRADESPairing(EPS, steps=2, step_fraction=0.5)
    out, y_out = pair(_model(), x, y, torch.Generator().manual_seed(3))
    again, _ = pair(_model(), x, y, torch.Generator().manual_seed(3))
    assert out.shape == (2 * len(x), *x.shape[1:])
    assert torch.equal(out[: len(x)], x)
    assert torch.equal(y_out, torch.cat([y, y]))
    assert torch.equal(out, again)
    assert float((out[len(x) :] - x).abs().max()) <= EPS + 1e-6


def test_the_trades_plan_carries_beta_as_a_kl_consistency_weight():
    context = _context(_batch())
    plan = AdversarialFineTuning(loss="trades", beta=3.0, steps=2).plan(context, random_state=0)
    assert isinstance(plan.augment, TRADESPairing)
    assert (plan.consistency, plan.divergence) == (3.0, "kl")
    assert plan.info["loss"] == "trades"
    plan.validate()
    # beta 0 is plain fine-tuning: no attack is run
    plain = AdversarialFineTuning(loss="trades", beta=0.0).plan(context, random_state=0)
    assert plain.augment is None and plain.consistency == 0.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"loss": "madry"}, r"The 'loss' parameter of AdversarialFineTuning must be one of"),
        (
            {"loss": "trades", "beta": -1.0},
            r"The 'beta' parameter of AdversarialFineTuning must be a number in \[0.0, ",
        ),
        ({"loss": "trades", "beta": float("nan")}, r"The 'beta' parameter"),
    ],
)
def test_bad_loss_or_beta_is_refused_with_the_parameter_message(params, message):
    with pytest.raises(ConfigError, match=message):
        AdversarialFineTuning(**params).plan(_context(_batch()), random_state=0)


def test_unknown_divergence_is_refused_by_the_objective_and_the_plan():
    with pytest.raises(ConfigError, match="divergence must be one of"):
        Objective(4, consistency=1.0, divergence="l2")
    x, y = _batch(4)
    plan = TrainingPlan(x, y.numpy(), divergence="l2")
    with pytest.raises(InvalidInputError, match="divergence must be one of"):
        plan.validate()


def test_default_params_leave_the_pgd_path_bit_identical():
    """The default mitigation is the old one: the same PGD batch as a PGDMixing built with the
    old defaults, no consistency term, and the same loss on that batch as plain
    cross-entropy."""
    x, y = _batch()
    context = _context((x, y))
    default = AdversarialFineTuning().plan(context, random_state=0)
    explicit = AdversarialFineTuning(loss="pgd", beta=0.5).plan(context, random_state=0)
    old = PGDMixing(8 / 255, 0.5, 7, 0.25)
    assert (default.consistency, default.divergence) == (0.0, "js")
    assert default.info == explicit.info
    model = _model()
    batches = [
        aug(model, x, y, torch.Generator().manual_seed(5))
        for aug in (default.augment, explicit.augment, old)
    ]
    assert all(torch.equal(b[0], batches[0][0]) for b in batches)
    assert not torch.equal(batches[0][0], x)  # the PGD rows are there
    logits = model(batches[0][0])
    loss = Objective(len(x))(logits, y, torch.arange(len(x)))
    # the old loss: the unreduced cross-entropy, then its mean
    assert torch.equal(loss, nn.CrossEntropyLoss(reduction="none")(logits, y).mean())


def test_the_default_consistency_loss_is_still_jensen_shannon():
    z = torch.randn(12, 4)
    y = torch.arange(4)
    loss = Objective(4, consistency=12.0)(z, torch.cat([y, y, y]), torch.arange(4))
    blocks = torch.split(z, 4)
    assert torch.equal(loss, F.cross_entropy(blocks[0], y) + 12.0 * jensen_shannon(blocks))
