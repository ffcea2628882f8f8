"""Image corruptions: ImageNet-C's 15, missing data and the injected failure scenarios.

Every entry of :data:`CORRUPTIONS` follows one contract (:mod:`.base`)::

    CORRUPTIONS.get(name)(images, severity, random_state) -> images

with ``images`` float32 ``N x C x H x W`` in [0, 1] (grey or colour, 28 and 32 px tested) and
``severity`` from 1 to 5. Families: ``noise``, ``blur``, ``weather``, ``digital``
(ImageNet-C, Hendrycks & Dietterich ICLR 2019; :mod:`.imagenet_c`), ``missing``
(:mod:`.missing`) and ``scenario`` (:mod:`.scenarios`, planted by
:mod:`dnnsafety.data.inject`). A new corruption is one decorated function in one module here.
"""

import numpy as np
import torch

from dnnsafety.robustness.corruptions import imagenet_c, missing, scenarios
from dnnsafety.robustness.corruptions.base import (
    CORRUPTIONS,
    FAMILIES,
    IMAGENET_C,
    SEVERITIES,
    Corruption,
    check_images,
    check_severity,
    corruption,
    names_of,
)
from dnnsafety.robustness.corruptions.missing import MISSING, RATES, drop

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "IMAGENET_C",
    "MISSING",
    "RATES",
    "SEVERITIES",
    "Corruption",
    "check_images",
    "check_severity",
    "corrupt",
    "corruption",
    "drop",
    "imagenet_c",
    "missing",
    "names_of",
    "scenarios",
]


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int = 3,
    random_state: int | np.random.Generator | None = 0,
) -> torch.Tensor:
    """``CORRUPTIONS.get(name)(images, severity, random_state)``: the corrupted copy."""
    return CORRUPTIONS.get(name)(images, severity, random_state)
