"""Contract checks of the plug-ins: clusterers, reducers, selectors, feature sources and
detectors (:func:`check_detector`, in :mod:`dnnsafety.testing.detectors`).

Each ``check_*`` takes a registered class (or a ready instance), builds it with the class's
``_test_params`` (a ``ClassVar`` dict of small, fast settings; empty when absent), runs it on
small planted data and raises :class:`AssertionError` naming the broken rule. They work as
scikit-learn's estimator checks do: ``tests/contract/test_registries.py`` runs them over every
registry, and a new plug-in passes them before it is registered.

:func:`check_model_restored` runs a function on a user's model and fails if the model's
parameters, buffers, hooks or training flags differ afterwards.
"""

from __future__ import annotations

import copy
import functools
import json
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from sklearn.base import clone
from torch import nn

from dnnsafety.clustering.base import Clusterer
from dnnsafety.clustering.reducers import Reducer
from dnnsafety.exceptions import ConfigError, InvalidInputError, NotFittedError
from dnnsafety.features.sources import FeatureContext, FeatureSource
from dnnsafety.selection.selectors import (
    ClusterSpace,
    PoolView,
    RandomState,
    ReferenceSet,
    Selection,
    Selector,
)
from dnnsafety.testing._common import (
    _build,
    _check_random_state,
    _fail,
    _raises,
    check_estimator_contract,
)
from dnnsafety.testing.detectors import check_detector

__all__ = [
    "check_clusterer",
    "check_detector",
    "check_estimator_contract",
    "check_feature_source",
    "check_model_restored",
    "check_reducer",
    "check_selector",
]

R = TypeVar("R")


# --------------------------------------------------------------------------- data


def _blobs(n_per: int = 12, dim: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, dim) * 10.0
    return np.vstack([c + rng.normal(size=(n_per, dim)) for c in centres])


# --------------------------------------------------------------------------- clusterers


def check_clusterer(clusterer: type[Clusterer] | Clusterer) -> None:
    """The clusterer contract (:mod:`dnnsafety.clustering.base`) on planted blobs.

    Raises
    ------
    AssertionError
        Naming the first rule the clusterer breaks.
    """
    est = _build(clusterer)
    check_estimator_contract(est)
    _check_random_state(est, lambda e: e.fit(_blobs()))
    if not _raises(NotFittedError, lambda: clone(est).labels_):
        raise _fail(est, "reading labels_ before fit must raise NotFittedError")
    x = _blobs()
    x[3] = x[0]  # identical rows must share their label
    before = x.copy()
    fitted = clone(est)
    if fitted.fit(x) is not fitted:
        raise _fail(est, "fit must return self")
    if not np.array_equal(x, before):
        raise _fail(est, "fit must not change its input")
    labels = fitted.labels_
    if labels.dtype != np.int64 or labels.shape != (len(x),):
        raise _fail(est, f"labels_ must be int64 of shape ({len(x)},); got {labels.dtype}")
    k = int(fitted.n_clusters_)
    kept = labels[labels >= 0]
    if labels.min() < -1 or (kept.size and set(kept.tolist()) != set(range(k))):
        raise _fail(est, "labels_ must be -1 (noise) or 0..n_clusters_-1")
    sizes = np.bincount(kept, minlength=k)
    if np.any(np.diff(sizes) > 0):
        raise _fail(est, "clusters must be numbered by decreasing size")
    if fitted.n_noise_ != int(np.sum(labels < 0)):
        raise _fail(est, "n_noise_ must count the -1 labels")
    if labels[0] != labels[3]:
        raise _fail(est, "identical rows must get the same label")
    json.dumps(fitted.params_)
    json.dumps(fitted.search_)
    again = clone(est).fit(x).labels_
    if not np.array_equal(again, labels):
        raise _fail(est, "fit must be deterministic under a fixed random_state")
    if not np.array_equal(clone(est).fit_predict(x), labels):
        raise _fail(est, "fit_predict must return labels_")
    if clone(est).fit(np.zeros((0, 5))).labels_.shape != (0,):
        raise _fail(est, "no rows must give no labels")
    if clone(est).fit(x[:1]).n_clusters_ != 1:
        raise _fail(est, "a single input must be one cluster")
    bad = x.copy()
    bad[1, 1] = np.nan
    for wrong in (bad, x[:, 0]):
        if not _raises(InvalidInputError, functools.partial(clone(est).fit, wrong)):
            raise _fail(est, "NaN or 1-D input must raise InvalidInputError")


# --------------------------------------------------------------------------- reducers


def check_reducer(reducer: type[Reducer] | Reducer) -> None:
    """The reducer contract (:mod:`dnnsafety.clustering.reducers`) on planted blobs.

    Raises
    ------
    AssertionError
        Naming the first rule the reducer breaks.
    """
    est = _build(reducer)
    check_estimator_contract(est)
    x = _blobs()
    x[3] = x[0]
    _check_random_state(est, lambda e: e.fit(x))
    if not _raises(NotFittedError, lambda: clone(est).transform(x)):
        raise _fail(est, "transform before fit must raise NotFittedError")
    before = x.copy()
    fitted = clone(est)
    z = fitted.fit_transform(x)
    if not np.array_equal(x, before):
        raise _fail(est, "fit must not change its input")
    if z.shape != (len(x), fitted.n_components_) or not np.isfinite(z).all():
        raise _fail(est, "fit_transform must give finite n_samples x n_components_ values")
    if not np.array_equal(z[0], z[3]):
        raise _fail(est, "identical rows must get identical outputs")
    json.dumps(fitted.params_)
    if not np.allclose(clone(est).fit_transform(x), z):
        raise _fail(est, "fit_transform must be deterministic under a fixed random_state")
    new = fitted.transform(_blobs(n_per=2, seed=1))
    if new.shape != (6, fitted.n_components_):
        raise _fail(est, "transform must map new rows to n_components_ columns")
    if fitted.transform(np.zeros((0, x.shape[1]))).shape != (0, fitted.n_components_):
        raise _fail(est, "transform of no rows must give an empty n_components_-wide array")
    if not _raises(InvalidInputError, lambda: fitted.transform(x[:, :-1])):
        raise _fail(est, "transform of another width must raise InvalidInputError")


# --------------------------------------------------------------------------- selectors


def _selector_inputs() -> tuple[PoolView, ClusterSpace, Callable[[np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(0)
    n = 40
    ids = np.array([f"p{i:03d}" for i in range(n)])
    logits = rng.normal(size=(n, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = dict(zip(ids.tolist(), rng.integers(0, 3, size=n).tolist(), strict=True))
    pool = PoolView(
        ids=ids,
        probs=probs,
        features=rng.normal(size=(n, 4)).astype(np.float32),
        activations=rng.normal(size=(n, 4)).astype(np.float32),
        reference=ReferenceSet(rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)),
    )
    space = ClusterSpace(
        rng.normal(size=(9, 4)),
        np.array([0, 0, 0, 1, 1, 2, 2, 2, -1]),
        correct=rng.normal(size=(12, 4)),
    )
    return pool, space, lambda chosen: np.array([truth[i] for i in chosen])


def check_selector(selector: type[Selector] | Selector) -> None:
    """The selector contract (:mod:`dnnsafety.selection.selectors`) on a small pool.

    The pool offers everything a selector may declare in ``requires`` (softmax outputs,
    features, activations, a training reference set, clusters with correct inputs, an
    oracle).

    Raises
    ------
    AssertionError
        Naming the first rule the selector breaks.
    """
    est = _build(selector)
    check_estimator_contract(est)
    pool, space, oracle = _selector_inputs()
    requires = getattr(est, "requires", None)
    if requires is not None and not isinstance(requires, frozenset):
        raise _fail(est, "requires must be a frozenset of names")

    if type(est).select is not Selector.select:
        raise _fail(est, "must write _select only; select is the base's template method")

    def run(budget: int, seed: RandomState = 4) -> Selection:
        return clone(est).select(pool, budget, clusters=space, oracle=oracle, random_state=seed)

    a, b = run(6), run(6)
    if not isinstance(a, Selection):
        raise _fail(est, "select must return a Selection")
    if a.ids.tolist() != b.ids.tolist() or a.cost != b.cost:
        raise _fail(est, "select must be deterministic under a fixed random_state")
    if run(6, np.random.default_rng(4)).ids.tolist() != a.ids.tolist():
        raise _fail(est, "random_state=Generator(seed) must select as random_state=seed")
    if not est.seeded and run(6, seed=5).ids.tolist() != a.ids.tolist():
        raise _fail(est, "a selector with seeded = False must ignore random_state")
    for bad in (-1, 1.5, "4"):
        if not _raises(ConfigError, functools.partial(run, 6, bad)):  # type: ignore[arg-type]
            raise _fail(est, f"random_state={bad!r} must raise ConfigError")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = clone(est).select(pool, 6, clusters=space, oracle=oracle, seed=4)
    if old.ids.tolist() != a.ids.tolist():
        raise _fail(est, "the deprecated seed=... must select as random_state=...")
    if not any(issubclass(w.category, FutureWarning) for w in caught):
        raise _fail(est, "the deprecated seed=... must warn (FutureWarning)")
    chosen = a.ids.tolist()
    if len(a) > 6 or a.cost < len(a):
        raise _fail(est, "at most budget inputs, and cost >= the number chosen")
    if not set(chosen) <= set(pool.ids.tolist()) or len(set(chosen)) != len(chosen):
        raise _fail(est, "chosen ids must be distinct pool ids")
    json.dumps(a.info)
    for budget, what in ((0, "a budget of 0"), (len(pool) + 1, "a budget over the pool size")):
        if not _raises(ConfigError, functools.partial(run, budget)):
            raise _fail(est, f"{what} must raise ConfigError")


# --------------------------------------------------------------------------- feature sources


class _ToyNet(nn.Module):
    """A small CNN with BatchNorm (a buffer) and a last linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


def _snapshot(model: nn.Module) -> dict[str, Any]:
    hooks = {}
    for name, module in model.named_modules():
        hooks[name] = tuple(
            len(getattr(module, attr, {}))
            for attr in (
                "_forward_hooks",
                "_forward_pre_hooks",
                "_backward_hooks",
                "_backward_pre_hooks",
                "_state_dict_hooks",
                "_load_state_dict_pre_hooks",
            )
        )
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "hooks": hooks,
        "modules": [(k, type(m)) for k, m in model.named_modules()],
    }


def check_model_restored(model: nn.Module, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Run ``fn(*args, **kwargs)`` and check that ``model`` is left as it was found.

    Parameters, buffers (``state_dict``), ``requires_grad`` flags, every module's training
    flag, the registered hooks and the module tree must be unchanged (zennit's hygiene: a
    change to a user's model happens in a context manager and is undone).

    Returns
    -------
    The result of ``fn``.

    Raises
    ------
    AssertionError
        Naming what changed.
    """
    before = _snapshot(model)
    result = fn(*args, **kwargs)
    after = _snapshot(model)
    if before["modules"] != after["modules"]:
        raise AssertionError("the model's modules were replaced or added")
    for key in before["state"]:
        if key not in after["state"] or not torch.equal(before["state"][key], after["state"][key]):
            raise AssertionError(f"the model's parameter or buffer {key!r} changed")
    for what in ("grad", "training", "hooks"):
        changed = sorted(k for k in before[what] if before[what][k] != after[what].get(k))
        if changed:
            label = {"grad": "requires_grad", "training": "training flag", "hooks": "hooks"}
            raise AssertionError(f"the {label[what]} of {changed} changed")
    return result


def check_feature_source(source: type[FeatureSource] | FeatureSource) -> None:
    """The feature-source contract (:mod:`dnnsafety.features.sources`) on a toy model.

    The source is fitted on a context holding only what it ``requires`` (a small CNN with
    BatchNorm, unlabeled images, the image shape), once with the model in eval mode and once
    in training mode; fit and transform must leave the model as it was
    (:func:`check_model_restored`) and the features must not depend on the model's mode.

    Raises
    ------
    AssertionError
        Naming the first rule the source breaks.
    """
    est = _build(source)
    check_estimator_contract(est)
    requires = getattr(est, "requires", None)
    if not isinstance(requires, frozenset) or not requires <= _SOURCE_NEEDS:
        raise _fail(est, f"requires must be a frozenset of names from {sorted(_SOURCE_NEEDS)}")
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 16, 16, generator=gen)
    unlabeled = torch.rand(24, 3, 16, 16, generator=gen)

    def context_for(model: nn.Module) -> FeatureContext:
        return FeatureContext(
            model=model if "model" in requires else None,
            unlabeled=unlabeled if "unlabeled" in requires else None,
            seed=0,
            extra={"image_shape": (3, 16, 16)} if "image_shape" in requires else {},
        )

    if not _raises(NotFittedError, lambda: clone(est).transform(images)):
        raise _fail(est, "transform before fit must raise NotFittedError")
    torch.manual_seed(0)
    model = _ToyNet().eval()
    context = context_for(model)
    fitted = clone(est)

    def fit_and_transform(source: FeatureSource, ctx: FeatureContext) -> np.ndarray:
        if source.fit(ctx) is not source:
            raise _fail(est, "fit must return self")
        return source.transform(images)

    feats = check_model_restored(model, fit_and_transform, fitted, context)
    if feats.dtype != np.float32 or feats.ndim != 2 or len(feats) != len(images):
        raise _fail(est, "transform must give N x D float32 features")
    if not np.isfinite(feats).all():
        raise _fail(est, "features must be finite")
    again = clone(est).fit(copy.copy(context)).transform(images)
    if not np.allclose(again, feats, atol=1e-5):
        raise _fail(est, "features must be deterministic under a fixed seed")
    if not np.allclose(fitted.transform(images[:2]), feats[:2], atol=1e-5):
        raise _fail(est, "a row's features must not depend on the other rows of the batch")
    if not _raises(InvalidInputError, lambda: fitted.transform(images[0])):
        raise _fail(est, "images of another rank than N x C x H x W must raise InvalidInputError")
    training = copy.deepcopy(model).train()
    in_training = check_model_restored(
        training, fit_and_transform, clone(est), context_for(training)
    )
    if not training.training or not np.allclose(in_training, feats, atol=1e-5):
        raise _fail(est, "features must not depend on the model's training flag")


_SOURCE_NEEDS = frozenset({"model", "unlabeled", "image_shape"})
"""What a feature source may declare in ``requires`` (fields of ``FeatureContext``)."""
