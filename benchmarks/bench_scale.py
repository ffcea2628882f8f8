"""Pool-scale selection on Dask (issue 20, METHOD.md §11): time, memory per process, identity.

A small signs run (benchmarks/out/scale-run: 3,000 training images, 4 epochs, HUDD analysis)
gives the model and the root-cause clusters. For each pool size, a simulated signs pool is
rendered into a uint8 pool store under --work (not timed in the selection figures; its own
time is reported), then selected from with the chunked path (dnnsafety.pipeline.scale):

* `closest`: HUDD's ClosestU in LRP-heatmap space (heatmaps at the selected layer computed per
  chunk inside each task, reduced at once to distances to the clusters' nearest members);
* `entropy`: softmax per chunk, streaming top-k.

Tables: wall time and peak resident memory of every process (this one and every Dask worker,
sampled with psutil every 50 ms) per pool size; a distributed.LocalCluster with 2 workers
against 1 worker (1 thread each) on --speedup-size; the selected ids on --identity-size,
identical locally, on threads and on a 2-worker cluster. Stores are deleted afterwards.

Reproduce (2 cores; run on an otherwise idle machine for the speed-up):
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_scale.py \
      --sizes 100000 300000 1000000 --speedup-size 300000 --identity-size 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table
from dnnsafety.compute import DaskExecutor, LocalExecutor, make_executor
from dnnsafety.config import RunConfig
from dnnsafety.data.pool import open_pool, write_signs_pool
from dnnsafety.pipeline import Pipeline
from dnnsafety.pipeline.analyze import analysis_of
from dnnsafety.pipeline.scale import chunked_select
from dnnsafety.pipeline.spaces import load_clusters
from dnnsafety.runs import RunDir
from dnnsafety.selection import ClusterSpace

OUT = Path(__file__).resolve().parent / "out"
STRATEGIES = ("closest", "entropy")


@contextmanager
def process_peaks() -> Any:
    """Peak RSS (MB) of this process and of every descendant (Dask workers), sampled."""
    me = psutil.Process()
    peaks: dict[int, tuple[str, float]] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss / 2**20
                    name = "main" if proc.pid == me.pid else " ".join(proc.cmdline()[-2:])[-40:]
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                old = peaks.get(proc.pid, ("", 0.0))[1]
                peaks[proc.pid] = (name, max(old, rss))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    box: dict[str, Any] = {"before": me.memory_info().rss / 2**20}
    thread.start()
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        stop.set()
        thread.join()
        box["seconds"] = time.perf_counter() - t0
        box["peaks"] = peaks


def prepare_run(threads: int) -> tuple[Pipeline, ClusterSpace, Any]:
    config = RunConfig()
    config.data.n_train, config.data.n_val = 3000, 300
    config.data.n_test, config.data.n_pool = 800, 200
    config.train.epochs, config.train.threads = 4, threads
    config.analysis.features = ""  # HUDD, as measured (no longer the default)
    pipe = Pipeline(RunDir(OUT / "scale-run"), config)
    pipe.train()
    pipe.evaluate()
    pipe.analyze()
    data = load_clusters(pipe).to_json()
    space = analysis_of(data).chunked_space(pipe, data)
    return pipe, ClusterSpace(np.asarray(space.error_features), space.labels), space.features


def select(pipe, clusters, features, pool, name, executor, args) -> tuple[Any, dict]:
    with process_peaks() as cost:
        selection, _ = chunked_select(
            name,
            args.budget,
            pool.images,
            pool.ids,
            model=pipe.model(),
            clusters=clusters,
            features=features,
            params={"f": pipe.config.retrain.quota_factor} if name == "closest" else None,
            executor=executor,
            chunk_size=args.chunk,
            threads=args.threads,
        )
    return selection, cost


def _peaks(cost: dict) -> tuple[float, float, int]:
    values = [mb for _, mb in cost["peaks"].values()]
    main = next(mb for n, mb in cost["peaks"].values() if n == "main")
    others = [mb for n, mb in cost["peaks"].values() if n != "main"]
    return main, max(others) if others else 0.0, len(values)


def cluster(workers: int) -> tuple[Any, Any]:
    import distributed

    lc = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return lc, distributed.Client(lc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--speedup-size", type=int, default=300_000)
    parser.add_argument("--identity-size", type=int, default=100_000)
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per task")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dnnsafety-scale"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, clusters, features = prepare_run(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = sorted({*args.sizes, args.speedup_size, args.identity_size} - {0})
    rows, speed, same = [], [], []
    try:
        for n in sizes:
            path = args.work / f"pool_{n}.zarr"
            t0 = time.perf_counter()
            with make_executor("threads", 2) as ex:
                write_signs_pool(path, n, seed=7, chunk_rows=4096, executor=ex, overwrite=True)
            render = time.perf_counter() - t0
            size_gb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30
            pool = open_pool(path)
            local: dict[str, Any] = {}
            for name in STRATEGIES:
                sel, cost = select(pipe, clusters, features, pool, name, LocalExecutor(), args)
                local[name] = sel
                main_mb, _, _ = _peaks(cost)
                if n in args.sizes:
                    rows.append(
                        {
                            "pool": n,
                            "strategy": name,
                            "scheduler": "local",
                            "seconds": round(cost["seconds"], 1),
                            "ms per image": round(1000 * cost["seconds"] / n, 3),
                            "MB before": round(cost["before"]),
                            "peak MB (process)": round(main_mb),
                            "store GB": round(size_gb, 2),
                            "render s": round(render),
                            "load avg (1 min)": round(os.getloadavg()[0], 1),
                        }
                    )
                    print(rows[-1], flush=True)
            if n == args.identity_size:
                with make_executor("threads", 2) as ex:
                    threaded = {
                        s: select(pipe, clusters, features, pool, s, ex, args)[0]
                        for s in STRATEGIES
                    }
                lc, client = cluster(2)
                with lc, client:
                    two = {
                        s: select(
                            pipe, clusters, features, pool, s, DaskExecutor("", client=client), args
                        )[0]
                        for s in STRATEGIES
                    }
                for s in STRATEGIES:
                    ids = local[s].ids.tolist()
                    same.append(
                        {
                            "pool": n,
                            "strategy": s,
                            "selected": len(ids),
                            "threads == local": threaded[s].ids.tolist() == ids,
                            "2-worker cluster == local": two[s].ids.tolist() == ids,
                        }
                    )
                    print(same[-1], flush=True)
            if n == args.speedup_size:
                for s in STRATEGIES:
                    times = {}
                    for workers in (1, 2):
                        lc, client = cluster(workers)
                        with lc, client:
                            ex = DaskExecutor("", client=client)
                            _, cost = select(pipe, clusters, features, pool, s, ex, args)
                        main_mb, worker_mb, _ = _peaks(cost)
                        times[workers] = cost["seconds"]
                        speed.append(
                            {
                                "pool": n,
                                "strategy": s,
                                "workers": workers,
                                "seconds": round(cost["seconds"], 1),
                                "speed-up": round(times[1] / cost["seconds"], 2),
                                "MB before (client)": round(cost["before"]),
                                "peak MB (client)": round(main_mb),
                                "peak MB (largest worker)": round(worker_mb),
                                "load avg (1 min)": round(os.getloadavg()[0], 1),
                            }
                        )
                        print(speed[-1], flush=True)
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
        command = (
            "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_scale.py --sizes "
            + " ".join(map(str, args.sizes))
            + f" --speedup-size {args.speedup_size} --identity-size {args.identity_size}"
        )
        notes = (
            f"Budget {args.budget}; {args.chunk} images per task; {args.threads} torch thread per "
            "task; simulated 32x32 signs stored as uint8 (zarr, 4096-row chunks). Model and "
            "clusters: a signs run trained on 3,000 images for 4 epochs (HUDD analysis; "
            f"{int((clusters.labels >= 0).sum())} clustered errors). Peak memory is the peak "
            "resident set of the process, model and libraries included."
        )
        if rows:
            write_table("scale", "Pool-scale selection: time and memory", command, rows, notes)
        if speed:
            write_table(
                "scale_speedup",
                "LocalCluster: 2 workers against 1",
                command,
                speed,
                "1 thread per worker. The speed-up only means something on an otherwise idle "
                "machine: see the load average column.",
            )
        if same:
            write_table("scale_identity", "Same selection on every scheduler", command, same)


if __name__ == "__main__":
    main()
