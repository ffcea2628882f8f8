"""One adapter between a user's model and the rest of the toolkit: everything sees logits.

Models come with different output conventions: raw logits, probabilities (a final
``nn.Softmax``), log-probabilities (a final ``nn.LogSoftmax``) or, for two classes, one sigmoid
logit. Every stage here assumes ``N x classes`` logits: prediction applies the softmax,
training uses cross-entropy, DeepGini and entropy read the softmax, LRP starts from the logit.
:func:`adapt_outputs` makes a model return logits, once, right after loading:

* a final ``nn.Softmax`` / ``nn.LogSoftmax`` (``nn.Sigmoid`` for one output) module is replaced
  by ``nn.Identity``, so the model returns the pre-softmax logits (module names stay the same);
* otherwise the outputs on a few real inputs tell: rows of non-negative numbers summing to 1 are
  probabilities (converted with ``log``), rows whose ``exp`` sums to 1 are log-probabilities
  (already valid logits: their softmax is the probabilities);
* one output column for two classes is a sigmoid logit ``z``, returned as ``[0, z]`` (softmax
  ``[1 - sigmoid(z), sigmoid(z)]``).

Conversions run in a forward hook on the model itself (a small wrapper for TorchScript, which
has no hooks), so layer names do not change. A model whose number of outputs differs from the
number of classes is refused up front.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dnnsafety.exceptions import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

OUTPUTS: tuple[str, ...] = ("auto", "logits", "probs", "log_probs")
_TOL = 1e-3
_EPS = 1e-12
_FINAL = {"probs": (nn.Softmax,), "log_probs": (nn.LogSoftmax,)}


@dataclass(frozen=True)
class OutputInfo:
    """What :func:`adapt_outputs` found and did.

    ``kind`` is the convention of the (possibly stripped) model's outputs: ``logits``,
    ``probs`` or ``log_probs``; ``binary`` is True for one sigmoid output column; ``stripped``
    names the final module replaced by ``nn.Identity`` (empty when none).
    """

    kind: str
    binary: bool
    stripped: str
    width: int

    def describe(self) -> str:
        """One line for the log."""
        parts = []
        if self.stripped:
            parts.append(f"removed the final {self.stripped} so the model returns logits")
        if self.binary:
            parts.append(f"one output column read as a sigmoid {_singular(self.kind)}")
        elif self.kind != "logits":
            parts.append(f"outputs are {self.kind.replace('_', '-')}, converted to logits")
        return "; ".join(parts) or "the model returns logits"


class ToLogits:
    """Forward hook (and function) mapping a model's outputs to ``N x classes`` logits."""

    def __init__(self, kind: str, binary: bool) -> None:
        self.kind = kind
        self.binary = binary

    def convert(self, out: Tensor) -> Tensor:
        """``out`` (``N x W``) as logits."""
        if self.binary:
            z = _binary_logit(out[:, 0], self.kind)
            return torch.stack([torch.zeros_like(z), z], dim=1)
        if self.kind == "probs":
            return torch.log(out.clamp_min(_EPS))
        return out

    def __call__(self, module: nn.Module, args: Any, out: Tensor) -> Tensor:
        return self.convert(out)


class ScriptedLogits(nn.Module):
    """Wraps a TorchScript module (which takes no hooks) to return logits."""

    def __init__(self, model: nn.Module, convert: ToLogits) -> None:
        super().__init__()
        self.model = model
        self.to_logits = convert

    def forward(self, x: Tensor) -> Tensor:
        return self.to_logits.convert(self.model(x))


def adapt_outputs(
    model: nn.Module,
    class_names: Sequence[str],
    sample: Tensor,
    output: str = "auto",
) -> nn.Module:
    """Make ``model`` return ``N x len(class_names)`` logits; log what was detected.

    Parameters
    ----------
    model
        The loaded model. A final softmax module is replaced in place.
    class_names
        The classes, in the order of the model's outputs.
    sample
        A few real input images ``N x C x H x W`` to inspect the outputs with.
    output
        ``auto`` (detect), ``logits``, ``probs`` or ``log_probs``: what the model returns.

    Returns
    -------
    nn.Module
        ``model`` itself (with a forward hook when its outputs need converting), or a
        :class:`ScriptedLogits` around a TorchScript model that needs converting.

    Raises
    ------
    ConfigError
        ``output`` is not one of :data:`OUTPUTS`.
    ModelLoadError
        The model fails on the sample, or its number of outputs does not fit the classes.
    """
    if output not in OUTPUTS:
        raise ConfigError(f"model.output must be one of {', '.join(OUTPUTS)}. Got {output!r}.")
    k = len(class_names)
    stripped = "" if output == "logits" else _strip_final(model, sample, output)
    out = _probe(model, sample)
    width = int(out.shape[1])
    if width != k and not (width == 1 and k == 2):
        raise ModelLoadError(
            f"The model returns {width} output(s) per image but the data has {k} classes "
            f"({', '.join(class_names[:12])}{', ...' if k > 12 else ''}). "
            + (
                "One output column is read as a sigmoid logit of a two-class model."
                if width == 1
                else "Use the model trained for these classes, or data with the model's classes."
            )
        )
    kind = output
    if output == "auto":
        kind = "logits" if stripped else _detect(out, binary=width == 1)
    elif stripped:
        kind = "logits"
    info = OutputInfo(kind, width == 1, stripped, width)
    log.info("model output: %s", info.describe())
    if kind in ("logits", "log_probs") and width != 1:
        return model
    to_logits = ToLogits(kind, width == 1)
    if isinstance(model, torch.jit.ScriptModule):
        return ScriptedLogits(model, to_logits)
    model.register_forward_hook(to_logits)
    return model


def _probe(model: nn.Module, sample: Tensor) -> Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample)
    except ModelLoadError:
        raise
    except Exception as exc:  # the user's model: any exception type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"The model fails on the data's images (shaped {tuple(sample.shape)}): "
            f"{first[:300]}. Check the image size (--image-size) and channels."
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor):
        raise ModelLoadError(
            f"The model returns {type(out).__name__}; it must return one tensor of N x classes "
            "scores (wrap models that return tuples or dicts)."
        )
    if out.ndim == 4 and out.shape[2:] == (1, 1):
        raise ModelLoadError(
            f"The model returns shape {tuple(out.shape)}; it must return N x classes. "
            "Add a flatten (nn.Flatten()) after the last layer."
        )
    if out.ndim != 2:
        raise ModelLoadError(
            f"The model returns shape {tuple(out.shape)} for {len(sample)} images; it must "
            "return N x classes scores."
        )
    return out.float()


def _strip_final(model: nn.Module, sample: Tensor, output: str) -> str:
    """Replace a final softmax-like module by ``nn.Identity``; its name, or ``""``."""
    if isinstance(model, torch.jit.ScriptModule):
        return ""
    wanted: tuple[type[nn.Module], ...] = _FINAL.get(output, (nn.Softmax, nn.LogSoftmax))
    calls: list[tuple[str, nn.Module, Any]] = []
    handles = []
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):

            def record(mod: nn.Module, args: Any, out: Any, name: str = name) -> None:
                calls.append((name, mod, out))

            handles.append(module.register_forward_hook(record))
    try:
        out = _probe(model, sample)
    finally:
        for h in handles:
            h.remove()
    if not calls:
        return ""
    name, module, last = calls[-1]
    final: tuple[type[nn.Module], ...] = (*wanted, nn.Sigmoid) if out.shape[1] == 1 else wanted
    if not isinstance(module, final) or not isinstance(last, Tensor):
        return ""
    if last.shape != out.shape or not torch.equal(last.float(), out):
        return ""
    if sum(1 for _, m, _ in calls if m is module) > 1:
        log.info("not removing %s: the model calls it more than once", name)
        return ""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return f"nn.{type(module).__name__} {name!r}"


def _detect(out: Tensor, binary: bool) -> str:
    if binary:
        return "logits"
    if bool((out >= 0).all()) and torch.allclose(out.sum(1), torch.ones(len(out)), atol=_TOL):
        return "probs"
    if bool((out <= _TOL).all()) and torch.allclose(
        out.exp().sum(1), torch.ones(len(out)), atol=_TOL
    ):
        return "log_probs"
    return "logits"


def as_probabilities(out: Tensor) -> Tensor:
    """Class probabilities ``N x K`` of outputs ``N x W`` in any convention the adapter accepts
    (logits, probabilities, log-probabilities, one sigmoid column), detected as
    :func:`adapt_outputs` does; a single column within ``[0, 1]`` counts as a sigmoid
    probability (a final ``nn.Sigmoid``). Used to compare a model file with its adapted model.
    """
    out = out.float()
    binary = out.shape[1] == 1
    kind = _detect(out, binary)
    if binary and bool(((out >= 0) & (out <= 1)).all()):
        kind = "probs"
    return torch.softmax(ToLogits(kind, binary).convert(out), dim=1)


def _binary_logit(col: Tensor, kind: str) -> Tensor:
    if kind == "probs":
        p = col.clamp(_EPS, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    if kind == "log_probs":
        p = col.exp().clamp(_EPS, 1 - 1e-7)
        return torch.log(p) - torch.log1p(-p)
    return col


def _singular(kind: str) -> str:
    return {"probs": "probability", "log_probs": "log-probability"}.get(kind, "logit")
