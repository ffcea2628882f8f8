"""The fast LRP backend: every rule module runs through one custom autograd function.

See the package docstring (:mod:`dnnsafety.features.lrp`, "Backends").
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import grad as nn_grad
from zennit.canonizers import Canonizer

from dnnsafety.exceptions import DnnSafetyError
from dnnsafety.features.lrp.canonizers import ResidualSum, _stabilize
from dnnsafety.features.lrp.rules import Rule, RuleSet


class _FastUnsupported(DnnSafetyError):
    """The fast backend cannot run this model; zennit can."""


_CONV_FORWARD: dict[type[nn.Module], Callable[..., Tensor]] = {
    nn.Conv1d: F.conv1d,
    nn.Conv2d: F.conv2d,
    nn.Conv3d: F.conv3d,
}
_CONV_INPUT_GRAD: dict[type[nn.Module], Callable[..., Tensor]] = {
    nn.Conv1d: nn_grad.conv1d_input,
    nn.Conv2d: nn_grad.conv2d_input,
    nn.Conv3d: nn_grad.conv3d_input,
}


@dataclass(frozen=True, eq=False)
class _BoundRule:
    rule: Rule
    module: nn.Module
    forward: Callable[..., Tensor]


def _has_kernel(module: nn.Module) -> bool:
    """Whether the direct (no autograd) kernels below compute exactly what ``module`` does."""
    if type(module) is nn.Linear:
        return True
    return (
        type(module) in _CONV_FORWARD
        and getattr(module, "padding_mode", "") == "zeros"
        and not isinstance(getattr(module, "padding", None), str)
    )


def _kernel_forward(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if type(module) is nn.Linear:
        return F.linear(x, weight, bias)
    conv = _CONV_FORWARD[type(module)]
    m: Any = module
    return conv(x, weight, bias, m.stride, m.padding, m.dilation, m.groups)


def _kernel_input_grad(module: nn.Module, x: Tensor, weight: Tensor, grad: Tensor) -> Tensor:
    """``rho(W)^T grad``: the input gradient of the layer with weight ``weight``."""
    if type(module) is nn.Linear:
        return grad @ weight
    m: Any = module
    input_grad = _CONV_INPUT_GRAD[type(module)]
    return input_grad(x.shape, weight, grad, m.stride, m.padding, m.dilation, m.groups)


@contextlib.contextmanager
def _swapped_params(module: nn.Module, **params: Tensor | None) -> Iterator[None]:
    """Temporarily replace ``module``'s parameters (only those it has)."""
    saved = {k: module._parameters[k] for k in params if k in module._parameters}
    try:
        for key in saved:
            value = params[key]
            module._parameters[key] = (
                None if value is None else nn.Parameter(value.detach(), requires_grad=False)
            )
        yield
    finally:
        for key, old in saved.items():
            module._parameters[key] = old


def _forward_vjp(
    bound: _BoundRule, x: Tensor, weight: Tensor, bias: Tensor | None
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """``z = layer(x; weight, bias)`` and ``g -> d<z, g>/dx`` (the layer is linear in ``x``)."""
    module = bound.module
    if _has_kernel(module):
        z = _kernel_forward(module, x, weight, bias)
        return z, lambda g: _kernel_input_grad(module, x, weight, g)
    with torch.enable_grad(), _swapped_params(module, weight=weight, bias=bias):
        xr = x.detach().requires_grad_(True)
        zr = bound.forward(xr)

    def vjp(g: Tensor) -> Tensor:
        (grad,) = torch.autograd.grad(zr, xr, g)
        return grad

    return zr.detach().clone(), vjp  # a copy: callers may change it in place


def _flat_relevance(bound: _BoundRule, x: Tensor, grad: Tensor, eps: float) -> Tensor:
    """The flat rule: all weights 1, no bias, input 1; the relevance is ``W^T (g / z)``.

    With all-ones weights (and one group) ``z`` is the same for every sample and output
    channel, and ``W^T g`` only needs ``g`` summed over the output channels: one single-channel
    transposed convolution replaces a full forward and backward convolution.
    """
    module = bound.module
    weight: Tensor = module.weight  # type: ignore[assignment]
    if not _has_kernel(module) or getattr(module, "groups", 1) != 1:
        z, vjp = _forward_vjp(bound, torch.ones_like(x), torch.ones_like(weight), None)
        return vjp(grad / _stabilize(z, eps))
    z = _kernel_forward(module, x.new_ones((1, *x.shape[1:])), torch.ones_like(weight[:1]), None)
    linear = type(module) is nn.Linear
    summed = (grad / _stabilize(z, eps)).sum(dim=-1 if linear else 1, keepdim=True)
    if linear:
        return summed.expand(x.shape).contiguous()
    shape = (x.shape[0], 1, *x.shape[2:])
    ones = weight.new_ones((1, 1, *weight.shape[2:]))
    m: Any = module
    input_grad = _CONV_INPUT_GRAD[type(module)]
    r = input_grad(shape, ones, summed, m.stride, m.padding, m.dilation, 1)
    return r.expand(x.shape).contiguous()


def _fast_relevance(bound: _BoundRule, x: Tensor, out: Tensor, grad: Tensor) -> Tensor:
    """Relevance of ``x`` given the relevance ``grad`` of the module output ``out``.

    Temporaries are updated in place (large CPU allocations are slow).
    """
    rule, module = bound.rule, bound.module
    eps = rule.epsilon
    if rule.kind == "norm":
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            zr = bound.forward(xr)
            (c,) = torch.autograd.grad(zr, xr, grad / _stabilize(zr.detach(), eps))
        return x * c  # c may be a broadcast view (sums, average pooling)
    if rule.kind == "flat":
        return _flat_relevance(bound, x, grad, eps)
    weight: Tensor = module.weight  # type: ignore[assignment]
    bias: Tensor | None = getattr(module, "bias", None)
    if rule.kind == "epsilon":
        if _has_kernel(module):
            scaled = _stabilize(out, eps)
            scaled = torch.div(grad, scaled, out=scaled)
            return _kernel_input_grad(module, x, weight, scaled).mul_(x)
        z, vjp = _forward_vjp(bound, x, weight, bias)
        return vjp(grad / _stabilize(z, eps)).mul_(x)
    if rule.kind == "hudd_zplus":
        z, vjp = _forward_vjp(bound, x, weight.clamp(min=0), None)
        scaled = z.add_(eps)
        return vjp(torch.div(grad, scaled, out=scaled)).mul_(x)
    # zplus, as zennit: (x+, W+, b+) and (x-, W-, no bias) share the denominator
    w_pos = weight.clamp(min=0)
    b_pos = None if bias is None else bias.clamp(min=0)
    if bool(x.amin() >= 0):  # x- = 0: the negative half vanishes and z >= 0
        z, vjp = _forward_vjp(bound, x, w_pos, b_pos)
        scaled = z.add_(eps)
        return vjp(torch.div(grad, scaled, out=scaled)).mul_(x)
    x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
    z_pos, vjp_pos = _forward_vjp(bound, x_pos, w_pos, b_pos)
    z_neg, vjp_neg = _forward_vjp(bound, x_neg, weight.clamp(max=0), None)
    scaled = grad / _stabilize(z_pos + z_neg, eps)
    return vjp_pos(scaled).mul_(x_pos) + vjp_neg(scaled).mul_(x_neg)


class _RuleFunction(torch.autograd.Function):
    """Forward: the module unchanged. Backward: the module's LRP rule."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, bound: _BoundRule) -> Tensor:
        passing = bound.rule.kind == "pass"
        inplace = passing and bool(getattr(bound.module, "inplace", False))
        out = bound.forward(x.clone() if inplace else x)
        ctx.bound = bound
        if not passing:
            ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        bound: _BoundRule = ctx.bound
        if bound.rule.kind == "pass":
            return grad, None
        x, out = ctx.saved_tensors
        return _fast_relevance(bound, x, out, grad), None


def _call_with_rule(bound: _BoundRule, *args: Any, **kwargs: Any) -> Any:
    if len(args) != 1 or kwargs or not isinstance(args[0], Tensor):
        raise _FastUnsupported(
            f"module {type(bound.module).__name__} was called with {len(args)} positional and "
            f"{len(kwargs)} keyword arguments; the fast LRP backend handles one input tensor"
        )
    x = args[0]
    if not (torch.is_grad_enabled() and x.requires_grad):
        return bound.forward(x)
    return _RuleFunction.apply(x, bound)


@contextlib.contextmanager
def _fast_rules(model: nn.Module, ruleset: RuleSet) -> Iterator[None]:
    """Canonize ``model`` and route every rule module through :class:`_RuleFunction`."""
    applied: list[Canonizer] = []
    installed: list[tuple[nn.Module, bool, Any]] = []
    try:
        for canonizer in ruleset.canonizers(model):
            applied += canonizer.apply(model)
        for _, module, rule in ruleset.assign(model):
            if isinstance(module, ResidualSum) and rule.kind == "norm":
                module.fast_epsilon = rule.epsilon  # removed with the canonizer
            had = "forward" in module.__dict__
            previous = module.__dict__.get("forward")
            bound = _BoundRule(rule, module, module.forward)
            module.__dict__["forward"] = functools.partial(_call_with_rule, bound)
            installed.append((module, had, previous))
        yield
    finally:
        for module, had, previous in reversed(installed):
            if had:
                module.__dict__["forward"] = previous
            else:
                module.__dict__.pop("forward", None)
        for instance in reversed(applied):
            instance.remove()
