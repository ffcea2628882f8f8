"""Run every benchmark one after the other (never in parallel: the machine has 2 cores).

Reproduce: make bench   (or .venv/bin/python benchmarks/run_all.py)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["bench_simulator.py"],
    ["bench_training.py"],
    ["bench_lrp.py", "--batch", "256", "--repeats", "5", "--threads", "1"],
    ["bench_hudd_clustering.py", "--sizes", "1000", "2000", "5000", "10000"],
    ["bench_demo.py"],
    ["bench_demo.py", "--dataset", "fashion-mnist"],
    ["bench_hudd_quality.py"],
]


def main() -> None:
    for script, *args in RUNS:
        print(f"==> {script} {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)
    print(f"tables in {HERE / 'results'}")


if __name__ == "__main__":
    main()
