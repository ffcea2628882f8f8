"""Label-free detectors of adversarial inputs (METHOD.md §7), in the detection registry.

They follow the detector contract of :mod:`dnnsafety.detection.base` (fitted on clean inputs
only, calibrated with conformal p-values, higher = more adversarial) and take images
(``requires = {"images"}``); the classifier they watch is a constructor parameter.

``squeeze``
    Feature squeezing (Xu, Evans & Qi, NDSS 2018): the largest L1 distance between the
    softmax output on the input and on each squeezed copy (bit-depth reduction, median
    filter). Nothing is learned but the calibration.
``magnet``
    MagNet's detectors (Meng & Chen, CCS 2017) on a convolutional autoencoder trained on clean
    images: detector I, the mean L1 reconstruction error (``score="l1"``), or detector II, the
    Jensen-Shannon divergence between the classifier's temperature-scaled softmax outputs on
    the input and on its reconstruction (``score="jsd"``, needs the model).
``lrp``
    Statistics of the LRP relevance (:mod:`dnnsafety.features.lrp`, the maps HUDD clusters)
    per layer - entropy and concentration of ``|R|``, positive share of the relevance mass,
    relevance kept relative to the explained logit - and the Mahalanobis distance of that
    vector to the clean inputs' (Ledoit-Wolf shrunk covariance).

kNN and Mahalanobis on the model's penultimate features are the generic ``knn`` and
``mahalanobis`` detectors of :mod:`dnnsafety.detection` (see :func:`detector_inputs`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety._validation import check_int_param
from dnnsafety.adversarial.attacks import frozen_eval
from dnnsafety.detection.autoencoder import AutoencoderDetector
from dnnsafety.detection.base import DETECTORS, Detector
from dnnsafety.exceptions import ConfigError

__all__ = [
    "FeatureSqueezingDetector",
    "LRPStatisticsDetector",
    "MagNetDetector",
    "bit_depth",
    "median_filter",
    "relevance_statistics",
]


def _toy_model() -> nn.Module:
    """A tiny fixed CNN for 1 x 8 x 8 images (the detector contract check's planted data)."""
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 3)
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net.eval()


def _check_model(owner: object, model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"The 'model' parameter of {type(owner).__name__} must be the classifier "
            f"(a torch.nn.Module) to watch. Got {type(model).__name__}."
        )
    return model


def _softmax(
    model: nn.Module, x: np.ndarray, batch_size: int, temperature: float = 1.0
) -> np.ndarray:
    """Softmax outputs ``(N, K)`` float64 of ``model`` on images ``x``, eval mode, no grad."""
    out = []
    with frozen_eval(model), torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            logits = model(batch.float()).double()
            out.append(torch.softmax(logits / temperature, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def bit_depth(x: np.ndarray, bits: int) -> np.ndarray:
    """Reduce ``[0, 1]`` images to ``bits`` bits per channel (Xu et al. 2018, eq. 1):
    ``round(x * (2^bits - 1)) / (2^bits - 1)``."""
    levels = 2**bits - 1
    return (np.rint(x * levels) / levels).astype(x.dtype)


def median_filter(x: np.ndarray, size: int) -> np.ndarray:
    """Median filter of ``size x size`` over each channel of ``N x C x H x W`` images
    (scipy's ``median_filter``, reflecting at the border, as Xu et al.'s code)."""
    from scipy.ndimage import median_filter as scipy_median

    return scipy_median(x, size=(1, 1, size, size), mode="reflect")


@DETECTORS.register(
    "squeeze", help="feature squeezing (Xu et al. 2018): L1 of softmax vs squeezed inputs"
)
class FeatureSqueezingDetector(Detector):
    """Feature squeezing (Xu, Evans & Qi, NDSS 2018).

    The score of an image is ``max_s || f(x) - f(s(x)) ||_1`` over the squeezers ``s`` (bit
    depth reduction and a median filter), ``f`` the model's softmax. An adversarial
    perturbation is fragile: squeezing undoes it and the prediction moves back.

    Parameters
    ----------
    model
        The classifier (``N x C x H x W`` in ``[0, 1]`` -> logits); left unchanged.
    bits
        Bit depth of the first squeezer; 0 = none. ``None``: Xu et al.'s choices, 1 bit for
        greyscale images (their MNIST setting) and 5 bits for colour ones (CIFAR-10).
    median_size
        Side of the median filter (Xu et al.: 2); 0 = none.
    batch_size
        Images per forward pass.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"images"})
    _test_params: ClassVar[dict[str, Any]] = {"model": _toy_model(), "bits": 5}

    def __init__(
        self, model: nn.Module | None = None, bits: int | None = None, median_size: int = 2,
        batch_size: int = 256,
    ) -> None:  # fmt: skip
        self.model = model
        self.bits = bits
        self.median_size = median_size
        self.batch_size = batch_size

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        _check_model(self, self.model)
        default = 1 if x.shape[1] == 1 else 5
        bits = default if self.bits is None else check_int_param(self, "bits", self.bits, 0)
        size = check_int_param(self, "median_size", self.median_size, 0)
        check_int_param(self, "batch_size", self.batch_size, 1)
        if bits == 0 and size < 2:
            raise ConfigError(
                "FeatureSqueezingDetector needs a squeezer: set bits >= 1 or median_size >= 2."
            )
        if bits > 16:
            raise ConfigError(f"The 'bits' parameter must be <= 16. Got {bits}.")
        self.squeezers_ = [
            s for s in (f"bits{bits}" * (bits > 0), f"median{size}" * (size > 1)) if s
        ]

    def squeezed_distances(self, x: np.ndarray) -> np.ndarray:
        """``(N, S)`` L1 distances of the softmax outputs, one column per squeezer."""
        model = _check_model(self, self.model)
        step = int(self.batch_size)
        base = _softmax(model, x, step)
        cols = []
        for squeezer in self.squeezers_:
            if squeezer.startswith("bits"):
                squeezed = bit_depth(x, int(squeezer[4:]))
            else:
                squeezed = median_filter(x, int(squeezer[6:]))
            cols.append(np.abs(_softmax(model, squeezed, step) - base).sum(axis=1))
        return np.stack(cols, axis=1)

    def _score(self, x: np.ndarray) -> np.ndarray:
        return self.squeezed_distances(x).max(axis=1)


def _jsd(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = 0.5 * (p + q)
    eps = 1e-12

    def kl(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(a * (np.log(a + eps) - np.log(b + eps)), axis=1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


@DETECTORS.register(
    "magnet", help="MagNet (Meng & Chen 2017): autoencoder L1 error or JSD of the softmax"
)
class MagNetDetector(AutoencoderDetector):
    """MagNet's detectors (Meng & Chen, CCS 2017) on an autoencoder of clean images.

    Parameters
    ----------
    model
        The classifier; needed for ``score="jsd"`` only.
    score
        ``"l1"``: detector I, the mean absolute reconstruction error; ``"jsd"``: detector
        II, the Jensen-Shannon divergence of ``softmax(f(x) / T)`` and
        ``softmax(f(AE(x)) / T)``.
    temperature
        ``T`` of detector II (Meng & Chen: 10 and 40).
    latent, epochs, max_images, batch_size, random_state
        As :class:`~dnnsafety.detection.AutoencoderDetector` (images resized to 32x32 inside
        the autoencoder; the reconstruction goes back to the input size for the model).
    """

    _test_params: ClassVar[dict[str, Any]] = {"latent": 2, "epochs": 10}

    def __init__(
        self,
        *,
        model: nn.Module | None = None,
        score: str = "l1",
        temperature: float = 10.0,
        latent: int = 32,
        epochs: int = 10,
        max_images: int = 10000,
        batch_size: int = 256,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            latent=latent,
            epochs=epochs,
            max_images=max_images,
            batch_size=batch_size,
            random_state=random_state,
        )
        self.model = model
        self.score = score
        self.temperature = temperature

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        if self.score not in ("l1", "jsd"):
            raise ConfigError(
                "The 'score' parameter of MagNetDetector must be 'l1' or 'jsd'. "
                f"Got {self.score!r}."
            )
        if self.score == "jsd":
            _check_model(self, self.model)
            if not float(self.temperature) > 0:
                raise ConfigError(
                    f"The 'temperature' parameter must be > 0. Got {self.temperature}."
                )
        super()._fit(x, y, **fit_params)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """The autoencoder's reconstruction of images ``x``, at their own size."""
        import torch.nn.functional as F

        from dnnsafety.features.autoencoder import _resize

        net = self.network()
        out = []
        step = int(self.batch_size)
        with torch.no_grad():
            for start in range(0, len(x), step):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + step]))
                rec = net(_resize(batch))
                if rec.shape[-2:] != batch.shape[-2:]:
                    rec = F.interpolate(
                        rec, size=batch.shape[-2:], mode="bilinear", align_corners=False
                    )
                out.append(rec.clamp(0, 1).numpy())
        return np.concatenate(out).astype(np.float32)

    def _score(self, x: np.ndarray) -> np.ndarray:
        rec = self.reconstruct(x)
        if self.score == "l1":
            return np.abs(rec - x).reshape(len(x), -1).mean(axis=1).astype(np.float64)
        model = _check_model(self, self.model)
        t = float(self.temperature)
        step = int(self.batch_size)
        return _jsd(_softmax(model, x, step, t), _softmax(model, rec, step, t))


# --------------------------------------------------------------------------- LRP statistics

STATISTICS: tuple[str, ...] = ("entropy", "top5_share", "positive_share", "kept")
"""Per-layer relevance statistics of :func:`relevance_statistics`."""


def relevance_statistics(maps: dict[str, Tensor], scores: Tensor) -> np.ndarray:
    """Statistics of each layer's LRP relevance map, ``(N, 4 * layers)`` float64.

    Per layer (in the order of ``maps``) and image, with ``a = |R|`` flattened:

    * ``entropy``: Shannon entropy of ``a / sum(a)``, divided by ``log(size)`` (1 = spread
      evenly, 0 = on one unit);
    * ``top5_share``: share of ``sum(a)`` held by the largest 5% of the units (concentration);
    * ``positive_share``: ``sum(R+) / sum(|R|)`` (sign mass);
    * ``kept``: ``sum(R) / logit``, the relevance that reaches the layer relative to the
      explained logit (1 under exact conservation).
    """
    cols = []
    logit = scores.double()
    safe_logit = torch.where(logit.abs() < 1e-12, torch.full_like(logit, 1e-12), logit)
    for relevance in maps.values():
        r = relevance.double().flatten(1)
        a = r.abs()
        total = a.sum(1).clamp_min(1e-30)
        p = a / total[:, None]
        ent = -(p * torch.log(p.clamp_min(1e-30))).sum(1) / max(np.log(r.shape[1]), 1e-12)
        k = max(1, int(np.ceil(0.05 * r.shape[1])))
        top = a.topk(k, dim=1).values.sum(1) / total
        pos = r.clamp_min(0).sum(1) / total
        kept = r.sum(1) / safe_logit
        cols.append(torch.stack([ent, top, pos, kept], dim=1))
    return torch.cat(cols, dim=1).numpy()


@DETECTORS.register(
    "lrp", help="LRP heatmap statistics per layer (entropy, concentration, sign) + Mahalanobis"
)
class LRPStatisticsDetector(Detector):
    """Mahalanobis distance of per-layer LRP relevance statistics to those of clean inputs.

    An adversarial input is explained differently from a clean one: its relevance is spread
    over other units (METHOD.md §7). Each image gets :func:`relevance_statistics` of the LRP
    maps of every chosen layer (:func:`dnnsafety.features.lrp.layer_relevance`, starting from
    the predicted class); the score is the Mahalanobis distance of that vector to the clean
    training vectors (Ledoit-Wolf shrunk covariance, as scikit-learn's ``LedoitWolf``).

    Parameters
    ----------
    model
        The classifier (white-box: its layers are hooked); left unchanged.
    layers
        Layer names (``None``: every conv, linear and pooling input, see
        :func:`~dnnsafety.features.lrp.find_layers`).
    ruleset
        LRP rule set, ``"default"`` or ``"hudd"``.
    batch_size
        Images per LRP pass.

    Attributes
    ----------
    layers_
        The layers used.
    mean_, precision_
        Mean and inverse shrunk covariance of the clean statistics.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"images"})
    _test_params: ClassVar[dict[str, Any]] = {"model": _toy_model()}

    def __init__(
        self,
        model: nn.Module | None = None,
        layers: list[str] | None = None,
        ruleset: str = "default",
        batch_size: int = 128,
    ) -> None:
        self.model = model
        self.layers = layers
        self.ruleset = ruleset
        self.batch_size = batch_size

    def statistics(self, x: np.ndarray) -> np.ndarray:
        """``(N, 4 * layers)`` relevance statistics of images ``x`` (see
        :func:`relevance_statistics`)."""
        from dnnsafety.features.lrp import find_layers, layer_relevance

        model = _check_model(self, self.model)
        step = check_int_param(self, "batch_size", self.batch_size, 1)
        plan = getattr(self, "plan_", None)
        if plan is None:
            plan = find_layers(model, torch.from_numpy(x[:1]), self.layers)
        out = []
        for start in range(0, len(x), step):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + step]))
            rel = layer_relevance(model, batch, plan, ruleset=self.ruleset)
            out.append(relevance_statistics(rel.maps, rel.scores))
        stats = np.concatenate(out)
        return np.nan_to_num(stats, nan=0.0, posinf=0.0, neginf=0.0)

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        from sklearn.covariance import LedoitWolf

        from dnnsafety.features.lrp import find_layers

        model = _check_model(self, self.model)
        self.plan_ = find_layers(model, torch.from_numpy(x[:1]), self.layers)
        self.layers_ = [info.name for info in self.plan_]
        stats = self.statistics(x)
        self.mean_ = stats.mean(axis=0)
        self.scale_ = stats.std(axis=0) + 1e-9
        cov = LedoitWolf().fit((stats - self.mean_) / self.scale_)
        self.precision_ = cov.precision_

    def _score(self, x: np.ndarray) -> np.ndarray:
        z = (self.statistics(x) - self.mean_) / self.scale_
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", z, self.precision_, z), 0.0))
