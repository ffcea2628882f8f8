"""Which parts of a model the LRP rules do not cover, found before any heatmap is trusted.

:mod:`dnnsafety.features.lrp` assigns rules to modules: conv/linear layers, activations,
BatchNorm (merged), average pooling and sums (proportional split), the zoo's and torchvision's
residual blocks (canonized). Everything else in a forward pass is differentiated as usual, and
a gradient is a valid relevance rule only for some operations. :func:`lrp_coverage` runs the
model once on a sample, records every torch operation and the module whose own ``forward``
calls it, and reports

* leaf modules that get no rule and are not known to pass relevance through unchanged
  (``LayerNorm``, ``Upsample``, a custom layer with its own parameters; attention gets zennit's
  pass rule, which is no explanation of it);
* operations called directly in a ``forward`` (not inside a covered layer) whose gradient is
  not a relevance rule: ``x + y`` residuals (the gradient sends the whole relevance into both
  summands), products, means and sums, ``F.gelu`` and other non-linear functions,
  ``F.adaptive_avg_pool2d``, ``F.linear`` / ``F.conv2d`` with a module's own weights.

Operations whose gradient *is* the rule are not reported: shape changes (``x.view``,
``torch.flatten``, indexing), ``torch.cat`` / ``torch.stack`` / ``split`` (each part keeps its
own relevance), max pooling (winner-take-all, the HUDD rule) and ``F.relu``: relevance is zero
where a ReLU's output is zero (every rule above it is proportional to its input), so its
gradient mask equals the pass rule of ``nn.ReLU`` (tests: identical heatmaps).

Models a user hands over as TorchScript are rebuilt from their layers first
(:mod:`dnnsafety.models.script`) and are covered when that works.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from dnnsafety.features.lrp import _eval_mode, as_batch, get_ruleset
from dnnsafety.models.zoo import BasicBlock

logger = logging.getLogger(__name__)

PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
"""Leaf modules without a rule whose gradient is the right relevance (identity in eval mode,
reshaping, winner-take-all pooling)."""

NO_MEANINGFUL_RULE: tuple[type[nn.Module], ...] = (nn.MultiheadAttention,)
"""Modules zennit maps to a rule (pass) that does not explain them."""

SAFE_FUNCTIONS: frozenset[str] = frozenset(
    {
        # reading shapes and attributes
        "__get__", "size", "dim", "numel", "is_contiguous", "__len__", "__format__",
        "_set_grad_enabled",
        # reshaping, indexing, joining and splitting: each value keeps its own relevance
        "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute",
        "transpose", "t", "contiguous", "__getitem__", "cat", "concat", "concatenate",
        "stack", "split", "chunk", "narrow", "select", "clone", "to", "float", "double",
        "half", "type",
        # gradients that equal the rule
        "relu", "relu_", "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
        "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool1d",
        "adaptive_max_pool2d", "adaptive_max_pool3d",
        # identity in eval mode
        "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
        "feature_alpha_dropout",
    }
)  # fmt: skip
"""Torch operations whose gradient is a correct relevance rule (never reported)."""

ADVICE = (
    "Write activations and pooling as nn modules (nn.ReLU, nn.Flatten, nn.AdaptiveAvgPool2d) "
    "instead of functional calls in forward, or use the black-box analysis "
    "(--features backbone)."
)


@dataclass(frozen=True)
class CoverageIssue:
    """One part of the model no LRP rule covers.

    Attributes
    ----------
    module
        Qualified module name (``""``: the model itself).
    module_type
        Its class name.
    what
        ``"layer"`` (the module itself has no rule) or the torch operation its ``forward``
        calls directly (``"add"``, ``"mean"``).
    calls
        How often the operation ran in one forward pass.
    """

    module: str
    module_type: str
    what: str
    calls: int = 1

    def __str__(self) -> str:
        where = f"{self.module!r} ({self.module_type})" if self.module else self.module_type
        if self.what == "layer":
            return f"the {self.module_type} layer {self.module!r}"
        times = f" x{self.calls}" if self.calls > 1 else ""
        return f"{self.what}{times} in the forward of {where}"


def _canonized(module: nn.Module) -> bool:
    """Residual blocks whose addition a canonizer turns into a rule module."""
    if type(module) is BasicBlock:
        return True
    cls = type(module)
    return cls.__module__.startswith("torchvision.models.resnet") and cls.__name__ in (
        "BasicBlock",
        "Bottleneck",
    )


class _OpRecorder(TorchFunctionMode):
    """Records each torch operation with the innermost module whose forward runs it."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.calls: dict[tuple[str, str], int] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        name = getattr(func, "__name__", type(func).__name__)
        key = (self.stack[-1] if self.stack else "", name)
        self.calls[key] = self.calls.get(key, 0) + 1
        return func(*args, **(kwargs or {}))


def lrp_coverage(model: nn.Module, sample: Tensor, ruleset: str = "default") -> list[CoverageIssue]:
    """The layers and operations of ``model`` that no rule of ``ruleset`` covers.

    Parameters
    ----------
    model
        An eager PyTorch classifier (left unchanged; run once in eval mode).
    sample
        One or a few inputs (``N x C x H x W``).
    ruleset
        The LRP rule set (:data:`dnnsafety.features.RULESETS`).

    Returns
    -------
    list of CoverageIssue
        Empty when every layer and operation is covered.
    """
    rules = get_ruleset(ruleset)
    covered = {id(m) for _, m, _ in rules.assign(model)}
    names = {id(m): n for n, m in model.named_modules()}
    issues: list[CoverageIssue] = []
    skip: set[str] = set()
    for name, module in model.named_modules():
        is_leaf = not any(True for _ in module.children())
        ok_rule = id(module) in covered and not isinstance(module, NO_MEANINGFUL_RULE)
        if ok_rule or isinstance(module, PASS_THROUGH) or _canonized(module):
            skip.add(name)
        elif is_leaf or isinstance(module, NO_MEANINGFUL_RULE):
            issues.append(CoverageIssue(name, type(module).__name__, "layer"))
            skip.add(name)
    stack: list[str] = []

    def push(name: str, *_: Any) -> None:
        stack.append(name)

    def pop(*_: Any) -> None:
        if stack:
            stack.pop()

    handles = []
    for module in model.modules():
        name = names[id(module)]
        handles.append(module.register_forward_pre_hook(functools.partial(push, name)))
        handles.append(module.register_forward_hook(pop, always_call=True))
    recorder = _OpRecorder(stack)
    x = as_batch(sample, model)
    try:
        with _eval_mode(model), torch.no_grad(), recorder:
            model(x)
    except RuntimeError as exc:
        logger.debug("LRP coverage: the model did not run on the sample (%s)", exc)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(model.named_modules())
    for (where, op), count in recorder.calls.items():
        if where in skip or op in SAFE_FUNCTIONS:
            continue
        cls = type(modules[where]).__name__ if where in modules else type(model).__name__
        issues.append(CoverageIssue(where, cls, op.strip("_") or op, count))
    return issues


def describe(issues: list[CoverageIssue], limit: int = 6) -> str:
    """The issues in a few words; the same operation in modules of one type is named once."""
    groups: dict[tuple[str, str], list[CoverageIssue]] = {}
    for issue in issues:
        key = (issue.module_type, issue.what) if issue.what != "layer" else (issue.module, "")
        groups.setdefault(key, []).append(issue)
    parts = []
    for same in groups.values():
        first = same[0]
        if len(same) == 1:
            parts.append(str(first))
            continue
        names = ", ".join(repr(i.module) for i in same[:3])
        more = f" and {len(same) - 3} more" if len(same) > 3 else ""
        parts.append(f"{first.what} in the forward of {first.module_type} ({names}{more})")
    text = ", ".join(parts[:limit])
    return text + (f" and {len(parts) - limit} more" if len(parts) > limit else "")


def warn_lrp_coverage(model: nn.Module, sample: Tensor, ruleset: str = "default") -> list[str]:
    """Log one warning naming what :func:`lrp_coverage` found and what to do; returns the
    issues as text (empty when the rules cover the model)."""
    issues = lrp_coverage(model, sample, ruleset)
    if issues:
        logger.warning(
            "LRP heatmaps of this model may be wrong: no LRP rule covers %s. %s",
            describe(issues),
            ADVICE,
        )
    return [str(i) for i in issues]
