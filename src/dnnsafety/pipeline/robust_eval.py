"""Robust accuracy of every model a comparison scores (``[retrain] robust``, ``compare``).

A comparison that includes adversarial fine-tuning is judged on robust accuracy as much as on
clean accuracy (Madry et al., ICLR 2018). :func:`robust_eval` decides, from the configuration
and the compared strategies, whether ``compare`` measures it and at which budget;
:class:`RobustEval` then attacks the same seeded subset of test inputs, with the same attack
seed, for the original model and for every fine-tuned one, so the figures are comparable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dnnsafety.exceptions import ConfigError

if TYPE_CHECKING:
    from dnnsafety.config import RetrainConfig
    from dnnsafety.data.dataset import Split
    from dnnsafety.pipeline.run import Pipeline

log = logging.getLogger(__name__)

ROBUST_MODES = ("auto", "always", "never")
"""Values of ``[retrain] robust``."""
ROBUST_ATTACK = "pgd"
ROBUST_STEPS = 10
"""The evaluation attack: PGD-L-infinity with 10 steps of eps/4 and a random start, the
attack the adversarial benchmark reports (stronger than the fine-tuning's default 7 steps)."""
DEFAULT_ROBUST_EPS = 8 / 255
"""Budget of ``robust = "always"`` when no compared strategy names one (``attack``'s default)."""


@dataclass(frozen=True)
class RobustEval:
    """How a comparison measures robust accuracy.

    Attributes
    ----------
    eps
        L-infinity budget in pixel units of ``[0, 1]``.
    n
        Test inputs attacked: a subset drawn with ``seed`` (all when the split is smaller).
    seed
        Seed of the subset and of the attack's random start (the same for every model).
    attack, steps
        The attack (:data:`~dnnsafety.adversarial.ATTACKS` name) and its steps.
    """

    eps: float
    n: int
    seed: int
    attack: str = ROBUST_ATTACK
    steps: int = ROBUST_STEPS

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready settings (``comparison.json`` ``robust``)."""
        return asdict(self)

    def inputs(self, test: Split) -> tuple[torch.Tensor, np.ndarray]:
        """The attacked test inputs: ``(n x C x H x W images in [0, 1], n labels)``."""
        total = len(test)
        if self.n >= total:
            rows = np.arange(total)
        else:
            rng = np.random.default_rng([self.seed, 17])
            rows = np.sort(rng.choice(total, size=self.n, replace=False))
        part = test.subset(rows)
        return part.images, np.asarray(part.labels, dtype=np.int64)

    def accuracy(self, model: torch.nn.Module, images: torch.Tensor, labels: np.ndarray) -> float:
        """Share of ``images`` still classified as ``labels`` after the attack (clean errors
        count as failures), in ``[0, 1]``."""
        from dnnsafety.adversarial import ATTACKS, robust_accuracy

        attack = ATTACKS.create(self.attack, {"steps": self.steps})
        row = robust_accuracy(model, attack, images, labels, [self.eps], self.seed)[0]
        return float(row["robust_accuracy"])


class RobustScorer:
    """Robust accuracy of the models of one comparison under ``spec`` (nothing when ``None``).

    The attacked inputs are drawn once, so every model meets the same inputs and attack seed.
    """

    def __init__(self, spec: RobustEval | None, test: Split) -> None:
        # ``n`` as attacked: no more than the test split holds (what the figures are out of)
        self.spec = None if spec is None else replace(spec, n=min(spec.n, len(test)))
        self.test = test
        self._inputs: tuple[torch.Tensor, np.ndarray] | None = None
        self.seconds = 0.0
        """Seconds of the last :meth:`accuracy` (the attack)."""

    def accuracy(self, model: torch.nn.Module) -> dict[str, float]:
        """``{"robust_accuracy": share in [0, 1]}`` of ``model``, or ``{}`` without a spec."""
        if self.spec is None:
            return {}
        if self._inputs is None:
            self._inputs = self.spec.inputs(self.test)
            log.info(
                "robust accuracy: PGD-%d at eps %.3g/255 (%.4g) on %d test inputs, for every model",
                self.spec.steps,
                self.spec.eps * 255,
                self.spec.eps,
                len(self._inputs[1]),
            )
        t0 = time.perf_counter()
        share = self.spec.accuracy(model, *self._inputs)
        self.seconds = time.perf_counter() - t0
        return {"robust_accuracy": share}

    def note(self, result: dict[str, float]) -> str:
        """What a run's log line adds for ``result`` (of :meth:`accuracy`): the robust accuracy
        and the attack's seconds, which the run's own ``done in`` time leaves out."""
        if "robust_accuracy" not in result or self.spec is None:
            return ""
        return (
            f", robust accuracy {result['robust_accuracy'] * 100:.1f}% "
            f"(PGD-{self.spec.steps}: {self.seconds:.0f}s)"
        )

    def key(self) -> list[Any]:
        """What a saved run's fingerprint adds: nothing without a spec, so the runs saved
        before robust accuracy existed are still reused."""
        return [] if self.spec is None else [self.spec.to_dict()]


def check_robust_settings(cfg: RetrainConfig) -> None:
    """Check ``[retrain] robust`` and ``robust_n`` from the configuration alone (``compare``
    calls it before the run folder's ``config.toml`` is rewritten, so a bad ``--set`` of
    these is not saved there).

    Raises
    ------
    ConfigError
        An unknown mode, or ``robust_n`` not an int >= 1.
    """
    mode = cfg.robust
    if mode not in ROBUST_MODES:
        raise ConfigError(
            f"retrain.robust must be one of {', '.join(ROBUST_MODES)}. Got {mode!r}; set it "
            "with --set retrain.robust=auto (the default), always or never."
        )
    n = cfg.robust_n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(
            f"retrain.robust_n (test inputs attacked) must be an int >= 1. Got {n!r}; set it "
            "with --set retrain.robust_n=500 (the default), or turn robust accuracy off with "
            "--set retrain.robust=never."
        )


def threat_budgets(cfg: RetrainConfig, strategies: Sequence[str]) -> list[float]:
    """The L-infinity budgets of the compared mitigations that train against an attack
    (:meth:`~dnnsafety.retraining.mitigation.Mitigation.threat_eps`), in order.

    Raises
    ------
    ConfigError
        A parameter such a mitigation refuses (a bad ``eps``, among others).
    """
    from dnnsafety.retraining.mitigations import MITIGATIONS
    from dnnsafety.selection import SELECTORS

    budgets = []
    for name in strategies:
        if name in MITIGATIONS and name not in SELECTORS:  # a mitigation, not a selector
            mitigation = MITIGATIONS.create(name, cfg.params.get(name, {}))
            eps = mitigation.threat_eps()
            if eps is not None:
                budgets.append(float(eps))
    return budgets


def measures_robust(mode: str, budgets: Sequence[float]) -> bool:
    """Whether ``compare`` measures robust accuracy under ``[retrain] robust = mode``, given
    the budgets :func:`threat_budgets` returned."""
    return mode == "always" or (mode == "auto" and bool(budgets))


def robust_eval(
    pipeline: Pipeline, strategies: Sequence[str], announce: bool = True
) -> RobustEval | None:
    """Whether and how ``compare`` (and ``mitigate``) measure robust accuracy for
    ``strategies``.

    ``[retrain] robust = "auto"`` measures it when a compared mitigation trains against an
    attack (:meth:`~dnnsafety.retraining.mitigation.Mitigation.threat_eps`), at that budget;
    ``"always"`` measures it for any comparison (8/255 unless such a strategy names one);
    ``"never"`` does not (and says so beside such a strategy: a ``--set`` is kept in the run's
    ``config.toml``, so a later ``compare`` would otherwise drop the column without a word;
    ``announce=False`` for a check that runs before the comparison says it).

    Raises
    ------
    ConfigError
        An unknown mode, ``robust_n`` not an int >= 1, a bad budget of an adversarial
        strategy, or ``always`` on a model without gradients (ONNX).
    """
    cfg = pipeline.config.retrain
    mode = cfg.robust
    check_robust_settings(cfg)
    budgets = threat_budgets(cfg, strategies)
    if announce and mode == "never" and budgets:
        log.info(
            'robust accuracy: not measured: retrain.robust = "never" (a --set stays in the '
            "run's config.toml for later compares); --set retrain.robust=auto measures it"
        )
    if not measures_robust(mode, budgets):
        return None
    n = cfg.robust_n
    if not pipeline.support.gradients:
        raise ConfigError(
            f"retrain.robust = {mode!r} attacks every model with PGD, which needs gradients, "
            "and this model has none. Use --set retrain.robust=never, or measure robustness "
            "with `dnnsafety attack RUN_DIR --attack square`."
        )
    eps = budgets[0] if budgets else DEFAULT_ROBUST_EPS
    return RobustEval(eps=eps, n=n, seed=pipeline.config.seed)
