"""The LRP pass: the relevance entering every chosen layer, one backward pass per batch.

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
from dnnsafety.features.lrp._fast import _fast_rules, _FastUnsupported
from dnnsafety.features.lrp.layers import INPUT_LAYER, LayerInfo, _eval_mode, as_batch, find_layers
from dnnsafety.features.lrp.rules import RuleSet, get_ruleset

logger = logging.getLogger(__name__)


BACKENDS: tuple[str, ...] = ("auto", "fast", "zennit")


# -- recording -----------------------------------------------------------------------------------
class _Recorder:
    """Forward pre-hooks that grab the chosen modules' inputs and tensor hooks on them."""

    def __init__(self, model: nn.Module, plan: Sequence[LayerInfo]) -> None:
        self.plan = list(plan)
        self.wanted: dict[str, dict[int, list[str]]] = {}
        for info in self.plan:
            if info.name != INPUT_LAYER:
                self.wanted.setdefault(info.module, {}).setdefault(info.call, []).append(info.name)
        modules = dict(model.named_modules())
        self.handles: list[Any] = [
            modules[name].register_forward_pre_hook(
                functools.partial(self._pre_hook, name), prepend=True
            )
            for name in self.wanted
        ]
        self.tensor_handles: list[Any] = []
        self.maps: dict[str, Tensor] = {}
        self.calls: dict[str, int] = {}
        self.seen: list[tuple[Tensor, list[str]]] = []
        self.input_aliases: list[str] = []
        self.input: Tensor | None = None

    def start(self, x: Tensor) -> None:
        self.input = x

    def _pre_hook(self, name: str, module: nn.Module, args: tuple[Any, ...]) -> None:
        call = self.calls[name] = self.calls.get(name, 0) + 1
        names = self.wanted[name].get(call)
        t = args[0] if args else None
        if not names or not isinstance(t, Tensor):
            return
        if t is self.input:
            self.input_aliases += names
            return
        for seen, seen_names in self.seen:
            if seen is t:
                seen_names += names
                return
        shared = list(names)
        self.seen.append((t, shared))
        if t.requires_grad:
            self.tensor_handles.append(t.register_hook(functools.partial(self._store, shared)))

    def _store(self, names: list[str], grad: Tensor) -> None:
        for name in names:
            self.maps[name] = grad.detach()

    def collect(self, input_relevance: Tensor) -> dict[str, Tensor]:
        maps = {INPUT_LAYER: input_relevance.detach()}
        for name in self.input_aliases:
            maps[name] = maps[INPUT_LAYER]
        n = len(input_relevance)
        for info in self.plan:
            if info.name in maps:
                continue
            if info.name in self.maps:
                maps[info.name] = self.maps[info.name]
            else:
                logger.warning(
                    "no relevance reached layer %s (its input does not depend on the image); "
                    "recording zeros",
                    info.name,
                )
                maps[info.name] = input_relevance.new_zeros((n, *info.shape))
        return maps

    def remove(self) -> None:
        for handle in self.handles + self.tensor_handles:
            handle.remove()
        self.handles, self.tensor_handles, self.seen = [], [], []
        self.input = None


@contextlib.contextmanager
def _recording(model: nn.Module, plan: Sequence[LayerInfo]) -> Iterator[_Recorder]:
    recorder = _Recorder(model, plan)
    try:
        yield recorder
    finally:
        recorder.remove()


# -- the pass ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerRelevance:
    """The relevance maps of one batch.

    Attributes
    ----------
    layers
        The layers (``"input"`` first).
    maps
        Layer name -> relevance ``N x shape`` (the model's dtype; on the CPU by default).
    targets
        The explained class per input (the prediction unless given).
    scores
        The explained logit per input: the relevance the backward pass starts from.
    backend
        ``"fast"`` or ``"zennit"``: the backend that computed the maps.
    """

    layers: list[LayerInfo]
    maps: dict[str, Tensor]
    targets: Tensor
    scores: Tensor
    backend: str


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(
            f"The 'backend' parameter must be one of {', '.join(BACKENDS)}. Got {backend!r}."
        )
    return backend


def _start_relevance(out: Tensor, targets: Tensor | np.ndarray | None) -> tuple[Tensor, Tensor]:
    if out.ndim != 2:
        raise InvalidInputError(
            f"LRP starts from one logit per class, so the model must return N x classes; it "
            f"returned shape {tuple(out.shape)}."
        )
    if targets is None:
        t = out.detach().argmax(dim=1)
    else:
        t = torch.as_tensor(np.asarray(targets), device=out.device)
        if t.shape != (len(out),) or t.is_floating_point() or t.is_complex():
            raise InvalidInputError(
                f"targets must hold one integer class per image ({len(out)}); got shape "
                f"{tuple(t.shape)} and dtype {t.dtype}."
            )
        t = t.long()
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= out.shape[1]):
            raise InvalidInputError(
                f"targets must be classes in [0, {out.shape[1] - 1}]; got values in "
                f"[{int(t.min())}, {int(t.max())}]."
            )
    start = torch.zeros_like(out).scatter_(1, t[:, None], out.detach().gather(1, t[:, None]))
    return start, t


def _run_once(
    model: nn.Module,
    x: Tensor,
    plan: Sequence[LayerInfo],
    ruleset: RuleSet,
    backend: str,
    targets: Tensor | np.ndarray | None,
    device: str | torch.device | None,
) -> LayerRelevance:
    with _eval_mode(model), contextlib.ExitStack() as stack:
        if backend == "zennit":
            stack.enter_context(ruleset.composite(model).context(model))
        else:
            stack.enter_context(_fast_rules(model, ruleset))
        recorder = stack.enter_context(_recording(model, plan))
        xg = x.detach().clone().requires_grad_(True)
        recorder.start(xg)
        with torch.enable_grad():
            out = model(xg)
            start, t = _start_relevance(out, targets)
            try:
                (input_relevance,) = torch.autograd.grad(out, xg, grad_outputs=start)
            except RuntimeError as exc:
                if backend == "fast" and "inplace" in str(exc):
                    raise _FastUnsupported(
                        f"the model changes a tensor in place that the fast backend saved ({exc})"
                    ) from exc
                raise
        maps = recorder.collect(input_relevance)
    scores = start.gather(1, t[:, None])[:, 0]
    if device is not None:
        maps = {k: v.to(device) for k, v in maps.items()}
        scores, t = scores.to(device), t.to(device)
    return LayerRelevance(list(plan), maps, t, scores, backend)


def layer_relevance(
    model: nn.Module,
    images: Tensor | np.ndarray,
    layers: Sequence[str] | Sequence[LayerInfo] | None = None,
    ruleset: str | RuleSet = "default",
    backend: str = "auto",
    targets: Tensor | np.ndarray | None = None,
    device: str | torch.device | None = "cpu",
) -> LayerRelevance:
    """LRP relevance entering every chosen layer of ``model``, one backward pass for the batch.

    Parameters
    ----------
    model
        A classifier returning ``N x classes`` logits. It is left unchanged: hooks and
        canonizers are removed and every module's ``training`` flag is restored, also when the
        pass raises. It runs in eval mode during the pass.
    images
        ``N x C x H x W`` floats (tensor or array); converted to the model's device and dtype.
    layers
        ``None`` (default candidates), layer names, or the output of :func:`find_layers` (which
        skips the probe run that finds the layers).
    ruleset
        ``"default"``, ``"hudd"`` (see :data:`RULESETS`) or a :class:`RuleSet`.
    backend
        ``"auto"`` (fast, zennit as fallback), ``"fast"`` or ``"zennit"``.
    targets
        Classes to explain per image; default the predicted class (argmax of the logits). The
        backward pass starts from that class's raw logit, every other output zeroed.
    device
        Where the returned maps, targets and scores live (default the CPU); ``None`` keeps them
        on the model's device. Copying every map to the host can cost far more than the pass
        itself on a GPU.

    Returns
    -------
    LayerRelevance
        Maps per layer, explained classes and logits.
    """
    rules = get_ruleset(ruleset)
    backend = _check_backend(backend)
    x = as_batch(images, model)
    rules.check(model)
    if layers is not None and len(layers) > 0 and all(isinstance(i, LayerInfo) for i in layers):
        plan: list[LayerInfo] = list(layers)  # type: ignore[arg-type]
    else:
        plan = find_layers(model, x, layers)  # type: ignore[arg-type]
    if backend == "zennit":
        return _run_once(model, x, plan, rules, "zennit", targets, device)
    try:
        return _run_once(model, x, plan, rules, "fast", targets, device)
    except _FastUnsupported as exc:
        if backend == "fast":
            raise InvalidInputError(
                f"The fast LRP backend cannot handle this model: {exc}. Use backend='zennit'."
            ) from exc
        logger.warning("fast LRP backend unavailable (%s); using zennit", exc)
        return _run_once(model, x, plan, rules, "zennit", targets, device)
