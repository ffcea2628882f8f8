from __future__ import annotations

import itertools

import pytest
import torch

import dnnsafety.models.training as training
from dnnsafety.config import TrainConfig
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.training import predict, train_model
from dnnsafety.models.zoo import build_model


def _train(digits, cfg, seed=0, checkpoint=None, key="k"):
    torch.manual_seed(seed)
    model = build_model("small_cnn", 1, 10, 8)
    tr, va = digits["train"], digits["val"]
    result = train_model(
        model, tr.images, tr.labels, va.images, va.labels, cfg, seed, checkpoint, key
    )
    return model, result


def _same_weights(a, b) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_training_learns_and_is_deterministic(digits):
    cfg = TrainConfig(epochs=6, batch_size=64)
    m1, r1 = _train(digits, cfg)
    m2, r2 = _train(digits, cfg)
    assert _same_weights(m1, m2)
    assert r1.history == r2.history or [h.train_loss for h in r1.history] == [
        h.train_loss for h in r2.history
    ]
    assert r1.best_score > 0.6  # 10 classes: chance is 0.1
    assert r1.history[-1].train_loss < r1.history[0].train_loss
    m3, _ = _train(digits, cfg, seed=1)
    assert not _same_weights(m1, m3)


def test_best_epoch_is_kept_and_sgd_works(digits):
    cfg = TrainConfig(epochs=3, optimizer="sgd", lr=0.05)
    model, result = _train(digits, cfg)
    best = max(h.val_acc for h in result.history)
    assert result.best_score == best
    assert result.history[result.best_epoch - 1].val_acc == best
    acc = predict(model, digits["val"].images).correct(digits["val"].labels).mean()
    assert acc == pytest.approx(best)


def test_cosine_schedule_decays_per_batch_to_zero(digits, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=64, optimizer="sgd", lr=0.05, schedule="cosine")
    total = 30
    rates = [training._lr_at(cfg, step, total) for step in range(total + 1)]
    assert rates[0] == pytest.approx(0.05)
    assert rates[total // 2] == pytest.approx(0.025)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert training._lr_at(TrainConfig(lr=0.05), 17, total) == 0.05
    # the optimiser really gets the scheduled rate, batch by batch
    seen: list[float] = []
    real_step = torch.optim.SGD.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", record)
    _train(digits, cfg)
    per_epoch = -(-len(digits["train"].labels) // 64)
    assert len(seen) == 3 * per_epoch
    assert seen == pytest.approx([training._lr_at(cfg, i, 3 * per_epoch) for i in range(len(seen))])


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_interrupted_training_resumes_to_the_same_weights(digits, tmp_path, monkeypatch, schedule):
    cfg = TrainConfig(epochs=4, batch_size=64, schedule=schedule)
    reference, _ = _train(digits, cfg)
    ckpt = tmp_path / "last.pt"
    calls = {"n": 0}
    real_accuracy = training.accuracy

    def interrupt_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_accuracy(*args, **kwargs)

    monkeypatch.setattr(training, "accuracy", interrupt_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        _train(digits, cfg, checkpoint=ckpt)
    monkeypatch.setattr(training, "accuracy", real_accuracy)
    assert ckpt.exists()
    resumed, result = _train(digits, cfg, checkpoint=ckpt)
    assert result.resumed_from_epoch == 2
    assert _same_weights(resumed, reference)
    # a checkpoint of another configuration is ignored
    _, other = _train(digits, cfg, checkpoint=ckpt, key="different")
    assert other.resumed_from_epoch == 0


def test_bad_hyper_parameters_give_clear_errors(digits):
    with pytest.raises(ConfigError, match="epochs must be an int >= 1"):
        _train(digits, TrainConfig(epochs=0))
    with pytest.raises(ConfigError, match="optimizer"):
        _train(digits, TrainConfig(optimizer="rmsprop"))
    with pytest.raises(ConfigError, match="schedule must be 'constant' or 'cosine'"):
        _train(digits, TrainConfig(schedule="step"))
    with pytest.raises(ConfigError, match="diverged"):
        _train(digits, TrainConfig(epochs=1, optimizer="sgd", lr=1e12, momentum=0.0))


def test_select_score_keeps_the_epoch_it_scores_highest(digits):
    """A planted score that peaks at epoch 2 of 3: that epoch's weights are kept."""
    cfg = TrainConfig(epochs=3, batch_size=64, select_by="train")
    tr = digits["train"]
    planted = iter([0.1, 0.9, 0.5])
    snapshots: list[dict] = []

    def score(model) -> float:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(planted)

    torch.manual_seed(0)
    model = build_model("small_cnn", 1, 10, 8)
    x, y = tr.images[:256], tr.labels[:256]
    result = train_model(model, x, y, None, None, cfg, select_score=score)
    assert result.best_epoch == 2
    assert result.best_score == pytest.approx(0.9)
    assert len(snapshots) == 3
    kept = model.state_dict()
    assert all(torch.equal(kept[k], snapshots[1][k]) for k in kept)
    assert not all(torch.equal(kept[k], snapshots[2][k]) for k in kept)


def test_a_saturated_validation_split_is_said_to_stop_the_epoch_choice(digits, caplog):
    """A validation split at 100% from an early epoch keeps that epoch (ties keep the first):
    the log says so and names the fix, instead of leaving a fine-tune silently unchanged."""
    tr = digits["train"]
    easy = torch.isin(torch.as_tensor(tr.labels), torch.tensor([0, 1]))
    images, labels = tr.images[easy], tr.labels[easy.numpy()]
    torch.manual_seed(0)
    model = build_model("small_cnn", 1, 10, 8)
    cfg = TrainConfig(epochs=10, batch_size=32, lr=0.01)
    with caplog.at_level("WARNING", logger="dnnsafety.models.training"):
        result = train_model(model, images, labels, images[:6], labels[:6], cfg, 0)
    assert result.best_score == 1.0 and result.best_epoch < 10
    assert "validation accuracy reached 100% at epoch" in caplog.text
    assert "on 6 images" in caplog.text and "select_by = 'train'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="dnnsafety.models.training"):  # a harder split: quiet
        _train(digits, TrainConfig(epochs=2, batch_size=64))
    assert "validation accuracy reached 100%" not in caplog.text
