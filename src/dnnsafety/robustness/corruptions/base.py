"""The corruption contract and its registry.

A corruption takes a batch of images and returns a corrupted copy::

    CORRUPTIONS.get("fog")(images, severity=3, random_state=0)  # -> images

``images`` is a float32 tensor ``N x C x H x W`` in ``[0, 1]`` (``C`` = 1 or 3), ``severity``
an integer from 1 (mild) to 5 (strongest), as in ImageNet-C (Hendrycks & Dietterich, ICLR
2019), and ``random_state`` a seed or a :class:`numpy.random.Generator`. The input is never
changed; the output has the input's shape and dtype and stays in ``[0, 1]``.

Each entry is a :class:`Corruption`: its family (``noise``, ``blur``, ``weather``,
``digital``, ``missing``, ``scenario``), where its code comes from (``imagecorruptions`` or
``own``) and a ``sample`` function that also returns the parameters it drew (the injected
scenarios of :mod:`dnnsafety.data.inject` record them as metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dnnsafety._validation import check_random_generator
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.registry import Registry

__all__ = [
    "CORRUPTIONS",
    "FAMILIES",
    "SEVERITIES",
    "Corruption",
    "Params",
    "SampleFn",
    "check_images",
    "check_severity",
    "corruption",
    "names_of",
]

SEVERITIES = (1, 2, 3, 4, 5)
FAMILIES = ("noise", "blur", "weather", "digital", "missing", "scenario")
"""Families: ImageNet-C's four, missing data, and the injected failure scenarios."""

Params = dict[str, np.ndarray]
SampleFn = Callable[[torch.Tensor, int, np.random.Generator], tuple[torch.Tensor, Params]]


def check_images(images: object, what: str = "images") -> torch.Tensor:
    """``images`` as a float32 tensor ``N x C x H x W`` (C = 1 or 3) with values in [0, 1].

    Raises
    ------
    InvalidInputError
        If it is not such a tensor.
    """
    if not isinstance(images, torch.Tensor):
        raise InvalidInputError(
            f"{what} must be a torch.Tensor N x C x H x W; got {type(images).__name__}. Convert "
            "with torch.from_numpy(x).float()."
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise InvalidInputError(
            f"{what} must be N x C x H x W with C = 1 (grey) or 3 (colour); got shape "
            f"{tuple(images.shape)}."
        )
    if images.dtype != torch.float32:
        raise InvalidInputError(f"{what} must be float32 in [0, 1]; got {images.dtype}.")
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise InvalidInputError(f"{what} must hold values in [0, 1]; clip or rescale them.")
    return images


def check_severity(severity: object) -> int:
    """``severity`` as an int in 1..5; :class:`ConfigError` otherwise."""
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise ConfigError(f"severity must be an integer from 1 to 5. Got {severity!r}.")
    if int(severity) not in SEVERITIES:
        raise ConfigError(f"severity must be an integer from 1 to 5. Got {severity!r}.")
    return int(severity)


@dataclass(frozen=True)
class Corruption:
    """One registered corruption.

    Attributes
    ----------
    family
        One of :data:`FAMILIES`.
    source
        ``"imagecorruptions"`` (the reference implementation of ImageNet-C) or ``"own"``.
    sample
        ``sample(images, severity, rng) -> (images, params)``: the corrupted batch and the
        parameters drawn per image (arrays of length N).
    scenario_severity
        The severity :mod:`dnnsafety.data.inject` uses for an injected scenario (0: none).
    name
        Set by the registry.
    """

    family: str
    source: str
    sample: SampleFn = field(repr=False)
    scenario_severity: int = 0
    name: str = ""

    def __call__(
        self,
        images: torch.Tensor,
        severity: int = 3,
        random_state: int | np.random.Generator | None = 0,
    ) -> torch.Tensor:
        """The corrupted copy of ``images`` (``N x C x H x W`` float32 in [0, 1]).

        Raises
        ------
        InvalidInputError
            If ``images`` is not such a batch.
        ConfigError
            If ``severity`` is not in 1..5 or ``random_state`` is no seed or generator.
        """
        return self.sample_checked(images, severity, random_state)[0]

    def sample_checked(
        self,
        images: torch.Tensor,
        severity: int,
        random_state: int | np.random.Generator | None,
    ) -> tuple[torch.Tensor, Params]:
        """:attr:`sample` after checking the arguments; the output is clipped to [0, 1]."""
        x = check_images(images)
        s = check_severity(severity)
        rng = check_random_generator(self.name or "corruption", random_state)
        if len(x) == 0:
            return x.clone(), {}
        out, params = self.sample(x.clone(), s, rng)
        return out.to(torch.float32).clamp_(0.0, 1.0), params


CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def corruption(
    name: str, family: str, source: str = "own", help: str = "", scenario_severity: int = 0
) -> Callable[[SampleFn], SampleFn]:
    """Register ``sample(images, severity, rng) -> (images, params)`` as a corruption."""
    if family not in FAMILIES:
        raise ValueError(f"unknown corruption family {family!r}")

    def decorate(fn: SampleFn) -> SampleFn:
        entry = Corruption(family, source, fn, scenario_severity, name)
        CORRUPTIONS.register(name, help=help or (fn.__doc__ or "").strip().split("\n")[0])(entry)
        return fn

    return decorate


def names_of(selection: str | list[str] | tuple[str, ...]) -> list[str]:
    """Corruption names from ``"all"`` (ImageNet-C's 15), ``"missing"``, a family name, or a
    comma-separated list / list of names and families, in registry order.

    Raises
    ------
    ConfigError
        If a name is neither a corruption nor a family.
    """
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    out: list[str] = []
    for raw in (i.strip() for i in items):
        if not raw:
            continue
        if raw == "all":
            found = [n for n in IMAGENET_C if n in CORRUPTIONS]
        elif raw in FAMILIES:
            found = [n for n in CORRUPTIONS.names() if CORRUPTIONS.get(n).family == raw]
            if raw in ("noise", "blur", "weather", "digital"):
                found = [n for n in IMAGENET_C if n in found]
        else:
            CORRUPTIONS.get(raw)  # raises ConfigError naming the known ones
            found = [raw]
        out += [n for n in found if n not in out]
    if not out:
        raise ConfigError(f"No corruption selected by {selection!r}.")
    return out


IMAGENET_C = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
"""The 15 corruptions of ImageNet-C, in its order (noise, blur, weather, digital)."""
