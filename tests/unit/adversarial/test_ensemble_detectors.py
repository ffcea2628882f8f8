"""Consistency, residual, multi-layer and fused adversarial detectors: the maths against
reference libraries and hand-made inputs, and planted structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dnnsafety.adversarial.ensemble import (
    FusionDetector,
    MultiLayerMahalanobisDetector,
    NoiseConsistencyDetector,
    ResidualDetector,
    _min_mahalanobis,
    fuse_p_values,
    layer_means,
    residual_statistics,
)
from dnnsafety.exceptions import ConfigError


def test_fisher_fusion_matches_scipy_combine_pvalues(rng):
    from scipy.stats import combine_pvalues

    p = rng.uniform(0.001, 1.0, size=(7, 3))
    ref = np.array([combine_pvalues(row, method="fisher").statistic for row in p])
    np.testing.assert_allclose(fuse_p_values(p, "fisher"), ref, rtol=1e-12)
    bonf = fuse_p_values(p, "bonferroni")
    assert np.array_equal(np.argsort(bonf), np.argsort(-p.min(axis=1)))
    with pytest.raises(ConfigError, match="fisher"):
        fuse_p_values(p, "stouffer-ish")


def test_min_mahalanobis_matches_scipy(rng):
    from scipy.spatial.distance import mahalanobis

    x, means = rng.normal(size=(5, 3)), rng.normal(size=(2, 3))
    a = rng.normal(size=(3, 3))
    precision = a @ a.T + np.eye(3)
    ref = [min(mahalanobis(row, mu, precision) for mu in means) for row in x]
    np.testing.assert_allclose(_min_mahalanobis(x, means, precision), ref, rtol=1e-10)


def test_residual_statistics_on_hand_made_images():
    flat = np.full((1, 1, 8, 8), 0.5, dtype=np.float32)
    sign = np.where(np.indices((8, 8)).sum(0) % 2 == 0, 1.0, -1.0)
    pattern = (flat + 8 / 255 * sign).astype(np.float32)  # a dense +-eps checkerboard
    s_flat, s_pattern = residual_statistics(np.concatenate([flat, pattern]))
    assert s_flat.shape == (11,)
    # a constant image: no residual, no difference, every pixel 'flat'
    np.testing.assert_allclose(s_flat[[0, 1, 3, 4, 6, 7]], 0.0, atol=1e-12)
    np.testing.assert_allclose(s_flat[[2, 5, 8]], 1.0)
    # the checkerboard: every first difference is 16/255, none flat
    assert s_pattern[3] == pytest.approx(16 / 255, rel=1e-5) and s_pattern[5] == 0.0
    assert s_pattern[0] > 0.01


def test_residual_detector_flags_a_dense_perturbation_of_smooth_images(rng):
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    base = np.stack([np.sin(a * xx + b * yy) for a, b in rng.uniform(0, 3, (120, 2))])
    x = (0.5 + 0.4 * base[:, None]).astype(np.float32)
    det = ResidualDetector().fit(x[:80]).calibrate(x[80:100])
    perturbed = np.clip(x[100:] + 8 / 255 * rng.choice([-1.0, 1.0], x[100:].shape), 0, 1)
    clean_scores = det.decision_function(x[100:])
    assert det.decision_function(perturbed.astype(np.float32)).min() > clean_scores.max()


def _two_class_linear() -> nn.Module:
    """Class 1 iff the mean pixel > 0.5 (logit gap 40 * (mean - 0.5))."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[-20.0 / 16] * 16, [20.0 / 16] * 16]))
        net[1].bias.copy_(torch.tensor([10.0, -10.0]))
    return net.eval()


def test_noise_consistency_scores_boundary_inputs_above_confident_ones():
    model = _two_class_linear()
    levels = np.r_[np.linspace(0.05, 0.3, 10), np.linspace(0.7, 0.95, 10)]
    confident = np.repeat(levels, 16).reshape(-1, 1, 4, 4).astype(np.float32)
    boundary = np.full((4, 1, 4, 4), 0.5, dtype=np.float32) + np.float32(0.002)
    det = NoiseConsistencyDetector(model=model, sigma=0.05, draws=8).fit(confident)
    s = det.decision_function(np.concatenate([confident, boundary]))
    assert s[-4:].min() > s[:-4].max()
    # the noise is drawn once: a row's score does not depend on the batch
    np.testing.assert_allclose(det.decision_function(boundary[:1]), s[-4:-3], rtol=1e-5)


class _Probe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.act1 = nn.ReLU()
        self.fc = nn.Linear(3 * 16, 4)
        self.act2 = nn.ReLU()
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.conv(x))
        return self.out(self.act2(self.fc(h.flatten(1))))


def test_layer_means_are_the_channel_means_of_every_relu(rng):
    torch.manual_seed(0)
    model = _Probe().eval()
    x = rng.random((5, 1, 4, 4)).astype(np.float32)
    feats = layer_means(model, x, batch_size=2)
    with torch.no_grad():
        h1 = model.act1(model.conv(torch.from_numpy(x)))
        h2 = model.act2(model.fc(h1.flatten(1)))
    assert [f.shape for f in feats] == [(5, 3), (5, 4)]
    np.testing.assert_allclose(feats[0], h1.mean((2, 3)).double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(feats[1], h2.double().numpy(), rtol=1e-6)


def test_multilayer_mahalanobis_per_layer_scores_match_a_hand_fit(rng):
    from sklearn.covariance import LedoitWolf

    torch.manual_seed(0)
    model = _Probe().eval()
    x = rng.random((60, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 2, 60)
    det = MultiLayerMahalanobisDetector(model=model, cal_fraction=0.25).fit(x, y)
    fit_rows = np.setdiff1d(np.arange(60), np.random.default_rng(0).permutation(60)[:15])
    f = layer_means(model, x)[0][fit_rows]
    means = np.stack([f[y[fit_rows] == k].mean(0) for k in (0, 1)])
    precision = LedoitWolf().fit(f - means[y[fit_rows]]).precision_
    ref = _min_mahalanobis(layer_means(model, x[:5])[0], means, precision)
    np.testing.assert_allclose(det.layer_scores(x[:5])[:, 0], ref, rtol=1e-8)
    assert len(det.layer_calibration_) == 2 and len(det.layer_calibration_[0]) == 15


def test_fusion_of_residual_and_noise_flags_both_kinds_of_planted_anomaly(rng):
    model = _two_class_linear()
    levels = rng.uniform(0.1, 0.3, 300)
    levels[::2] += 0.6
    x = (levels[:, None, None, None] + rng.normal(0, 0.002, (300, 1, 4, 4))).astype(np.float32)
    y = (levels > 0.5).astype(np.int64)
    det = FusionDetector(
        model=model, members={"residual": {}, "noise": {"sigma": 0.05}}, cal_fraction=0.3
    ).fit(x[:200], y[:200])
    det.calibrate(x[200:])
    noisy = np.clip(x[:4] + rng.choice([-0.03, 0.03], (4, 1, 4, 4)), 0, 1).astype(np.float32)
    boundary = np.full((4, 1, 4, 4), 0.5, dtype=np.float32)
    p = det.p_values(np.concatenate([noisy, boundary]))
    assert (p <= 0.1).all(), p
    members = det.member_p_values(np.concatenate([noisy, boundary]))
    assert members[:4, 0].max() < 0.1 and members[4:, 1].max() < 0.1  # each member its own kind
    with pytest.raises(ConfigError, match="members"):
        FusionDetector(model=model, members={}).fit(x[:20], y[:20])
