"""Simulated traffic-sign pools of any size, written straight into a pool store.

The pool is rendered chunk by chunk (each chunk is one task on the executor, so a cluster
renders in parallel) and never held in memory whole. Chunk ``i`` draws its parameters and its
rendering noise from its own seeds (``SeedSequence(seed, spawn_key=(i,))``), so the store is
the same whichever scheduler rendered it; it is *not* the same pool as the ``signs`` dataset's
in-memory pool split (that one draws all parameters from one generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnnsafety._validation import check_int
from dnnsafety.compute import Executor, LocalExecutor
from dnnsafety.data.pool.store import PoolStore, PoolStoreWriter, write_rows
from dnnsafety.exceptions import ConfigError
from dnnsafety.sim import PARAMETER_COLUMNS, SIGN_CLASSES, ScenarioConfig, render_signs
from dnnsafety.sim import sample_parameters as _sample

__all__ = ["write_signs_pool"]


@dataclass(frozen=True)
class _SignsJob:
    path: str
    n: int
    seed: int
    size: int
    config: ScenarioConfig
    width: int


def _chunk_seeds(seed: int, index: int) -> tuple[np.random.Generator, int]:
    params, render = np.random.SeedSequence(entropy=seed, spawn_key=(index,)).spawn(2)
    return np.random.default_rng(params), int(render.generate_state(1, np.uint32)[0])


def _render_chunk(chunk: tuple[int, int, int], job: _SignsJob) -> int:
    """Render rows ``start:stop`` (chunk ``index``) and write them into the store."""
    index, start, stop = chunk
    rng, render_seed = _chunk_seeds(job.seed, index)
    params = _sample(stop - start, "pool", job.config, rng, len(SIGN_CLASSES))
    images = render_signs(params, size=job.size, seed=render_seed, num_threads=1)
    ids = [f"signs-pool-{i:0{job.width}d}" for i in range(start, stop)]
    meta = params.drop(columns=["label", "scenario"])
    write_rows(
        job.path,
        start,
        images,
        ids,
        params["label"].to_numpy(),
        params["scenario"].to_numpy(dtype=object),
        meta,
    )
    return stop - start


def write_signs_pool(
    path: str | Path,
    n: int,
    *,
    seed: int = 0,
    size: int = 32,
    dtype: str = "uint8",
    chunk_rows: int = 4096,
    task_rows: int | None = None,
    config: ScenarioConfig | None = None,
    executor: Executor | None = None,
    overwrite: bool = False,
) -> PoolStore:
    """Render ``n`` pool images of the traffic-sign simulator into a new pool store.

    Parameters
    ----------
    path
        The store folder to create.
    n
        Number of images (>= 1).
    seed
        Pool seed; chunk ``i`` is seeded from ``(seed, i)``.
    size
        Image side in pixels.
    dtype
        Stored pixel type (``uint8``: 3 KiB per 32 x 32 RGB image; ``float32``: 12 KiB).
    chunk_rows
        Rows per store chunk.
    task_rows
        Rows per rendering task (a multiple of ``chunk_rows``; default ``2 * chunk_rows``).
        Memory per task is about ``task_rows x 3 x size x size x 4`` bytes. Each task draws
        from its own seeds, so the pool depends on it: keep it fixed to get the same pool.
    config
        Scenario frequencies (the pool split's are used); default :class:`ScenarioConfig`.
    executor
        Where the tasks run (default: in this process).
    overwrite
        Replace an existing store.

    Returns
    -------
    PoolStore
        The complete store, with held-back labels, scenario tags and the rendering parameters
        as metadata.

    Raises
    ------
    ConfigError
        Bad sizes (``task_rows`` not a multiple of ``chunk_rows``), or ``path`` exists.
    """
    n = check_int("n", n, 1)
    size = check_int("size", size, 8, 256)
    chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    task = chunk_rows * 2 if task_rows is None else check_int("task_rows", task_rows, 1)
    if task % chunk_rows:
        raise ConfigError(
            f"task_rows ({task}) must be a multiple of chunk_rows ({chunk_rows}): parallel "
            "writers must each fill whole store chunks."
        )
    config = config or ScenarioConfig()
    probe = _sample(1, "pool", config, np.random.default_rng(0), len(SIGN_CLASSES))
    meta = {
        c: "str" if probe[c].dtype == object else str(probe[c].dtype) for c in PARAMETER_COLUMNS
    }
    writer = PoolStoreWriter(
        path,
        n,
        (3, size, size),
        dtype=dtype,
        chunk_rows=chunk_rows,
        class_names=tuple(SIGN_CLASSES),
        labels=True,
        scenarios=True,
        meta=meta,
        overwrite=overwrite,
    )
    job = _SignsJob(str(path), n, int(seed), size, config, max(6, len(str(n - 1))))
    chunks = [(i, a, min(a + task, n)) for i, a in enumerate(range(0, n, task))]
    written = (executor or LocalExecutor()).map(
        _render_chunk, chunks, shared=job, desc="render pool"
    )
    if sum(written) != n:  # pragma: no cover - every task returns its row count
        raise ConfigError(f"Wrote {sum(written)} of {n} rows.")
    return writer.finish()
