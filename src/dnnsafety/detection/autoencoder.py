"""Autoencoder reconstruction error on images (METHOD.md §6; MagNet's detector, Meng & Chen,
CCS 2017).

The convolutional autoencoder of :mod:`dnnsafety.features.autoencoder` is trained without
labels on the in-distribution images (resized to 32x32 inside); the score is the mean squared
reconstruction error per image. Its weights are learned state (``weights_``: name -> array),
so a saved detector is plain arrays.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from dnnsafety._validation import check_int_param, check_random_state
from dnnsafety.detection.base import DETECTORS, Detector
from dnnsafety.features.autoencoder import ConvAutoencoder, _resize, _train

__all__ = ["AutoencoderDetector"]


@DETECTORS.register("autoencoder", help="reconstruction error of a conv autoencoder on images")
class AutoencoderDetector(Detector):
    """Mean squared reconstruction error of a :class:`ConvAutoencoder`.

    Parameters
    ----------
    latent
        Size of the code.
    epochs
        Training epochs (Adam, lr 1e-3, MSE, batches of 128).
    max_images
        Train on at most this many images (a random subset).
    batch_size
        Images scored at a time.
    random_state
        Seed of the subset and the training.

    Attributes
    ----------
    weights_
        The trained network's ``state_dict`` as float32 arrays.
    channels_
        Image channels.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"images"})
    _test_params: ClassVar[dict[str, Any]] = {"latent": 2, "epochs": 10}

    weights_: dict[str, np.ndarray]
    channels_: int

    def __init__(
        self,
        *,
        latent: int = 32,
        epochs: int = 10,
        max_images: int = 10000,
        batch_size: int = 256,
        random_state: int = 0,
    ) -> None:
        self.latent = latent
        self.epochs = epochs
        self.max_images = max_images
        self.batch_size = batch_size
        self.random_state = random_state

    def _fit(self, x: np.ndarray, y: np.ndarray | None, **fit_params: Any) -> None:
        seed = check_random_state(self, self.random_state)
        latent = check_int_param(self, "latent", self.latent, 1)
        epochs = check_int_param(self, "epochs", self.epochs, 1)
        cap = check_int_param(self, "max_images", self.max_images, 2)
        check_int_param(self, "batch_size", self.batch_size, 1)
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(x), generator=gen)[: min(cap, len(x))]
        torch.manual_seed(seed)
        net = ConvAutoencoder(int(x.shape[1]), latent)
        _train(net, torch.from_numpy(np.ascontiguousarray(x))[pick], epochs, gen)
        self.channels_ = int(x.shape[1])
        self.weights_ = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}

    def network(self) -> ConvAutoencoder:
        """The trained autoencoder (eval mode), rebuilt from ``weights_``."""
        net = ConvAutoencoder(self.channels_, int(self.latent))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights_.items()})
        return net.eval()

    def _score(self, x: np.ndarray) -> np.ndarray:
        net = self.network()
        out = np.empty(len(x), dtype=np.float64)
        step = int(self.batch_size)
        with torch.no_grad():
            for start in range(0, len(x), step):
                batch = _resize(torch.from_numpy(np.ascontiguousarray(x[start : start + step])))
                err = (net(batch) - batch).pow(2).flatten(1).mean(dim=1)
                out[start : start + step] = err.double().numpy()
        return out
