"""An eager ``nn.Module`` rebuilt from a TorchScript model made of standard layers.

TorchScript modules cannot carry forward hooks, which the white-box analysis (LRP heatmaps,
penultimate activations) needs. Many scripted classifiers are plain chains of ``torch.nn``
layers, though: a scripted ``nn.Sequential``, or a module whose scripted ``forward`` calls its
children one after another (possibly with ``F.relu``, ``torch.flatten`` or
``x.view(x.size(0), -1)`` in between). :func:`rebuild_eager` reads the scripted graph, rebuilds
such a model from ``torch.nn`` layers (plus the zoo's residual block), copies its weights and
checks, on real inputs, that it computes what the scripted model computes. A model it cannot
rebuild keeps running as TorchScript; the reason says which module or operation stood in the
way.

The rebuilt module keeps the module names of the scripted one (``features.0``, ``fc``), so its
state dict has the same keys and can be loaded back into the TorchScript model.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dnnsafety.models.zoo import BasicBlock

log = logging.getLogger(__name__)

RTOL = 1e-4
"""Largest difference between the rebuilt and the scripted model's logits, relative to the
largest logit, that still counts as the same model (float rounding)."""

_SKIPPED_ARGS = {"self", "device", "dtype"}


class NotRebuildable(Exception):
    """Why a scripted module cannot be rebuilt (internal; turned into a reason string)."""


@dataclass(frozen=True)
class Rebuilt:
    """The model to use for a TorchScript file.

    Attributes
    ----------
    model
        The rebuilt eager module, or the scripted module itself when it could not be rebuilt.
    eager
        Whether ``model`` is an eager rebuild (forward hooks, LRP and deep copies work).
    reason
        Why it could not be rebuilt (empty when ``eager``).
    """

    model: nn.Module
    eager: bool
    reason: str = ""


def is_script_module(model: nn.Module) -> bool:
    """Whether ``model`` is a TorchScript module (no forward hooks, no deep copy)."""
    return isinstance(model, torch.jit.ScriptModule)


def contains_script_module(model: nn.Module) -> bool:
    """Whether ``model`` is or wraps a TorchScript module (e.g. an output adapter around one):
    the wrapped part takes no forward hooks."""
    return any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())


def rebuild_eager(scripted: nn.Module, inputs: Tensor) -> Rebuilt:
    """Rebuild ``scripted`` as an eager module and check it on ``inputs``.

    Parameters
    ----------
    scripted
        A TorchScript module (``torch.jit.load``).
    inputs
        Real inputs of the model (``N x C x H x W``, a few dozen are enough): the rebuilt
        module is trusted only when its logits equal the scripted model's on them (up to
        :data:`RTOL`) and every prediction is the same.

    Returns
    -------
    Rebuilt
        The eager module, or the scripted one with the reason it could not be rebuilt.
    """
    if not is_script_module(scripted):
        return Rebuilt(scripted, True)
    try:
        eager = _rebuild(scripted, "")
        eager.load_state_dict(scripted.state_dict(), strict=True)
    except NotRebuildable as exc:
        return Rebuilt(scripted, False, str(exc))
    except (RuntimeError, TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
        # a graph this reader does not understand: keep the TorchScript model, say why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Rebuilt(scripted, False, f"rebuilding its layers failed ({first[:200]})")
    problem = _compare(scripted, eager, inputs)
    if problem:
        return Rebuilt(scripted, False, problem)
    eager.train(scripted.training)
    return Rebuilt(eager, True)


def _compare(scripted: nn.Module, eager: nn.Module, inputs: Tensor) -> str:
    """Empty when both give the same logits on ``inputs``; else what differs."""
    flags = [(m, m.training) for m in scripted.modules()]
    scripted.eval()
    eager.eval()
    try:
        with torch.no_grad():
            try:
                want = scripted(inputs)
            except RuntimeError as exc:  # evaluate reports it; nothing to compare with
                return f"the model fails on the data ({str(exc).splitlines()[0][:200]})"
            try:
                got = eager(inputs)
            except RuntimeError as exc:
                return f"the rebuilt module fails on the data ({str(exc).splitlines()[0][:200]})"
    finally:
        for module, flag in flags:
            module.training = flag
    if not isinstance(want, Tensor) or not isinstance(got, Tensor) or want.shape != got.shape:
        return "the rebuilt module's output does not have the scripted model's shape"
    scale = float(want.abs().max()) if want.numel() else 0.0
    diff = float((want - got).abs().max()) if want.numel() else 0.0
    if diff > RTOL * max(scale, 1.0) or (
        want.ndim == 2 and not torch.equal(want.argmax(1), got.argmax(1))
    ):
        return (
            f"the rebuilt module's outputs differ from the TorchScript model's (largest "
            f"difference {diff:.3g})"
        )
    return ""


def _type_name(module: Any) -> str:
    """Qualified class name without TorchScript's mangling (``torch.nn.modules.conv.Conv2d``)."""
    name = str(module._c._type().qualified_name())
    name = re.sub(r"___torch_mangle_\d+\.", "", name)
    return name.removeprefix("__torch__.")


def _label(where: str, short: str) -> str:
    return f"{where!r} ({short})" if where else f"the model ({short})"


def _rebuild(scripted: Any, where: str) -> nn.Module:
    name = _type_name(scripted)
    short = name.rsplit(".", 1)[-1]
    children = dict(scripted.named_children())
    if name.startswith("torch.nn.modules.") and short != "Sequential":
        if children:
            raise NotRebuildable(f"{_label(where, short)} has submodules")
        return _standard_layer(scripted, short, where)
    if name == "dnnsafety.models.zoo.BasicBlock":
        return _zoo_basic_block(scripted, where)
    steps = _chain(scripted, where)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for key, step in steps:
        if isinstance(step, str):
            layers[key] = _rebuild(children[step], f"{where}.{step}" if where else step)
        else:
            layers[key] = step
    unused = [n for n in children if n not in layers]
    if any(sum(p.numel() for p in children[n].parameters()) for n in unused):
        label = _label(where, short)
        raise NotRebuildable(f"the forward of {label} does not call {unused[0]!r}")
    return nn.Sequential(layers)


def _standard_layer(scripted: Any, cls_name: str, where: str) -> nn.Module:
    """A ``torch.nn`` layer with the scripted layer's constructor arguments."""
    cls = getattr(nn, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise NotRebuildable(f"{_label(where, cls_name)}: torch.nn has no such layer")
    kwargs: dict[str, Any] = {}
    for arg in inspect.signature(cls.__init__).parameters.values():
        if arg.name in _SKIPPED_ARGS or arg.kind in (arg.VAR_POSITIONAL, arg.VAR_KEYWORD):
            continue
        if arg.name == "bias" and isinstance(arg.default, bool):
            kwargs["bias"] = getattr(scripted, "bias", None) is not None
        elif hasattr(scripted, arg.name):
            kwargs[arg.name] = _plain(getattr(scripted, arg.name))
        elif arg.default is inspect.Parameter.empty:
            raise NotRebuildable(f"{_label(where, cls_name)} does not expose its {arg.name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise NotRebuildable(f"{_label(where, cls_name)} could not be rebuilt: {exc}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _zoo_basic_block(scripted: Any, where: str) -> nn.Module:
    """The zoo's residual block (its forward is checked with the whole model's outputs)."""
    conv1 = getattr(scripted, "conv1", None)
    if conv1 is None:
        raise NotRebuildable(f"{_label(where, 'BasicBlock')} has no conv1")
    stride = conv1.stride[0] if isinstance(conv1.stride, (tuple, list)) else conv1.stride
    return BasicBlock(int(conv1.in_channels), int(conv1.out_channels), int(stride))


# -- reading a scripted forward ------------------------------------------------------------------
_SHAPE_HELPERS = ("prim::Constant", "prim::ListConstruct", "aten::size")


def _chain(scripted: Any, where: str) -> list[tuple[str, str | nn.Module]]:
    """The steps of a forward that feeds one tensor through children and simple functions.

    Each step is ``(name, child name)`` or ``(name, module)`` for a function call rebuilt as
    a layer (``relu`` -> ``nn.ReLU``, ``flatten`` and ``view(size(0), -1)`` -> ``nn.Flatten``).
    """
    label = _label(where, _type_name(scripted).rsplit(".", 1)[-1])
    try:
        graph = scripted.forward.graph
    except AttributeError:
        raise NotRebuildable(f"{label} has no scripted forward") from None
    args = list(graph.inputs())
    if len(args) != 2:
        raise NotRebuildable(f"the forward of {label} takes {len(args) - 1} inputs, not one")
    self_value, current = args
    attrs: dict[Any, str] = {}
    steps: list[tuple[str, str | nn.Module]] = []
    seen: set[str] = set()
    for node in graph.nodes():
        kind = node.kind()
        inputs = list(node.inputs())
        if kind == "prim::GetAttr" and inputs[0] is self_value:
            attrs[node.output()] = node.s("name")
            continue
        if kind in _SHAPE_HELPERS:
            continue
        step = _step(node, kind, inputs, current, attrs)
        if step is None:
            raise NotRebuildable(
                f"the forward of {label} uses {_op_name(node)}, not only a chain of its layers"
            )
        if isinstance(step, str):
            if step in seen:
                raise NotRebuildable(f"the forward of {label} calls {step!r} twice")
            seen.add(step)
            steps.append((step, step))
        else:
            steps.append((f"fn{len(steps)}_{type(step).__name__.lower()}", step))
        current = node.output()
    outputs = list(graph.outputs())
    if len(outputs) != 1 or outputs[0] is not current:
        raise NotRebuildable(f"the forward of {label} does not return its last layer's output")
    return steps


def _op_name(node: Any) -> str:
    if node.kind() == "prim::CallFunction":
        fn = node.inputsAt(0).node()
        if fn.hasAttribute("name"):
            return f"a call of {fn.s('name')}"
    if node.kind() == "prim::CallMethod":
        return f"a call of {node.s('name')}"
    return str(node.kind())


def _constant(value: Any) -> Any:
    node = value.node()
    if node.kind() != "prim::Constant":
        return None
    return value.toIValue()


def _step(
    node: Any, kind: str, inputs: list[Any], current: Any, attrs: dict[Any, str]
) -> str | nn.Module | None:
    """One step of the chain, or ``None`` when ``node`` is anything else."""
    if kind == "prim::CallMethod" and node.s("name") == "forward":
        if len(inputs) == 2 and inputs[0] in attrs and inputs[1] is current:
            return attrs[inputs[0]]
        return None
    if kind == "prim::CallFunction":
        fn = inputs[0].node()
        name = fn.s("name") if fn.hasAttribute("name") else ""
        if name == "relu" and len(inputs) >= 2 and inputs[1] is current:
            return nn.ReLU()
        return None
    if kind in ("aten::relu", "aten::relu_") and inputs[0] is current:
        return nn.ReLU()
    if kind == "aten::flatten" and inputs[0] is current:
        start, end = _constant(inputs[1]), _constant(inputs[2])
        if isinstance(start, int) and isinstance(end, int):
            return nn.Flatten(start, end)
        return None
    if kind in ("aten::view", "aten::reshape") and inputs[0] is current:
        shape = inputs[1].node()
        if shape.kind() != "prim::ListConstruct":
            return None
        dims = list(shape.inputs())
        if len(dims) == 2 and _constant(dims[1]) == -1:
            size = dims[0].node()
            ok = (
                size.kind() == "aten::size"
                and size.inputsAt(0) is current
                and _constant(size.inputsAt(1)) == 0
            )
            if ok:
                return nn.Flatten()
    return None
