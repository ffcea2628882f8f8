"""The Jensen-Shannon consistency loss of AugMix in the training objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from dnnsafety.config import TrainConfig
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.objective import Objective, jensen_shannon
from dnnsafety.models.training import train_model


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_jensen_shannon_matches_a_hand_computation_and_scipy():
    rng = np.random.default_rng(0)
    z = [rng.normal(size=(5, 4)) * 2 for _ in range(3)]
    p = [_softmax(a) for a in z]
    m = sum(p) / 3
    by_hand = np.mean([np.sum(q * np.log(q / m), axis=1) for q in p], axis=0).mean()
    got = jensen_shannon([torch.tensor(a, dtype=torch.float64) for a in z])
    assert float(got) == pytest.approx(by_hand, rel=1e-9)
    # two distributions: scipy's Jensen-Shannon distance (natural log) squared, batch mean
    two = jensen_shannon([torch.tensor(a) for a in z[:2]])
    ref = np.mean([jensenshannon(a, b) ** 2 for a, b in zip(p[0], p[1], strict=True)])
    assert float(two) == pytest.approx(ref, rel=1e-9)
    same = jensen_shannon([torch.tensor(z[0])] * 3)
    assert float(same) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError):
        jensen_shannon([torch.tensor(z[0])])


def test_the_objective_adds_lambda_jsd_to_the_clean_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(9, 4, dtype=torch.float64)  # 3 clean rows, then 2 views of them
    y = torch.tensor([0, 1, 3]).repeat(3)
    idx = torch.tensor([4, 0, 2])
    ce = torch.nn.functional.cross_entropy(logits[:3], y[:3])
    want = ce + 12.0 * jensen_shannon(list(logits.split(3)))
    got = Objective(5, consistency=12.0)(logits, y, idx)
    assert float(got) == pytest.approx(float(want), rel=1e-12)
    w = np.array([1.0, 0.0, 3.0, 0.0, 2.0])  # weights act on the clean rows only
    l3 = torch.nn.functional.cross_entropy(logits[:3], y[:3], reduction="none")
    weighted = (2.0 * l3[0] + 1.0 * l3[1] + 3.0 * l3[2]) / 6.0
    got_w = Objective(5, weights=w, consistency=1.0)(logits, y, idx)
    assert float(got_w) == pytest.approx(float(weighted + jensen_shannon(list(logits.split(3)))))
    plain = Objective(5)(logits, y)
    assert float(plain) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    with pytest.raises(ConfigError, match="view"):
        Objective(5, consistency=12.0)(logits[:8], y[:8], idx)
    with pytest.raises(ConfigError, match="view"):
        Objective(5, consistency=12.0)(logits[:3], y[:3], idx)  # no views
    with pytest.raises(ConfigError):
        Objective(5, consistency=-1.0)


def test_training_with_the_consistency_loss_makes_views_agree():
    """Views shifted by a constant: with the JSD term (and cross-entropy on the clean rows
    only) the model becomes invariant to the shift; trained on the clean rows alone it is not."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((64, 1, 4, 4)).astype(np.float32) * 0.5)
    y = (x[:, 0, 0].mean(dim=1) > x[:, 0, 1].mean(dim=1)).long().numpy()

    def shifted(model, xb, yb, gen):  # type: ignore[no-untyped-def]
        return torch.cat([xb, xb + 0.5, xb + 0.25]), yb.repeat(3)

    def gap(consistency: float) -> float:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        cfg = TrainConfig(epochs=10, batch_size=32, lr=0.05, select_by="train", weight_decay=0)
        augment = shifted if consistency > 0 else None
        train_model(model, x, y, None, None, cfg, augment=augment, consistency=consistency)
        with torch.no_grad():
            return float(jensen_shannon([model(x), model(x + 0.5)]))

    with_jsd, clean_only = gap(12.0), gap(0.0)
    assert with_jsd < 0.25 * clean_only
    with pytest.raises(ConfigError, match="augmentation"):
        train_model(
            torch.nn.Linear(16, 2), x, y, None, None, TrainConfig(select_by="train"),
            consistency=1.0,
        )  # fmt: skip
