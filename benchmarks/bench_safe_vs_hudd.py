"""Cost of the best black-box pipeline against the white-box analysis, same errors (issue 5).

For each dataset, two fresh copies of the cached evaluated run (benchmarks/out/<dataset>, no
analysis outputs, no cached features or heatmaps) are analysed one after the other, each
`dnnsafety analyze` in its own process: black-box (MobileNetV2 + UMAP + DBSCAN) and white-box
(HUDD, default mode: heatmaps of every candidate layer, clustering per layer, layer choice).
Reported: wall time and peak memory of the analysis stage alone (dataset and model loaded
before it), of the whole process (ru_maxrss), the ratios, and the clusters' purity/coverage.

Reproduce: .venv/bin/python benchmarks/bench_safe_vs_hudd.py [--datasets signs,fashion-mnist]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table
from dnnsafety.evaluation import score_clusters

OUT = Path(__file__).resolve().parent / "out"
CHILD = """
import resource, sys
import torch
torch.set_flush_denormal(True)
sys.path.insert(0, sys.argv[1])
from _measure import peak_memory
from dnnsafety.cli.common import resolve_config
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir
folder, extra = sys.argv[2], sys.argv[3:]
config = resolve_config(RunDir(folder).path, None, settings=tuple(extra))
pipe = Pipeline(RunDir(folder), config)
pipe.evaluate(); pipe.dataset; pipe.model()  # loaded before the measurement
with peak_memory() as cost:
    pipe.analyze()
print("COST", cost["seconds"], cost["peak"])
print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
PIPELINES = {
    "black-box: backbone + umap + dbscan": [
        "analysis.features='backbone'",
        "analysis.reduce='umap'",
        "analysis.cluster='dbscan'",
    ],
    "white-box: HUDD (default mode)": ["analysis.features=''"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets.split(","):
        base = OUT / dataset
        if not (base / "samples.parquet").exists():
            raise SystemExit(f"{base} is not evaluated: run bench_safe_pipelines.py first")
        measured = []
        for name, extra in PIPELINES.items():
            folder = OUT / f"{dataset}-cost"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(base, folder, ignore=shutil.ignore_patterns("analysis*", "clu*"))
            here = str(Path(__file__).resolve().parent)
            cmd = [sys.executable, "-c", CHILD, here, str(folder), *extra]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-2000:]}")
            rss = int(proc.stdout.rsplit("MAXRSS_KB", 1)[1].split()[0]) / 1024
            stage, peak = (float(v) for v in proc.stdout.rsplit("COST", 1)[1].split()[:2])
            samples = pd.read_parquet(folder / "samples.parquet")
            errors = samples[samples["cluster"].notna()]
            rare = sorted(set(errors["scenario"]) - {"nominal"})
            s = score_clusters(
                errors["cluster"].astype(int).to_numpy(), errors["scenario"], None, rare
            )
            measured.append(
                {
                    "dataset": dataset,
                    "pipeline": name,
                    "errors": s.n_errors,
                    "clusters": s.n_clusters,
                    "purity": round(s.purity, 3),
                    "coverage": round(s.coverage, 3),
                    "min F1": round(s.min_f1, 3),
                    "mean F1": round(s.mean_f1, 3),
                    "purity (1 cluster)": round(s.purity_trivial, 3),
                    "process s": round(seconds, 1),
                    "analysis s": round(stage, 1),
                    "analysis peak MB": round(peak),
                    "process peak RSS MB": round(rss),
                }
            )
            print(measured[-1], flush=True)
        hudd = measured[-1]
        for row in measured:
            row["time vs HUDD"] = round(row["analysis s"] / hudd["analysis s"], 2)
            row["memory vs HUDD"] = round(row["analysis peak MB"] / hudd["analysis peak MB"], 2)
        rows += measured
        shutil.rmtree(OUT / f"{dataset}-cost", ignore_errors=True)
    notes = (
        "Each analysis runs in a fresh process on a copy of the evaluated run with nothing "
        "cached. 'analysis s' / 'analysis peak MB': the analysis stage alone (dataset and "
        "model loaded before), peak resident memory above the level before it; 'process': "
        "the whole process, dataset loading and imports included. Ratios "
        "are against the HUDD row of the same dataset, measured in the same run (one run "
        "each: the 2-core machine is shared, expect some noise)."
    )
    write_table(
        "safe_vs_hudd",
        "Black-box vs white-box analysis: time and memory on the same errors",
        "benchmarks/bench_safe_vs_hudd.py --datasets " + args.datasets,
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
