"""Fine-tuning runs of the retraining strategies without new labels, for ``compare``.

:func:`cached_mitigation_run` builds what the mitigation ``requires``
(:func:`mitigation_context`), asks it for a :class:`~dnnsafety.retraining.mitigation.TrainingPlan`,
fine-tunes a copy of the model on it and scores it on the test split as every strategy is
scored; a finished run is saved under ``retraining/runs/`` with a fingerprint and reused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from dnnsafety.exceptions import ConfigError
from dnnsafety.retraining.finetune import TestScore, finetune_plan, score_run
from dnnsafety.retraining.mitigation import CONTEXT_FIELDS, MitigationContext, TrainingPlan
from dnnsafety.retraining.mitigations import MITIGATIONS
from dnnsafety.runs import CONFIG_FILE, fingerprint, write_json
from dnnsafety.selection import SELECTORS
from dnnsafety.sim import SIMULATORS

if TYPE_CHECKING:
    import pandas as pd

    from dnnsafety.config import RetrainConfig
    from dnnsafety.data.dataset import Dataset, Split
    from dnnsafety.pipeline.robust_eval import RobustScorer
    from dnnsafety.pipeline.run import Pipeline

log = logging.getLogger(__name__)

RUNS_DIR = "retraining/runs"
ROBUST_SETTINGS = ("robust", "robust_n")
"""The ``[retrain]`` keys of robust-accuracy measurement (:mod:`dnnsafety.pipeline.robust_eval`)."""


class RetrainSession(Protocol):
    """What these runs read of :class:`dnnsafety.pipeline.retrain.RetrainSession`."""

    pipeline: Pipeline
    config: RetrainConfig
    dataset: Dataset
    samples: pd.DataFrame
    test: Split

    @property
    def original_correct(self) -> np.ndarray: ...

    @property
    def test_clusters(self) -> Mapping[str, int]: ...

    robust: RobustScorer


def is_mitigation(strategy: str) -> bool:
    """Whether ``strategy`` is a retraining strategy without new labels (:data:`MITIGATIONS`)
    rather than a selector."""
    return strategy in MITIGATIONS and strategy not in SELECTORS


def check_strategy(strategy: str) -> None:
    """Raise :class:`ConfigError` naming every strategy when ``strategy`` is neither a selector
    nor a mitigation."""
    if strategy not in SELECTORS and strategy not in MITIGATIONS:
        known = ", ".join([*SELECTORS.names(), *MITIGATIONS.names()])
        raise ConfigError(f"Unknown strategy {strategy!r}. Choose one of: {known}.")


def mitigation_context(session: RetrainSession, strategy: str) -> MitigationContext:
    """What the mitigation ``strategy`` is given: exactly the fields its ``requires`` lists
    (:data:`~dnnsafety.retraining.mitigation.CONTEXT_FIELDS`)."""
    needs = frozenset(MITIGATIONS.get(strategy).requires)
    unknown = sorted(needs - set(CONTEXT_FIELDS))
    if unknown:
        raise ConfigError(
            f"The {strategy} mitigation requires {', '.join(map(repr, unknown))}, which "
            f"nothing builds; a mitigation may require: {', '.join(CONTEXT_FIELDS)}."
        )
    extra: dict[str, Any] = {}
    if "train_features" in needs:
        from dnnsafety.pipeline.spaces import train_features

        extra["train_features"] = train_features(session.pipeline)
    if "pool_features" in needs:
        from dnnsafety.pipeline.spaces import pool_features

        extra["pool_features"] = pool_features(session.pipeline)
    if "train_probs" in needs:
        extra["train_probs"] = train_probs(session)
    if "clusters" in needs:
        from dnnsafety.pipeline.rootcauses import root_causes

        extra["clusters"] = root_causes(session.pipeline)
    return MitigationContext(
        model=session.pipeline.model(),
        train=session.dataset["train"],
        val=session.dataset.splits.get("val"),
        **extra,
    )


def train_probs(session: RetrainSession) -> np.ndarray:
    """The original model's softmax outputs on the training split, ``(N_train, C)``."""
    train = session.samples[session.samples["split"] == "train"].set_index("sample_id")
    cols = [f"prob.{k}" for k in range(session.dataset.num_classes)]
    ids = session.dataset["train"].ids.astype(str)
    if set(cols) <= set(train.columns) and train.index.isin(ids).sum() == len(ids):
        return train.loc[ids, cols].to_numpy(dtype=np.float32)
    from dnnsafety.models.training import predict

    out = predict(session.pipeline.model(), session.dataset["train"].images, desc="predict train")
    return np.asarray(out.probs, dtype=np.float32)


def mitigate(
    session: RetrainSession, strategy: str, seed: int
) -> tuple[torch.nn.Module, TestScore, dict[str, Any], TrainingPlan]:
    """Fine-tune as the mitigation ``strategy`` plans, and score on the test split."""
    t0 = time.perf_counter()
    params = session.config.params.get(strategy, {})
    try:
        mitigation = MITIGATIONS.create(strategy, params)
        plan = mitigation.plan(mitigation_context(session, strategy), random_state=seed)
    except ConfigError as exc:
        if not params:
            raise
        raise ConfigError(f"{exc} {saved_params_hint(session.pipeline, strategy)}") from exc
    reset = None
    if session.config.from_scratch:
        torch.manual_seed(seed)
        reset = session.pipeline.fresh_model()
    model, result = finetune_plan(
        session.pipeline.model(),
        plan,
        session.dataset.splits.get("val"),
        session.config,
        seed,
        reset=reset,
    )
    score = score_run(model, session.test, session.original_correct, session.test_clusters)
    info = {"best_epoch": result.best_epoch, "seconds": time.perf_counter() - t0}
    return model, score, info, plan


def check_mitigation_params(pipeline: Pipeline, strategy: str) -> None:
    """Refuse a ``[retrain.params.<strategy>]`` key the mitigation does not take, or a dataset
    without the simulator it renders images with, before any work (the parameters' values are
    checked when it plans a run).

    Raises
    ------
    ConfigError
        A parameter the mitigation does not take (the message names the valid ones and how
        to replace the saved table), or no simulator for the dataset when it needs one.
    """
    name = pipeline.config.data.name
    if MITIGATIONS.get(strategy).needs_simulator and name not in SIMULATORS:
        raise ConfigError(
            f"The {strategy} strategy renders new images and needs a simulator for the "
            f"dataset, and {name!r} has none: the built-in signs dataset has one; register "
            "yours in dnnsafety.sim.SIMULATORS under your dataset's name."
        )
    params = pipeline.config.retrain.params.get(strategy, {})
    try:
        MITIGATIONS.create(strategy, params)
    except ConfigError as exc:
        raise ConfigError(f"{exc} {saved_params_hint(pipeline, strategy)}") from exc


def saved_params_hint(pipeline: Pipeline, strategy: str) -> str:
    """Where ``[retrain.params.<strategy>]`` lives and how to replace it.

    A ``--set`` value is saved in the run's ``config.toml`` and read again by every later
    command on the run, so a bad one keeps failing until it is replaced.
    """
    given = pipeline.config.retrain.params.get(strategy, {})
    table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in given.items())
    return (
        f"[retrain.params.{strategy}] is {{{table}}}, saved in {pipeline.run / CONFIG_FILE} "
        f"and used by every later command on this run: replace it with "
        f"--set 'retrain.params.{strategy}={{...}}' (the whole table; "
        f"--set 'retrain.params.{strategy}={{}}' for the defaults) or edit that file."
    )


def _effective_params(name: str, given: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(MITIGATIONS.get(name)(**given).get_params())
    except TypeError:  # a parameter it does not take: the plan step says so clearly
        return dict(given)


def run_settings(pipeline: Pipeline) -> dict[str, Any]:
    """The ``[retrain]`` settings a saved run's fingerprint holds: all but how robust accuracy
    is measured, which the fingerprint holds only when it is measured
    (:meth:`~dnnsafety.pipeline.robust_eval.RobustScorer.key`), so that runs scored without it
    are reused whatever ``robust`` says."""
    settings = pipeline.config.section("retrain")
    for key in ROBUST_SETTINGS:
        settings.pop(key, None)
    return settings


def mitigation_key_parts(
    pipeline: Pipeline, session: RetrainSession, name: str
) -> tuple[list[Any], list[Any]]:
    """What a run of the mitigation ``name`` depends on, for its fingerprint, in two parts
    (a run's seed and a tag go between them): the model and data, ``[retrain]``, the
    mitigation's parameters (every one with its default, so a changed default is a new run);
    then the analysis when it reads the root causes, and how robust accuracy is measured."""
    settings = run_settings(pipeline)
    given = settings.get("params", {}).get(name, {})
    head = [pipeline.eval_key, settings, name, given, _effective_params(name, given)]
    analysis = [pipeline.analysis_key] if "clusters" in MITIGATIONS.get(name).requires else []
    return head, [*analysis, *session.robust.key()]


def log_done(step: str, seconds: float, score: TestScore, robust_note: str = "") -> None:
    """The line that ends a fine-tune: its time, test accuracy and robust accuracy if any."""
    log.info(
        "%s: done in %.0fs, test accuracy %.1f%%%s", step, seconds, score.overall * 100, robust_note
    )


def cached_mitigation_run(
    pipeline: Pipeline, session: RetrainSession, name: str, seed: int, step: str
) -> dict[str, Any]:
    """One fine-tuning run of the mitigation ``name``, reused when saved by an earlier run."""
    head, tail = mitigation_key_parts(pipeline, session, name)
    key = fingerprint(*head, seed, "mitigation-run-v2", *tail)
    path = pipeline.run / RUNS_DIR / f"{name}_{seed}_{key[:12]}.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            log.info("%s: reused, saved by an earlier run", step)
            return dict(saved["run"])
    log.info("%s: training with the %s mitigation (no new labels)", step, name)
    model, score, info, plan = mitigate(session, name, seed)
    robust = session.robust.accuracy(model)
    extra = len(plan.labels) - len(session.dataset["train"])
    log_done(step, info["seconds"], score, session.robust.note(robust))
    run = {
        "seed": seed,
        "cost": int(MITIGATIONS.get(name).cost),
        **score.to_dict(),
        **robust,
        **info,
        "extra_images": int(max(extra, 0)),
        "plan": dict(plan.info),
    }
    write_json(path, {"key": key, "run": run})
    return run
