"""What `[compute] tune_allocator` buys: seconds per chunk of pool scoring, with glibc's
allocator thresholds raised (the default) and left alone, in one process and on a Dask worker.

glibc serves large blocks (one batch's activations: 512 x 32 x 32 x 32 float32 = 64 MB) with
a fresh mmap each time, and Dask's nanny pins the threshold low on every worker
(MALLOC_TRIM_THRESHOLD_); `dnnsafety.compute.tune_allocator` raises both thresholds so the
blocks are reused. The setting cannot be undone in a process, so every measurement runs in a
fresh process (a fresh worker for the Dask rows).

Model: the small signs run of bench_scale.py (benchmarks/out/scale-run). Pool: simulated
32x32 signs in a uint8 store; entropy selection, 8192 images per chunk, 1 torch thread.

Reproduce (2 cores, otherwise idle):
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_allocator.py --pool 40960 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table

RUN = Path(__file__).resolve().parent / "out" / "scale-run"


def child(mode: str, tune: bool, pool_path: str) -> dict[str, Any]:
    """One measurement in this (fresh) process: seconds per chunk of entropy scoring."""
    import torch

    from dnnsafety.cli.common import resolve_config
    from dnnsafety.compute import DaskExecutor, LocalExecutor
    from dnnsafety.data.pool import open_pool
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.pipeline.scale import select_from_pool
    from dnnsafety.runs import RunDir

    torch.set_num_threads(1)
    config = resolve_config(RUN, None, settings=(f"compute.tune_allocator={str(tune).lower()}",))
    pipe = Pipeline(RunDir(RUN, create=False), config)  # tunes this process when `tune`
    pool = open_pool(pool_path)
    pipe.model()
    if mode == "local":
        t0 = time.perf_counter()
        select_from_pool(pipe, "entropy", pool, 1000, 0, LocalExecutor())
        n_chunks = -(-len(pool) // config.compute.chunk_size)
        return {"per_chunk": (time.perf_counter() - t0) / n_chunks}
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client=client) as stream,
    ):
        select_from_pool(pipe, "entropy", pool, 1000, 0, DaskExecutor("x", client=client))
    compute = sorted(
        sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")
        for task in stream.data
    )
    return {"per_chunk": statistics.median(compute)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=40960)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dnnsafety-allocator"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, tune, path = args.child
        print(json.dumps(child(mode, tune == "on", path)))
        return
    from dnnsafety.compute import make_executor
    from dnnsafety.data.pool import write_signs_pool

    if not (RUN / "clusters.json").is_file():
        raise SystemExit("Run benchmarks/bench_scale.py once first: it trains the scale run.")
    path = args.work / "pool.zarr"
    with make_executor("threads", 2) as ex:
        write_signs_pool(path, args.pool, seed=7, executor=ex, overwrite=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.repeats):
            for mode in ("local", "dask worker"):
                for tune in ("off", "on"):
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", mode.split()[0], tune, str(path)],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                    value = json.loads(out.strip().splitlines()[-1])["per_chunk"]
                    times.setdefault((mode, tune), []).append(value)
                    print(mode, tune, round(value, 2), flush=True)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    rows = []
    for mode in ("local", "dask worker"):
        off = statistics.median(times[(mode, "off")])
        on = statistics.median(times[(mode, "on")])
        rows.append(
            {
                "where": mode,
                "s per chunk, off": round(off, 2),
                "s per chunk, on (default)": round(on, 2),
                "speed-up": round(off / on, 2),
                "load avg (1 min)": round(os.getloadavg()[0], 1),
            }
        )
    write_table(
        "allocator",
        "glibc allocator thresholds: seconds per chunk of pool scoring",
        "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_allocator.py "
        f"--pool {args.pool} --repeats {args.repeats}",
        rows,
        f"Medians over {args.repeats} fresh processes per cell; 8192 simulated 32x32 signs per "
        "chunk (uint8 store), entropy scores of the small signs run's model, 1 torch thread. "
        "`local`: `select_from_pool` in one process (start-up and the final merge included, "
        "divided by the chunks); `dask worker`: median compute time of one task on a "
        "1-worker LocalCluster, whose nanny sets MALLOC_TRIM_THRESHOLD_=65536.",
    )


if __name__ == "__main__":
    main()
