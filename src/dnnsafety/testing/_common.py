"""Helpers shared by the contract checks: build a plug-in, name a broken rule, and
scikit-learn's estimator contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.base import BaseEstimator, clone

from dnnsafety.exceptions import ConfigError

__all__ = ["check_estimator_contract"]


def _build(obj: Any, **extra: Any) -> Any:
    """An instance of ``obj`` (a class: built with its ``_test_params``), or ``obj`` itself."""
    if isinstance(obj, type):
        return obj(**{**dict(getattr(obj, "_test_params", {})), **extra})
    return obj


def _fail(est: object, rule: str) -> AssertionError:
    return AssertionError(f"{type(est).__name__}: {rule}")


def _raises(exc: type[BaseException], fn: Callable[[], object]) -> bool:
    try:
        fn()
    except exc:
        return True
    return False


# --------------------------------------------------------------------------- shared contract


def check_estimator_contract(est: BaseEstimator) -> None:
    """scikit-learn's estimator contract: ``__init__`` only stores; ``clone`` works.

    Raises
    ------
    AssertionError
        If ``est`` is no ``BaseEstimator``, holds learned state (a public name ending in
        ``_``) before fitting, has no registered ``name``, or ``clone`` / ``get_params`` /
        ``set_params`` do not round-trip.
    """
    if not isinstance(est, BaseEstimator):
        raise _fail(est, "must inherit sklearn.base.BaseEstimator")
    learned = sorted(k for k in vars(est) if k.endswith("_") and not k.startswith("_"))
    if learned:
        raise _fail(est, f"__init__ must only store parameters; it set {learned}")
    if not isinstance(getattr(est, "name", None), str) or est.name == "base":
        raise _fail(est, "has no registered name (decorate the class with REGISTRY.register)")
    params = est.get_params()
    twin = clone(est)
    if type(twin) is not type(est) or twin.get_params().keys() != params.keys():
        raise _fail(est, "clone(est) must give the same class with the same parameters")
    if est.set_params(**params) is not est:
        raise _fail(est, "set_params must return the estimator")
    if not repr(est).startswith(type(est).__name__):
        raise _fail(est, "repr must start with the class name")


def _check_random_state(est: BaseEstimator, fit: Callable[[Any], object]) -> None:
    if "random_state" not in est.get_params():
        raise _fail(est, "must take the randomness parameter 'random_state'")
    bad = clone(est).set_params(random_state=-1)
    if not _raises(ConfigError, lambda: fit(bad)):
        raise _fail(est, "random_state=-1 must raise ConfigError")
