"""Detection of adversarial inputs by any registered detector: inputs, fitting, AUROC.

A detector of :data:`dnnsafety.detection.DETECTORS` declares what it reads (``requires``);
:func:`detector_inputs` builds exactly that from images and the model - the images
themselves, the model's penultimate activations (``features``), its logits, its last linear
layer (``head``) - so every detector is fitted and scored the same way: on clean training
images only, calibrated on clean held-out images (conformal p-values), and evaluated by the
AUROC of successful adversarial examples (positive) against clean test inputs (METHOD.md §7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety.detection.base import DETECTORS, Detector

__all__ = ["detector_inputs", "fit_detector", "roc_summary", "score_images"]


def _logits(model: nn.Module, images: Tensor, batch_size: int = 256) -> np.ndarray:
    from dnnsafety.adversarial.attacks import frozen_eval

    out = []
    with frozen_eval(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            out.append(model(images[start : start + batch_size]).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def detector_inputs(detector: Detector, model: nn.Module, images: Tensor) -> np.ndarray:
    """What ``detector`` reads as ``X`` for ``images``: the images (``"images"``), the model's
    penultimate activations (``"features"``) or its logits (``"logits"``)."""
    from dnnsafety.features.sources import ActivationFeatures, FeatureContext

    if "images" in detector.requires:
        return images.numpy()
    if "features" in detector.requires:
        source = ActivationFeatures().fit(FeatureContext(model=model))
        return source.transform(images).astype(np.float64)
    return _logits(model, images)


def _head(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    from dnnsafety.features.sources import _last_linear

    layer = _last_linear(model)
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
    return layer.weight.detach().double().numpy(), bias.detach().double().numpy()


def fit_detector(
    name: str,
    params: Mapping[str, Any] | None,
    model: nn.Module,
    train_images: Tensor,
    train_labels: np.ndarray,
    cal_images: Tensor,
    random_state: int = 0,
) -> Detector:
    """Build detector ``name`` (the model offered as its ``model`` parameter), fit it on clean
    training images and calibrate it on clean held-out images.

    Raises
    ------
    ConfigError
        Unknown detector name or parameter.
    InvalidInputError
        Empty calibration images.
    """
    det: Detector = DETECTORS.create(name, params, model=model, random_state=random_state)
    x_fit = detector_inputs(det, model, train_images)
    y = np.asarray(train_labels) if "labels" in det.requires else None
    kwargs = {"head": _head(model)} if "head" in det.requires else {}
    det.fit(x_fit, y, **kwargs)
    det.calibrate(detector_inputs(det, model, cal_images))
    return det


def score_images(detector: Detector, model: nn.Module, images: Tensor) -> np.ndarray:
    """Scores ``(N,)`` (higher = more anomalous) of a fitted detector on ``images``."""
    if len(images) == 0:
        return np.zeros(0)
    return detector.decision_function(detector_inputs(detector, model, images))


def roc_summary(clean: np.ndarray, adversarial: np.ndarray, points: int = 50) -> dict[str, Any]:
    """AUROC of adversarial (positive) vs clean scores, and the ROC curve thinned to about
    ``points`` points (``fpr``, ``tpr``) for plotting; AUROC is ``None`` without both kinds."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(clean) == 0 or len(adversarial) == 0:
        return {"auroc": None, "fpr": [], "tpr": []}
    y = np.r_[np.zeros(len(clean)), np.ones(len(adversarial))]
    s = np.r_[clean, adversarial]
    fpr, tpr, _ = roc_curve(y, s)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int))
    return {
        "auroc": float(roc_auc_score(y, s)),
        "fpr": [round(float(v), 4) for v in fpr[keep]],
        "tpr": [round(float(v), 4) for v in tpr[keep]],
    }
