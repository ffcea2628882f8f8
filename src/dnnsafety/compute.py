"""Where chunked work runs: in this process, or as Dask tasks (METHOD.md §11).

Pool-scale steps (softmax outputs, heatmaps or backbone features, nearest-cluster distances,
uncertainty scores) are embarrassingly parallel over chunks of rows of the pool. Stage code
writes one function ``fn(chunk, shared)`` and hands it to an :class:`Executor`::

    with make_executor("threads") as executor:
        parts = executor.map(score_chunk, chunk_bounds(len(rows), 8192), shared=job)

:meth:`Executor.map` returns the results **in chunk order**, whatever the scheduler; the
chunks are fixed by the caller (never by the scheduler), and any randomness inside a task must
be seeded from the chunk (:func:`chunk_seed`), so every scheduler gives the same result.

Schedulers (``[compute] scheduler`` in the run configuration, ``--scheduler`` on the command
line):

``local``
    A plain loop in this process (the default; no Dask needed).
``threads``, ``processes``, ``synchronous``
    Dask's local schedulers (:func:`dask.compute`); ``workers`` threads or processes.
``tcp://host:port`` (any ``<protocol>://`` address)
    A running ``distributed`` scheduler (``dask scheduler`` + ``dask worker``, or a
    :class:`distributed.LocalCluster`). ``shared`` is sent once to every worker
    (``Client.scatter(..., broadcast=True)``); the chunks are sent as tasks and the workers
    read the rows themselves, so the pool must be on storage every worker can read.

Dask is imported only when a Dask scheduler is used.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from dnnsafety.exceptions import ConfigError
from dnnsafety.progress import progress_bar

log = logging.getLogger(__name__)

__all__ = [
    "LOCAL_SCHEDULERS",
    "TASK_BATCH",
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "chunk_bounds",
    "chunk_seed",
    "is_address",
    "make_executor",
    "tune_allocator",
]

C = TypeVar("C")
R = TypeVar("R")

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
"""Dask's single-machine schedulers, by the names :func:`dask.compute` takes."""

INSTALL_HINT = "`.venv/bin/pip install dask distributed`"

ALLOCATOR_THRESHOLD = 1 << 30
"""Bytes below which glibc keeps freed blocks in the process (see :func:`tune_allocator`)."""

TASK_BATCH = 256
"""Rows per forward pass inside a chunk task. A Dask worker runs tasks in a thread, whose
glibc arena grows heaps of at most 64 MB: a larger block (a small CNN's first activation at
512 rows of 32 x 32 images is 64 MB) is mapped afresh for every layer whatever
:func:`tune_allocator` sets. 256 rows keep it at 32 MB (a chunk on a worker: 6.3 s at 512
rows, 4.1 s at 256; ``benchmarks/results/allocator*.md``)."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_allocator_tuned: bool | None = None


def tune_allocator(enabled: bool = True) -> bool:
    """Let glibc's ``malloc`` reuse large freed blocks instead of unmapping them, once per
    process (``[compute] tune_allocator``; on by default).

    A forward pass over a batch of 512 images allocates and frees tensors of tens of MB per
    layer. glibc serves blocks above ``M_MMAP_THRESHOLD`` (at most 32 MB, and 128 kB fixed
    whenever ``MALLOC_TRIM_THRESHOLD_`` is set, as Dask's nanny does for every worker) with
    fresh ``mmap`` calls, so every layer of every batch pays page faults and zeroing.
    Raising both thresholds to :data:`ALLOCATOR_THRESHOLD` keeps those blocks in the heap:
    chunked softmax scoring of signs images ran 1.65x faster in one process and 1.4x faster
    on a Dask worker (``docs/scale.md``); memory freed below the peak is kept by the process
    instead of being returned to the system, so the peak is unchanged.

    Parameters
    ----------
    enabled
        ``False`` does nothing (the setting is off).

    Returns
    -------
    bool
        Whether the thresholds are set in this process (``False`` off Linux/glibc).
    """
    global _allocator_tuned
    if not enabled:
        return False
    if _allocator_tuned is None:
        _allocator_tuned = False
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            _allocator_tuned = bool(
                libc.mallopt(_M_MMAP_THRESHOLD, ALLOCATOR_THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, ALLOCATOR_THRESHOLD)
            )
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
            pass
        log.debug("allocator thresholds raised: %s", _allocator_tuned)
    return _allocator_tuned


def chunk_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of ``size`` rows covering ``0..n``.

    Raises
    ------
    ConfigError
        If ``size`` is not an int >= 1 or ``n`` is negative.
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ConfigError(f"The chunk size must be an int >= 1. Got {size!r}.")
    if n < 0:
        raise ConfigError(f"The number of rows must be >= 0. Got {n!r}.")
    return [(a, min(a + int(size), n)) for a in range(0, n, int(size))]


def chunk_seed(seed: int, index: int) -> int:
    """A seed for chunk ``index`` of a job seeded with ``seed`` (independent streams:
    :class:`numpy.random.SeedSequence` with ``spawn_key=(index,)``)."""
    state = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index),))
    return int(state.generate_state(1, np.uint32)[0])


def is_address(scheduler: str) -> bool:
    """Whether ``scheduler`` is the address of a ``distributed`` scheduler (``tcp://...``)."""
    return "://" in scheduler


class Executor(ABC):
    """Runs one function over chunks; results come back in chunk order.

    Use it as a context manager (or call :meth:`close`): a Dask executor holds a client
    connection.
    """

    #: The scheduler's name (``local``, ``threads``, ..., or the address).
    scheduler: str = "local"

    @abstractmethod
    def map(
        self,
        fn: Callable[[C, Any], R],
        chunks: Sequence[C],
        shared: Any = None,
        desc: str | None = None,
    ) -> list[R]:
        """``[fn(chunk, shared) for chunk in chunks]``, run by this executor's scheduler.

        Parameters
        ----------
        fn
            A module-level function (it is pickled for process and cluster schedulers).
        chunks
            Small descriptions of the work (e.g. ``(start, stop)`` row ranges).
        shared
            One object every task reads (a model, the cluster members' features, the path
            of the pool): sent once per worker, not once per chunk, where the scheduler
            allows it.
        desc
            A progress bar (:mod:`dnnsafety.progress`) counting finished chunks under this
            name; ``None``: no bar.

        Returns
        -------
        list
            One result per chunk, in the order of ``chunks``.
        """

    def close(self) -> None:  # noqa: B027 - optional hook; the local executor holds nothing
        """Release the scheduler's resources (nothing for the local executor)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scheduler!r})"


class LocalExecutor(Executor):
    """A plain loop in this process: no Dask, no pickling."""

    scheduler = "local"

    def map(
        self,
        fn: Callable[[C, Any], R],
        chunks: Sequence[C],
        shared: Any = None,
        desc: str | None = None,
    ) -> list[R]:
        with _chunk_bar(len(chunks), desc) as bar:
            out = []
            for chunk in chunks:
                out.append(fn(chunk, shared))
                bar.update(1)
            return out


def _chunk_bar(total: int, desc: str | None) -> Any:
    """A progress bar over ``total`` chunks named ``desc`` (none when ``desc`` is None)."""
    if desc is None:
        from tqdm.auto import tqdm

        return tqdm(total=total, disable=True)
    return progress_bar(total=total, desc=desc, unit="chunk")


def _import_dask(what: str) -> Any:
    try:
        if what == "distributed":
            import distributed

            return distributed
        import dask

        return dask
    except ImportError:
        raise ConfigError(
            f"The Dask schedulers need the {what} package: {INSTALL_HINT}, or use "
            "--scheduler local."
        ) from None


class DaskExecutor(Executor):
    """Chunks as Dask tasks, on a local Dask scheduler or a ``distributed`` cluster.

    Parameters
    ----------
    scheduler
        ``"threads"``, ``"processes"``, ``"synchronous"`` or a scheduler address
        (``"tcp://10.0.0.5:8786"``).
    workers
        Threads or processes of a local scheduler (``0``: Dask's default, one per core).
        Ignored for a cluster, whose workers are started with ``dask worker``.
    client
        An existing :class:`distributed.Client` to use instead of connecting to
        ``scheduler`` (it is not closed by :meth:`close`).
    timeout
        How long to wait for a cluster scheduler to answer, in seconds.

    Raises
    ------
    ConfigError
        Unknown scheduler, or Dask not installed (with the command that installs it).
    """

    def __init__(
        self, scheduler: str, workers: int = 0, client: Any = None, timeout: float = 20.0
    ) -> None:
        if client is None and not is_address(scheduler) and scheduler not in LOCAL_SCHEDULERS:
            raise ConfigError(
                f"Unknown scheduler {scheduler!r}; use local, {', '.join(LOCAL_SCHEDULERS)} or "
                "the address of a distributed scheduler (tcp://host:8786)."
            )
        self.scheduler = scheduler if client is None else str(client.scheduler.address)
        self.workers = workers
        self.timeout = timeout
        self._client = client
        self._own_client = False
        _import_dask("distributed" if (client is not None or is_address(scheduler)) else "dask")

    @property
    def client(self) -> Any:
        """The ``distributed`` client (connected on first use); ``None`` for local schedulers."""
        if self._client is None and is_address(self.scheduler):
            distributed = _import_dask("distributed")
            try:
                self._client = distributed.Client(self.scheduler, timeout=f"{self.timeout}s")
            except OSError as exc:
                raise ConfigError(
                    f"Cannot reach the Dask scheduler at {self.scheduler} ({exc}). Start it with "
                    "`dask scheduler` and at least one `dask worker <address>`, and pass the "
                    "address it prints."
                ) from None
            self._own_client = True
        return self._client

    def map(
        self,
        fn: Callable[[C, Any], R],
        chunks: Sequence[C],
        shared: Any = None,
        desc: str | None = None,
    ) -> list[R]:
        if not chunks:
            return []
        client = self.client
        with _chunk_bar(len(chunks), desc) as bar:
            if client is not None:
                distributed = _import_dask("distributed")
                [handle] = client.scatter([shared], broadcast=True, hash=False)
                futures = client.map(fn, list(chunks), [handle] * len(chunks), pure=False)
                try:
                    for _ in distributed.as_completed(futures):
                        bar.update(1)
                    return list(client.gather(futures))
                finally:
                    for future in futures:
                        future.release()
                    handle.release()
            dask = _import_dask("dask")
            from dask.callbacks import Callback

            shared_task = dask.delayed(shared, name=f"shared-{os.getpid()}-{id(shared)}")
            tasks = [dask.delayed(fn, pure=False)(chunk, shared_task) for chunk in chunks]
            names = {task.key for task in tasks}
            options: dict[str, Any] = {"scheduler": self.scheduler}
            if self.workers and self.scheduler != "synchronous":
                options["num_workers"] = self.workers

            def finished(key: Any, *_: Any) -> None:
                if key in names:
                    bar.update(1)

            with Callback(posttask=finished):
                return list(dask.compute(*tasks, **options))

    def close(self) -> None:
        if self._client is not None and self._own_client:
            self._client.close()
            self._client = None
            self._own_client = False


def make_executor(scheduler: str = "local", workers: int = 0) -> Executor:
    """The executor for a ``[compute] scheduler`` value (see the module docstring).

    Raises
    ------
    ConfigError
        An unknown scheduler, a negative ``workers``, or Dask missing for a Dask scheduler.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"compute.workers must be an int >= 0 (0: automatic). Got {workers!r}.")
    name = (scheduler or "local").strip()
    if name == "local":
        return LocalExecutor()
    return DaskExecutor(name, workers)
