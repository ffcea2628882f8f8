"""Selection + labelling + retraining of one run folder, for one or several strategies.

:class:`RetrainSession` gathers what the strategies need, once, and builds for each exactly
what its selector's ``requires`` lists (:data:`~dnnsafety.pipeline.strategies.REQUIREMENTS`:
the pool's softmax outputs, the analysis feature space with the root-cause clusters, correctly
classified inputs in it, the training activations), then :meth:`RetrainSession.select` draws
an unsafe set, :meth:`RetrainSession.bag` labels it (oracle or the user's labels) and
balances it, and :meth:`RetrainSession.retrain` fine-tunes and scores a model.
:func:`compare` runs strategies x seeds side by side and writes ``comparison.json`` (shape in
``docs/retraining.md``). Every finished retraining run is saved under ``retraining/runs/``
with a fingerprint, so a rerun after Ctrl-C or a crash continues with the runs still missing.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from dnnsafety.data.dataset import reveal_labels
from dnnsafety.evaluation.retraining import add_versus, summarize_runs
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.pipeline.artifacts import Comparison, StrategyResult, write_artifact
from dnnsafety.pipeline.mitigate import (
    cached_mitigation_run,
    check_mitigation_params,
    check_strategy,
    is_mitigation,
    log_done,
    run_settings,
)
from dnnsafety.pipeline.robust_eval import RobustEval, RobustScorer, robust_eval
from dnnsafety.pipeline.strategies import requirements, selector_params
from dnnsafety.retraining.balance import bag_for
from dnnsafety.retraining.finetune import TestScore, finetune, score_predictions, score_run
from dnnsafety.runs import fingerprint, write_json
from dnnsafety.selection import SELECTORS, ClusterSpace, PoolView, ReferenceSet, Selection

if TYPE_CHECKING:
    from dnnsafety.data.pool import PoolSource
    from dnnsafety.pipeline.run import Pipeline

log = logging.getLogger(__name__)

COMPARISON_FILE = Comparison.FILE
RUNS_DIR = "retraining/runs"
DEFAULT_BUDGET_SHARE = 0.03


class RetrainSession:
    """Everything the strategies of one run folder share (computed lazily, once)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.config = pipeline.config.retrain
        self.dataset = pipeline.dataset
        if "pool" not in self.dataset.splits or len(self.dataset["pool"]) == 0:
            raise ConfigError(
                "Retraining selects from the unlabeled pool, and this dataset has none. Give "
                "it a 'pool' split (image folders: root/pool/...; npz: x_pool)."
            )
        self.pool = self.dataset["pool"]
        self.test = self.dataset["test"]
        samples = pipeline.run.read_samples()
        self.samples = samples
        self._selections: dict[tuple[str, int, int | None], Selection] = {}
        self.robust = RobustScorer(None, self.test)
        """Robust accuracy of each model, when ``compare`` measures it (:func:`robust_eval`)."""

    # -- shared inputs -------------------------------------------------------------------
    def budget(self, budget: int | None) -> int:
        """The labelling budget: given, configured, or 3% of the pool."""
        if budget is None:
            budget = self.config.budget or math.ceil(DEFAULT_BUDGET_SHARE * len(self.pool))
        value = budget
        if value < 1 or value > len(self.pool):
            raise ConfigError(
                f"The labelling budget must be between 1 and the pool size ({len(self.pool)}). "
                f"Got {value}."
            )
        return int(value)

    @functools.cached_property
    def original_correct(self) -> np.ndarray:
        test = self.samples[self.samples["split"] == "test"].set_index("sample_id")
        return test.loc[self.test.ids.astype(str), "correct"].astype(bool).to_numpy()

    @functools.cached_property
    def test_clusters(self) -> dict[str, int]:
        """Test error id -> cluster id of the analysis (noise and other rows excluded)."""
        if "cluster" not in self.samples.columns:
            return {}
        part = self.samples[(self.samples["split"] == "test") & self.samples["cluster"].notna()]
        return {
            str(s): int(c)
            for s, c in zip(part["sample_id"], part["cluster"], strict=True)
            if int(c) >= 0
        }

    @functools.cached_property
    def pool_probs(self) -> np.ndarray:
        pool = self.samples[self.samples["split"] == "pool"].set_index("sample_id")
        cols = [f"prob.{k}" for k in range(self.dataset.num_classes)]
        return pool.loc[self.pool.ids.astype(str), cols].to_numpy(dtype=np.float32)

    @functools.cached_property
    def space(self) -> Any:
        from dnnsafety.pipeline.spaces import analysis_space

        return analysis_space(self.pipeline)

    @functools.cached_property
    def correct_reference(self) -> Any:
        from dnnsafety.pipeline.spaces import correct_reference

        return correct_reference(self.pipeline)

    @functools.cached_property
    def activations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from dnnsafety.pipeline.spaces import activation_reference

        return activation_reference(self.pipeline)

    def pool_view(
        self, strategy: str, params: Mapping[str, Any] | None = None
    ) -> tuple[PoolView, ClusterSpace | None]:
        """The pool as the strategy sees it, and the clusters when it uses them: exactly what
        its selector ``requires`` with the parameters ``params``."""
        needs = requirements(strategy, params)
        probs = self.pool_probs if "probs" in needs else None
        features = None
        clusters = None
        activations = None
        reference = None
        if "space" in needs:
            space = self.space
            features = space.pool_features
            correct = self.correct_reference if "correct" in needs else None
            clusters = ClusterSpace(space.error_features, space.labels, correct=correct)
        if "activations" in needs:
            train_feats, train_labels, pool_feats = self.activations
            activations = pool_feats
            reference = ReferenceSet(train_feats, train_labels)
        view = PoolView(
            self.pool.ids.astype(str),
            probs,
            features=features,
            activations=activations,
            reference=reference,
        )
        return view, clusters

    def oracle(self, ids: np.ndarray) -> np.ndarray:
        """Labels of pool ids from the held-back ground truth (experiments only)."""
        labels = reveal_labels(self.pool, [str(s) for s in ids])
        return np.array([labels[str(s)] for s in ids], dtype=np.int64)

    # -- steps ----------------------------------------------------------------------------
    def select(self, strategy: str, budget: int, seed: int) -> Selection:
        """Draw the unsafe set of ``strategy`` with ``budget`` labels (drawn once for all seeds
        when the selector ignores the seed)."""
        params: dict[str, Any] = {}
        cls = SELECTORS.get(strategy)
        memo = (strategy, budget, seed if getattr(cls, "seeded", True) else None)
        if memo in self._selections:
            return self._selections[memo]
        if "space" in requirements(strategy):
            from dnnsafety.pipeline.spaces import load_clusters

            if "f" in inspect.signature(cls).parameters:  # a quota factor (not Cluster-Margin)
                params["f"] = self.config.quota_factor
            sizes = load_clusters(self.pipeline).sizes()
            if not any(n >= 2 for n in sizes):
                raise ConfigError(
                    "The analysis found no root-cause cluster with 2 or more members to select "
                    "for (no errors, or all noise); try another --cluster, or a baseline "
                    "strategy such as entropy."
                )
        params.update(selector_params(strategy, self.config.params))
        view, clusters = self.pool_view(strategy, params)
        selection = cls(**params).select(
            view, budget, clusters=clusters, oracle=self.oracle, random_state=seed
        )
        self._selections[memo] = selection
        return selection

    def bag(
        self,
        selection: Selection,
        seed: int,
        size: int = 0,
        labels: Mapping[str, int] | None = None,
        pool: PoolSource | None = None,
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Images and labels of the retraining bag of ``selection``.

        The bag is balanced for selections with clusters (re-drawn per ``seed``); a bag
        smaller than ``size`` is topped up by drawing from its own inputs uniformly with
        replacement, so every strategy retrains on the same number of extra images. The
        images come from the run's pool split, or from ``pool`` (a lazily read pool store,
        ``.npz`` or folder: only the bag's rows are read) when the selection was made there.
        """
        rng = np.random.default_rng(seed)
        if not len(selection.ids):  # the no-new-data control
            return self.pool.images[:0], np.zeros(0, dtype=np.int64)
        ids = bag_for(selection, rng, balance=self.config.balance)
        if size > len(ids) and len(ids):
            ids = np.concatenate([ids, rng.choice(ids, size - len(ids), replace=True)])
        if labels is None:
            y = self.oracle(ids)
        else:
            y = np.array([labels[str(s)] for s in ids], dtype=np.int64)
        if pool is not None:
            where = {sid: i for i, sid in enumerate(np.asarray(pool.ids).astype(str).tolist())}
            missing = [str(s) for s in ids if str(s) not in where]
            if missing:
                raise InvalidInputError(
                    f"The pool {pool.path} has no images with ids {', '.join(missing[:5])}; "
                    "pass the pool the selection was made from."
                )
            rows = np.array([where[str(s)] for s in ids], dtype=np.int64)
            return torch.as_tensor(pool.images.take(rows)), y
        pos = {sid: i for i, sid in enumerate(self.pool.ids.astype(str).tolist())}
        idx = torch.tensor([pos[str(s)] for s in ids], dtype=torch.long)
        return self.pool.images[idx], y

    def retrain(
        self, bag_images: torch.Tensor, bag_labels: np.ndarray, seed: int
    ) -> tuple[torch.nn.Module, TestScore, dict[str, Any]]:
        """Fine-tune on train + bag and score on the test split."""
        t0 = time.perf_counter()
        reset = None
        if self.config.from_scratch:
            torch.manual_seed(seed)
            reset = self.pipeline.fresh_model()
        model, result = finetune(
            self.pipeline.model(),
            self.dataset["train"],
            bag_images,
            bag_labels,
            self.dataset.splits.get("val"),
            self.config,
            seed,
            reset=reset,
        )
        score = score_run(model, self.test, self.original_correct, self.test_clusters)
        info = {"best_epoch": result.best_epoch, "seconds": time.perf_counter() - t0}
        return model, score, info

    def save_model(self, model: torch.nn.Module, strategy: str) -> list[Path]:
        """Keep ``model`` in ``retrained/<strategy>/`` in the user's format, with the run's
        class order (:func:`~dnnsafety.retraining.export.save_retrained`); the files written."""
        from dnnsafety.retraining.export import save_retrained

        pipeline = self.pipeline
        order = pipeline.class_order
        return save_retrained(
            model,
            pipeline.run / "retrained" / strategy,
            strategy,
            pipeline.support,
            pipeline.config.model.weights,
            self.test.images[:64],
            None if order is None else order.names,
        )

    def record_selection(self, name: str, selection: Selection) -> None:
        """Column ``selected.<name>`` of ``samples.parquet``: selection rank per pool input."""
        _record_selections(self.pipeline, {name: [selection]})

    def original_score(self) -> TestScore:
        correct = self.original_correct
        return score_predictions(correct, self.test, None, self.test_clusters)


def compare(
    pipeline: Pipeline,
    strategies: Sequence[str],
    budget: int | None = None,
    seeds: int | None = None,
    control: bool = True,
    bag_size: int | None = None,
) -> dict[str, Any]:
    """Run every strategy ``seeds`` times at one labelling budget; write ``comparison.json``.

    With ``control``, the same fine-tuning also runs without any new image (train only, same
    seeds): the part of a strategy's gain that comes from fine-tuning itself, not from the
    images it chose, is then visible (``comparison.json`` ``control``). Every bag is topped
    up to the largest bag any strategy produced, or to ``bag_size`` if that is larger.
    """
    robust = check_comparison(pipeline, strategies)
    if bag_size is not None and (
        isinstance(bag_size, bool) or not isinstance(bag_size, int) or bag_size < 0
    ):
        raise ConfigError(f"The 'bag_size' parameter must be an int >= 0. Got {bag_size!r}.")
    # 0 is an error, not "the default": only None means the configured number of runs
    n_seeds = pipeline.config.retrain.seeds if seeds is None else seeds
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ConfigError(f"The 'seeds' parameter must be an int >= 1. Got {n_seeds!r}.")
    session = RetrainSession(pipeline)
    session.robust = RobustScorer(robust, session.test)
    n_budget = session.budget(budget)
    base_seed = pipeline.config.seed
    seed_list = [base_seed + i for i in range(n_seeds)]
    original = session.original_score()
    original_robust = session.robust.accuracy(pipeline.model())
    n_finetunes = (len(strategies) + int(control)) * n_seeds
    log.info(
        "compare: %d strateg%s%s x %d seed(s) = %d fine-tunes of %d epoch(s) each",
        len(strategies),
        "y" if len(strategies) == 1 else "ies",
        " + the no-new-labels control" if control else "",
        n_seeds,
        n_finetunes,
        session.config.epochs,
    )
    selections: dict[str, list[Selection]] = {}
    label_based = [name for name in strategies if not is_mitigation(name)]
    for i, name in enumerate(label_based, 1):
        log.info("selection %d/%d: %s, %d labels", i, len(label_based), name, n_budget)
        selections[name] = [session.select(name, n_budget, s) for s in seed_list]
    bag_size = max(
        [bag_size or 0]
        + [
            len(bag_for(sel, np.random.default_rng(0), balance=session.config.balance))
            for runs in selections.values()
            for sel in runs
        ]
    )
    _record_selections(pipeline, selections)
    entries: dict[str, dict[str, Any]] = {}
    steps = iter(range(1, n_finetunes + 1))

    def step(name: str, seed: int) -> str:
        return f"fine-tune {next(steps)}/{n_finetunes} ({name}, seed {seed})"

    for name in strategies:
        if is_mitigation(name):
            runs = [
                cached_mitigation_run(pipeline, session, name, s, step(name, s)) for s in seed_list
            ]
            entries[name] = {
                "cost": int(runs[0]["cost"]),
                "bag_size": int(max(r.get("extra_images", 0) for r in runs)),
                "runs": runs,
                "summary": summarize_runs(runs),
            }
            continue
        runs = []
        for seed, sel in zip(seed_list, selections[name], strict=True):
            runs.append(_cached_run(pipeline, session, name, sel, seed, bag_size, step(name, seed)))
        entries[name] = {
            "cost": int(max(sel.cost for sel in selections[name])),
            "bag_size": bag_size,
            "runs": runs,
            "summary": summarize_runs(runs),
        }
    add_versus(entries)
    baseline = None
    if control:
        empty = Selection(np.zeros(0, dtype=object), 0)
        runs = [
            _cached_run(pipeline, session, "control", empty, s, 0, step("no new labels", s))
            for s in seed_list
        ]
        baseline = StrategyResult(cost=0, bag_size=0, runs=runs, summary=summarize_runs(runs))
    comparison = Comparison(
        budget=n_budget,
        bag_size=bag_size,
        seeds=seed_list,
        scenarios=sorted(original.per_scenario),
        clusters=sorted(int(c) for c in original.per_cluster),
        original={**original.to_dict(), **original_robust},
        strategies={name: StrategyResult(**entry) for name, entry in entries.items()},
        # the strategies compared, not the configured default list
        settings={**pipeline.config.section("retrain"), "strategies": list(strategies)},
        control=baseline,
        robust=None if session.robust.spec is None else session.robust.spec.to_dict(),
    )
    write_artifact(pipeline.run, comparison)
    return comparison.to_json()


def check_comparison(
    pipeline: Pipeline, strategies: Sequence[str], announce: bool = True
) -> RobustEval | None:
    """Check a comparison's strategies and settings before any work; how it measures robust
    accuracy (:func:`~dnnsafety.pipeline.robust_eval.robust_eval`).

    Raises
    ------
    ConfigError
        No strategy, an unknown one, a parameter a mitigation does not take (naming where
        the saved table lives), a model that cannot be fine-tuned, or a bad ``[retrain]
        robust`` setting.

    ``announce=False`` for a check before the comparison itself (which says once that robust
    accuracy is off, :func:`~dnnsafety.pipeline.robust_eval.robust_eval`).
    """
    if not strategies:
        raise ConfigError("Name at least one strategy to compare, e.g. closest,random.")
    for name in strategies:
        check_strategy(name)  # unknown names fail before any work
        if is_mitigation(name):  # so do parameters a mitigation does not take
            check_mitigation_params(pipeline, name)
    pipeline.check_supported("compare", tuple(strategies))  # e.g. an ONNX model
    return robust_eval(pipeline, strategies, announce=announce)


def _cached_run(
    pipeline: Pipeline,
    session: RetrainSession,
    name: str,
    selection: Selection,
    seed: int,
    bag_size: int,
    step: str = "",
) -> dict[str, Any]:
    step = step or f"retraining run {name} seed {seed}"
    settings = run_settings(pipeline)
    if selection.cluster is None:
        # balancing applies only to selections with clusters: baselines and the control give
        # the same run whatever retrain.balance says, so they share one cache entry
        settings["balance"] = True
    key = fingerprint(
        pipeline.analysis_key,
        settings,
        name,
        seed,
        bag_size,
        selection.ids.tolist(),
        "retrain-run-v1",
        *session.robust.key(),
    )
    # the key is in the name: runs of other settings in the same folder are kept, not replaced
    path = pipeline.run / RUNS_DIR / f"{name}_{seed}_{key[:12]}.json"
    # before the key was in the name, runs were saved as <name>_<seed>.json: still valid
    # when their key matches
    for candidate in (path, pipeline.run / RUNS_DIR / f"{name}_{seed}.json"):
        if candidate.is_file():
            saved = json.loads(candidate.read_text(encoding="utf-8"))
            if saved.get("key") == key:
                log.info("%s: reused, saved by an earlier run", step)
                return dict(saved["run"])
    log.info("%s: training on train + %d new images", step, bag_size)
    images, labels = session.bag(selection, seed, size=bag_size)
    model, score, info = session.retrain(images, labels, seed)
    robust = session.robust.accuracy(model)
    log_done(step, info["seconds"], score, session.robust.note(robust))
    run = {"seed": seed, "cost": int(selection.cost), **score.to_dict(), **robust, **info}
    write_json(path, {"key": key, "run": run})
    return run


def _record_selections(pipeline: Pipeline, selections: Mapping[str, list[Selection]]) -> None:
    """Column ``selected.<strategy>``: rank of each pool input in the first seed's selection."""
    columns = {}
    for name, runs in selections.items():
        sel = runs[0]
        columns[f"selected.{name}"] = pd.Series(
            np.arange(len(sel.ids)), index=[str(s) for s in sel.ids], dtype="Int64"
        )
    frame = pd.DataFrame(columns)
    pipeline.run.add_columns(frame)
