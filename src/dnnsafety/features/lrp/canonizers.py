"""LRP canonizers: BatchNorm merged into the layer before it, residual additions as modules.

See the package docstring (:mod:`dnnsafety.features.lrp`, "Canonizers").
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from zennit import types as ztypes
from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm
from zennit.core import collect_leaves
from zennit.layer import Sum

from dnnsafety.models.zoo import BasicBlock


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
