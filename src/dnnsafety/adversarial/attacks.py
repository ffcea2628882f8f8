"""Adversarial attacks from maintained libraries behind one contract (METHOD.md §7).

Every attack is a scikit-learn ``BaseEstimator`` registered in :data:`ATTACKS`; its
parameters are the library's settings (steps, step size, ...), and one call runs it::

    result = ATTACKS.create("pgd").attack(model, images, labels, eps=8 / 255, random_state=0)
    result.images   # N x C x H x W float32 in [0, 1], the adversarial inputs
    result.success  # (N,) bool: the library claims the attack flipped a correct prediction

``eps`` is the budget in pixel units of ``[0, 1]`` images, in the attack's own norm
(``Attack.norm``): L-infinity for FGSM, PGD, TPGD and Square, which it bounds; L2 for the
minimal-perturbation attacks CW-L2 and DeepFool (``minimal = True``), which find the smallest
perturbation they can, unbounded. An input whose minimal perturbation exceeds ``eps`` counts as
not attacked at that budget (its clean image is returned), so robust accuracy at a budget keeps
one meaning for every attack; pass ``eps=math.inf`` for the unbounded result, and
:func:`within_budget` turns one unbounded run into the result at any budget.

Libraries: the gradient attacks come from torchattacks (Kim 2020), which runs the user's
PyTorch model natively and batched (measured on the zoo CNN and Fashion-MNIST on one CPU
thread: CW-L2 13 s and DeepFool 26 s per 100 images against 200 s and 130 s for the
Adversarial Robustness Toolbox's NumPy-based versions). Square needs only predictions: on a
PyTorch model it is torchattacks' Square; on a model without parameters (an ONNX file run by
onnxruntime, which torchattacks cannot wrap) it is ART's ``SquareAttack`` on a
``BlackBoxClassifier`` (Nicolae et al. 2018).

Success is the library's claim: for torchattacks the prediction of the attack's own forward
path (``get_logits``) on the adversarial input differs from the label, for ART
``art.utils.compute_success_array``; in both cases only inputs the model classified correctly
count. The model is left as it was found (:func:`dnnsafety.testing.checks.check_model_restored`):
it runs in eval mode, its parameters are frozen during the attack (no gradient accumulates in
them), and the global random state is untouched.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from dnnsafety._validation import check_float_param, check_int_param
from dnnsafety.adversarial.base import (
    ATTACKS,
    DEFAULT_EPS,
    Attack,
    AttackResult,
    frozen_eval,
    has_gradients,
    perturbation_norm,
    robust_accuracy,
    within_budget,
)
from dnnsafety.exceptions import ConfigError

__all__ = [
    "ATTACKS",
    "DEFAULT_EPS",
    "FGSM",
    "PGD",
    "TPGD",
    "Attack",
    "AttackResult",
    "CarliniWagnerL2",
    "DeepFool",
    "Square",
    "frozen_eval",
    "has_gradients",
    "perturbation_norm",
    "robust_accuracy",
    "within_budget",
]

# --------------------------------------------------------------------------- torchattacks


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _torchattacks_success(atk: Any, x: Tensor, adv: Tensor, y: Tensor) -> np.ndarray:
    """torchattacks' criterion (its ``save`` robust accuracy): the attack's own forward path
    predicts another class than the label on the adversarial input; correct inputs only."""
    with torch.no_grad():
        clean = atk.get_logits(x).argmax(1)
        pred = atk.get_logits(adv).argmax(1)
    return ((clean == y) & (pred != y)).cpu().numpy()


class _TorchAttack(Attack):
    """An attack run by torchattacks on the model's device."""

    def _make(self, model: nn.Module, eps: float, seed: int) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int
    ) -> tuple[Tensor, np.ndarray]:
        atk = self._make(model, eps, seed)
        device = _device(model)
        xd, yd = x.to(device), y.to(device)
        adv = atk(xd, yd)
        return adv, _torchattacks_success(atk, xd, adv, yd)


@ATTACKS.register("fgsm", help="FGSM (Goodfellow et al. 2015): one signed-gradient step of eps.")
class FGSM(_TorchAttack):
    """Fast gradient sign method (Goodfellow et al., ICLR 2015), torchattacks ``FGSM``."""

    paper = "Goodfellow, Shlens & Szegedy, ICLR 2015"

    def __init__(self, batch_size: int = 256) -> None:
        self.batch_size = batch_size

    def _make(self, model: nn.Module, eps: float, seed: int) -> Any:
        import torchattacks

        return torchattacks.FGSM(model, eps=eps)


@ATTACKS.register("pgd", help="PGD L-inf (Madry et al. 2018): steps of eps/4 with a random start.")
class PGD(_TorchAttack):
    """Projected gradient descent in the L-infinity ball (Madry et al., ICLR 2018).

    Parameters
    ----------
    steps
        Gradient steps.
    step_fraction
        Step size as a fraction of ``eps`` (``alpha = step_fraction * eps``).
    random_start
        Start from a uniform random point of the ball.
    """

    paper = "Madry et al., ICLR 2018"
    _test_params: ClassVar[dict[str, Any]] = {"steps": 3}

    def __init__(
        self,
        steps: int = 10,
        step_fraction: float = 0.25,
        random_start: bool = True,
        batch_size: int = 256,
    ) -> None:
        self.steps = steps
        self.step_fraction = step_fraction
        self.random_start = random_start
        self.batch_size = batch_size

    def _make(self, model: nn.Module, eps: float, seed: int) -> Any:
        import torchattacks

        steps = check_int_param(self, "steps", self.steps)
        frac = check_float_param(self, "step_fraction", self.step_fraction, 0.0, 1.0, open_low=True)
        return torchattacks.PGD(
            model, eps=eps, alpha=frac * eps, steps=steps, random_start=bool(self.random_start)
        )


@ATTACKS.register(
    "tpgd",
    help="TRADES' KL attack (Zhang et al. 2019): PGD L-inf on KL(p(x) || p(x')), no labels.",
)
class TPGD(_TorchAttack):
    """PGD in the L-infinity ball on the KL divergence (TRADES; torchattacks ``TPGD``).

    The inner maximisation of TRADES (Zhang et al., "Theoretically Principled Trade-off between
    Robustness and Accuracy", ICML 2019): from ``x + 0.001 N(0, I)`` (clipped to ``[0, 1]``)
    each step ascends ``KL(softmax f(x) || softmax f(x'))`` by ``alpha * sign(grad)`` and
    projects onto the ball and ``[0, 1]``. The labels are not used by the attack (only by the
    success claim): it moves the prediction away from the model's own, not from the label.

    Parameters
    ----------
    steps
        Gradient steps (TRADES: 10 on CIFAR-10, 40 on MNIST).
    step_fraction
        Step size as a fraction of ``eps`` (``alpha = step_fraction * eps``; TRADES on
        CIFAR-10: 0.007 at 0.031, about 0.23).
    """

    paper = "Zhang et al., ICML 2019"
    _test_params: ClassVar[dict[str, Any]] = {"steps": 3}

    def __init__(self, steps: int = 10, step_fraction: float = 0.25, batch_size: int = 256) -> None:
        self.steps = steps
        self.step_fraction = step_fraction
        self.batch_size = batch_size

    def _make(self, model: nn.Module, eps: float, seed: int) -> Any:
        import torchattacks

        steps = check_int_param(self, "steps", self.steps)
        frac = check_float_param(self, "step_fraction", self.step_fraction, 0.0, 1.0, open_low=True)
        return torchattacks.TPGD(model, eps=eps, alpha=frac * eps, steps=steps)


@ATTACKS.register(
    "cw", help="CW-L2 (Carlini & Wagner 2017): minimal L2 perturbation; eps is an L2 budget."
)
class CarliniWagnerL2(_TorchAttack):
    """Carlini & Wagner's L2 attack (IEEE S&P 2017), torchattacks ``CW`` (fixed ``c``).

    Parameters
    ----------
    c
        Weight of the misclassification term against the squared L2 norm.
    kappa
        Confidence margin.
    steps
        Adam steps.
    lr
        Adam's learning rate (in tanh space).
    """

    minimal = True
    norm = "l2"
    paper = "Carlini & Wagner, IEEE S&P 2017"
    _test_params: ClassVar[dict[str, Any]] = {"steps": 5}

    def __init__(
        self,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.05,
        batch_size: int = 256,
    ) -> None:
        self.c = c
        self.kappa = kappa
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size

    def _make(self, model: nn.Module, eps: float, seed: int) -> Any:
        import torchattacks

        steps = check_int_param(self, "steps", self.steps)
        c = check_float_param(self, "c", self.c, 0.0, 1e6, open_low=True)
        lr = check_float_param(self, "lr", self.lr, 0.0, 10.0, open_low=True)
        kappa = check_float_param(self, "kappa", self.kappa, 0.0, 1e6)
        return torchattacks.CW(model, c=c, kappa=kappa, steps=steps, lr=lr)


@ATTACKS.register(
    "deepfool", help="DeepFool (Moosavi-Dezfooli et al. 2016): minimal L2; eps is an L2 budget."
)
class DeepFool(_TorchAttack):
    """DeepFool (Moosavi-Dezfooli et al., CVPR 2016), torchattacks ``DeepFool`` (L2).

    Parameters
    ----------
    steps
        Largest number of linearisation steps (torchattacks' default is 50; most inputs
        flip within 3, and torchattacks runs DeepFool image by image, so inputs that never
        flip cost ``steps`` x classes backward passes each).
    overshoot
        Relative overshoot past the linearised boundary.
    """

    minimal = True
    norm = "l2"
    paper = "Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016"
    _test_params: ClassVar[dict[str, Any]] = {"steps": 3}

    def __init__(self, steps: int = 20, overshoot: float = 0.02, batch_size: int = 256) -> None:
        self.steps = steps
        self.overshoot = overshoot
        self.batch_size = batch_size

    def _make(self, model: nn.Module, eps: float, seed: int) -> Any:
        import torchattacks

        steps = check_int_param(self, "steps", self.steps)
        over = check_float_param(self, "overshoot", self.overshoot, 0.0, 10.0)
        return torchattacks.DeepFool(model, steps=steps, overshoot=over)


@ATTACKS.register(
    "square", help="Square (Andriushchenko et al. 2020): black-box random search, scores only."
)
class Square(Attack):
    """Square attack in the L-infinity ball (Andriushchenko et al., ECCV 2020).

    Black-box: it reads only the model's outputs. A PyTorch model is attacked with
    torchattacks' ``Square``; a model without parameters (ONNX) with ART's ``SquareAttack``
    on a ``BlackBoxClassifier``.

    Parameters
    ----------
    n_queries
        Query budget per input.
    p_init
        Initial share of pixels changed per query.
    backend
        ``"auto"`` (torchattacks for PyTorch models, ART otherwise), ``"torchattacks"`` or
        ``"art"``.
    """

    needs_gradients = False
    paper = "Andriushchenko et al., ECCV 2020"
    _test_params: ClassVar[dict[str, Any]] = {"n_queries": 20}

    def __init__(
        self,
        n_queries: int = 500,
        p_init: float = 0.8,
        backend: str = "auto",
        batch_size: int = 256,
    ) -> None:
        self.n_queries = n_queries
        self.p_init = p_init
        self.backend = backend
        self.batch_size = batch_size

    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, eps: float, seed: int
    ) -> tuple[Tensor, np.ndarray]:
        queries = check_int_param(self, "n_queries", self.n_queries)
        p_init = check_float_param(self, "p_init", self.p_init, 0.0, 1.0, open_low=True)
        if self.backend not in ("auto", "torchattacks", "art"):
            raise ConfigError(
                "The 'backend' parameter of Square must be 'auto', 'torchattacks' or 'art'. "
                f"Got {self.backend!r}."
            )
        use_art = self.backend == "art" or (self.backend == "auto" and not has_gradients(model))
        if not use_art:
            import torchattacks

            atk = torchattacks.Square(
                model, eps=eps, n_queries=queries, p_init=p_init, seed=seed, loss="margin"
            )
            device = _device(model)
            xd, yd = x.to(device), y.to(device)
            adv = atk(xd, yd)
            return adv, _torchattacks_success(atk, xd, adv, yd)
        return _art_square(model, x, y, eps, queries, p_init, seed)


def _art_square(
    model: nn.Module, x: Tensor, y: Tensor, eps: float, queries: int, p_init: float, seed: int
) -> tuple[Tensor, np.ndarray]:
    """ART's SquareAttack on a predictions-only classifier (an ONNX model, say)."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork
    from art.utils import compute_success_array

    def predict_fn(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return torch.softmax(logits.float(), 1).cpu().numpy()

    xn, yn = x.numpy(), y.numpy()
    probe = predict_fn(xn[:1])
    clf = BlackBoxClassifierNeuralNetwork(
        predict_fn, input_shape=tuple(xn.shape[1:]), nb_classes=probe.shape[1], clip_values=(0, 1)
    )
    np_state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        atk = SquareAttack(
            clf,
            norm=np.inf,
            eps=eps,
            max_iter=queries,
            p_init=p_init,
            nb_restarts=1,
            batch_size=len(xn),
            verbose=False,
        )
        adv = atk.generate(xn, y=yn)
    finally:
        np.random.set_state(np_state)
    clean_ok = predict_fn(xn).argmax(1) == yn
    success = compute_success_array(clf, xn, yn, adv) & clean_ok
    return torch.from_numpy(adv.astype(np.float32)), np.asarray(success, dtype=bool)
