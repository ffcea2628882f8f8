from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.data.dataset import Split
from dnnsafety.exceptions import ConfigError
from dnnsafety.retraining.mitigation import MitigationContext
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.retraining.mitigations.bias import oversample, subclasses


def _context(features=None, probs=None, n=120):
    labels = np.arange(n) % 2
    split = Split(
        "train",
        np.array([f"t{i}" for i in range(n)], dtype=object),
        torch.zeros(n, 1, 4, 4),
        labels.astype(np.int64),
        np.array(["nominal"] * n, dtype=object),
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    return MitigationContext(model, split, None, features, probs)


def _planted_features(n=120, rare=6, seed=0):
    """Two classes; within each, a big blob and (for the first ``rare`` rows of class 0) a
    small far-away subclass."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 5)).astype(np.float32)
    rows = np.flatnonzero(np.arange(n) % 2 == 0)[:rare]
    feats[rows] += 20
    return feats, rows


def test_jtt_upweights_exactly_the_original_models_training_errors():
    n = 120
    probs = np.zeros((n, 2), np.float32)
    labels = np.arange(n) % 2
    probs[np.arange(n), labels] = 1
    wrong = np.array([3, 10, 77])
    probs[wrong] = probs[wrong][:, ::-1]
    plan = MITIGATIONS.create("jtt", {"lambda_up": 7, "id_epochs": 0}).plan(_context(probs=probs))
    assert plan.weights is not None
    assert np.flatnonzero(plan.weights == 7).tolist() == wrong.tolist()
    assert set(np.unique(plan.weights)) == {1.0, 7.0}
    assert plan.info == {"error_set": 3, "identification": "original model"}
    with pytest.raises(ConfigError):
        MITIGATIONS.create("jtt", {"lambda_up": 0.5}).plan(_context(probs=probs))


def test_group_reweighting_gives_the_small_planted_group_the_largest_weights():
    feats, rare = _planted_features()
    plan = MITIGATIONS.create("reweight-groups", {"n_groups": 2}).plan(_context(feats))
    w = plan.weights
    assert w is not None and w.mean() == pytest.approx(1.0)
    others = np.setdiff1d(np.arange(len(w)), rare)
    assert w[rare].min() > 5 * w[others].max()
    flat = MITIGATIONS.create("reweight-groups", {"n_groups": 2, "power": 0}).plan(_context(feats))
    assert np.allclose(flat.weights, 1)


def test_george_finds_the_planted_subclass_and_oversamples_it():
    feats, rare = _planted_features()
    labels = np.arange(len(feats)) % 2
    groups = subclasses(feats, labels, max_k=3)
    assert len(np.unique(groups[rare])) == 1
    assert not np.isin(groups[np.setdiff1d(np.flatnonzero(labels == 0), rare)], groups[rare]).any()
    assert not np.isin(groups[labels == 1], groups[labels == 0]).any()  # per class
    plan = MITIGATIONS.create("george", {"max_subclasses": 3, "min_group_size": 20}).plan(
        _context(feats)
    )
    assert plan.groups is not None and len(plan.groups) == len(plan.labels) == len(plan.images)
    counts = np.bincount(plan.groups)
    assert counts[counts > 0].min() >= 20
    assert plan.info["oversampled"] == len(plan.labels) - len(feats) > 0


def test_oversample_cycles_rows_of_small_groups():
    rows = oversample(np.array([0, 0, 0, 1]), 3)
    assert rows.tolist() == [0, 1, 2, 3, 3, 3]


def _spurious_split(n=200, rare=10, seed=0):
    """Pixel 0 carries the label (+-3) except for ``rare`` counter-examples, where it carries
    the opposite; a linear ERM model trained briefly errs exactly on them."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.int64)
    x = rng.normal(scale=0.3, size=(n, 1, 4, 4)).astype(np.float32)
    sign = np.where(labels == 1, 3.0, -3.0)
    minority = np.arange(rare)
    sign[minority] *= -1
    x[:, 0, 0, 0] += sign
    split = Split(
        "train",
        np.array([f"t{i}" for i in range(n)], dtype=object),
        torch.from_numpy(x),
        labels,
        np.array(["nominal"] * n, dtype=object),
    )
    return split, minority


def test_jtt_identification_model_from_scratch_finds_the_planted_counter_examples(caplog):
    split, minority = _spurious_split()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    before = [p.detach().clone() for p in model.parameters()]
    # the original model is right everywhere: its error set would be empty
    probs = np.eye(2, dtype=np.float32)[split.labels]
    context = MitigationContext(model, split, None, None, probs)
    jtt = MITIGATIONS.create("jtt", {"lambda_up": 30, "id_epochs": 5, "id_lr": 0.05})
    with caplog.at_level("INFO", logger="dnnsafety"):
        plan = jtt.plan(context, random_state=1)
    # its training's epoch lines are announced, not mistaken for the fine-tuning's
    assert "JTT: training the identification model (ERM, 5 epoch(s)" in caplog.text
    assert plan.weights is not None
    assert np.flatnonzero(plan.weights == 30).tolist() == minority.tolist()
    assert plan.info["identification"].startswith("ERM, 5 epoch")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    empty = MITIGATIONS.create("jtt", {"id_epochs": 0}).plan(context)
    assert empty.info["error_set"] == 0


def test_fresh_copy_reinitialises_and_refuses_torchscript():
    from dnnsafety.retraining.mitigations.bias import fresh_copy

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.fill_(5.0)
    new = fresh_copy(model)
    assert new is not None and not torch.equal(new[1].weight, model[1].weight)
    assert torch.all(model[1].weight == 5.0)
    assert fresh_copy(torch.jit.script(model)) is None


def test_augment_copies_shift_jitter_flip():
    from dnnsafety.retraining.mitigations.upsample import augment_copies

    rng = np.random.default_rng(0)
    x = torch.rand(8, 3, 6, 6)
    same = augment_copies(x, rng, shift=0, jitter=0.0)
    assert torch.equal(same, x)
    out = augment_copies(x, rng, shift=2, jitter=0.3)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(64, 1, 6, 6) / 5
    flipped = augment_copies(ramp, rng, shift=0, jitter=0.0, flip=True)
    n_flipped = int((flipped[:, 0, 0, 0] == 1).sum())
    assert 10 < n_flipped < 54  # about half flipped, the rest unchanged
    assert torch.equal(flipped[flipped[:, 0, 0, 0] == 0], ramp[: 64 - n_flipped])


def test_representation_factors_by_hand():
    from dnnsafety.retraining.mitigations.upsample import representation_factors

    train = np.array([0] * 90 + [1] * 10)
    pool = np.array([0] * 50 + [1] * 50 + [-1] * 0)
    assert representation_factors(train, pool, 2.0, 10) == {1: pytest.approx(5.0)}
    assert representation_factors(train, pool, 6.0, 10) == {}
    assert representation_factors(train, pool, 2.0, 51) == {}


def test_upsample_groups_copies_only_the_planted_under_represented_group():
    rng = np.random.default_rng(0)
    n, rare = 200, 10
    train_f = rng.normal(size=(n, 5)).astype(np.float32)
    train_f[:rare] += 25  # a rare region of the training set...
    pool_f = rng.normal(size=(200, 5)).astype(np.float32)
    pool_f[:100] += 25  # ... that is half of the deployment data: ratio (1/2) / (1/20) = 10
    labels = (np.arange(n) % 2).astype(np.int64)
    images = torch.rand(n, 1, 4, 4)
    split = Split(
        "train",
        np.array([f"t{i}" for i in range(n)], dtype=object),
        images,
        labels,
        np.array(["nominal"] * n, dtype=object),
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    context = MitigationContext(model, split, train_features=train_f, pool_features=pool_f)
    params = {"n_groups": 2, "max_factor": 4, "shift": 0, "jitter": 0.0}
    plan = MITIGATIONS.create("upsample-groups", params).plan(context)
    # factor min(10, 4) = 4: three extra copies of each rare member, nothing else
    assert plan.info["upsampled_groups"] == 1 and plan.info["extra_copies"] == 3 * rare
    extra = plan.images[n:]
    assert torch.equal(extra, images[:rare].repeat(3, 1, 1, 1))
    assert plan.labels[n:].tolist() == labels[:rare].tolist() * 3
    augmented = MITIGATIONS.create("upsample-groups", {**params, "jitter": 0.2}).plan(context)
    assert not torch.equal(augmented.images[n:], extra)
    balanced = MitigationContext(model, split, train_features=train_f, pool_features=train_f)
    assert len(MITIGATIONS.create("upsample-groups", params).plan(balanced).labels) == n


def test_george_oversampled_copies_are_augmented_unless_disabled():
    feats, _ = _planted_features()
    n = len(feats)
    context = _context(feats)
    context = MitigationContext(
        context.model,
        Split(
            "train",
            context.train.ids,
            torch.rand(n, 1, 4, 4),
            context.train.labels,
            context.train.scenarios,
        ),
        None,
        feats,
    )
    params = {"max_subclasses": 3, "min_group_size": 20}
    plain = MITIGATIONS.create("george", {**params, "shift": 0, "jitter": 0.0}).plan(context)
    rows = oversample(subclasses(feats, context.train.labels, 3), 20)
    assert torch.equal(plain.images, context.train.images[torch.from_numpy(rows)])
    jittered = MITIGATIONS.create("george", params).plan(context)
    assert torch.equal(jittered.images[:n], context.train.images)
    assert not torch.equal(jittered.images[n:], plain.images[n:])
