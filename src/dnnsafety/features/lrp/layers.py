"""The heatmap layers of a model: which module inputs get a relevance map.

See the package docstring (:mod:`dnnsafety.features.lrp`, "One pass for all layers").
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety.exceptions import ConfigError, InvalidInputError

logger = logging.getLogger(__name__)


INPUT_LAYER = "input"
"""Name of the pixel-level relevance map (HUDD's layer 0; never selected for clustering)."""

CANDIDATE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
"""Module types whose inputs are heatmap layers by default."""


@dataclass(frozen=True)
class LayerInfo:
    """One heatmap layer: the input of one call of one module.

    Attributes
    ----------
    name
        Layer name: the qualified module name (``"features.3"``), ``"<module>#k"`` for the k-th
        call of a module that runs several times in one forward, or ``"input"``.
    module
        Qualified module name (``""`` for ``"input"``).
    call
        Which call of the module (1-based; 0 for ``"input"``).
    shape
        Shape of one sample's map (``C x H x W`` or ``D``).
    is_input
        Whether the map is the pixel-level map (the model input); never selected as a layer.
    """

    name: str
    module: str
    call: int
    shape: tuple[int, ...]
    is_input: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "name": self.name,
            "module": self.module,
            "call": self.call,
            "shape": list(self.shape),
            "is_input": self.is_input,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            module=str(data["module"]),
            call=int(data["call"]),
            shape=tuple(int(s) for s in data["shape"]),
            is_input=bool(data["is_input"]),
        )


def _layer_name(module: str, call: int) -> str:
    return module if call == 1 else f"{module}#{call}"


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode while the block runs; every module's own ``training`` flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.float32, torch.device("cpu")


def as_batch(images: Tensor | np.ndarray, model: nn.Module) -> Tensor:
    """``images`` as a float tensor on the model's device and dtype (``N x ...``, N >= 1)."""
    x = images if isinstance(images, Tensor) else torch.from_numpy(np.array(images))
    if x.ndim < 2 or len(x) == 0:
        raise InvalidInputError(
            f"images must be a non-empty batch N x C x H x W (or N x D); got shape "
            f"{tuple(x.shape)}. Add a batch axis to a single image with images[None]."
        )
    if not x.is_floating_point():
        raise InvalidInputError(
            f"images must be floating point (float32 in [0, 1]); got {x.dtype}. Convert with "
            "images.float() / 255."
        )
    dtype, device = _model_dtype_device(model)
    return x.detach().to(device=device, dtype=dtype)


def find_layers(
    model: nn.Module, sample: Tensor | np.ndarray, layers: Sequence[str] | None = None
) -> list[LayerInfo]:
    """The heatmap layers of ``model``, found by running it once on one sample.

    Parameters
    ----------
    model
        The classifier.
    sample
        A batch whose first item is used (``1 x C x H x W`` is enough).
    layers
        ``None`` for the default candidates: the inputs of every conv, linear and pooling
        module, in the order they run; a module input that is the model input, or the same
        tensor as an earlier candidate's input, is skipped (it would repeat that map).
        Otherwise the layer names to record: any module name from ``model.named_modules()``
        (its first call), ``"<module>#k"`` for its k-th call, or ``"input"``.

    Returns
    -------
    list of LayerInfo
        ``"input"`` first (always computed; flagged ``is_input``), then the layers.

    Raises
    ------
    ConfigError
        Unknown layer names; the message lists the candidates.
    InvalidInputError
        The model cannot run on ``sample``.
    """
    x = as_batch(sample[:1], model)
    modules = dict(model.named_modules())
    records: list[tuple[str, int, Any]] = []
    counts: dict[str, int] = {}

    def record(name: str, module: nn.Module, args: tuple[Any, ...]) -> None:
        counts[name] = counts.get(name, 0) + 1
        records.append((name, counts[name], args[0] if args else None))

    handles = [
        m.register_forward_pre_hook(functools.partial(record, n), prepend=True)
        for n, m in modules.items()
        if n
    ]
    try:
        with _eval_mode(model), torch.no_grad():
            model(x)
    except RuntimeError as exc:
        raise InvalidInputError(
            f"The model cannot run on images of shape {tuple(x.shape[1:])}: {exc}. Pass images "
            "shaped like the model's training data (N x C x H x W)."
        ) from exc
    finally:
        for handle in handles:
            handle.remove()

    input_info = LayerInfo(INPUT_LAYER, "", 0, tuple(x.shape[1:]), is_input=True)
    defaults = [input_info]
    claimed: list[Tensor] = [x]
    for name, call, t in records:
        if not isinstance(modules[name], CANDIDATE_TYPES) or not isinstance(t, Tensor):
            continue
        if any(t is c for c in claimed):
            logger.debug("layer %s repeats an earlier map; skipped", _layer_name(name, call))
            continue
        claimed.append(t)
        defaults.append(LayerInfo(_layer_name(name, call), name, call, tuple(t.shape[1:])))
    if layers is None:
        return defaults

    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise ConfigError(
            f"The 'layers' parameter must be a list of layer names or None. Got {layers!r}."
        )
    calls = {_layer_name(n, c): (n, c, t) for n, c, t in records}
    unknown = [n for n in layers if n != INPUT_LAYER and n not in calls]
    if unknown:
        never = [n for n in unknown if n in modules]
        hint = f" ({', '.join(never)} never run in forward)" if never else ""
        raise ConfigError(
            f"Unknown layer name(s): {', '.join(map(repr, unknown))}{hint}. Use module names "
            "from model.named_modules() ('<name>#2' for a module's second call) or 'input'. "
            f"Default candidates: {', '.join(i.name for i in defaults)}."
        )
    chosen = [input_info]
    for name in dict.fromkeys(layers):
        if name == INPUT_LAYER:
            continue
        module, call, t = calls[name]
        if not isinstance(t, Tensor):
            raise ConfigError(f"Layer {name!r}: the module's first input is not a tensor.")
        chosen.append(LayerInfo(name, module, call, tuple(t.shape[1:]), is_input=t is x))
    return chosen
