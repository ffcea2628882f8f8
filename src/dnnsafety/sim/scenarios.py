"""Rendering-parameter distributions and scenario configuration for the sign simulator.

Every simulated image is described by one row of rendering parameters (see
:data:`PARAMETER_COLUMNS`). Most images are drawn from the *nominal* distribution: moderate
lighting, small rotations, little haze, blur or noise. A *scenario* is a named condition that
overrides some of those parameters with harsh values (``night``, ``fog``, ``occlusion_lower``,
``tilt``, ``blur``, ``noise``). A :class:`ScenarioConfig` says how often each scenario occurs in
each split; by default the training and validation splits rarely contain the four hard
scenarios while the test split and the unlabeled pool contain many, which is what makes the
resulting model fail in a way that is both real and learnable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from dnnsafety.exceptions import ConfigError, InvalidInputError

__all__ = [
    "NOMINAL_OCCLUSION_RATE",
    "NOMINAL_RANGES",
    "OCCLUSION_SIDES",
    "PARAMETER_COLUMNS",
    "RARE_SCENARIOS",
    "SCENARIOS",
    "SCENARIO_NAMES",
    "Scenario",
    "ScenarioConfig",
    "sample_parameters",
]

SPLITS: tuple[str, ...] = ("train", "val", "test", "pool")
"""The splits the simulator draws for (the same names as :data:`dnnsafety.data.SPLITS`)."""

NOMINAL = "nominal"
"""Scenario tag of an image drawn from the nominal distribution (no named scenario)."""

PARAMETER_COLUMNS: tuple[str, ...] = (
    "brightness",
    "contrast",
    "cast_r",
    "cast_g",
    "cast_b",
    "fog",
    "blur",
    "noise",
    "rotation",
    "scale",
    "shift_x",
    "shift_y",
    "occlusion",
    "occlusion_side",
    "clutter",
)
"""Rendering parameters recorded for every image, in column order.

``brightness``
    Global intensity multiplier (1 is daylight, about 0.2 is night).
``contrast``
    Contrast factor around the image mean (1 leaves the image unchanged).
``cast_r``, ``cast_g``, ``cast_b``
    Per-channel colour-cast multipliers.
``fog``
    Haze blend weight in ``[0, 1]``; 1 means only haze is visible.
``blur``
    Gaussian blur sigma in output pixels.
``noise``
    Standard deviation of additive Gaussian sensor noise (intensity units, 0..1 scale).
``rotation``
    In-plane rotation of the sign in degrees, positive is counter-clockwise.
``scale``
    Sign diameter as a fraction of the image width.
``shift_x``, ``shift_y``
    Offset of the sign centre from the image centre, as a fraction of the image width
    (positive is right / down).
``occlusion``
    Fraction of the sign's extent covered by an occluding object, in ``[0, 1]``.
``occlusion_side``
    Where the occluder comes from: one of :data:`OCCLUSION_SIDES`.
``clutter``
    Background clutter amount in ``[0, 1]`` (strength of shapes and edges behind the sign).
"""

OCCLUSION_SIDES: tuple[str, ...] = ("none", "top", "bottom", "left", "right")
"""Allowed values of the ``occlusion_side`` column."""

NOMINAL_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "brightness": (0.7, 1.2),
        "contrast": (0.8, 1.15),
        "cast_r": (0.93, 1.07),
        "cast_g": (0.93, 1.07),
        "cast_b": (0.93, 1.07),
        "fog": (0.0, 0.15),
        "blur": (0.0, 0.6),
        "noise": (0.0, 0.025),
        "rotation": (-8.0, 8.0),
        "scale": (0.62, 0.86),
        "shift_x": (-0.07, 0.07),
        "shift_y": (-0.07, 0.07),
        "clutter": (0.1, 0.55),
    }
)
"""Uniform ranges ``(low, high)`` of the nominal distribution, per numeric parameter."""

NOMINAL_OCCLUSION_RATE = 0.03
"""Share of nominal images with a small occlusion (5-15 % of the sign, random side)."""

_NOMINAL_OCCLUSION_RANGE = (0.05, 0.15)


@dataclass(frozen=True)
class Scenario:
    """A named condition that overrides part of the nominal parameter distribution.

    Parameters
    ----------
    name
        Scenario tag written to every image rendered under it.
    description
        One-line human description.
    overrides
        Uniform ranges ``(low, high)`` replacing the nominal range of these parameters.
    random_sign
        Parameters whose sampled magnitude gets a random sign (e.g. ``rotation`` for a tilt
        either way).
    occlusion_side
        When set, the occlusion side forced by this scenario.
    """

    name: str
    description: str
    overrides: Mapping[str, tuple[float, float]]
    random_sign: tuple[str, ...] = ()
    occlusion_side: str | None = None

    def __post_init__(self) -> None:
        numeric = (*NOMINAL_RANGES, "occlusion")
        unknown = [k for k in (*self.overrides, *self.random_sign) if k not in numeric]
        if unknown:
            raise ConfigError(
                f"Scenario {self.name!r} overrides unknown parameter(s) {', '.join(unknown)}; "
                f"use numeric columns of PARAMETER_COLUMNS."
            )
        if self.occlusion_side is not None and self.occlusion_side not in OCCLUSION_SIDES:
            raise ConfigError(
                f"Scenario {self.name!r}: occlusion_side must be one of "
                f"{', '.join(OCCLUSION_SIDES)}, got {self.occlusion_side!r}."
            )
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))


SCENARIOS: Mapping[str, Scenario] = MappingProxyType(
    {
        "night": Scenario(
            "night",
            "very low light under orange street lighting, with strong sensor noise",
            {
                "brightness": (0.08, 0.16),
                "noise": (0.06, 0.1),
                "cast_r": (1.1, 1.3),
                "cast_g": (0.8, 0.95),
                "cast_b": (0.35, 0.55),
                "blur": (0.3, 0.9),
            },
        ),
        "fog": Scenario(
            "fog",
            "heavy haze washing out colour and contrast",
            {"fog": (0.84, 0.93), "blur": (0.4, 1.2), "noise": (0.02, 0.04)},
        ),
        "occlusion_lower": Scenario(
            "occlusion_lower",
            "the lower 40-65 % of the sign is hidden behind an object",
            {"occlusion": (0.40, 0.65)},
            occlusion_side="bottom",
        ),
        "tilt": Scenario(
            "tilt",
            "sign strongly rotated, 30-60 degrees either way",
            {"rotation": (30.0, 60.0)},
            random_sign=("rotation",),
        ),
        "blur": Scenario(
            "blur",
            "strong defocus or motion blur",
            {"blur": (1.4, 2.4)},
        ),
        "noise": Scenario(
            "noise",
            "strong sensor noise in normal light",
            {"noise": (0.12, 0.2)},
        ),
    }
)
"""The named scenarios, in the order their overrides are sampled."""

SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)
"""Names of all scenarios (``nominal`` is implicit: the remainder of each split)."""

RARE_SCENARIOS: tuple[str, ...] = ("night", "fog", "occlusion_lower", "tilt")
"""The four scenarios the default configuration under-represents in training."""

_DEFAULT_RARE_TRAIN = 0.005
_DEFAULT_RARE_TEST = 0.11


def _default_train() -> dict[str, float]:
    return dict.fromkeys(RARE_SCENARIOS, _DEFAULT_RARE_TRAIN)


def _default_test() -> dict[str, float]:
    return dict.fromkeys(RARE_SCENARIOS, _DEFAULT_RARE_TEST)


def _check_probabilities(split: str, probs: object) -> dict[str, float]:
    """Validate one split's scenario probabilities and return a clean float dict."""
    if not isinstance(probs, Mapping):
        raise ConfigError(
            f"Scenario config for split {split!r} must be a mapping of scenario name to "
            f"probability, got {type(probs).__name__}."
        )
    clean: dict[str, float] = {}
    for key, value in probs.items():
        if key == NOMINAL:
            raise ConfigError(
                f"Scenario config for split {split!r}: do not list {NOMINAL!r}; it is the "
                "remainder (1 minus the other probabilities)."
            )
        if key not in SCENARIOS:
            raise ConfigError(
                f"Scenario config for split {split!r}: unknown scenario {key!r}. Choose from "
                f"{', '.join(SCENARIO_NAMES)}."
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"Scenario config for split {split!r}: probability of {key!r} must be a "
                f"number in [0, 1], got {value!r}."
            )
        p = float(value)
        if not np.isfinite(p) or p < 0.0 or p > 1.0:
            raise ConfigError(
                f"Scenario config for split {split!r}: probability of {key!r} is {p}; it "
                "must lie in [0, 1]."
            )
        clean[str(key)] = p
    total = sum(clean.values())
    if total > 1.0 + 1e-9:
        raise ConfigError(
            f"Scenario config for split {split!r}: probabilities sum to {total:.4g} > 1; "
            "lower them so that the nominal remainder is not negative."
        )
    return clean


@dataclass(frozen=True)
class ScenarioConfig:
    """How often each scenario occurs in each split.

    Each field maps scenario names (see :data:`SCENARIO_NAMES`) to the probability that an
    image of that split is rendered under that scenario. The remaining probability mass is
    ``nominal``. Probabilities must lie in ``[0, 1]`` and sum to at most 1 per split.

    The default under-represents the four hard scenarios (:data:`RARE_SCENARIOS`) in ``train``
    and ``val`` (0.5 % each) and makes them common in ``test`` and ``pool`` (11 % each).

    Parameters
    ----------
    train, val, test, pool
        Scenario probabilities for that split.
    """

    train: Mapping[str, float] = field(default_factory=_default_train)
    val: Mapping[str, float] = field(default_factory=_default_train)
    test: Mapping[str, float] = field(default_factory=_default_test)
    pool: Mapping[str, float] = field(default_factory=_default_test)

    def __post_init__(self) -> None:
        for split in SPLITS:
            clean = _check_probabilities(split, getattr(self, split))
            object.__setattr__(self, split, MappingProxyType(clean))

    def __hash__(self) -> int:
        return hash(tuple(tuple(sorted(self.for_split(s).items())) for s in SPLITS))

    def for_split(self, split: str) -> dict[str, float]:
        """Scenario probabilities of ``split`` (without ``nominal``).

        Raises
        ------
        ConfigError
            If ``split`` is not one of ``train``, ``val``, ``test``, ``pool``.
        """
        if split not in SPLITS:
            raise ConfigError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
        probs: Mapping[str, float] = getattr(self, split)
        return dict(probs)

    def probabilities(self, split: str) -> dict[str, float]:
        """Full distribution over ``nominal`` and every scenario for ``split``.

        The result has one entry per tag in ``("nominal",) + SCENARIO_NAMES`` and sums to 1.
        """
        probs = self.for_split(split)
        full = {name: probs.get(name, 0.0) for name in SCENARIO_NAMES}
        nominal = max(0.0, 1.0 - sum(full.values()))
        return {NOMINAL: nominal, **full}

    def to_dict(self) -> dict[str, dict[str, float]]:
        """Plain nested dict ``{split: {scenario: probability}}``, e.g. for TOML or JSON."""
        return {split: self.for_split(split) for split in SPLITS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioConfig:
        """Build a config from a plain nested dict as written by :meth:`to_dict`.

        Splits missing from ``data`` keep their default probabilities; a split that is given
        replaces its default entirely (scenarios it omits get probability 0).

        Raises
        ------
        ConfigError
            On unknown splits or scenarios, non-numeric values, probabilities outside
            ``[0, 1]`` or a split whose probabilities sum to more than 1.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                "Scenario config must be a mapping of split name to {scenario: probability}, "
                f"got {type(data).__name__}."
            )
        unknown = [str(k) for k in data if k not in SPLITS]
        if unknown:
            raise ConfigError(
                f"Scenario config has unknown split(s) {', '.join(map(repr, unknown))}; use "
                f"{', '.join(SPLITS)}."
            )
        return cls(**{str(k): _check_probabilities(str(k), v) for k, v in data.items()})


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    low, high = bounds
    return rng.uniform(low, high, size=n)


def sample_parameters(
    n: int,
    split: str,
    config: ScenarioConfig,
    rng: np.random.Generator,
    num_classes: int,
) -> pd.DataFrame:
    """Sample labels, scenario tags and rendering parameters for ``n`` images.

    Labels are uniform over ``num_classes``. Each image's scenario is drawn from
    ``config.probabilities(split)``; all parameters are first drawn from the nominal
    distribution, then each scenario overwrites its own parameters for its images. The draws
    happen in a fixed order, so the same generator state gives the same table.

    Parameters
    ----------
    n
        Number of images (rows), ``>= 0``.
    split
        Split name selecting the scenario frequencies (``train``, ``val``, ``test``, ``pool``).
    config
        Scenario frequencies per split.
    rng
        NumPy random generator; it is advanced.
    num_classes
        Number of sign classes to draw labels from, ``>= 1``.

    Returns
    -------
    pandas.DataFrame
        ``n`` rows with columns ``label`` (int64), ``scenario`` (str) and every column of
        :data:`PARAMETER_COLUMNS`.

    Raises
    ------
    InvalidInputError
        If ``n`` or ``num_classes`` is not a valid count.
    ConfigError
        If ``split`` is unknown or ``config`` is not a :class:`ScenarioConfig`.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InvalidInputError(f"n must be a non-negative integer, got {n!r}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise InvalidInputError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if num_classes < 1:
        raise InvalidInputError(f"num_classes must be at least 1, got {num_classes}.")
    if not isinstance(config, ScenarioConfig):
        raise ConfigError(
            f"config must be a ScenarioConfig, got {type(config).__name__}; build one with "
            "ScenarioConfig.from_dict(...)."
        )
    n = int(n)
    probs = config.probabilities(split)
    tags = np.array(list(probs), dtype=object)
    p = np.array(list(probs.values()), dtype=np.float64)
    p = p / p.sum()

    labels = rng.integers(0, int(num_classes), size=n, dtype=np.int64)
    scenario = tags[rng.choice(len(tags), size=n, p=p)] if n else np.empty(0, dtype=object)

    values: dict[str, np.ndarray] = {
        name: _uniform(rng, bounds, n) for name, bounds in NOMINAL_RANGES.items()
    }
    occluded = rng.random(n) < NOMINAL_OCCLUSION_RATE
    occ_amount = _uniform(rng, _NOMINAL_OCCLUSION_RANGE, n)
    occ_side_idx = rng.integers(1, len(OCCLUSION_SIDES), size=n)
    values["occlusion"] = np.where(occluded, occ_amount, 0.0)
    sides = np.array(OCCLUSION_SIDES, dtype=object)
    side = np.where(occluded, sides[occ_side_idx], "none").astype(object)

    for name, scen in SCENARIOS.items():
        rows = np.flatnonzero(scenario == name)
        k = len(rows)
        for param, bounds in scen.overrides.items():
            drawn = _uniform(rng, bounds, k)
            if param in scen.random_sign:
                drawn = drawn * rng.choice(np.array([-1.0, 1.0]), size=k)
            values[param][rows] = drawn
        if scen.occlusion_side is not None:
            side[rows] = scen.occlusion_side
    # Zero occlusion always means "no occluder", whatever the side.
    side[values["occlusion"] <= 0.0] = "none"

    frame = pd.DataFrame({"label": labels, "scenario": scenario.astype(object)})
    for col in PARAMETER_COLUMNS:
        frame[col] = side if col == "occlusion_side" else values[col].astype(np.float64)
    return frame
