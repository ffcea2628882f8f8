"""Selection over a pool read chunk by chunk, on any executor (METHOD.md §11).

The pool never lives in memory whole: its images are a lazy row source
(:mod:`dnnsafety.data.pool`), and every pool-scale step runs per chunk of rows as one task
of an :class:`~dnnsafety.compute.Executor`:

* ranking selectors (``entropy``, ``deepgini``, ``margin``): softmax outputs of the chunk,
  its scores, and only its ``budget`` best rows come back (streaming top-k);
* ClosestU (``closest``, ``closest-contrast``): the chunk's features in the analysis space
  (LRP heatmaps at the selected layer, or the black-box feature source), reduced at once to
  its distances to the root-cause clusters' nearest members; the members' features are small
  and go to every worker once;
* ``random`` needs only the ids and runs on the client.

The global step (merge of the top-k lists, or HUDD's quotas and greedy assignment over the
``P x K`` distances) runs on the client, in :mod:`dnnsafety.selection.streaming`. Chunks are
fixed row ranges and tasks draw no random numbers, so the selection is the same on every
scheduler, and the same as the in-memory selectors' on the same images
(``tests/unit/pipeline/test_scale.py``).
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dnnsafety.compute import TASK_BATCH, Executor, LocalExecutor, chunk_bounds, tune_allocator
from dnnsafety.exceptions import ConfigError, InvalidInputError
from dnnsafety.features.chunks import ChunkFeatures
from dnnsafety.selection import SELECTORS, ClusterSpace, PoolView, Selection
from dnnsafety.selection._nearest import Reference, group_min_distances
from dnnsafety.selection.closest import eligible_clusters
from dnnsafety.selection.streaming import (
    chunk_top_k,
    closest_from_distances,
    merge_top_k,
    ranking_selection,
)

if TYPE_CHECKING:
    from dnnsafety.data.pool import PoolSource
    from dnnsafety.pipeline.run import Pipeline

log = logging.getLogger(__name__)

__all__ = ["PoolJob", "chunked_select", "select_from_pool", "supported_strategies"]

_local = threading.local()


@dataclass
class PoolJob:
    """What every task reads (shipped once per worker): the lazy pool images, the model,
    the scorer or the feature step, and the clusters' reference rows."""

    images: Any
    model: nn.Module | None = None
    scorer: Any = None
    k: int = 0
    features: ChunkFeatures | None = None
    reference: Reference | None = None
    groups: np.ndarray | None = None
    n_groups: int = 0
    correct: Reference | None = None
    predict_batch: int = TASK_BATCH
    query_batch: int | None = None
    threads: int | None = None
    tune_allocator: bool = True
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


def _model(job: PoolJob) -> nn.Module | None:
    """This thread's own copy of the job's model (LRP swaps parameters while it runs, so two
    threads must never share one), in eval mode."""
    if job.model is None:
        return None
    cache = getattr(_local, "models", None)
    if cache is None or cache[0] != job.token:
        model = copy.deepcopy(job.model).eval()
        cache = _local.models = (job.token, model)
    return cache[1]


def _prepare_process(job: PoolJob) -> None:
    """This process's allocator setting and torch threads, as the job asks (once each)."""
    tune_allocator(job.tune_allocator)
    if job.threads and torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)


def _softmax(model: nn.Module, images: torch.Tensor, batch: int) -> np.ndarray:
    """Softmax outputs in batches of ``batch`` rows (the batches of
    :func:`~dnnsafety.models.training.predict`, so the values match it)."""
    parts = []
    with torch.inference_mode():
        for lo in range(0, len(images), batch):
            logits = model(images[lo : lo + batch])
            parts.append(torch.softmax(logits.float(), dim=1).numpy())
    return np.concatenate(parts).astype(np.float32, copy=False)


def _ranking_task(chunk: tuple[int, int], job: PoolJob) -> tuple[np.ndarray, np.ndarray]:
    """Scores of pool rows ``start:stop``; only the chunk's ``k`` best come back."""
    _prepare_process(job)
    start, stop = chunk
    model = _model(job)
    assert model is not None
    probs = _softmax(model, job.images[start:stop], job.predict_batch)
    # the ranking selectors score a pool view; the chunk's row numbers stand in for its ids
    view = PoolView(np.arange(start, stop).astype(str).astype(object), probs)
    return chunk_top_k(job.scorer.score(view), start, job.k)


def _distance_task(chunk: tuple[int, int], job: PoolJob) -> tuple[np.ndarray, np.ndarray | None]:
    """Distances of pool rows ``start:stop`` to each cluster (and to the correct inputs)."""
    _prepare_process(job)
    start, stop = chunk
    assert job.features is not None and job.reference is not None and job.groups is not None
    model = _model(job) if job.features.needs_model else None
    feats = job.features(job.images[start:stop], model)
    what = f"pool features (rows {start}:{stop})"
    dist = group_min_distances(
        feats, job.reference, job.groups, job.n_groups, batch_size=job.query_batch, what=what
    )
    d_ok = None
    if job.correct is not None:
        zeros = np.zeros(job.correct.n, dtype=np.int64)
        d_ok = group_min_distances(
            feats, job.correct, zeros, 1, batch_size=job.query_batch, what=what
        )[:, 0]
    return dist, d_ok


def supported_strategies() -> list[str]:
    """Registered selectors the chunked path runs: ranking by softmax scores, ClosestU
    (``space``), and those that need only the ids (``random``)."""
    out = []
    for name in SELECTORS.names():
        cls = SELECTORS.get(name)
        needs: frozenset[str] = getattr(cls, "requires", frozenset())
        ranking = needs == frozenset({"probs"}) and hasattr(cls, "score")
        closest = "space" in needs and needs <= {"space", "correct"}
        if ranking or closest or not needs:
            out.append(name)
    return sorted(out)


def _check_chunks(chunk_size: int, *multiples: int | None) -> None:
    for m in multiples:
        if m and chunk_size % m:
            log.debug(
                "chunk size %d is not a multiple of the batch size %d: the batches differ from "
                "the in-memory path's (the values agree unless the kernels depend on the batch)",
                chunk_size,
                m,
            )


def chunked_select(
    strategy: str,
    budget: int,
    images: Any,
    ids: np.ndarray,
    *,
    model: nn.Module | None = None,
    clusters: ClusterSpace | None = None,
    features: ChunkFeatures | None = None,
    params: dict[str, Any] | None = None,
    executor: Executor | None = None,
    chunk_size: int = 8192,
    random_state: int = 0,
    predict_batch: int = TASK_BATCH,
    query_batch: int | None = 2048,
    threads: int | None = None,
    allocator: bool = True,
) -> tuple[Selection, np.ndarray]:
    """Select ``budget`` pool inputs with ``strategy``, reading the pool chunk by chunk.

    Parameters
    ----------
    strategy
        A selector of :func:`supported_strategies` (``entropy``, ``closest``, ...).
    budget
        Labels to spend, ``1..len(ids)``.
    images
        The pool's images, ``P x C x H x W`` rows read by slice (a
        :class:`~dnnsafety.data.pool.LazyImagesBase`, an array or a tensor). For a cluster
        scheduler it must read from storage every worker sees (a pool store on shared disk).
    ids
        ``(P,)`` unique pool ids, in row order.
    model
        The classifier (ranking selectors; heatmap features).
    clusters
        The root-cause clusters in the analysis space (ClosestU); ``clusters.correct`` for
        ``closest-contrast``.
    features
        The per-chunk feature step of that space (ClosestU).
    params
        Selector parameters (``{"f": 2.0}``).
    executor
        Where the chunks run (default: in this process).
    chunk_size
        Pool rows per task; a multiple of ``predict_batch``, of the heatmaps' batch size and
        of ``query_batch`` keeps the values bit-identical to the in-memory path.
    random_state
        Seed of the ``random`` selector.
    predict_batch, query_batch
        Rows per forward pass (:data:`~dnnsafety.compute.TASK_BATCH`: why 256) and per
        distance block.
    threads
        Torch threads per task (``None``: leave as is). Set 1 when several tasks share cores.
    allocator
        Raise glibc's allocator thresholds in every process that runs a task
        (:func:`dnnsafety.compute.tune_allocator`; faster, same results).

    Returns
    -------
    tuple
        The :class:`Selection` (what the in-memory selector returns on the same images) and
        the chosen pool rows.

    Raises
    ------
    ConfigError
        An unsupported strategy or a bad budget.
    InvalidInputError
        Missing model, clusters or features for the strategy; images and ids of other lengths.
    """
    ids = np.asarray(ids)
    n = len(ids)
    if len(images) != n:
        raise InvalidInputError(f"The pool has {len(images)} images but {n} ids.")
    if strategy not in supported_strategies():
        raise ConfigError(
            f"The {strategy} strategy does not run on a chunked pool; use one of "
            f"{', '.join(supported_strategies())}."
        )
    cls = SELECTORS.get(strategy)
    selector = cls(**(params or {}))
    needs: frozenset[str] = getattr(cls, "requires", frozenset())
    if budget < 1 or budget > n or isinstance(budget, bool):
        raise ConfigError(f"The labelling budget must be between 1 and the pool size ({n}).")
    executor = executor or LocalExecutor()
    chunks = chunk_bounds(n, chunk_size)
    if not needs:
        sel = selector.select(PoolView(ids), budget, random_state=random_state)
        pos = {str(s): i for i, s in enumerate(ids.tolist())}
        return sel, np.array([pos[str(s)] for s in sel.ids], dtype=np.int64)
    if model is None and (needs == {"probs"} or (features is not None and features.needs_model)):
        raise InvalidInputError(f"The {strategy} strategy on a chunked pool needs the model.")
    if needs == {"probs"}:
        _check_chunks(chunk_size, predict_batch)
        job = PoolJob(
            images,
            model,
            scorer=selector,
            k=budget,
            predict_batch=predict_batch,
            threads=threads,
            tune_allocator=allocator,
        )
        parts = executor.map(_ranking_task, chunks, shared=job, desc=f"{strategy}: score pool")
        scores, rows = merge_top_k(parts, budget)
        return ranking_selection(strategy, ids, scores, rows, budget), rows
    if clusters is None or features is None:
        raise InvalidInputError(
            f"The {strategy} strategy needs the root-cause clusters and the feature step of "
            "their space (clusters=ClusterSpace(...), features=LayerHeatmaps(...))."
        )
    cluster_ids, _ = eligible_clusters(clusters.labels)
    if len(cluster_ids) == 0:
        raise InvalidInputError(
            "ClosestU needs at least one root-cause cluster with 2 or more members."
        )
    contrast = "correct" in needs
    if contrast and clusters.correct is None:
        raise InvalidInputError(f"The {strategy} strategy needs ClusterSpace.correct.")
    member = np.isin(clusters.labels, cluster_ids)
    _check_chunks(chunk_size, query_batch, getattr(features, "batch_size", None))
    job = PoolJob(
        images,
        model if features.needs_model else None,
        features=features,
        reference=Reference(np.asarray(clusters.features[member]), "cluster members"),
        groups=np.searchsorted(cluster_ids, clusters.labels[member]),
        n_groups=len(cluster_ids),
        correct=Reference(np.asarray(clusters.correct), "correct inputs") if contrast else None,
        query_batch=query_batch,
        threads=threads,
        tune_allocator=allocator,
    )
    results = executor.map(_distance_task, chunks, shared=job, desc=f"{strategy}: pool distances")
    dist = np.concatenate([r[0] for r in results])
    d_ok = np.concatenate([r[1] for r in results]) if contrast else None
    f = float(selector.get_params().get("f", 2.0))
    return closest_from_distances(
        strategy,
        ids,
        dist,
        clusters.labels,
        budget,
        f=f,
        d_ok=d_ok,
        n_correct=len(clusters.correct) if contrast else None,
    )


def select_from_pool(
    pipeline: Pipeline,
    strategy: str,
    pool: PoolSource,
    budget: int,
    seed: int,
    executor: Executor | None = None,
) -> tuple[Selection, np.ndarray]:
    """Select from a lazily read pool (a store, ``.npz`` or folder) for a run folder's model.

    The run folder gives the model and, for ClosestU, the root-cause clusters and the
    feature step of the analysis space (:meth:`~dnnsafety.pipeline.analyze.Analysis.chunked_space`);
    the run's own pool split is not used. ``[compute] chunk_size`` sets the rows per task.

    Raises
    ------
    InvalidInputError
        The pool's images do not have the shape the model takes.
    ConfigError, RunDirError
        An unsupported strategy; no analysis for a cluster strategy.
    """
    from dnnsafety.pipeline.analyze import analysis_of
    from dnnsafety.pipeline.spaces import correct_reference, load_clusters
    from dnnsafety.pipeline.strategies import requirements, selector_params

    expected = tuple(pipeline.dataset.image_shape)
    if tuple(pool.images.shape[1:]) != expected:
        raise InvalidInputError(
            f"The pool {pool.path} holds {'x'.join(map(str, pool.images.shape[1:]))} images; "
            f"the run's model takes {'x'.join(map(str, expected))}."
        )
    params: dict[str, Any] = dict(selector_params(strategy, pipeline.config.retrain.params))
    needs = requirements(strategy, params)
    clusters = None
    features = None
    if "space" in needs:
        data = load_clusters(pipeline).to_json()
        params.setdefault("f", pipeline.config.retrain.quota_factor)
        space = analysis_of(data).chunked_space(pipeline, data)
        correct = correct_reference(pipeline) if "correct" in needs else None
        clusters = ClusterSpace(space.error_features, space.labels, correct=correct)
        features = space.features
    use_model = "probs" in needs or (features is not None and features.needs_model)
    return chunked_select(
        strategy,
        budget,
        pool.images,
        pool.ids,
        model=pipeline.model() if use_model else None,
        clusters=clusters,
        features=features,
        params=params,
        executor=executor,
        chunk_size=pipeline.config.compute.chunk_size,
        random_state=seed,
        allocator=pipeline.config.compute.tune_allocator,
    )
