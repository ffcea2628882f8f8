"""The ``autoencoder`` feature source: latent code of a convolutional autoencoder.

Trained without labels on the unlabeled images of the :class:`FeatureContext` (train + pool),
so it learns what the data looks like, not what the model thinks. Images are resized to 32x32
inside the network. The trained weights are saved in the context's ``work_dir`` (keyed by the
training settings and the data), so a rerun reuses them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnnsafety._validation import check_int_param, check_random_state
from dnnsafety.exceptions import ConfigError
from dnnsafety.features.sources import FEATURE_SOURCES, FeatureContext, FeatureSource
from dnnsafety.progress import progress_bar
from dnnsafety.runs import atomic_path, fingerprint

log = logging.getLogger(__name__)

SIDE = 32


class ConvAutoencoder(nn.Module):
    """32x32 images -> ``latent`` values -> 32x32 images."""

    def __init__(self, channels: int, latent: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, latent),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, 64 * 4 * 4),
            nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def _resize(batch: Tensor) -> Tensor:
    if batch.shape[-2:] == (SIDE, SIDE):
        return batch
    return F.interpolate(batch, size=(SIDE, SIDE), mode="bilinear", align_corners=False)


@FEATURE_SOURCES.register("autoencoder", "latent code of a conv autoencoder (unlabeled data)")
class AutoencoderFeatures(FeatureSource):
    """Latent code of a :class:`ConvAutoencoder` trained on the unlabeled images.

    Parameters
    ----------
    latent
        Size of the code.
    epochs
        Training epochs (Adam, lr 1e-3, MSE).
    max_images
        At most this many unlabeled images (a random subset) are used for training.
    random_state
        Seed of the subset and of the training; ``None``: the context's ``seed``.
    """

    batch_size = 512
    requires: ClassVar[frozenset[str]] = frozenset({"unlabeled"})
    _test_params: ClassVar[dict[str, Any]] = {"latent": 4, "epochs": 1, "max_images": 24}

    def __init__(
        self,
        latent: int = 32,
        epochs: int = 5,
        max_images: int = 10000,
        random_state: int | None = None,
    ) -> None:
        self.latent = latent
        self.epochs = epochs
        self.max_images = max_images
        self.random_state = random_state

    def unlabeled_limit(self) -> int | None:
        """``max_images``: the orchestrator samples no more unlabeled images than that."""
        return int(self.max_images)

    def fit(self, context: FeatureContext) -> AutoencoderFeatures:
        data = context.unlabeled
        if data is None or len(data) < 2:
            raise ConfigError(
                "The 'autoencoder' features need unlabeled images to train on (train + pool)."
            )
        check_int_param(self, "latent", self.latent, 1)
        check_int_param(self, "epochs", self.epochs, 1)
        check_int_param(self, "max_images", self.max_images, 1)
        seed = context.seed if self.random_state is None else self.random_state
        seed = check_random_state(self, seed)
        gen = torch.Generator().manual_seed(seed)
        n = min(len(data), self.max_images)
        pick = torch.randperm(len(data), generator=gen)[:n]
        key = fingerprint(
            "autoencoder-v1", self.latent, self.epochs, seed, tuple(data.shape),
            float(data[pick[: min(n, 256)]].double().sum()),
        )  # fmt: skip
        path = None if context.work_dir is None else context.work_dir / f"autoencoder_{key}.pt"
        net = ConvAutoencoder(int(data.shape[1]), self.latent)
        if path is not None and path.is_file():
            net.load_state_dict(torch.load(path, weights_only=True))
            log.info("autoencoder reused from %s", path)
        else:
            torch.manual_seed(seed)
            net = ConvAutoencoder(int(data.shape[1]), self.latent)
            _train(net, data[pick], self.epochs, gen)
            if path is not None:
                with atomic_path(path) as tmp:
                    torch.save(net.state_dict(), tmp)
        net.eval()
        self.net_ = net
        self.fitted_ = True
        return self

    def _embed(self, batch: Tensor) -> Tensor:
        return self.net_.encoder(_resize(batch))


def _train(net: ConvAutoencoder, images: Tensor, epochs: int, gen: torch.Generator) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    batch = 128
    losses: list[float] = []
    with progress_bar(total=epochs * len(images), desc="train autoencoder", unit="img") as bar:
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=gen)
            total = 0.0
            for start in range(0, len(images), batch):
                x = _resize(images[order[start : start + batch]].float())
                loss = F.mse_loss(net(x), x)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(x)
                bar.update(len(x))
            losses.append(total / len(images))
    log.info("autoencoder reconstruction MSE per epoch: %s", np.round(losses, 5).tolist())
