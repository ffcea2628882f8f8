"""The simulated traffic-sign dataset: the simulator's images and parameters as a Dataset."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping

import numpy as np

from dnnsafety._validation import check_int
from dnnsafety.data.dataset import SPLITS, Dataset, Split, make_split
from dnnsafety.exceptions import ConfigError
from dnnsafety.sim import SIGN_CLASSES, ScenarioConfig, render_signs, sample_parameters

__all__ = ["generate_signs"]


def _split_seeds(seed: int, split: str) -> tuple[np.random.Generator, int]:
    """Independent parameter generator and render seed for one split of one dataset seed."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(split.encode("utf-8")),))
    param_ss, render_ss = ss.spawn(2)
    render_seed = int(render_ss.generate_state(1, np.uint32)[0])
    return np.random.default_rng(param_ss), render_seed


def generate_signs(
    sizes: Mapping[str, int],
    config: ScenarioConfig | None = None,
    size: int = 32,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """Generate the simulated traffic-sign dataset.

    Parameters
    ----------
    sizes
        Number of images per split, keys among ``train``, ``val``, ``test``, ``pool``;
        ``train`` and ``test`` are required.
    config
        Scenario frequencies per split; default :class:`ScenarioConfig`.
    size
        Image side length in pixels.
    seed
        Dataset seed. Each split is seeded from ``(seed, split name)``, so adding or resizing
        one split leaves the others unchanged.
    progress
        Called with the number of images just rendered (e.g. to advance a progress bar).

    Returns
    -------
    Dataset
        Dataset ``"signs"`` with classes :data:`SIGN_CLASSES`. Sample ids look like
        ``signs-test-000123``; each split's metadata holds the rendering parameters and the
        pool's labels are hidden.

    Raises
    ------
    ConfigError
        If ``sizes`` names an unknown split, lacks ``train`` or ``test`` or has a negative
        size, or ``config`` is not a :class:`ScenarioConfig`.
    InvalidInputError
        If ``size`` or ``seed`` is invalid.
    """
    if not isinstance(sizes, Mapping):
        raise ConfigError(
            f"sizes must map split names to image counts, got {type(sizes).__name__}."
        )
    unknown = [str(s) for s in sizes if s not in SPLITS]
    if unknown:
        raise ConfigError(
            f"Unknown split(s) {', '.join(map(repr, unknown))} in sizes; use {', '.join(SPLITS)}."
        )
    for required in ("train", "test"):
        if required not in sizes:
            raise ConfigError(f"sizes must include the {required!r} split.")
    for name, count in sizes.items():
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ConfigError(f"sizes[{name!r}] must be a non-negative integer, got {count!r}.")
    if config is None:
        config = ScenarioConfig()
    elif not isinstance(config, ScenarioConfig):
        raise ConfigError(
            f"config must be a ScenarioConfig, got {type(config).__name__}; build one with "
            "ScenarioConfig.from_dict(...)."
        )
    size = check_int("size", size, 8, 256)
    seed = check_int("seed", seed, 0)

    splits: dict[str, Split] = {}
    for name in SPLITS:
        if name not in sizes:
            continue
        n = int(sizes[name])
        rng, render_seed = _split_seeds(seed, name)
        params = sample_parameters(n, name, config, rng, len(SIGN_CLASSES))
        images = render_signs(params, size=size, seed=render_seed, progress=progress)
        width = max(6, len(str(max(n - 1, 0))))
        ids = np.array([f"signs-{name}-{i:0{width}d}" for i in range(n)], dtype=object)
        metadata = params.drop(columns=["label", "scenario"])
        splits[name] = make_split(
            name,
            ids,
            images,
            params["label"].to_numpy(),
            params["scenario"].to_numpy(dtype=object),
            metadata,
        )
    return Dataset(name="signs", class_names=SIGN_CLASSES, splits=splits)
