"""The chunked pool path selects what the in-memory selectors select, on every scheduler."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import dnnsafety
from dnnsafety.compute import DaskExecutor, make_executor
from dnnsafety.data.pool import open_pool, write_signs_pool
from dnnsafety.exceptions import ConfigError
from dnnsafety.features import compute_heatmaps
from dnnsafety.features.chunks import LayerHeatmaps
from dnnsafety.models.training import predict
from dnnsafety.pipeline.scale import chunked_select, supported_strategies
from dnnsafety.selection import SELECTORS, ClusterSpace, PoolView

LAYER = "6"  # the input of the last linear layer of _tiny_cnn
BUDGET = 30


def _tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 7 * 7, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 10),
    ).eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small untrained CNN, a float32 pool store of 500 signs and planted clusters."""
    root = tmp_path_factory.mktemp("scale")
    model = _tiny_cnn()
    write_signs_pool(root / "pool.zarr", 500, seed=1, size=16, dtype="float32", chunk_rows=64)
    pool = open_pool(root / "pool.zarr")
    errors = write_signs_pool(root / "err.zarr", 48, seed=2, size=16, dtype="float32")
    err_images = errors.images[0:48]
    err_ids = [f"e{i}" for i in range(48)]
    err = compute_heatmaps(model, err_images, err_ids, root / "eh", layers=[LAYER], progress=False)
    labels = np.repeat([0, 1, 2, -1], 12)
    feats = np.asarray(err.flat(LAYER))
    clusters = ClusterSpace(feats, labels, correct=feats[36:])
    features = LayerHeatmaps(model, LAYER, err_images[:1], batch_size=64)
    images = pool.images[0 : len(pool)]  # the in-memory reference reads it whole
    heat = compute_heatmaps(model, images, pool.ids, root / "ph", layers=[LAYER], progress=False)
    return {
        "root": root,
        "model": model,
        "pool": pool,
        "clusters": clusters,
        "features": features,
        "pool_features": heat.flat(LAYER),
        "probs": predict(model, images, 512).probs,
    }


def _in_memory(world, name):
    view = PoolView(world["pool"].ids, world["probs"], features=world["pool_features"])
    return SELECTORS.get(name)().select(view, BUDGET, clusters=world["clusters"], random_state=3)


def _chunked(world, name, executor=None, chunk_size=128):
    return chunked_select(
        name,
        BUDGET,
        world["pool"].images,
        world["pool"].ids,
        model=world["model"],
        clusters=world["clusters"],
        features=world["features"],
        executor=executor,
        chunk_size=chunk_size,
        random_state=3,
    )


@pytest.mark.parametrize("name", ["entropy", "deepgini", "closest", "closest-contrast", "random"])
def test_chunked_selection_equals_the_in_memory_selector(world, name):
    expected = _in_memory(world, name)
    got, rows = _chunked(world, name)
    assert got.ids.tolist() == expected.ids.tolist()
    assert world["pool"].ids[rows].tolist() == got.ids.tolist()
    assert got.info == expected.info
    for field in ("scores", "cluster", "distance"):
        a, b = getattr(got, field), getattr(expected, field)
        assert (a is None) == (b is None)
        if a is not None:
            assert np.array_equal(a, b), field


def test_unsupported_strategies_are_named(world):
    assert {"closest", "entropy", "random"} <= set(supported_strategies())
    with pytest.raises(ConfigError, match="does not run on a chunked pool"):
        _chunked(world, "dsa")


@pytest.mark.parametrize("name", ["entropy", "closest"])
def test_threads_and_a_local_cluster_select_the_same_ids(world, name):
    distributed = pytest.importorskip("distributed")
    local, _ = _chunked(world, name)
    with make_executor("threads", 2) as executor:
        threaded, _ = _chunked(world, name, executor, chunk_size=64)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        clustered, _ = _chunked(world, name, DaskExecutor("", client=client))
    assert local.ids.tolist() == threaded.ids.tolist() == clustered.ids.tolist()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_dask_scheduler_and_worker_started_as_commands_run_the_selection(world):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    src = str(Path(dnnsafety.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"
    dask = [sys.executable, "-m", "dask"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [
        subprocess.Popen(
            [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            **quiet,
        )
    ]
    try:
        time.sleep(1)
        procs.append(
            subprocess.Popen(
                [*dask, "worker", address, "--nthreads", "1", "--no-dashboard"], **quiet
            )
        )
        executor = DaskExecutor(address, timeout=30)
        executor.client.wait_for_workers(1, timeout=60)
        with executor:
            remote, _ = _chunked(world, "closest", executor)
            ranked, _ = _chunked(world, "entropy", executor)
        assert remote.ids.tolist() == _in_memory(world, "closest").ids.tolist()
        assert ranked.ids.tolist() == _in_memory(world, "entropy").ids.tolist()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
