"""Loading models safely.

Three ways to get a model, none of which executes arbitrary pickled code:

* a zoo architecture (``arch = "small_cnn"`` ...) plus an optional state-dict file;
* a TorchScript file (``torch.jit.load``: code is TorchScript, not Python pickles);
* a ``module:callable`` import path that builds the ``nn.Module`` (the user's own code, imported
  on purpose) plus a state-dict file.

State-dict and checkpoint files are always read with ``torch.load(..., weights_only=True)``;
a file that needs anything beyond tensors and plain containers is refused with
:class:`UnsafeModelError`.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnnsafety.config import ModelConfig
from dnnsafety.exceptions import ConfigError, ModelLoadError, UnsafeModelError
from dnnsafety.models.zoo import MODELS, build_model


def safe_load(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"Model file {str(p)!r} does not exist.")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeModelError(
            f"Refusing to load {str(p)!r}: it contains pickled Python objects that would run "
            "code on load. Save only the weights (torch.save(model.state_dict(), path)) or "
            f"export TorchScript (torch.jit.script(model).save(path)). Detail: {exc}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"Could not read {str(p)!r} as a PyTorch file ({exc}). Is it a state dict saved "
            "with torch.save?"
        ) from None


def _state_dict_from(obj: Any, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{str(path)!r} is not a state dict (a mapping of names to tensors).")
    return obj


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state-dict file into ``model`` (strict), with a clear error on mismatch."""
    p = Path(path)
    state = _state_dict_from(safe_load(p), p)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameter(s) missing, e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {', '.join(unexpected[:3])}")
        raise ModelLoadError(
            f"The weights in {str(p)!r} do not fit the {type(model).__name__} model: "
            f"{'; '.join(parts)}. Is it the right architecture?"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:3]
        raise ModelLoadError(
            f"The weights in {str(p)!r} do not fit the model: {' '.join(first)[:500]}"
        ) from None
    return model


def load_torchscript(path: str | Path) -> nn.Module:
    """Load a TorchScript archive onto the CPU."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"TorchScript file {str(p)!r} does not exist.")
    try:
        return torch.jit.load(str(p), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{str(p)!r} is not a TorchScript archive ({str(exc).splitlines()[0]}). Export "
            "one with torch.jit.script(model).save(path), or pass a state dict with "
            "--model-factory module:callable."
        ) from None


def import_factory(spec: str) -> Any:
    """Resolve ``module:callable`` to the callable."""
    if spec.count(":") != 1:
        raise ConfigError(f"Model factory {spec!r} must look like 'package.module:function'.")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"Cannot import {module_name!r} for the model factory ({exc}). Is it on PYTHONPATH?"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"Module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"{spec!r} is not callable.")
    return obj


def make_model(cfg: ModelConfig, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build (and, when ``cfg.weights`` is set, load) the model a configuration describes."""
    if cfg.arch == "torchscript":
        if not cfg.weights:
            raise ConfigError("model.arch = 'torchscript' needs model.weights = the .pt file.")
        return load_torchscript(cfg.weights)
    if cfg.arch == "onnx":
        if not cfg.weights:
            raise ConfigError("model.arch = 'onnx' needs model.weights = the .onnx file.")
        from dnnsafety.models.onnx import OnnxClassifier

        return OnnxClassifier(cfg.weights)
    if cfg.arch == "import":
        if not cfg.factory:
            raise ConfigError(
                "model.arch = 'import' needs model.factory = 'module:callable' "
                "(called with no arguments, returning the nn.Module)."
            )
        model = import_factory(cfg.factory)()
        if not isinstance(model, nn.Module):
            raise ModelLoadError(f"{cfg.factory!r} returned {type(model).__name__}, not nn.Module.")
    elif cfg.arch in MODELS:
        model = build_model(cfg.arch, in_channels, num_classes, image_size)
    else:
        known = ", ".join([*MODELS.names(), "torchscript", "onnx", "import"])
        raise ConfigError(f"Unknown model.arch {cfg.arch!r}. Choose one of: {known}.")
    if cfg.weights:
        load_weights(model, cfg.weights)
    return model
