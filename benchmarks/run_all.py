"""Run every benchmark one after the other (never in parallel: the machine has 2 cores).

Reproduce: make bench   (or .venv/bin/python benchmarks/run_all.py)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RETRAIN_STRATEGIES = "closest,random,entropy,deepgini"
FIELD_STRATEGIES = "closest,closest-contrast,random,entropy,deepgini"
# the retraining benchmark's field-like setup: a converged original model, a pool where the
# rare scenarios are rare (docs/retraining.md)
FIELD_SETUP = ("--train-schedule", "cosine", "--pool-rare", "0.02")
RUNS = [
    ["bench_simulator.py"],
    ["bench_training.py"],
    ["bench_lrp.py", "--batch", "256", "--repeats", "5", "--threads", "1"],
    ["bench_hudd_clustering.py", "--sizes", "1000", "2000", "5000", "10000"],
    ["bench_demo.py"],
    ["bench_demo.py", "--dataset", "fashion-mnist"],
    ["bench_hudd_quality.py"],
    ["bench_heatmap_variants.py"],  # reads the heatmaps bench_hudd_quality.py stored
    ["bench_safe_pipelines.py"],
    ["bench_safe_vs_hudd.py"],
    ["bench_backbone.py", "--n", "64", "--rounds", "2", "--sizes", "64,96,128,160,224"],
    [
        "bench_backbone.py",
        *("--skip-throughput", "--datasets", "signs,fashion-mnist", "--purity-sizes", "224"),
        *("--seeds", "0,1,2,3,4", "--rounding", "--tag", "_seeds"),
    ],
    ["bench_safe_vs_hudd.py", "--datasets", "signs", "--errors", "1000,2000,5000,10000"],
    ["bench_retraining.py", "--strategies", "closest,random,entropy,deepgini"],
    ["bench_retraining.py", "--datasets", "signs", "--analysis", "hudd"],
    [
        "bench_retraining.py",
        *("--datasets", "signs", "--epochs", "10", "--strategies", FIELD_STRATEGIES),
        *FIELD_SETUP,
    ],
    [
        "bench_retraining.py",
        *("--datasets", "signs", "--analysis", "hudd", "--epochs", "10"),
        *("--strategies", FIELD_STRATEGIES, *FIELD_SETUP),
    ],
    [
        "bench_retraining.py",
        *("--datasets", "fashion-mnist", "--epochs", "5", "--strategies", FIELD_STRATEGIES),
        *FIELD_SETUP,
    ],
    [
        "bench_selection_composition.py",
        *(str(HERE / "out" / "signs-retrain-safe_pool0.02_cosine"), "--budget", "300"),
    ],
    ["bench_selection_scale.py", "--pool", "100000", "--budget", "3000"],
    ["bench_hybrid.py", "--datasets", "signs", "--seeds", "1"],
    [
        "bench_hybrid.py",
        "--datasets",
        "signs",
        "--seeds",
        "3",
        "--strategies",
        "hybrid,hybrid-size,closest,entropy,deepgini",
    ],
    [
        "bench_hybrid.py",
        "--datasets",
        "fashion-mnist",
        "--seeds",
        "3",
        "--strategies",
        "hybrid,closest,entropy,deepgini",
        "--no-generated",
    ],
]


def main() -> None:
    for script, *args in RUNS:
        print(f"==> {script} {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)
    print(f"tables in {HERE / 'results'}")


if __name__ == "__main__":
    main()
