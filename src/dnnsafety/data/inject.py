"""Injected failure scenarios for real image datasets.

Real datasets have no simulator, so to know *why* a model fails we plant the causes: on a
known subset of images we apply a corruption (darkening, an occluding patch, a strong rotation,
blur, sensor noise). The subset is rare in ``train``/``val`` and common in ``test``/``pool``,
as in the field, where test campaigns find conditions the training data under-represents.
Every image carries its scenario tag (``nominal`` when untouched) and the corruption's
parameters as metadata, for evaluation only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from dnnsafety.data.dataset import NOMINAL, SPLITS
from dnnsafety.exceptions import ConfigError

Corruption = Callable[
    [torch.Tensor, np.random.Generator], tuple[torch.Tensor, dict[str, np.ndarray]]
]

META_COLUMNS = ("brightness", "rotation", "occlusion", "occ_x", "occ_y", "blur", "noise")


def gaussian_blur(x: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Blur every image of ``x`` (``N x C x H x W``) with its own Gaussian ``sigma`` (pixels)."""
    n, c, h, w = x.shape
    if n == 0:
        return x
    radius = max(1, math.ceil(3 * float(np.max(sigma))))
    offs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    sig = torch.as_tensor(np.maximum(sigma, 1e-3), dtype=torch.float32)[:, None]
    kern = torch.exp(-0.5 * (offs[None, :] / sig) ** 2)
    kern = kern / kern.sum(dim=1, keepdim=True)  # n x k
    kern = kern.repeat_interleave(c, dim=0)  # (n*c) x k
    flat = x.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kern[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, kern[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def rotate(x: torch.Tensor, degrees: np.ndarray, fill: float = 0.0) -> torch.Tensor:
    """Rotate every image about its centre by its own angle; corners are filled with ``fill``."""
    if len(x) == 0:
        return x
    rad = torch.as_tensor(np.deg2rad(degrees), dtype=torch.float32)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def _dark(x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    b = rng.uniform(0.04, 0.12, len(x))
    return x * torch.as_tensor(b, dtype=torch.float32)[:, None, None, None], {"brightness": b}


def _rotation(
    x: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    deg = rng.uniform(70, 110, len(x)) * rng.choice([-1.0, 1.0], len(x))
    return rotate(x, deg), {"rotation": deg}


def _occlusion(
    x: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    n, _, h, w = x.shape
    frac = rng.uniform(0.55, 0.7, n)
    cx, cy = rng.uniform(0.35, 0.65, n), rng.uniform(0.35, 0.65, n)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    half = torch.as_tensor(frac / 2, dtype=torch.float32)[:, None]
    in_y = (ys[None, :] - torch.as_tensor(cy, dtype=torch.float32)[:, None]).abs() <= half
    in_x = (xs[None, :] - torch.as_tensor(cx, dtype=torch.float32)[:, None]).abs() <= half
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]
    out = torch.where(mask, torch.full_like(x, 0.5), x)
    return out, {"occlusion": frac, "occ_x": cx, "occ_y": cy}


def _blur(x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    sigma = rng.uniform(2.0, 2.8, len(x)) * x.shape[-1] / 28.0
    return gaussian_blur(x, sigma), {"blur": sigma}


def _noise(x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    std = rng.uniform(0.4, 0.55, len(x))
    noise = torch.as_tensor(rng.standard_normal(tuple(x.shape)), dtype=torch.float32)
    out = x + noise * torch.as_tensor(std, dtype=torch.float32)[:, None, None, None]
    return out.clamp_(0, 1), {"noise": std}


CORRUPTIONS: dict[str, Corruption] = {
    "dark": _dark,
    "occlusion": _occlusion,
    "rotation": _rotation,
    "blur": _blur,
    "noise": _noise,
}

RARE = 0.01
COMMON = 0.1


def _default_mix() -> dict[str, dict[str, float]]:
    rare = dict.fromkeys(CORRUPTIONS, RARE)
    common = dict.fromkeys(CORRUPTIONS, COMMON)
    return {"train": rare, "val": dict(rare), "test": common, "pool": dict(common)}


@dataclass(frozen=True)
class InjectionConfig:
    """How often each injected scenario occurs in each split (the rest stays ``nominal``)."""

    mix: Mapping[str, Mapping[str, float]] = field(default_factory=_default_mix)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, float]]) -> InjectionConfig:
        """Build from ``{split: {scenario: probability}}``; missing splits keep the default."""
        mix = _default_mix()
        for split, probs in data.items():
            if split not in SPLITS:
                raise ConfigError(
                    f"data.scenarios: unknown split {split!r}; use {', '.join(SPLITS)}."
                )
            unknown = sorted(set(probs) - set(CORRUPTIONS))
            if unknown:
                raise ConfigError(
                    f"data.scenarios.{split}: unknown scenario(s) {', '.join(unknown)}; "
                    f"known: {', '.join(CORRUPTIONS)}."
                )
            mix[split] = {**mix[split], **{k: float(v) for k, v in probs.items()}}
        cfg = cls(mix)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for split, probs in self.mix.items():
            for name, p in probs.items():
                if not 0.0 <= p <= 1.0:
                    raise ConfigError(
                        f"data.scenarios.{split}.{name} must be a probability in [0, 1]. Got {p}."
                    )
            if sum(probs.values()) > 1.0 + 1e-9:
                raise ConfigError(
                    f"data.scenarios.{split}: probabilities sum to {sum(probs.values()):.3f} > 1."
                )


def inject(
    images: torch.Tensor, split: str, config: InjectionConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, np.ndarray, pd.DataFrame]:
    """Apply the scenarios of ``split`` to a random subset of ``images``.

    Returns the new images, the scenario tag per image and the metadata table (one row per
    image, columns :data:`META_COLUMNS`; untouched parameters hold their neutral value).
    """
    n = len(images)
    probs = dict(config.mix.get(split, {}))
    names = [NOMINAL, *probs]
    weights = np.array([max(0.0, 1.0 - sum(probs.values())), *probs.values()])
    tags = np.asarray(names, dtype=object)[
        rng.choice(len(names), size=n, p=weights / weights.sum())
    ]
    meta = {
        "brightness": np.ones(n),
        "rotation": np.zeros(n),
        "occlusion": np.zeros(n),
        "occ_x": np.full(n, np.nan),
        "occ_y": np.full(n, np.nan),
        "blur": np.zeros(n),
        "noise": np.zeros(n),
    }
    out = images.clone()
    for name in probs:
        idx = np.flatnonzero(tags == name)
        if len(idx) == 0:
            continue
        sel = torch.from_numpy(idx)
        changed, params = CORRUPTIONS[name](out[sel], rng)
        out[sel] = changed.clamp(0.0, 1.0)
        for col, values in params.items():
            meta[col][idx] = values
    return out, tags, pd.DataFrame(meta)
