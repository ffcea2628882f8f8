"""Adversarial detectors: squeezers and divergences against reference libraries, relevance
statistics on hand-made maps, and detection of real attacks on a trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnsafety.adversarial import ATTACKS
from dnnsafety.adversarial.detectors import (
    _jsd,
    bit_depth,
    median_filter,
    relevance_statistics,
)
from dnnsafety.adversarial.evaluate import fit_detector, roc_summary, score_images
from dnnsafety.data.dataset import Dataset
from dnnsafety.testing import check_model_restored


def test_bit_depth_matches_art_feature_squeezing(rng):
    from art.defences.preprocessor import FeatureSqueezing

    x = rng.random((4, 3, 6, 6)).astype(np.float32)
    for bits in (1, 3, 5):
        ref, _ = FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=bits)(x)
        np.testing.assert_allclose(bit_depth(x, bits), ref, atol=1e-6)


def test_median_filter_matches_art_spatial_smoothing(rng):
    from art.defences.preprocessor import SpatialSmoothing

    x = rng.random((3, 2, 7, 7)).astype(np.float32)
    for size in (2, 3):
        ref, _ = SpatialSmoothing(window_size=size, channels_first=True)(x)
        np.testing.assert_allclose(median_filter(x, size), ref, atol=1e-7)


def test_jensen_shannon_divergence_matches_scipy(rng):
    from scipy.spatial.distance import jensenshannon

    p, q = rng.dirichlet(np.ones(5), size=6), rng.dirichlet(np.ones(5), size=6)
    ref = np.array([jensenshannon(a, b) ** 2 for a, b in zip(p, q, strict=True)])
    np.testing.assert_allclose(_jsd(p, q), ref, rtol=1e-6)
    np.testing.assert_allclose(_jsd(p, p), 0.0, atol=1e-12)


def test_relevance_statistics_on_hand_made_maps():
    n_units = 40
    spread = torch.full((1, n_units), 0.5, dtype=torch.float64)  # uniform, all positive
    peaked = torch.zeros((1, n_units), dtype=torch.float64)
    peaked[0, 0], peaked[0, 1] = 3.0, -1.0
    stats = relevance_statistics(
        {"a": torch.cat([spread, peaked])}, torch.tensor([20.0, 4.0], dtype=torch.float64)
    )
    entropy, top5, positive, kept = stats.T
    assert entropy[0] == pytest.approx(1.0) and entropy[1] < 0.25
    assert top5[0] == pytest.approx(2 / 40) and top5[1] == pytest.approx(1.0)  # 5% = 2 units
    assert positive[0] == pytest.approx(1.0) and positive[1] == pytest.approx(0.75)
    assert kept[0] == pytest.approx(1.0) and kept[1] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def fgsm_inputs(digits: Dataset, digits_model):
    test = digits["test"]
    nominal = torch.from_numpy(np.flatnonzero(test.scenarios == "nominal")[:80])
    x, y = test.images[nominal], test.labels[nominal.numpy()]
    adv, success = ATTACKS.create("fgsm").attack(digits_model, x, y, 0.05, random_state=0)
    return x, adv[torch.from_numpy(success)]


# a weak 8x8 digits model: detection is far from the benchmark's figures, but above chance
@pytest.mark.parametrize("name", ["squeeze", "lrp", "mahalanobis", "noise", "fusion"])
def test_detectors_fitted_on_clean_inputs_flag_fgsm_inputs(name, digits, digits_model, fgsm_inputs):
    clean, adversarial = fgsm_inputs
    assert len(adversarial) >= 8
    train, val = digits["train"], digits["val"]
    digits_model.train()
    try:
        det = check_model_restored(
            digits_model, fit_detector, name, None, digits_model, train.images[:400],
            train.labels[:400], val.images, 0,
        )  # fmt: skip
        roc = roc_summary(
            score_images(det, digits_model, clean), score_images(det, digits_model, adversarial)
        )
        assert digits_model.training
    finally:
        digits_model.eval()
    assert roc["auroc"] > 0.6, f"{name}: AUROC {roc['auroc']:.3f}"
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
