"""Detectors against pytorch-ood and PyOD on the same inputs, conformal calibration, and
planted out-of-distribution structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from dnnsafety.detection import (
    DETECTORS,
    EnergyDetector,
    HDBSCANDetector,
    IForestDetector,
    KNNDetector,
    LOFDetector,
    MahalanobisDetector,
    MaxLogitDetector,
    MSPDetector,
    OCSVMDetector,
    RelativeMahalanobisDetector,
    ViMDetector,
    conformal_p_values,
    conformal_threshold,
)
from dnnsafety.exceptions import ConfigError, InvalidInputError, NotFittedError
from dnnsafety.testing import check_detector


def _features(n: int = 300, d: int = 12, c: int = 4, seed: int = 0):
    """Class-structured, full-rank features with a head that maps them to logits."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, size=n)
    centres = rng.normal(scale=3.0, size=(c, d))
    x = centres[y] + rng.normal(size=(n, d)) @ rng.normal(scale=0.5, size=(d, d))
    weight = rng.normal(size=(c, d))
    bias = rng.normal(size=c)
    test = rng.normal(scale=2.0, size=(120, d)) + centres[rng.integers(0, c, size=120)]
    return x, y, test, weight, bias


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic)


def test_logit_detectors_rank_as_pytorch_ood() -> None:
    from pytorch_ood.detector import EnergyBased, MaxLogit, MaxSoftmax

    logits = np.random.default_rng(1).normal(scale=3.0, size=(200, 5))
    t = torch.from_numpy(logits)
    pairs = [
        (MSPDetector(), MaxSoftmax.score(t)),
        (EnergyDetector(), EnergyBased.score(t)),
        (MaxLogitDetector(), MaxLogit.score(t)),
    ]
    for ours, theirs in pairs:
        mine = ours.fit(logits).decision_function(logits)
        assert _rho(mine, theirs.numpy()) >= 0.999, type(ours).__name__
    # energy is exactly -logsumexp, msp exactly -max softmax
    assert np.allclose(EnergyDetector().fit(logits).decision_function(logits), EnergyBased.score(t))
    assert np.allclose(MSPDetector().fit(logits).decision_function(logits), MaxSoftmax.score(t))


def test_feature_detectors_rank_as_pytorch_ood() -> None:
    from pytorch_ood.detector import KNN, RMD, Mahalanobis, ViM

    x, y, test, weight, bias = _features()
    zx, zt = torch.from_numpy(x).float(), torch.from_numpy(test).float()
    zy = torch.from_numpy(y)
    w, b = torch.from_numpy(weight), torch.from_numpy(bias)
    cases = [
        (MahalanobisDetector(), Mahalanobis(None).fit_features(zx, zy)),
        (RelativeMahalanobisDetector(), RMD(None).fit_features(zx, zy)),
        (KNNDetector(k=10), KNN(None, k=10).fit_features(zx, zy)),
    ]
    for ours, theirs in cases:
        mine = ours.fit(x, y).decision_function(test)
        ref = theirs.predict_features(zt).double().numpy()
        assert _rho(mine, ref) >= 0.999, type(ours).__name__
    vim = ViMDetector(dim=6).fit(x, head=(weight, bias)).decision_function(test)
    ref = ViM(None, d=6, w=w.float(), b=b.float()).fit_features(zx, zy).predict_features(zt)
    assert _rho(vim, ref.double().numpy()) >= 0.999


@pytest.mark.parametrize(
    ("ours", "module", "name", "kwargs"),
    [
        (OCSVMDetector(standardize=False, nu=0.5, gamma="auto"), "ocsvm", "OCSVM", {}),
        (IForestDetector(n_estimators=50), "iforest", "IForest", {"n_estimators": 50}),
        (LOFDetector(standardize=False), "lof", "LOF", {"novelty": True}),
    ],
)
def test_wrappers_rank_as_pyod(ours, module: str, name: str, kwargs: dict) -> None:
    x, _, test, _, _ = _features()
    cls = getattr(__import__(f"pyod.models.{module}", fromlist=[name]), name)
    if name == "IForest":
        kwargs["random_state"] = 0
    ref = cls(**kwargs).fit(x).decision_function(test)
    assert _rho(ours.fit(x).decision_function(test), ref) >= 0.999


def test_hdbscan_scores_grow_with_distance_unlike_pyods_interpolation() -> None:
    from pyod.models.hdbscan import HDBSCAN

    x, _, _, _, _ = _features()
    far = x[:5] + 100.0
    ours = HDBSCANDetector(min_cluster_size=10).fit(x)
    assert ours.decision_function(far).min() > ours.decision_function(x).max()
    theirs = HDBSCAN(min_cluster_size=10).fit(x)
    assert theirs.decision_function(far).min() <= theirs.decision_scores_.max()


def test_conformal_p_values_and_threshold_agree() -> None:
    cal = np.array([0.1, 0.2, 0.2, 0.5, 0.9])
    p = conformal_p_values(cal, np.array([0.0, 0.2, 0.3, 0.9, 1.0, np.nan]))
    assert np.allclose(p, [6 / 6, 5 / 6, 3 / 6, 2 / 6, 1 / 6, 1.0])
    rng = np.random.default_rng(0)
    cal = rng.normal(size=99)
    scores = rng.normal(size=1000) * 2
    for alpha in (0.01, 0.05, 0.1, 0.5):
        flagged = conformal_p_values(cal, scores) <= alpha
        assert np.array_equal(flagged, scores > conformal_threshold(cal, alpha))
    assert conformal_threshold(cal, 0.001) == np.inf
    with pytest.raises(InvalidInputError):
        conformal_p_values([], scores)


def test_false_alarm_rate_is_held_over_random_calibration_splits() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 8))
    det = KNNDetector(k=5).fit(x[:1000])
    rest = x[1000:]
    rates = []
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(len(rest))
        det.calibrate(rest[order[:1000]])
        rates.append(det.predict(rest[order[1000:]], alpha=0.05).mean())
    assert abs(np.mean(rates) - 0.05) < 0.01


def test_planted_ood_cluster_is_flagged_and_id_rate_is_bounded() -> None:
    x, y, _test, weight, bias = _features(n=600)
    ood = x[:100] * -1.5 + 7.0
    for name in ("knn", "mahalanobis", "vim"):
        det = DETECTORS.create(name)
        kwargs = {"head": (weight, bias)} if "head" in det.requires else {}
        labels = y if "labels" in det.requires else None
        det.fit(x[:400], labels[:400] if labels is not None else None, **kwargs)
        det.calibrate(x[400:])
        assert det.predict(ood, alpha=0.05).mean() > 0.9, name
        assert det.predict(x[400:], alpha=0.05).mean() <= 0.05, name


def test_errors_are_clear() -> None:
    det = KNNDetector(k=3)
    with pytest.raises(NotFittedError, match="fit"):
        det.decision_function(np.zeros((2, 3)))
    det.fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(NotFittedError, match="calibrate"):
        det.p_values(np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="val_fraction"):
        det.calibrate(np.zeros((0, 3)))
    with pytest.raises(ConfigError, match="knn"):
        DETECTORS.get("nope")
    with pytest.raises(InvalidInputError, match="labels"):
        MahalanobisDetector().fit(np.zeros((4, 2)))
    with pytest.raises(InvalidInputError, match="head"):
        ViMDetector().fit(np.random.default_rng(0).normal(size=(10, 4)))


def test_the_contract_check_catches_a_detector_blind_to_outliers() -> None:
    class Blind(KNNDetector):
        def _score(self, x: np.ndarray) -> np.ndarray:
            return -super()._score(x)

    Blind.name = "blind"
    with pytest.raises(AssertionError, match="outliers"):
        check_detector(Blind(k=3))


# detectors built around the model (requires "images": feature squeezing, the LRP statistics)
# hold it as a parameter and are refused by save_detector (see the test below)
SAVABLE = [
    n for n in DETECTORS.names() if n != "autoencoder" and "images" not in DETECTORS.get(n).requires
]


@pytest.mark.parametrize("name", SAVABLE)
def test_saved_detectors_score_as_before(tmp_path, name: str) -> None:
    from dnnsafety.detection import load_detector, save_detector
    from dnnsafety.testing.detectors import planted_detection_data

    cls = DETECTORS.get(name)
    det = cls(**cls._test_params)
    x, y, out, kwargs = planted_detection_data(det.requires)
    det.fit(x, y if "labels" in det.requires else None, **kwargs).calibrate(x)
    save_detector(det, tmp_path / "det")
    again = load_detector(tmp_path / "det")
    assert type(again) is type(det)
    assert np.allclose(again.decision_function(out), det.decision_function(out))
    assert np.array_equal(again.p_values(x), det.p_values(x))


def test_a_detector_holding_a_model_is_refused_by_save(tmp_path) -> None:
    import torch

    from dnnsafety.adversarial.detectors import FeatureSqueezingDetector
    from dnnsafety.detection import save_detector
    from dnnsafety.exceptions import InvalidInputError

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    det = FeatureSqueezingDetector(model=model).fit(torch.rand(20, 1, 4, 4).numpy())
    with pytest.raises(InvalidInputError, match="without pickle"):
        save_detector(det, tmp_path / "det")
