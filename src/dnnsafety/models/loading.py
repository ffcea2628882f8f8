"""Loading models safely.

Ways to get a model, none of which executes arbitrary pickled code:

* a zoo architecture (``arch = "small_cnn"`` ...) plus an optional state-dict file;
* a TorchScript file (``torch.jit.load``: code is TorchScript, not Python pickles);
* a ``torch.export`` archive (``.pt2``; see :mod:`dnnsafety.models.exported`);
* an ONNX file, run with onnxruntime (:mod:`dnnsafety.models.onnx`);
* a ``module:callable`` import path that builds the ``nn.Module`` (the user's own code, imported
  on purpose; standard-library callables are refused) plus a state-dict file.

State-dict and checkpoint files are always read with ``torch.load(..., weights_only=True)``;
a file that needs anything beyond tensors and plain containers is refused with
:class:`UnsafeModelError`. Checkpoint dicts and wrapper prefixes (``module.``, ``model.``)
are understood (:mod:`dnnsafety.models.checkpoints`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dnnsafety.config import ModelConfig
from dnnsafety.exceptions import ConfigError, ModelLoadError, UnsafeModelError
from dnnsafety.models.checkpoints import common_prefix, extract_state_dict, match_prefix
from dnnsafety.models.exported import is_export_archive, load_exported, sniff_format
from dnnsafety.models.zoo import MODELS, build_model

log = logging.getLogger(__name__)

#: ``model.arch`` values for models given as a file rather than built here.
FILE_ARCHS: tuple[str, ...] = ("torchscript", "export", "onnx")


def safe_load(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"Model file {str(p)!r} does not exist.")
    kind = sniff_format(p)
    if kind:
        raise ModelLoadError(
            f"{str(p)!r} is a {'TorchScript' if kind == 'torchscript' else 'torch.export'} "
            f"file, not a state dict: load it with --arch {kind}."
        )
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # a pickled object names a GLOBAL (class or function); anything else is not a torch file
        if "global" not in str(exc).lower():
            raise ModelLoadError(
                f"Could not read {str(p)!r} as a PyTorch file (it is not a torch.save "
                f"archive). Is it a state dict saved with torch.save?{_other_format_hint(p)}"
            ) from None
        raise UnsafeModelError(
            f"Refusing to load {str(p)!r}: it contains pickled Python objects that would run "
            "code on load. Save only the weights (torch.save(model.state_dict(), path)) or "
            f"export TorchScript (torch.jit.script(model).save(path)). Detail: {exc}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"Could not read {str(p)!r} as a PyTorch file ({_clip(first)}). Is it a state dict "
            f"saved with torch.save?{_other_format_hint(p)}"
        ) from None


def _clip(message: str, limit: int = 300) -> str:
    """``message`` cut at a word boundary with an ellipsis when longer than ``limit``."""
    if len(message) <= limit:
        return message
    return message[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."


def _other_format_hint(path: Path, current: str = "") -> str:
    """A hint naming the ``--arch`` for a model file of another format, by its name."""
    arch = {".onnx": "onnx", ".pt2": "export", ".ts": "torchscript"}.get(path.suffix.lower())
    return (
        f" A {path.suffix} file is loaded with --arch {arch}."
        if arch not in (None, current)
        else ""
    )


def _state_dict_from(obj: Any, path: Path) -> Mapping[str, torch.Tensor]:
    found = extract_state_dict(obj)
    if found is None:
        keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, Mapping) else ""
        raise ModelLoadError(
            f"{str(path)!r} holds no state dict (a mapping of names to tensors)"
            + (f"; its top-level keys are {keys}" if keys else "")
            + ". Save the weights with torch.save(model.state_dict(), path)."
        )
    state, key = found
    if key:
        log.info("weights: the state dict under checkpoint key %r of %s", key, path)
    return state


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state-dict or checkpoint file into ``model`` (strict), with a clear error.

    Checkpoint dicts and wrapper prefixes (``module.``, ``model.``, ``net.``) are handled by
    :mod:`dnnsafety.models.checkpoints`; a mismatch names the prefix found.
    """
    p = Path(path)
    state = _state_dict_from(safe_load(p), p)
    expected = model.state_dict()
    if set(state) != set(expected):
        fitted = match_prefix(state, expected)
        if fitted is not None:
            state, prefix, dropped = fitted
            log.info("weights: removed the prefix %r from the names in %s", prefix, p)
            if dropped:
                log.warning(
                    "weights: ignored %d entries of %s outside the network (%s)",
                    len(dropped),
                    p,
                    ", ".join(dropped[:5]),
                )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameter(s) missing, e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {', '.join(unexpected[:3])}")
        prefix = common_prefix(state)
        hint = (
            f" The names in the file all start with {prefix!r} while the model's "
            f"(e.g. {next(iter(expected), '')}) do not: the weights were saved from a "
            "wrapper around a different network, or from another architecture."
            if prefix and common_prefix(expected) != prefix
            else ""
        )
        raise ModelLoadError(
            f"The weights in {str(p)!r} do not fit the {type(model).__name__} model: "
            f"{'; '.join(parts)}.{hint} Is it the right architecture?"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:3]
        raise ModelLoadError(
            f"The weights in {str(p)!r} do not fit the model: {' '.join(first)[:500]}"
        ) from None
    return model


@contextlib.contextmanager
def quiet_torchscript_notice() -> Iterator[None]:
    """Hide torch.jit's deprecation notice (``torch.jit.save``/``load`` are deprecated in
    favour of ``torch.export``): it is for PyTorch's users, not ours, who gave a TorchScript
    model and get one back."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield


def load_torchscript(path: str | Path) -> nn.Module:
    """Load a TorchScript archive onto the CPU."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"TorchScript file {str(p)!r} does not exist.")
    try:
        with quiet_torchscript_notice():
            return torch.jit.load(str(p), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = _other_format_hint(p, "torchscript")
        raise ModelLoadError(
            f"{str(p)!r} is not a TorchScript archive ({_clip(first)}).{hint} "
            "Export one with torch.jit.script(model).save(path), or pass a state dict with "
            "--model-factory module:callable."
        ) from None


@contextlib.contextmanager
def _no_debugger() -> Iterator[None]:
    """Make ``breakpoint()`` and ``pdb.set_trace()`` raise instead of opening a debugger."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the model factory called breakpoint()/pdb.set_trace()")

    saved_hook = sys.breakpointhook
    pdb = sys.modules.get("pdb")
    saved_trace = getattr(pdb, "set_trace", None)
    sys.breakpointhook = refuse
    if pdb is not None:
        pdb.set_trace = refuse  # type: ignore[attr-defined]
    try:
        yield
    finally:
        sys.breakpointhook = saved_hook
        if pdb is not None and saved_trace is not None:
            pdb.set_trace = saved_trace  # type: ignore[attr-defined]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def import_factory(spec: str) -> Callable[[], Any]:
    """Resolve ``module:callable`` to the callable.

    Raises
    ------
    ConfigError
        ``spec`` is malformed or names a standard-library module (``os:system``).
    ModelLoadError
        The module cannot be imported, lacks the attribute, or it is not callable.
    """
    if spec.count(":") != 1:
        raise ConfigError(f"Model factory {spec!r} must look like 'package.module:function'.")
    module_name, attr = spec.split(":")
    top = module_name.split(".", 1)[0]
    if top in sys.stdlib_module_names or top in ("builtins", "__main__"):
        raise ConfigError(
            f"Model factory {spec!r} is in Python's standard library; it must be your own "
            "function that builds and returns the nn.Module (e.g. mypkg.nets:build)."
        )
    try:
        with _no_debugger():
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"Cannot import {module_name!r} for the model factory ({exc}). Is it on PYTHONPATH?"
        ) from None
    except (Exception, SystemExit) as exc:
        raise ModelLoadError(
            f"Importing {module_name!r} for the model factory failed: {_first_line(exc)}"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelLoadError(f"Module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelLoadError(f"{spec!r} is not callable.")
    return obj


def build_from_factory(spec: str) -> nn.Module:
    """Call the ``module:callable`` factory (no arguments) and check it returns a module.

    The factory's own exceptions become one :class:`ModelLoadError`; a ``breakpoint()`` in it
    raises instead of opening a debugger.
    """
    factory = import_factory(spec)
    try:
        with _no_debugger():
            model = factory()
    except (Exception, SystemExit) as exc:
        raise ModelLoadError(
            f"The model factory {spec!r} failed (it is called with no arguments): "
            f"{_first_line(exc)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"The model factory {spec!r} returned {type(model).__name__}, not an nn.Module."
        )
    return model


def check_model_file(cfg: ModelConfig) -> None:
    """The model file ``cfg`` names is given when its arch needs one, and exists: checked
    before anything slow (the data) is loaded.

    Raises
    ------
    ConfigError
        A file-only arch (TorchScript, export, ONNX) without ``model.weights``.
    ModelLoadError
        ``model.weights`` names no file.
    """
    if cfg.arch in FILE_ARCHS and not cfg.weights:
        raise ConfigError(f"model.arch = {cfg.arch!r} needs model.weights = the model file.")
    if cfg.weights and not Path(cfg.weights).is_file():
        raise ModelLoadError(
            f"Model file {cfg.weights!r} does not exist (model.weights, --weights)."
        )


def make_model(cfg: ModelConfig, in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    """Build (and, when ``cfg.weights`` is set, load) the model a configuration describes.

    The model is returned as given; :func:`dnnsafety.models.adapter.adapt_outputs` then makes
    it return logits.
    """
    check_model_file(cfg)
    if cfg.arch == "torchscript":
        if is_export_archive(cfg.weights):
            log.info(
                "%s is a torch.export archive; loading it as model.arch = 'export'", cfg.weights
            )
            return load_exported(cfg.weights)
        return load_torchscript(cfg.weights)
    if cfg.arch == "export":
        return load_exported(cfg.weights)
    if cfg.arch == "onnx":
        from dnnsafety.models.onnx import OnnxClassifier

        return OnnxClassifier(cfg.weights, num_classes=num_classes)
    if cfg.arch == "import":
        if not cfg.factory:
            raise ConfigError(
                "model.arch = 'import' needs model.factory = 'module:callable' "
                "(called with no arguments, returning the nn.Module)."
            )
        model = build_from_factory(cfg.factory)
    elif cfg.arch in MODELS:
        model = build_model(cfg.arch, in_channels, num_classes, image_size)
    else:
        known = ", ".join([*MODELS.names(), *FILE_ARCHS, "import"])
        raise ConfigError(f"Unknown model.arch {cfg.arch!r}. Choose one of: {known}.")
    if cfg.weights:
        load_weights(model, cfg.weights)
    return model
