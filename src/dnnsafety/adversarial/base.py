"""The attack contract: :class:`Attack`, its result, the :data:`ATTACKS` registry, budgets.

See :mod:`dnnsafety.adversarial.attacks` for the attacks themselves and what ``eps`` and
``success`` mean. :func:`robust_accuracy` gives robust accuracy per budget for any attack.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import Tensor, nn

from dnnsafety._validation import (
    check_float_param,
    check_int_param,
    check_random_state,
)
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.registry import Registry

__all__ = [
    "ATTACKS",
    "DEFAULT_EPS",
    "Attack",
    "AttackResult",
    "frozen_eval",
    "has_gradients",
    "perturbation_norm",
    "robust_accuracy",
    "within_budget",
]

ATTACKS: Registry[type[Attack]] = Registry("attack")


class AttackResult(tuple[Tensor, np.ndarray]):
    """``(images, success)``: unpacks as a pair; ``.images`` and ``.success`` name them.

    ``images`` is an ``N x C x H x W`` float32 tensor in ``[0, 1]`` on the CPU; ``success`` an
    ``(N,)`` bool array (the library's success claim on inputs classified correctly).
    """

    def __new__(cls, images: Tensor, success: np.ndarray) -> AttackResult:
        return super().__new__(cls, (images, success))

    @property
    def images(self) -> Tensor:
        return self[0]

    @property
    def success(self) -> np.ndarray:
        return self[1]


def has_gradients(model: nn.Module) -> bool:
    """Whether ``model`` is a differentiable PyTorch model (it has a floating parameter)."""
    return any(p.is_floating_point() for p in model.parameters())


def perturbation_norm(a: Tensor, b: Tensor, norm: str = "linf") -> np.ndarray:
    """Per-image distance of ``a`` and ``b`` in pixel units, shape ``(N,)``.

    ``norm`` is ``"linf"`` (``max |a - b|``) or ``"l2"`` (Euclidean norm of ``a - b``).
    """
    if norm not in ("linf", "l2"):
        raise ConfigError(f"norm must be 'linf' or 'l2'. Got {norm!r}.")
    if len(a) == 0:
        return np.zeros(0)
    diff = (a.double() - b.double()).flatten(1)
    out = diff.abs().amax(1) if norm == "linf" else diff.norm(dim=1)
    return out.numpy()


def within_budget(
    clean: Tensor, result: AttackResult, eps: float, norm: str = "l2", tolerance: float = 1e-6
) -> AttackResult:
    """The result of a minimal-perturbation attack at budget ``eps`` in ``norm``.

    Inputs whose perturbation exceeds ``eps`` (plus ``tolerance`` for float rounding) get their
    clean image back and no success.
    """
    dist = perturbation_norm(result.images, clean, norm)
    keep = dist <= eps + tolerance
    images = torch.where(torch.from_numpy(keep)[:, None, None, None], result.images, clean)
    return AttackResult(images, result.success & keep)


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters while the block runs; flags and gradients restored.

    Every module's ``training`` flag, every parameter's ``requires_grad`` and ``.grad`` are put
    back afterwards, also when the block raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    model.eval()
    for p, _, _ in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for module, flag in modes:
            module.training = flag
        for p, flag, grad in params:
            p.requires_grad_(flag)
            p.grad = grad


class Attack(BaseEstimator):
    """Base of the attacks: validates, runs the library in batches, computes success.

    Subclasses write only :meth:`_run` (one batch, with the model in eval mode and frozen).

    Attributes
    ----------
    needs_gradients
        The attack differentiates the model (refused for ONNX models).
    minimal
        A minimal-perturbation attack: ``eps`` is a budget applied afterwards
        (:func:`within_budget`), not a bound the library enforces.
    norm
        The norm ``eps`` is measured in: ``"linf"`` or ``"l2"``.
    paper
        The source paper.
    """

    name: ClassVar[str] = "base"
    needs_gradients: ClassVar[bool] = True
    minimal: ClassVar[bool] = False
    norm: ClassVar[str] = "linf"
    paper: ClassVar[str] = ""
    batch_size: int = 256
    _test_params: ClassVar[dict[str, Any]] = {}

    def attack(
        self,
        model: nn.Module,
        images: Tensor | np.ndarray,
        labels: np.ndarray | Tensor,
        eps: float,
        random_state: int = 0,
    ) -> AttackResult:
        """Adversarial versions of ``images`` against ``model``.

        Parameters
        ----------
        model
            A classifier returning ``N x classes`` logits; left unchanged.
        images
            ``N x C x H x W`` floats in ``[0, 1]``.
        labels
            ``(N,)`` true classes (untargeted attack: move away from them).
        eps
            Budget in pixel units of ``[0, 1]`` in the attack's :attr:`norm` (``math.inf``:
            unbounded, only for minimal-perturbation attacks).
        random_state
            Seed for random starts and random search; the global random state is untouched.

        Returns
        -------
        AttackResult
            ``(images, success)``; see :class:`AttackResult`.

        Raises
        ------
        ConfigError
            Bad ``eps`` or ``random_state``; a gradient attack on a model without gradients.
        InvalidInputError
            Images that are not ``N x C x H x W`` in ``[0, 1]``, or labels of another length.
        """
        seed = check_random_state(self, random_state)
        eps = self._check_eps(eps)
        x, y = _check_inputs(images, labels)
        if self.needs_gradients and not has_gradients(model):
            raise ConfigError(
                f"The {self.name} attack differentiates the model, and this model has no "
                "PyTorch parameters (an ONNX or frozen model): use the black-box 'square' "
                "attack, or give the model as a PyTorch module."
            )
        if len(x) == 0:
            return AttackResult(x.clone(), np.zeros(0, dtype=bool))
        batch = check_int_param(self, "batch_size", getattr(self, "batch_size", 256))
        out: list[Tensor] = []
        flags: list[np.ndarray] = []
        with frozen_eval(model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for start in range(0, len(x), batch):
                xb, yb = x[start : start + batch], y[start : start + batch]
                adv, success = self._run(model, xb, yb, eps, seed + start)
                out.append(adv.detach().float().cpu().clamp_(0.0, 1.0))
                flags.append(success)
        result = AttackResult(torch.cat(out), np.concatenate(flags))
        if self.minimal and math.isfinite(eps):
            result = within_budget(x, result, eps, self.norm)
        return result

    def _check_eps(self, eps: object) -> float:
        if self.minimal and isinstance(eps, float) and math.isinf(eps) and eps > 0:
            return math.inf
        high = 1.0 if self.norm == "linf" else 1e3
        return check_float_param(self, "eps", eps, 0.0, high, open_low=True)

    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int
    ) -> tuple[Tensor, np.ndarray]:  # pragma: no cover - abstract
        """One batch: adversarial images and the library's success claim."""
        raise NotImplementedError


def _check_inputs(
    images: Tensor | np.ndarray, labels: np.ndarray | Tensor
) -> tuple[Tensor, Tensor]:
    x = images if isinstance(images, Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim != 4 or not x.is_floating_point():
        raise InvalidInputError(
            f"images must be N x C x H x W floats in [0, 1]; got shape {tuple(x.shape)} and "
            f"dtype {x.dtype}."
        )
    x = x.detach().float().cpu()
    if len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise InvalidInputError(
            f"images must lie in [0, 1]; got values in [{float(x.min()):.3g}, "
            f"{float(x.max()):.3g}]. Divide uint8 images by 255."
        )
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if y.shape != (len(x),):
        raise InvalidInputError(f"labels must have shape ({len(x)},); got {tuple(y.shape)}.")
    return x, y


def robust_accuracy(
    model: nn.Module,
    attack: Attack,
    images: Tensor,
    labels: np.ndarray,
    eps_list: list[float],
    random_state: int = 0,
) -> list[dict[str, float]]:
    """Robust accuracy of ``model`` under ``attack`` at every budget of ``eps_list``.

    Robust accuracy at ``eps`` is the share of inputs the model still classifies correctly
    after the attack with budget ``eps`` (in the attack's norm) (clean errors count as failures). A
    minimal-perturbation attack runs once, unbounded, and is cut at every budget
    (:func:`within_budget`); a bounded attack runs once per budget.

    Returns
    -------
    list of dict
        One ``{"eps", "robust_accuracy", "success_rate", "clean_accuracy", "n"}`` per budget,
        in the order of ``eps_list``; ``success_rate`` is the share of correctly classified
        inputs the library reports as flipped.
    """
    from dnnsafety.models.training import predict

    y = np.asarray(labels)
    clean_ok = predict(model, images, desc="predict clean").pred == y
    unbounded = attack.attack(model, images, y, math.inf, random_state) if attack.minimal else None
    rows = []
    for eps in eps_list:
        if unbounded is not None:
            result = within_budget(images, unbounded, float(eps), attack.norm)
        else:
            result = attack.attack(model, images, y, float(eps), random_state)
        adv_ok = predict(model, result.images, desc=f"predict eps {eps:.4g}").pred == y
        rows.append(
            {
                "eps": float(eps),
                "robust_accuracy": float(adv_ok.mean()) if len(y) else math.nan,
                "success_rate": float(result.success.sum() / max(int(clean_ok.sum()), 1)),
                "clean_accuracy": float(clean_ok.mean()) if len(y) else math.nan,
                "n": len(y),
            }
        )
    return rows


DEFAULT_EPS: dict[str, tuple[float, ...]] = {
    "linf": (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255),
    "l2": (0.25, 0.5, 1.0, 1.5, 2.0),
}
"""Budgets of the robust-accuracy curve per norm (pixel units of [0, 1] images)."""
