"""Throughput benchmark of the traffic-sign simulator (images per second).

Renders ``--n`` images (default 20,000) at ``--size`` x ``--size`` pixels (default 32) with the
test-split scenario mix of the default :class:`~dnnsafety.sim.ScenarioConfig`, ``--repeats``
times, and reports the median. Two numbers are measured per repeat:

* ``render``: :func:`~dnnsafety.sim.render_signs` on a pre-sampled parameter table;
* ``end_to_end``: :func:`~dnnsafety.sim.sample_parameters` plus rendering.

Results go to ``benchmarks/results/simulator.json`` and ``benchmarks/results/simulator.md``.

Reproduce with::

    .venv/bin/python benchmarks/bench_simulator.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from dnnsafety.sim import SIGN_CLASSES, ScenarioConfig, render_signs, sample_parameters

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_IMAGES_PER_S = 5000.0


def _command(argv: list[str]) -> str:
    return " ".join([".venv/bin/python", "benchmarks/bench_simulator.py", *argv])


def run(
    n: int, size: int, repeats: int, seed: int, threads: int | None
) -> tuple[dict[str, object], list[float], list[float]]:
    """Time rendering ``n`` images ``repeats`` times.

    Returns the JSON-ready result record and the per-repeat render and end-to-end rates.
    """
    config = ScenarioConfig()
    # Warm-up: builds the cached templates and background bank outside the timed region.
    warm = sample_parameters(256, "test", config, np.random.default_rng(seed), len(SIGN_CLASSES))
    render_signs(warm, size=size, seed=seed, num_threads=threads)

    render_rates: list[float] = []
    total_rates: list[float] = []
    for r in range(repeats):
        t0 = time.perf_counter()
        params = sample_parameters(
            n, "test", config, np.random.default_rng(seed + r), len(SIGN_CLASSES)
        )
        t1 = time.perf_counter()
        images = render_signs(params, size=size, seed=seed + r, num_threads=threads)
        t2 = time.perf_counter()
        if images.shape != (n, 3, size, size):
            raise RuntimeError(f"unexpected output shape {tuple(images.shape)}")
        render_rates.append(n / (t2 - t1))
        total_rates.append(n / (t2 - t0))
        del images

    used_threads = threads if threads is not None else min(torch.get_num_threads(), _cpus())
    record: dict[str, object] = {
        "benchmark": "simulator",
        "images": n,
        "size": size,
        "repeats": repeats,
        "seed": seed,
        "split_mix": "test (default ScenarioConfig)",
        "render_images_per_s": render_rates,
        "end_to_end_images_per_s": total_rates,
        "median_render_images_per_s": statistics.median(render_rates),
        "median_end_to_end_images_per_s": statistics.median(total_rates),
        "target_images_per_s": TARGET_IMAGES_PER_S,
        "torch_threads": used_threads,
        "cpus_available": _cpus(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return record, render_rates, total_rates


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not available on every platform
        return os.cpu_count() or 1


def _markdown(result: dict[str, object], render: list[float], total: list[float]) -> str:
    rows = "\n".join(
        f"| {i + 1} | {r:,.0f} | {t:,.0f} |"
        for i, (r, t) in enumerate(zip(render, total, strict=True))
    )
    med_r, med_t = statistics.median(render), statistics.median(total)
    verdict = "meets" if med_r >= TARGET_IMAGES_PER_S else "MISSES"
    return f"""# Simulator throughput

{result["images"]:,} images at {result["size"]}x{result["size"]} pixels, test-split scenario mix,
{result["repeats"]} repeats, {result["torch_threads"]} torch thread(s) on
{result["cpus_available"]} available CPU(s); torch {result["torch"]}, Python
{result["python"]}, {result["machine"]}, {result["date"]}.

| Repeat | render (images/s) | sample + render (images/s) |
|-------:|------------------:|---------------------------:|
{rows}
| **median** | **{med_r:,.0f}** | **{med_t:,.0f}** |

The median rendering throughput {verdict} the target of {TARGET_IMAGES_PER_S:,.0f} images/s.

Reproduce with:

```
{result["command"]}
```
"""


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20_000, help="images per repeat")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats")
    parser.add_argument("--seed", type=int, default=0, help="base seed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: auto)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where to write results")
    args = parser.parse_args(args_list)

    result, render, total = run(args.n, args.size, args.repeats, args.seed, args.threads)
    command = _command(args_list)
    result["command"] = command
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "simulator.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "simulator.md").write_text(_markdown(result, render, total))
    print(
        f"median render: {statistics.median(render):,.0f} images/s; "
        f"sample + render: {statistics.median(total):,.0f} images/s "
        f"(written to {args.out_dir})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
