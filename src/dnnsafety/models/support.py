"""What each kind of model supports, and the check every command runs before any long step.

The README offers four kinds of model; they do not all support every command:

==============  =========  ==========  =========  ===================================  ==========
kind            white-box  fine-tune   fresh       retrained model saved as             attack
==============  =========  ==========  =========  ===================================  ==========
``zoo``         yes        yes         yes        state dict (``model.pt``)            all
``import``      yes        yes         yes        state dict (``model.pt``)            all
``torchscript`` if rebuilt yes         no         TorchScript (``model.ts``) + state   all
``export``      no         yes         no         state dict (``model.pt``)            all
``onnx``        no         no          no         -                                    ``square``
==============  =========  ==========  =========  ===================================  ==========

*white-box*: the model's layers can be hooked (LRP heatmaps, ``--features heatmaps`` and
``activations``, the ``dsa`` strategy). A TorchScript model has it when it could be rebuilt as
an eager module (:mod:`dnnsafety.models.script`). *fresh*: a freshly initialised copy can be
built (``train``, ``retrain.from_scratch``). ``evaluate``, ``report`` and the black-box
analysis work with every kind. *attack*: the attacks ``dnnsafety attack`` can run; the
gradient attacks (FGSM, PGD, CW, DeepFool) differentiate the model, which onnxruntime cannot,
so an ONNX model gets the black-box ``square`` attack only (need ``gradients``).

:func:`check_command` is the one place that says whether a command can run; the CLI commands
(through :meth:`dnnsafety.pipeline.Pipeline.check_supported`) call it first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from torch import nn

from dnnsafety.config import ModelConfig
from dnnsafety.exceptions import ConfigError
from dnnsafety.models.script import contains_script_module

MODEL_KINDS: tuple[str, ...] = ("zoo", "import", "torchscript", "export", "onnx")
_SHOWN = {
    "zoo": "zoo",
    "import": "imported",
    "torchscript": "TorchScript",
    "export": "torch.export",
    "onnx": "ONNX",
}

WHITE_BOX_FEATURES: tuple[str, ...] = ("heatmaps", "activations")
"""Black-box feature sources that still read the model's layers."""

WHITE_BOX_STRATEGIES: tuple[str, ...] = ("dsa",)
"""Selection strategies that read the model's layers (penultimate activations)."""

COMMAND_NEEDS: dict[str, tuple[str, ...]] = {
    "evaluate": (),
    "analyze": (),
    "select": (),
    "retrain": ("fine_tune",),
    "compare": ("fine_tune",),
    "mitigate": ("fine_tune",),
    "report": (),
    "attack": (),
    "demo": ("fresh", "fine_tune", "white_box"),
}
"""What each command needs whatever its options (options add more: :func:`command_needs`)."""


def model_kind(cfg: ModelConfig) -> str:
    """``zoo``, ``import``, ``torchscript`` or ``onnx`` for a model configuration."""
    if cfg.arch in ("torchscript", "export", "onnx", "import"):
        return cfg.arch
    return "zoo"


@dataclass(frozen=True)
class ModelSupport:
    """What a run's model supports.

    Attributes
    ----------
    kind
        One of :data:`MODEL_KINDS`.
    white_box
        Its layers can be hooked (LRP heatmaps, activations).
    fine_tune
        It can be fine-tuned here (``retrain``, ``compare``).
    fresh
        A freshly initialised copy can be built (``retrain.from_scratch``).
    saves_as
        Format of a retrained model besides the state dict: ``"torchscript"`` or ``""``.
    reason
        Why ``white_box`` is false (empty otherwise).
    train_reason
        Why ``fine_tune`` is false (empty otherwise).
    gradients
        The model can be differentiated (gradient attacks, adversarial fine-tuning).
    """

    kind: str
    white_box: bool
    fine_tune: bool
    fresh: bool
    saves_as: str = ""
    reason: str = ""
    train_reason: str = ""
    gradients: bool = True

    @property
    def shown(self) -> str:
        """The kind as messages name it (``ONNX``, ``TorchScript``)."""
        return _SHOWN.get(self.kind, self.kind)


def model_support(
    cfg: ModelConfig, model: nn.Module | None = None, reason: str = ""
) -> ModelSupport:
    """What the model of ``cfg`` supports.

    Parameters
    ----------
    cfg
        The model configuration (its kind decides most of the answer).
    model
        The loaded model, when there is one: needed for TorchScript, whose white-box support
        depends on whether it could be rebuilt as an eager module (a TorchScript model given
        without ``model`` counts as not rebuilt); a model without a trainable parameter cannot
        be fine-tuned.
    reason
        Why a TorchScript model could not be rebuilt (from :func:`~dnnsafety.models.script.
        rebuild_eager`).
    """
    from dnnsafety.models.exported import ExportedClassifier

    kind = model_kind(cfg)
    if kind == "export" or isinstance(model, ExportedClassifier):
        # also a torch.export archive given as --arch torchscript (recognised by its content)
        why = "a torch.export program is a flat graph without the nn layers LRP hooks into"
        support = ModelSupport("export", False, True, False, reason=why)
        if model is not None and not any(p.requires_grad for p in model.parameters()):
            why = "it has no trainable parameter (every requires_grad is False)"
            support = replace(support, fine_tune=False, train_reason=why)
        return support
    if kind == "onnx":
        why = "it runs in onnxruntime, without PyTorch layers or gradients"
        return ModelSupport(
            kind, False, False, False, reason=why, train_reason=why, gradients=False
        )
    if kind == "torchscript":
        eager = model is not None and not contains_script_module(model)
        why = "" if eager else f"it could not be rebuilt as an eager module: {reason or 'unknown'}"
        support = ModelSupport(kind, eager, True, False, "torchscript", why)
    elif model is not None and contains_script_module(model):
        why = "the factory returned a TorchScript module, which takes no forward hooks"
        support = ModelSupport(kind, False, True, True, reason=why)
    else:
        support = ModelSupport(kind, True, True, True)
    if model is not None and not any(p.requires_grad for p in model.parameters()):
        why = "it has no trainable parameter (every requires_grad is False)"
        support = replace(support, fine_tune=False, train_reason=why)
    return support


def command_needs(
    command: str,
    strategies: Iterable[str] = (),
    features: str = "",
    from_scratch: bool = False,
) -> tuple[str, ...]:
    """What ``command`` needs with these options (``white_box``, ``fine_tune``, ``fresh``)."""
    needs = list(COMMAND_NEEDS.get(command, ()))
    if features in WHITE_BOX_FEATURES or any(s in WHITE_BOX_STRATEGIES for s in strategies):
        needs.append("white_box")
    if from_scratch and "fine_tune" in needs:
        needs.append("fresh")
    return tuple(dict.fromkeys(needs))


def check_command(support: ModelSupport, command: str, needs: Iterable[str]) -> None:
    """Raise :class:`ConfigError` (one line naming the alternative) when ``support`` lacks a
    need of ``command``."""
    for need in needs:
        if need == "gradients" and not support.gradients:
            raise ConfigError(
                f"`dnnsafety {command}` with this attack differentiates the model, and this "
                f"{support.shown} model has no gradients ({support.reason}). Use the black-box "
                "attack instead (--attack square), or give the model as --model-factory "
                "module:callable + --weights state_dict.pt."
            )
        if need == "white_box" and not support.white_box:
            instead = (
                "the black-box analysis (--features backbone)"
                if command == "analyze"
                else "a strategy other than dsa (and the black-box --features backbone)"
            )
            raise ConfigError(
                f"`dnnsafety {command}` with these options reads the model's layers "
                f"(white-box), and this {support.shown} model gives no access to them: "
                f"{support.reason}. Use {instead}, or give the model as --model-factory "
                "module:callable + --weights state_dict.pt for the white-box analysis."
            )
        if need == "fine_tune" and not support.fine_tune:
            # a mitigation selects no image to label: only the model's own framework can do it
            alternative = (
                "Fine-tune it with the mitigation in its own framework"
                if command == "mitigate"
                else "`dnnsafety select` still chooses the images to label; retrain the model "
                "on them in its own framework"
            )
            raise ConfigError(
                f"`dnnsafety {command}` fine-tunes the model, and this {support.shown} model "
                f"cannot be trained here ({support.train_reason}). {alternative}, or give it "
                "as --model-factory module:callable + --weights state_dict.pt."
            )
        if need == "fresh" and not support.fresh:
            raise ConfigError(
                f"retrain.from_scratch needs an architecture dnnsafety can build afresh (a "
                f"zoo --arch or --model-factory); a {support.shown} file holds only the trained "
                "model. Set retrain.from_scratch=false to fine-tune it instead."
            )
