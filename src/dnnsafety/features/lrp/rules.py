"""LRP rules and rule sets (``hudd``, ``default``), one description for both backends.

See the package docstring (:mod:`dnnsafety.features.lrp`, "Rule sets").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn
from zennit import types as ztypes
from zennit.canonizers import Canonizer
from zennit.composites import SpecialFirstLayerMapComposite
from zennit.core import BasicHook, Composite, Hook, ParamMod
from zennit.layer import Sum
from zennit.rules import Epsilon, Flat, Norm, Pass, ZPlus

from dnnsafety.exceptions import ConfigError
from dnnsafety.features.lrp.canonizers import (
    MergeBatchNorm,
    ZooBasicBlockCanonizer,
    _unmergeable_batchnorms,
)
from dnnsafety.registry import Registry

RuleKind = Literal["epsilon", "zplus", "hudd_zplus", "flat", "norm", "pass"]
_RULE_KINDS: tuple[str, ...] = ("epsilon", "zplus", "hudd_zplus", "flat", "norm", "pass")


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
