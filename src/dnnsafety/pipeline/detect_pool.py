"""Detector scores over a pool read chunk by chunk, on any executor (METHOD.md §11).

``dnnsafety detect RUN_DIR --pool-store POOL`` scores every image of a pool store (or a
lazily read ``.npz`` / image folder) with the run's saved, calibrated detector
(:func:`dnnsafety.pipeline.detect.detect` fitted it): each task of an
:class:`~dnnsafety.compute.Executor` reads its rows, runs the model (logits, or the feature
source the detector was fitted on) and the detector, and sends back three numbers per image:
the predicted class, its softmax confidence and the detector's score. The client turns scores
into conformal p-values against the saved calibration scores and writes one CSV row per
image. Chunks are fixed row ranges and tasks draw no random numbers, so every scheduler gives
the same file, and the same scores as :func:`~dnnsafety.pipeline.detect.score_folder`.
"""

from __future__ import annotations

import copy
import csv
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.special import softmax
from torch import nn

from dnnsafety.compute import TASK_BATCH, Executor, LocalExecutor, chunk_bounds, tune_allocator
from dnnsafety.detection import Detector, conformal_p_values
from dnnsafety.exceptions import InvalidInputError
from dnnsafety.pipeline.detect import model_logits

if TYPE_CHECKING:
    from dnnsafety.data.pool import PoolSource
    from dnnsafety.features.sources import FeatureSource
    from dnnsafety.pipeline.run import Pipeline

__all__ = ["PoolScores", "score_pool", "score_pool_rows"]

_local = threading.local()


@dataclass
class _ScoreJob:
    """What every task reads (sent once per worker)."""

    images: Any
    model: nn.Module
    detector: Detector
    source: FeatureSource | None
    batch: int = TASK_BATCH
    threads: int | None = None
    tune_allocator: bool = True
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


def _own(job: _ScoreJob) -> tuple[nn.Module, FeatureSource | None]:
    """This thread's copy of the model and feature source (hooks are per object)."""
    cache = getattr(_local, "scorer", None)
    if cache is None or cache[0] != job.token:
        cache = _local.scorer = (
            job.token,
            copy.deepcopy(job.model).eval(),
            copy.deepcopy(job.source),
        )
    return cache[1], cache[2]


def _score_task(chunk: tuple[int, int], job: _ScoreJob) -> np.ndarray:
    """``(stop - start, 3)``: predicted class, confidence and score of rows ``start:stop``."""
    tune_allocator(job.tune_allocator)
    if job.threads and torch.get_num_threads() != job.threads:
        torch.set_num_threads(job.threads)
    start, stop = chunk
    model, source = _own(job)
    images = job.images[start:stop]
    images = images if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    z = model_logits(model, images, job.batch)  # the logits `detect` scores with
    probs = softmax(z, axis=1)
    needs = job.detector.requires
    if "images" in needs:
        x: np.ndarray = images.numpy()
    elif "logits" in needs:
        x = z
    else:
        assert source is not None
        x = np.asarray(source.transform(images), dtype=np.float64)
    scores = job.detector.decision_function(x)
    return np.column_stack([probs.argmax(axis=1), probs.max(axis=1), scores])


@dataclass
class PoolScores:
    """Per-image results of :func:`score_pool_rows`, in pool row order.

    Attributes
    ----------
    prediction
        ``(P,)`` int64 predicted class index.
    confidence
        ``(P,)`` float64 softmax probability of the prediction, in [0, 1].
    score
        ``(P,)`` float64 detector score (higher = more anomalous).
    p_value
        ``(P,)`` float64 conformal p-value against the calibration scores, in (0, 1].
    """

    prediction: np.ndarray
    confidence: np.ndarray
    score: np.ndarray
    p_value: np.ndarray


def score_pool_rows(
    images: Any,
    model: nn.Module,
    detector: Detector,
    source: FeatureSource | None = None,
    *,
    executor: Executor | None = None,
    chunk_size: int = 8192,
    batch_size: int = TASK_BATCH,
    threads: int | None = None,
    allocator: bool = True,
) -> PoolScores:
    """Score ``P`` pool images chunk by chunk with a fitted, calibrated detector.

    Parameters
    ----------
    images
        ``P x C x H x W`` float32 rows in [0, 1], read by slice (a lazy pool's images, an
        array or a tensor). For a cluster scheduler, storage every worker can read.
    model
        The classifier (predictions; logits for logit detectors).
    detector
        A detector after ``fit`` and ``calibrate``.
    source
        The fitted feature source of a feature detector (``None`` for logit and image ones).
    executor, chunk_size, batch_size, threads
        Where the chunks run, rows per task, rows per forward pass, torch threads per task.
    allocator
        Raise glibc's allocator thresholds in every process that runs a task
        (:func:`dnnsafety.compute.tune_allocator`; faster, same results).

    Returns
    -------
    PoolScores

    Raises
    ------
    InvalidInputError
        The detector is not calibrated, or a feature detector comes without its source.
    """
    cal = getattr(detector, "calibration_scores_", None)
    if cal is None:
        raise InvalidInputError(
            "The detector has no calibration scores: call calibrate() (or run `dnnsafety "
            "detect RUN_DIR`) first."
        )
    if "features" in detector.requires and source is None:
        raise InvalidInputError(f"The {detector.name!r} detector needs its feature source.")
    job = _ScoreJob(
        images,
        model,
        detector,
        source,
        batch=batch_size,
        threads=threads,
        tune_allocator=allocator,
    )
    parts = (executor or LocalExecutor()).map(
        _score_task, chunk_bounds(len(images), chunk_size), shared=job, desc="score pool"
    )
    out = np.concatenate(parts) if parts else np.zeros((0, 3))
    return PoolScores(
        prediction=out[:, 0].astype(np.int64),
        confidence=out[:, 1],
        score=out[:, 2],
        p_value=conformal_p_values(np.asarray(cal), out[:, 2]),
    )


def score_pool(
    pipe: Pipeline,
    pool: PoolSource,
    out: Path,
    executor: Executor | None = None,
    batch_size: int = TASK_BATCH,
) -> tuple[int, int]:
    """Score a lazily read pool with the run's saved detector; write a CSV.

    Columns: ``sample_id, prediction, confidence, score, p_value, flag`` (``flag``: p-value
    ``<= alpha`` of ``detection.json``). ``[compute] chunk_size`` sets the rows per task.

    Returns
    -------
    (n_images, n_flagged)

    Raises
    ------
    ArtifactError
        Before ``dnnsafety detect RUN_DIR`` (no ``detection.json``).
    InvalidInputError
        The pool's images do not have the shape the model takes.
    """
    from dnnsafety.detection.persist import load_detector
    from dnnsafety.pipeline.artifacts import Detection, read_artifact
    from dnnsafety.pipeline.detect import DETECTION_DIR, _Inputs

    info = read_artifact(Detection, pipe.run)
    expected = tuple(pipe.dataset.image_shape)
    if tuple(pool.images.shape[1:]) != expected:
        raise InvalidInputError(
            f"The pool {pool.path} holds {'x'.join(map(str, pool.images.shape[1:]))} images; "
            f"the run's model takes {'x'.join(map(str, expected))}."
        )
    det = load_detector(pipe.run / DETECTION_DIR / info.detector)
    inputs = _Inputs(pipe, det, info.features)
    source = inputs.source() if inputs.features is not None else None
    scores = score_pool_rows(
        pool.images,
        pipe.model(),
        det,
        source,
        executor=executor,
        chunk_size=pipe.config.compute.chunk_size,
        batch_size=batch_size,
        allocator=pipe.config.compute.tune_allocator,
    )
    names = pipe.dataset.class_names
    flags = scores.p_value <= info.alpha
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sample_id", "prediction", "confidence", "score", "p_value", "flag"])
        for i, sid in enumerate(np.asarray(pool.ids).tolist()):
            writer.writerow(
                [
                    sid,
                    names[int(scores.prediction[i])],
                    f"{scores.confidence[i]:.6f}",
                    f"{scores.score[i]:.6g}",
                    f"{scores.p_value[i]:.6f}",
                    int(flags[i]),
                ]
            )
    return len(flags), int(flags.sum())
