"""A retrained model saved in the format the user gave the original in.

* every kind: ``model.pt``, ``{"state_dict": ..., "strategy": ...}``, read by
  ``--weights`` (a zoo ``--arch`` or ``--model-factory module:callable``);
* TorchScript in, TorchScript out: ``model.ts`` is the user's own TorchScript file (its code,
  its module names) with the retrained weights, checked to compute what the retrained model
  computes before it is written. Load it with ``torch.jit.load`` or use it as
  ``--arch torchscript --weights model.ts``;
* a model that states its class order (``model.classes``, a ``classes.txt``): ``classes.txt``
  beside them, one name per line in the order of the outputs, which ``--weights`` reads, so
  the retrained model is scored against the classes it was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from dnnsafety.models.adapter import as_probabilities
from dnnsafety.models.loading import load_torchscript, quiet_torchscript_notice
from dnnsafety.models.script import RTOL, is_script_module
from dnnsafety.models.support import ModelSupport
from dnnsafety.retraining.finetune import copy_model
from dnnsafety.runs import atomic_path, write_text

log = logging.getLogger(__name__)

STATE_DICT_FILE = "model.pt"
TORCHSCRIPT_FILE = "model.ts"
CLASSES_FILE = "classes.txt"


def save_retrained(
    model: nn.Module,
    folder: Path,
    strategy: str,
    support: ModelSupport,
    source: str,
    probe: Tensor,
    classes: Sequence[str] | None = None,
) -> list[Path]:
    """Write the retrained ``model`` into ``folder``; returns the files written.

    Parameters
    ----------
    model
        The retrained model (eager, or TorchScript when the original could not be rebuilt).
    folder
        ``retrained/<strategy>/``.
    strategy
        Recorded beside the state dict.
    support
        What the original model supports; ``saves_as == "torchscript"`` adds ``model.ts``.
    source
        The original model file (the TorchScript archive the retrained weights go into).
    probe
        A few real inputs on which the written TorchScript model must match ``model``.
    classes
        The class names in the order of the model's outputs, when the run states one
        (``model.classes``, a ``classes.txt``): written to ``classes.txt``. Without it, a new
        run given ``--weights`` would number the classes in the data's own order and score
        the retrained model against the wrong classes.
    """
    written = [folder / STATE_DICT_FILE]
    with atomic_path(written[0]) as tmp:
        torch.save({"state_dict": model.state_dict(), "strategy": strategy}, tmp)
    if support.saves_as == "torchscript":
        scripted = torchscript_like(model, source)
        problem = _mismatch(scripted, model, probe)
        if problem:
            log.warning("retrained model not saved as TorchScript: %s", problem)
        else:
            target = folder / TORCHSCRIPT_FILE
            with atomic_path(target) as tmp, quiet_torchscript_notice():
                torch.jit.save(scripted, str(tmp))
            written.append(target)
    if classes is not None:
        write_text(folder / CLASSES_FILE, "".join(f"{name}\n" for name in classes))
        written.append(folder / CLASSES_FILE)
    log.info("retrained model saved as %s", " and ".join(str(p) for p in written))
    return written


def torchscript_like(model: nn.Module, source: str) -> nn.Module:
    """The TorchScript archive ``source`` holding ``model``'s weights (eval mode).

    ``model`` may be the output adapter around the TorchScript model
    (:class:`~dnnsafety.models.adapter.ScriptedLogits`): the archive holds the user's own
    model, with its own output convention.
    """
    from dnnsafety.models.adapter import ScriptedLogits

    inner = model.model if isinstance(model, ScriptedLogits) else model
    if is_script_module(inner):
        scripted = copy_model(inner)
    else:
        scripted = load_torchscript(source)
        scripted.load_state_dict(inner.state_dict(), strict=True)
    scripted.eval()
    return scripted


def _mismatch(scripted: nn.Module, model: nn.Module, probe: Tensor) -> str:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # the retrained model returns logits; the archive its user's convention
            want, got = (
                torch.softmax(model(probe).float(), dim=1),
                as_probabilities(scripted(probe)),
            )
    finally:
        model.train(was_training)
    if want.shape != got.shape:
        return "the TorchScript copy's outputs have another shape than the retrained model's"
    diff = float((want - got).abs().max()) if want.numel() else 0.0
    scale = float(want.abs().max()) if want.numel() else 0.0
    if diff > RTOL * max(scale, 1.0):
        return f"the TorchScript copy's outputs differ from the retrained model's ({diff:.3g})"
    return ""
