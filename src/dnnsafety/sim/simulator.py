"""The simulator interface: parameters in, labelled images out (SEDE's generation step).

SEDE (Fahmy, Pastore, Briand, Stifter, TOSEM 2023) generates retraining images inside each
root cause's parameter ranges. Anything that turns a table of parameters into labelled images
can take part: a :class:`Simulator` states its parameter space (bounds per numeric
parameter), draws parameters from its default (nominal) distribution and renders a table.
:class:`SignsSimulator`, the built-in traffic-sign renderer, is the first implementation;
a user registers their own in :data:`SIMULATORS` under their dataset's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from dnnsafety.registry import Registry
from dnnsafety.sim.render import render_signs
from dnnsafety.sim.scenarios import (
    NOMINAL_RANGES,
    SCENARIOS,
    ScenarioConfig,
    sample_parameters,
)
from dnnsafety.sim.templates import SIGN_CLASSES

__all__ = ["SIMULATORS", "SignsSimulator", "Simulator", "signs_parameter_space"]


@runtime_checkable
class Simulator(Protocol):
    """Renders labelled images from a table of parameters.

    ``parameter_space`` maps every numeric parameter a rule may constrain to its bounds
    ``(low, high)``; :meth:`sample` draws ``n`` rows (with a ``label`` column) from the
    simulator's default distribution; :meth:`render` turns rows into images and labels.
    """

    @property
    def parameter_space(self) -> Mapping[str, tuple[float, float]]:
        """Bounds ``(low, high)`` of each numeric parameter."""
        ...

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` rows of parameters from the default distribution, with a ``label`` column."""
        ...

    def render(self, params: pd.DataFrame, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """``(N x C x H x W float32 in [0, 1], (N,) int64 labels)`` for the rows of ``params``."""
        ...


SIMULATORS: Registry[type] = Registry("simulator")
"""Simulator classes by dataset name: the dataset whose images the simulator renders."""


def signs_parameter_space() -> dict[str, tuple[float, float]]:
    """Bounds of the signs simulator's numeric parameters: the union of the nominal ranges
    and of every scenario's overrides (``rotation`` both ways, ``occlusion`` from 0)."""
    space = {k: (float(lo), float(hi)) for k, (lo, hi) in NOMINAL_RANGES.items()}
    space["occlusion"] = (0.0, 0.0)
    for scen in SCENARIOS.values():
        for param, (lo, hi) in scen.overrides.items():
            low, high = space[param]
            if param in scen.random_sign:
                lo = -hi
            space[param] = (min(low, float(lo)), max(high, float(hi)))
    return space


@SIMULATORS.register("signs")
class SignsSimulator:
    """The built-in traffic-sign simulator (:func:`~dnnsafety.sim.render.render_signs`).

    Parameters
    ----------
    size
        Image side in pixels (the dataset's ``image_size``; 32 by default).

    Notes
    -----
    :meth:`sample` draws the *nominal* distribution (no named scenario): a rule then moves
    only the parameters it constrains. An occlusion drawn inside a rule covers the lower part
    of the sign (``occlusion_side = "bottom"``), the side the ``occlusion_lower`` scenario
    uses.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size

    @property
    def parameter_space(self) -> Mapping[str, tuple[float, float]]:
        """See :func:`signs_parameter_space`."""
        return signs_parameter_space()

    @property
    def class_names(self) -> tuple[str, ...]:
        """The sign classes, in label order."""
        return SIGN_CLASSES

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` nominal rows (``label``, ``scenario`` and every parameter column)."""
        config = ScenarioConfig(train={})
        return sample_parameters(n, "train", config, rng, len(SIGN_CLASSES))

    def render(self, params: pd.DataFrame, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
        """Images of ``params`` (an occlusion without a side gets ``"bottom"``) and labels."""
        params = params.copy()
        if "occlusion_side" in params and "occlusion" in params:
            side = np.array(params["occlusion_side"].astype(object).to_numpy(), dtype=object)
            covered = params["occlusion"].to_numpy(dtype=np.float64) > 0
            side[covered & (side == "none")] = "bottom"
            side[~covered] = "none"
            params["occlusion_side"] = side
        images = render_signs(params, size=self.size, seed=seed)
        return images, params["label"].to_numpy(dtype=np.int64)
