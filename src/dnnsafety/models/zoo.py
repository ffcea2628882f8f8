"""A zoo of plain ``torch.nn`` image classifiers for small images.

* ``small_cnn`` - three conv blocks and a two-layer head; fast on a CPU.
* ``alexnet`` - the AlexNet family used by the published HUDD tool, scaled to small images
  (five conv layers, three max-pools, three linear layers with dropout).
* ``resnet`` - a small ResNet (BasicBlocks with BatchNorm and identity/projection skips).

All models take ``N x C x H x W`` float input in [0, 1] and return raw logits. Convolutional
parts are ``features`` and linear parts ``classifier`` (both ``nn.Sequential``), so layer names
are predictable for the analysis stages.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from dnnsafety.registry import Registry

ModelFactory = Callable[[int, int, int], nn.Module]
MODELS: Registry[ModelFactory] = Registry("model architecture")


def _flat_size(features: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        out = features(torch.zeros(1, in_channels, image_size, image_size))
    return int(out.numel())


class SmallCNN(nn.Module):
    """Three conv-ReLU-maxpool blocks (32, 64, 128 channels), a 128-unit hidden layer."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = _flat_size(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNetSmall(nn.Module):
    """AlexNet's layout (5 conv, 3 max-pool, 3 linear with dropout) scaled to small images."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 48, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(48, 96, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(96, 144, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(144, 144, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(144, 96, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = _flat_size(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(flat, 256),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) skip connection."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet with three stages of two BasicBlocks (32, 64, 128 channels)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        del image_size  # global average pooling makes the net size-agnostic
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            BasicBlock(32, 32, 1),
            BasicBlock(32, 64, 2),
            BasicBlock(64, 64, 1),
            BasicBlock(64, 128, 2),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS.register("small_cnn", "Small fast CNN: 3 conv blocks + 2 linear layers")(SmallCNN)
MODELS.register("alexnet", "AlexNet-style: 5 conv, 3 max-pool, 3 linear (HUDD's family)")(
    AlexNetSmall
)
MODELS.register("resnet", "Small ResNet: BatchNorm, 3 stages of residual blocks")(SmallResNet)


def build_model(arch: str, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Instantiate a zoo architecture by name."""
    return MODELS.get(arch)(in_channels, num_classes, image_size)
