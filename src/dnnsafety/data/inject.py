"""Injected failure scenarios for real image datasets.

Real datasets have no simulator, so to know *why* a model fails we plant the causes: on a
known subset of images we apply a corruption (darkening, an occluding patch, a strong rotation,
blur, sensor noise). The subset is rare in ``train``/``val`` and common in ``test``/``pool``,
as in the field, where test campaigns find conditions the training data under-represents.
Every image carries its scenario tag (``nominal`` when untouched) and the corruption's
parameters as metadata, for evaluation only.

The corruptions are the ``scenario`` family of the corruption registry
(:mod:`dnnsafety.robustness.corruptions.scenarios`), applied at their scenario severity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from dnnsafety.data.dataset import NOMINAL, SPLITS
from dnnsafety.exceptions import ConfigError
from dnnsafety.robustness.corruptions import CORRUPTIONS as REGISTRY
from dnnsafety.robustness.corruptions._ops import gaussian_blur, rotate

__all__ = [
    "CORRUPTIONS",
    "META_COLUMNS",
    "SCENARIOS",
    "InjectionConfig",
    "gaussian_blur",
    "inject",
    "rotate",
]

Corruption = Callable[
    [torch.Tensor, np.random.Generator], tuple[torch.Tensor, dict[str, np.ndarray]]
]

META_COLUMNS = ("brightness", "rotation", "occlusion", "occ_x", "occ_y", "blur", "noise")


SCENARIOS = ("dark", "occlusion", "rotation", "blur", "noise")
"""The injected scenarios: corruptions of the registry (family ``scenario``)."""


def _scenario(name: str) -> Corruption:
    entry = REGISTRY.get(name)

    def apply(
        x: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        return entry.sample(x, entry.scenario_severity, rng)

    apply.__name__ = name
    return apply


CORRUPTIONS: dict[str, Corruption] = {name: _scenario(name) for name in SCENARIOS}
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
