"""Pool-scale selection on Dask (issue 20, METHOD.md §11): time, memory per process, identity.

A small signs run (benchmarks/out/scale-run: 3,000 training images, 4 epochs, HUDD analysis)
gives the model and the root-cause clusters. For each pool size, a simulated signs pool is
rendered into a uint8 pool store under --work (not timed in the selection figures; its own
time is reported), then selected from by `dnnsafety select RUN --pool-store POOL` run as its
own process, as a user runs it (the chunked path, dnnsafety.pipeline.scale):

* `closest`: HUDD's ClosestU in LRP-heatmap space (heatmaps at the selected layer computed per
  chunk inside each task, reduced at once to distances to the clusters' nearest members);
* `entropy`: softmax per chunk, streaming top-k.

Tables: wall time of the whole command (start-up, model and clusters loaded, selection, the
selected images exported) and peak resident memory of every process doing the work (the
`select` process and every Dask worker, sampled with psutil every 50 ms) per pool size;
a distributed.LocalCluster with 2 workers against 1 worker (1 thread each) on --speedup-size;
the selected ids on --identity-size, identical locally, on threads and on a 2-worker cluster.
Stores are deleted afterwards.

Reproduce (2 cores; run on an otherwise idle machine for the speed-up):
  OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_scale.py \
      --sizes 100000 300000 1000000 --speedup-size 300000 --identity-size 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table
from dnnsafety.compute import make_executor
from dnnsafety.config import RunConfig
from dnnsafety.data.pool import write_signs_pool
from dnnsafety.pipeline import Pipeline
from dnnsafety.pipeline.spaces import load_clusters
from dnnsafety.runs import RunDir

OUT = Path(__file__).resolve().parent / "out"
STRATEGIES = ("closest", "entropy")
DEFAULTS = "compute.tune_allocator=true"


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


def prepare_run(threads: int) -> tuple[Path, int]:
    """Train, evaluate and analyse the small signs run (kept for reruns); its folder and
    clustered errors."""
    config = RunConfig()
    config.data.n_train, config.data.n_val = 3000, 300
    config.data.n_test, config.data.n_pool = 800, 200
    config.train.epochs, config.train.threads = 4, threads
    config.analysis.features = ""  # HUDD, as measured (no longer the default)
    run = OUT / "scale-run"
    pipe = Pipeline(RunDir(run), config)
    if not (run / "clusters.json").is_file():
        pipe.train()
        pipe.evaluate()
        pipe.analyze()
    return run, sum(load_clusters(pipe).sizes())


def cli_select(
    run: Path, pool: Path, name: str, scheduler: str, args: Any, *settings: str
) -> tuple[list, dict]:
    """``dnnsafety select RUN --pool-store POOL`` in its own process, as a user runs it: the
    selected ids (from labels.csv), wall time, and the peak RSS of that process and of every
    other descendant of this one (Dask workers)."""
    command = [
        sys.executable,
        "-m",
        "dnnsafety.cli.main",
        "select",
        str(run),
        "--strategy",
        name,
        "--budget",
        str(args.budget),
        "--pool-store",
        str(pool),
        "--scheduler",
        scheduler,
        "--set",
        f"compute.chunk_size={args.chunk}",
        # --set values persist in the run's config.toml: state the default on every call
        *(
            part
            for value in ("compute.tune_allocator=true", *settings)
            for part in ("--set", value)
        ),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with process_peaks() as cost:
        proc = psutil.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        cost["cli_pid"] = proc.pid
        out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"select failed ({proc.returncode}):\n{out.decode()[-3000:]}")
    labels = run / "selection" / name / "labels.csv"
    ids = [line.split(",")[0] for line in labels.read_text().splitlines()[1:]]
    return ids, cost


def _peaks(cost: dict) -> tuple[float, float]:
    """Peak MB of the ``select`` process, and of the largest other descendant (a worker)."""
    peaks = cost["peaks"]
    client = peaks.get(cost["cli_pid"], ("", 0.0))[1]
    others = [mb for pid, (name, mb) in peaks.items() if pid != cost["cli_pid"] and name != "main"]
    return client, max(others) if others else 0.0


def cluster(workers: int) -> Any:
    """A LocalCluster of ``workers`` single-threaded worker processes."""
    import distributed

    return distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--speedup-size", type=int, default=300_000)
    parser.add_argument("--identity-size", type=int, default=100_000)
    parser.add_argument(
        "--speedup-strategies", nargs="+", help="strategies timed on 1 and 2 workers"
    )
    parser.add_argument(
        "--allocator-size",
        type=int,
        default=0,
        help="pool size on which each strategy also runs with compute.tune_allocator=false",
    )
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per task")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dnnsafety-scale"))
    parser.add_argument("--suffix", default="", help="appended to the result tables' names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run, n_errors = prepare_run(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    sizes = sorted({*args.sizes, args.speedup_size, args.identity_size, args.allocator_size} - {0})
    speedup_strategies = args.speedup_strategies or args.strategies
    rows: list[dict] = []
    allocator: list[dict] = []
    speed: list[dict] = []
    same: list[dict] = []

    def flush() -> None:
        """Write the tables so far (a long run that is stopped keeps its finished rows)."""
        command = (
            "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_scale.py --sizes "
            + " ".join(map(str, args.sizes))
            + f" --strategies {' '.join(args.strategies)}"
            + f" --speedup-size {args.speedup_size} --identity-size {args.identity_size}"
            + (
                f" --speedup-strategies {' '.join(args.speedup_strategies)}"
                if args.speedup_strategies
                else ""
            )
            + (f" --allocator-size {args.allocator_size}" if args.allocator_size else "")
            + (f" --suffix {args.suffix}" if args.suffix else "")
        )
        notes = (
            f"Budget {args.budget}; {args.chunk} images per task; {args.threads} torch thread per "
            "task; simulated 32x32 signs stored as uint8 (zarr, 4096-row chunks). Model and "
            "clusters: a signs run trained on 3,000 images for 4 epochs (HUDD analysis; "
            f"{n_errors} clustered errors). Each selection is `dnnsafety select --pool-store` in "
            "its own process; seconds are the whole command, peak memory the peak resident set "
            "of that process (model, clusters and libraries included)."
        )
        if rows:
            write_table(
                f"scale{args.suffix}", "Pool-scale selection: time and memory", command, rows, notes
            )
        if speed:
            write_table(
                f"scale_speedup{args.suffix}",
                "LocalCluster: 2 workers against 1",
                command,
                speed,
                "1 thread per worker; `select` runs as its own process and sends the chunks to "
                "the cluster's address. The speed-up only means something on an otherwise idle "
                "machine: see the load average column.",
            )
        if allocator:
            write_table(
                f"scale_allocator{args.suffix}",
                "glibc allocator thresholds (compute.tune_allocator) on and off",
                command,
                allocator,
                "The same `select --pool-store` command locally, with the setting on (the "
                "default) and off (`--set compute.tune_allocator=false`).",
            )
        if same:
            write_table(
                f"scale_identity{args.suffix}", "Same selection on every scheduler", command, same
            )

    try:
        for n in sizes:
            path = args.work / f"pool_{n}.zarr"
            t0 = time.perf_counter()
            with make_executor("threads", 2) as ex:
                write_signs_pool(path, n, seed=7, chunk_rows=4096, executor=ex, overwrite=True)
            render = time.perf_counter() - t0
            size_gb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30
            local: dict[str, list] = {}
            for name in args.strategies:
                if n not in args.sizes and n != args.identity_size:
                    continue
                local[name], cost = cli_select(run, path, name, "local", args)
                client_mb, _ = _peaks(cost)
                if n in args.sizes:
                    rows.append(
                        {
                            "pool": n,
                            "strategy": name,
                            "scheduler": "local",
                            "seconds": round(cost["seconds"], 1),
                            "ms per image": round(1000 * cost["seconds"] / n, 3),
                            "peak MB (select process)": round(client_mb),
                            "store GB": round(size_gb, 2),
                            "render s": round(render),
                            "load avg (1 min)": round(os.getloadavg()[0], 1),
                        }
                    )
                    print(rows[-1], flush=True)
                    flush()
            if n == args.allocator_size:
                for name in args.strategies:
                    for on in (True, False):
                        _, cost = cli_select(
                            run, path, name, "local", args, f"compute.tune_allocator={on}".lower()
                        )
                        allocator.append(
                            {
                                "pool": n,
                                "strategy": name,
                                "tune_allocator": on,
                                "seconds": round(cost["seconds"], 1),
                                "peak MB (select process)": round(_peaks(cost)[0]),
                                "load avg (1 min)": round(os.getloadavg()[0], 1),
                            }
                        )
                        print(allocator[-1], flush=True)
                        flush()
            if n == args.identity_size:
                for name in args.strategies:
                    threaded, _ = cli_select(run, path, name, "threads", args)
                    with cluster(2) as lc:
                        two, _ = cli_select(run, path, name, lc.scheduler_address, args)
                    same.append(
                        {
                            "pool": n,
                            "strategy": name,
                            "selected": len(local[name]),
                            "threads == local": threaded == local[name],
                            "2-worker cluster == local": two == local[name],
                        }
                    )
                    print(same[-1], flush=True)
                    flush()
            if n == args.speedup_size:
                for name in speedup_strategies:
                    times = {}
                    for workers in (1, 2):
                        with cluster(workers) as lc:
                            _, cost = cli_select(run, path, name, lc.scheduler_address, args)
                        client_mb, worker_mb = _peaks(cost)
                        times[workers] = cost["seconds"]
                        speed.append(
                            {
                                "pool": n,
                                "strategy": name,
                                "workers": workers,
                                "seconds": round(cost["seconds"], 1),
                                "speed-up": round(times[1] / cost["seconds"], 2),
                                "peak MB (select process)": round(client_mb),
                                "peak MB (largest worker)": round(worker_mb),
                                "load avg (1 min)": round(os.getloadavg()[0], 1),
                            }
                        )
                        print(speed[-1], flush=True)
                        flush()
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
