"""Layer-wise relevance propagation (LRP): the relevance entering every layer, in one pass.

HUDD (METHOD.md §2.2) explains each input by LRP, starting from the *predicted* class's raw
logit (every other output zeroed), and keeps the relevance *entering* each layer: the heatmap of
"layer k" is the relevance of the input tensor of module k. All layers come from one backward
pass per batch.

Rule sets
---------
Two rule sets live in :data:`RULESETS`:

``hudd``
    The released HUDD tool's rules: ``nn.Linear`` = z+ (positive weights only, bias ignored,
    denominator ``z + 1e-9``, :class:`HuddZPlus`); Conv/ConvTranspose = epsilon rule with
    ``epsilon = 1e-9`` whose denominator is the output *including* the bias (zennit's
    :class:`~zennit.rules.Epsilon`; the stabiliser takes the sign of ``z``); MaxPool =
    winner-take-all (the gradient of max pooling); ReLU and other activations = pass;
    Dropout (eval mode) and Flatten = identity. The tool only handled plain sequential nets;
    for others it is extended as follows (documented deviations): BatchNorm layers are merged
    into the conv/linear layer right before them (a BatchNorm that does not follow such a layer
    raises :class:`~dnnsafety.exceptions.ConfigError`), residual additions and average pooling
    split relevance in proportion to their inputs (zennit's ``Norm`` rule, stabiliser 1e-9).
``default``
    zennit's ``EpsilonPlusFlat`` preset: Flat for the first conv/linear layer, z+ for the other
    convolutions, epsilon (1e-6) for linear layers, pass for activations, proportional split
    for sums and average pooling, plus the same canonizers.

Canonizers
----------
BatchNorm is merged into the preceding conv/linear layer (zennit's
``SequentialMergeBatchNorm``, tuned so that the emptied BatchNorm computes the identity instead
of ``x / sqrt(1 + eps)``). The zoo's ResNet adds ``out + shortcut(x)`` inside
:class:`dnnsafety.models.zoo.BasicBlock`. The gradient of a tensor ``+`` sends the whole upper
relevance into *both* branches, so every block doubles the relevance: not conservative.
:class:`ZooBasicBlockCanonizer` therefore rewrites the block's forward, like zennit's canonizer
for torchvision's ResNet, to ``relu2(Sum(stack([shortcut(x), out])))`` so that a rule can
attach to the addition (:class:`ResidualSum`); both rule sets give that ``Sum`` the
proportional (epsilon-style) split ``R_branch = x_branch / (x_shortcut + x_out) * R``, which
conserves relevance. zennit's torchvision ResNet canonizers are applied too when the model
contains torchvision blocks.
Every canonizer is undone when the pass ends, also when it raises.

One pass for all layers
-----------------------
A forward pre-hook on each chosen module grabs the module's input tensor and registers a tensor
hook on it. Under LRP rule hooks the gradient that reaches a tensor *is* its relevance, so one
call of ``torch.autograd.grad(logits, image, R0)`` fills every layer's map, and its result is
the pixel-level map ``"input"``. When one tensor feeds several modules (a residual block's
input goes to ``conv1`` and to the shortcut), its recorded relevance is the total that reaches
the tensor from all its consumers, i.e. the relevance of that representation; such layers are
listed once by default (see :func:`find_layers`).

Backends
--------
``"zennit"`` registers zennit's rule hooks (the reference). ``"fast"`` assigns the same rules
to the same modules (:meth:`RuleSet.assign` mirrors zennit's mapping; same canonizers) but runs
each rule module through one custom autograd function (:class:`_RuleFunction`): the forward
runs the module unchanged, the backward maps the upper relevance ``R`` of the output to
``x * rho(W)^T (R / stab(z'))`` directly. Where zennit re-runs every layer in its backward hook
(twice for z+, once per sign of the input) and calls autograd on it, the fast backend

* reuses the forward output for the epsilon rule (``z' = z``), so a conv costs one transposed
  convolution, like a plain backward without the weight gradient;
* computes z+ with one extra convolution and skips the negative-input half when the input is
  non-negative (always, after a ReLU);
* computes the flat rule (all-ones weights) from one single-channel transposed convolution;
* splits residual sums in one fused function (:class:`ResidualSum`) instead of stacking;
* stabilises in two elementwise passes and updates temporaries in place.

The fast and zennit maps agree to float rounding (tests: ``rtol=1e-9`` in float64; the
benchmark: at most 4e-7 of a map's largest value in float32). On a CPU the fast pass costs
about one forward plus backward (``benchmarks/results/lrp.md``). ``"auto"`` (default) uses the
fast backend and falls back to zennit when the model does something it does not support (a
rule module called with several inputs, an in-place change of a tensor the fast rules saved).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import grad as nn_grad
from zennit import types as ztypes
from zennit.canonizers import AttributeCanonizer, Canonizer, SequentialMergeBatchNorm
from zennit.composites import SpecialFirstLayerMapComposite
from zennit.core import BasicHook, Composite, Hook, ParamMod, collect_leaves
from zennit.layer import Sum
from zennit.rules import Epsilon, Flat, Norm, Pass, ZPlus

from dnnsafety.exceptions import ConfigError, DnnSafetyError, InvalidInputError
from dnnsafety.models.zoo import BasicBlock
from dnnsafety.registry import Registry

logger = logging.getLogger(__name__)

INPUT_LAYER = "input"
"""Name of the pixel-level relevance map (HUDD's layer 0; never selected for clustering)."""

BACKENDS: tuple[str, ...] = ("auto", "fast", "zennit")

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

RuleKind = Literal["epsilon", "zplus", "hudd_zplus", "flat", "norm", "pass"]
_RULE_KINDS: tuple[str, ...] = ("epsilon", "zplus", "hudd_zplus", "flat", "norm", "pass")


# -- rules ---------------------------------------------------------------------------------------
class HuddZPlus(BasicHook):
    """The HUDD tool's z+ rule for linear layers, as a zennit hook.

    ``R_in = x * (W+^T (R / (x W+ + stabilizer)))`` with ``W+ = max(W, 0)``, the bias ignored and
    the input *not* clamped (zennit's :class:`~zennit.rules.ZPlus` splits inputs by sign and
    keeps the positive bias; for the non-negative inputs of a ReLU net the two agree up to the
    bias and the stabiliser).

    Parameters
    ----------
    stabilizer
        Added to the denominator (not sign-aware, as in the tool).
    """

    def __init__(self, stabilizer: float = 1e-9) -> None:
        eps = float(stabilizer)
        super().__init__(
            input_modifiers=[lambda x: x],
            param_modifiers=[ParamMod(lambda p, name: p.clamp(min=0), zero_params=["bias"])],
            output_modifiers=[lambda z: z],
            gradient_mapper=lambda grad, outputs: [grad / (outputs[0] + eps)],
            reducer=lambda inputs, grads: inputs[0] * grads[0],
        )


@dataclass(frozen=True)
class Rule:
    """One LRP rule, understood by both backends.

    Parameters
    ----------
    kind
        ``"epsilon"`` (zennit ``Epsilon``), ``"zplus"`` (zennit ``ZPlus``), ``"hudd_zplus"``
        (:class:`HuddZPlus`), ``"flat"`` (zennit ``Flat``), ``"norm"`` (zennit ``Norm``:
        proportional split for parameter-free linear maps such as sums and average pooling) or
        ``"pass"`` (zennit ``Pass``: relevance passes unchanged).
    epsilon
        The rule's epsilon / stabiliser.
    """

    kind: RuleKind
    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in _RULE_KINDS:
            raise ConfigError(
                f"The 'kind' parameter of Rule must be one of {', '.join(_RULE_KINDS)}. "
                f"Got {self.kind!r}."
            )
        if not self.epsilon >= 0:
            raise ConfigError(
                f"The 'epsilon' parameter of Rule must be a float >= 0. Got {self.epsilon!r}."
            )

    def zennit_hook(self) -> Hook:
        """A fresh zennit hook implementing this rule."""
        if self.kind == "epsilon":
            return Epsilon(epsilon=self.epsilon)
        if self.kind == "zplus":
            return ZPlus(stabilizer=self.epsilon)
        if self.kind == "hudd_zplus":
            return HuddZPlus(stabilizer=self.epsilon)
        if self.kind == "flat":
            return Flat(stabilizer=self.epsilon)
        if self.kind == "norm":
            return Norm(stabilizer=self.epsilon)
        return Pass()


# -- canonizers ----------------------------------------------------------------------------------
class MergeBatchNorm(SequentialMergeBatchNorm):
    """zennit's ``SequentialMergeBatchNorm`` whose emptied BatchNorm computes the identity.

    zennit leaves the BatchNorm computing ``x / sqrt(1 + eps)`` after the merge (a relative
    change of about 5e-6 per BatchNorm). Setting its weight to ``sqrt(1 + eps)`` makes the
    canonized model compute the original outputs up to float rounding. The original parameters
    are restored by :meth:`remove`, as in zennit.
    """

    @staticmethod
    def merge_batch_norm(modules: Sequence[nn.Module], batch_norm: Any) -> None:
        SequentialMergeBatchNorm.merge_batch_norm(modules, batch_norm)
        weight = batch_norm.weight.data
        batch_norm.weight.data = torch.full_like(weight, (1.0 + float(batch_norm.eps)) ** 0.5)


def _stabilize(z: Tensor, eps: float) -> Tensor:
    """``z + eps * sign(z)`` with ``sign(0) = +1``, as zennit's ``stabilize``, in two passes.

    zennit's version takes five elementwise passes, a noticeable share of the whole LRP pass on
    a CPU. The result is identical except at ``z = -0.0`` (``-eps`` here, ``+eps`` in zennit),
    where the upper relevance is zero anyway (relevance is proportional to the activation).
    """
    return torch.copysign(torch.tensor(eps, dtype=z.dtype, device=z.device), z).add_(z)


class _ProportionalAdd(torch.autograd.Function):
    """``a + b``; backward: each summand gets ``summand / stab(a + b)`` of the relevance."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, epsilon: float) -> Tensor:
        out = a + b
        ctx.save_for_backward(a, b, out)
        ctx.epsilon = epsilon
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        a, b, out = ctx.saved_tensors
        scaled = _stabilize(out, ctx.epsilon)
        scaled = torch.div(grad, scaled, out=scaled)
        return a * scaled, b * scaled, None


class ResidualSum(Sum):
    """zennit's :class:`~zennit.layer.Sum` for a residual addition ``a + b``.

    :meth:`add` stacks ``a`` and ``b`` and sums them with this module, so that zennit's rule
    hook for ``Sum`` (a proportional split) applies. The fast backend sets ``fast_epsilon``;
    then :meth:`add` computes the same split in one fused autograd function, without the stack.
    """

    def __init__(self) -> None:
        super().__init__(dim=-1)
        self.fast_epsilon: float | None = None

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        """``a + b`` whose backward splits relevance in proportion to ``a`` and ``b``."""
        if self.fast_epsilon is not None and torch.is_grad_enabled():
            out: Tensor = _ProportionalAdd.apply(a, b, self.fast_epsilon)
            return out
        result: Tensor = self(torch.stack([a, b], dim=-1))
        return result


def _basic_block_forward(self: Any, x: Tensor) -> Tensor:
    """The zoo BasicBlock's forward with the residual addition as a :class:`ResidualSum`."""
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu2(self.canonizer_sum.add(self.shortcut(x), out))


class ZooBasicBlockCanonizer(AttributeCanonizer):
    """Make the residual addition of :class:`dnnsafety.models.zoo.BasicBlock` a module.

    Sets, for the duration of the pass, a ``canonizer_sum`` (:class:`ResidualSum`) child and a
    forward that adds ``shortcut(x)`` and the main branch with it, so the rule set's ``Sum``
    rule (a proportional split) applies to the addition. Only blocks of exactly that class are
    changed (a subclass may have its own forward).
    """

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict[str, Any] | None:
        if type(module) is BasicBlock:
            return {
                "forward": types.MethodType(_basic_block_forward, module),
                "canonizer_sum": ResidualSum(),
            }
        return None

    def copy(self) -> ZooBasicBlockCanonizer:
        return ZooBasicBlockCanonizer()


def _unmergeable_batchnorms(model: nn.Module) -> list[str]:
    """Names of BatchNorm layers that do not directly follow a conv/linear layer."""
    names = {id(m): n for n, m in model.named_modules()}
    found: list[str] = []
    last: nn.Module | None = None
    for leaf in collect_leaves(model):
        if isinstance(leaf, ztypes.BatchNorm) and not isinstance(last, ztypes.Linear):
            found.append(names.get(id(leaf), type(leaf).__name__))
        last = leaf
    return found


# -- rule sets -----------------------------------------------------------------------------------
RuleMap = tuple[tuple[Any, Rule], ...]


@dataclass(frozen=True)
class RuleSet:
    """Which rule each module gets, plus the canonizers; one description for both backends.

    Parameters
    ----------
    name
        Registry name.
    layer_map
        ``(types, rule)`` pairs; a module gets the rule of the first pair it is an instance of
        (``types`` is a class, a tuple of classes or a :mod:`zennit.types` class).
    first_map
        Pairs checked, in ``model.named_modules()`` order, until one matches; that first module
        gets this rule instead (as zennit's ``SpecialFirstLayerMapComposite``).
    strict_batchnorm
        Raise :class:`ConfigError` when a BatchNorm cannot be merged into a preceding layer
        (otherwise it gets the layer map's rule, normally pass).
    """

    name: str
    layer_map: RuleMap
    first_map: RuleMap = ()
    strict_batchnorm: bool = False

    def canonizers(self, model: nn.Module) -> list[Canonizer]:
        """Fresh canonizers for ``model`` (BatchNorm merge, residual sums)."""
        canonizers: list[Canonizer] = [MergeBatchNorm(), ZooBasicBlockCanonizer()]
        if any(type(m).__module__.startswith("torchvision.") for m in model.modules()):
            from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

            canonizers += [ResNetBasicBlockCanonizer(), ResNetBottleneckCanonizer()]
        return canonizers

    def check(self, model: nn.Module) -> None:
        """Raise :class:`ConfigError` when the rule set cannot handle ``model``."""
        if self.strict_batchnorm:
            bad = _unmergeable_batchnorms(model)
            if bad:
                raise ConfigError(
                    f"Rule set {self.name!r} has no rule for BatchNorm layers that do not "
                    f"directly follow a conv/linear layer (they cannot be merged into it): "
                    f"{', '.join(bad)}. Use ruleset='default', which passes relevance through "
                    "them unchanged."
                )

    def composite(self, model: nn.Module) -> Composite:
        """A zennit composite with these rules and canonizers (for ``model``)."""
        return SpecialFirstLayerMapComposite(
            layer_map=[(types_, rule.zennit_hook()) for types_, rule in self.layer_map],
            first_map=[(types_, rule.zennit_hook()) for types_, rule in self.first_map],
            canonizers=self.canonizers(model),
        )

    def assign(self, model: nn.Module) -> list[tuple[str, nn.Module, Rule]]:
        """``(name, module, rule)`` for every module that gets a rule, exactly as zennit maps."""
        assigned: list[tuple[str, nn.Module, Rule]] = []
        first_done = False
        for name, module in model.named_modules():
            rule: Rule | None = None
            if not first_done:
                for types_, candidate in self.first_map:
                    if isinstance(module, types_):
                        rule, first_done = candidate, True
                        break
            if rule is None:
                rule = next((r for t, r in self.layer_map if isinstance(module, t)), None)
            if rule is not None:
                assigned.append((name, module, rule))
        return assigned


def _base_map(eps: float) -> RuleMap:
    return (
        (ztypes.Activation, Rule("pass")),
        (Sum, Rule("norm", eps)),
        (ztypes.AvgPool, Rule("norm", eps)),
        (ztypes.BatchNorm, Rule("pass")),
    )


RULESETS: Registry[RuleSet] = Registry("LRP rule set")
"""Registered LRP rule sets (``hudd``, ``default``)."""

HUDD_RULES = RULESETS.register(
    "hudd", "The released HUDD tool: z+ (linear), epsilon 1e-9 (conv), winner-take-all pooling"
)(
    RuleSet(
        name="hudd",
        layer_map=(
            *_base_map(1e-9),
            (ztypes.Convolution, Rule("epsilon", 1e-9)),
            (nn.Linear, Rule("hudd_zplus", 1e-9)),
        ),
        strict_batchnorm=True,
    )
)
DEFAULT_RULES = RULESETS.register(
    "default", "zennit EpsilonPlusFlat: flat first layer, z+ conv, epsilon linear, canonized"
)(
    RuleSet(
        name="default",
        layer_map=(
            *_base_map(1e-6),
            (ztypes.Convolution, Rule("zplus", 1e-6)),
            (nn.Linear, Rule("epsilon", 1e-6)),
        ),
        first_map=((ztypes.Linear, Rule("flat", 1e-6)),),
    )
)


def get_ruleset(ruleset: str | RuleSet) -> RuleSet:
    """The rule set registered as ``ruleset`` (or ``ruleset`` itself)."""
    if isinstance(ruleset, RuleSet):
        return ruleset
    if not isinstance(ruleset, str):
        raise ConfigError(
            f"The 'ruleset' parameter must be a name ({', '.join(RULESETS.names())}) or a "
            f"RuleSet. Got {ruleset!r}."
        )
    return RULESETS.get(ruleset)


# -- the fast backend ----------------------------------------------------------------------------
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


# -- layers --------------------------------------------------------------------------------------
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
