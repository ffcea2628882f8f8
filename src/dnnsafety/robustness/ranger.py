"""Ranger: activations clipped to the range seen on training data (Chen et al., DSN 2021).

A bit flip in a weight's exponent can multiply it by up to 2^128; the activations it feeds
then leave the range the network ever produced on real data, and the error spreads to the
output. Ranger bounds every activation to ``[low, high]`` profiled on training inputs, so such
a value is cut back to a plausible one (and a NaN is set to ``low``) before it spreads::

    bounds = profile_bounds(model, train_images)  # {layer: (low, high)}
    hardened = Ranger(model, bounds)                # a copy; the original is left alone
    torch.jit.script(hardened)                      # or torch.save(hardened.state_dict())

The bounds are buffers of the hardened model (``model.<layer>.low`` / ``.high``), so they are
part of its state dict and survive TorchScript export.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from dnnsafety._validation import check_float_param
from dnnsafety.exceptions import ConfigError, InvalidInputError

__all__ = ["ACTIVATIONS", "ClippedActivation", "Ranger", "activation_layers", "profile_bounds"]

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
)
"""Module types whose outputs Ranger clips by default."""

Bounds = dict[str, tuple[float, float]]


def activation_layers(model: nn.Module) -> list[str]:
    """Names of the activation modules of ``model`` (types :data:`ACTIVATIONS`), in order.

    Activations applied as functions (``F.relu`` inside ``forward``) are not modules and
    cannot be found or clipped; write them as modules to harden them.
    """
    return [n for n, m in model.named_modules() if n and isinstance(m, ACTIVATIONS)]


@torch.no_grad()
def profile_bounds(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str] | None = None,
    quantile: float = 1.0,
    batch_size: int = 512,
) -> Bounds:
    """The range of each activation layer's outputs on ``images`` (training data).

    Parameters
    ----------
    model
        The network; left unchanged (hooks removed, training flags restored).
    images
        Float32 ``N x C x H x W`` training inputs.
    layers
        Activation modules to profile (default :func:`activation_layers`).
    quantile
        ``1.0`` (Ranger): the minimum and maximum; below 1, the ``1 - quantile`` and
        ``quantile`` quantiles of the per-input extremes (tighter, clips rare values too).
    batch_size
        Inputs per forward pass.

    Returns
    -------
    dict
        ``{layer: (low, high)}``.

    Raises
    ------
    ConfigError
        If the model has no activation modules or ``layers`` names an unknown module.
    InvalidInputError
        If ``images`` is empty.
    """
    q = check_float_param("profile_bounds", "quantile", quantile, 0.5, 1.0)
    names = list(layers) if layers is not None else activation_layers(model)
    if not names:
        raise ConfigError(
            "The model has no activation modules (nn.ReLU, ...) to profile; Ranger clips "
            "activation modules only."
        )
    if len(images) == 0:
        raise InvalidInputError("profile_bounds needs at least one training image.")
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ConfigError(f"The model has no module(s) {unknown}.")
    lows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    highs: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            flat = out.detach().reshape(len(out), -1).float()
            lows[name].append(flat.amin(dim=1).cpu())
            highs[name].append(flat.amax(dim=1).cpu())

        return hook

    flags = [(m, m.training) for m in model.modules()]
    handles = [modules[n].register_forward_hook(recorder(n)) for n in names]
    try:
        model.eval()
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag
    bounds: Bounds = {}
    for n in names:
        lo, hi = torch.cat(lows[n]).numpy(), torch.cat(highs[n]).numpy()
        if q >= 1.0:
            bounds[n] = (float(lo.min()), float(hi.max()))
        else:
            bounds[n] = (float(np.quantile(lo, 1 - q)), float(np.quantile(hi, q)))
    return bounds


class ClippedActivation(nn.Module):
    """An activation followed by clipping to ``[low, high]``; NaN becomes ``low``.

    ``low`` and ``high`` are buffers (saved in the state dict, kept by TorchScript).
    """

    if TYPE_CHECKING:  # buffers; hidden from TorchScript, which cannot read the annotations
        low: torch.Tensor
        high: torch.Tensor

    def __init__(self, activation: nn.Module, low: float, high: float) -> None:
        super().__init__()
        if not low <= high:
            raise ConfigError(f"Ranger bounds need low <= high; got ({low}, {high}).")
        self.activation = activation
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("high", torch.tensor(float(high)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.activation(x)
        y = torch.where(torch.isnan(y), self.low, y)
        return torch.clamp(y, min=self.low, max=self.high)


class Ranger(nn.Module):
    """A hardened copy of ``model``: the named activation modules clipped to their bounds.

    Parameters
    ----------
    model
        The network; it is deep-copied and never changed.
    bounds
        ``{activation module: (low, high)}``, e.g. from :func:`profile_bounds`.

    Attributes
    ----------
    model
        The hardened copy: parameter names are the original's, so a fault list drawn on the
        original applies to it unchanged.

    Raises
    ------
    ConfigError
        If ``bounds`` is empty or names a module the model lacks.

    References
    ----------
    Chen, Li, Pattabiraman, "A Low-cost Fault Corrector for Deep Neural Networks through Range
    Restriction" (Ranger), DSN 2021.
    """

    def __init__(self, model: nn.Module, bounds: Mapping[str, tuple[float, float]]) -> None:
        super().__init__()
        if not bounds:
            raise ConfigError("Ranger needs bounds for at least one activation module.")
        hardened = copy.deepcopy(model)
        modules = dict(hardened.named_modules())
        unknown = [n for n in bounds if n not in modules or not n]
        if unknown:
            raise ConfigError(f"The model has no module(s) {unknown} to clip.")
        for name, (low, high) in bounds.items():
            parent_name, _, child = name.rpartition(".")
            parent = hardened.get_submodule(parent_name) if parent_name else hardened
            setattr(parent, child, ClippedActivation(modules[name], low, high))
        self.model = hardened
        self.layers = list(bounds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @classmethod
    def from_training_data(
        cls, model: nn.Module, images: torch.Tensor, quantile: float = 1.0
    ) -> Ranger:
        """Profile every activation module of ``model`` on ``images`` and harden it."""
        return cls(model, profile_bounds(model, images, quantile=quantile))

    def bounds(self) -> Bounds:
        """``{layer: (low, high)}`` as held in the buffers."""
        out: Bounds = {}
        for name in self.layers:
            clip = self.model.get_submodule(name)
            assert isinstance(clip, ClippedActivation)
            out[name] = (float(clip.low), float(clip.high))
        return out
