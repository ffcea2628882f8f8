"""Cost of the best black-box pipeline against the white-box analysis, same errors (issue 5).

For each dataset, two fresh copies of the cached evaluated run (benchmarks/out/<dataset>, no
analysis outputs, no cached features or heatmaps) are analysed one after the other, each
`dnnsafety analyze` in its own process: black-box (MobileNetV2 + UMAP + DBSCAN) and white-box
(HUDD, default mode: heatmaps of every candidate layer, clustering per layer, layer choice).
Reported: wall time and peak memory of the analysis stage alone (dataset and model loaded
before it), of the whole process (ru_maxrss), the ratios, and the clusters' purity/coverage.

Reproduce: .venv/bin/python benchmarks/bench_safe_vs_hudd.py [--datasets signs,fashion-mnist]

With ``--errors 1000,2000,5000,10000`` the number of errors becomes the axis instead
(``results/safe_vs_hudd_errors.md``): a weak model (``--weak-train`` training images, one
epoch) is evaluated on a large test split of ``--datasets`` (its first dataset), and for
each N a fresh copy of that run keeps N of its test errors (a seeded random subset; the
other errors are marked correct in the copy's samples table, so no analysis sees them). Both
pipelines then analyse the same N errors, each in its own process, as above.
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
    # the default analysis since issue 13 (block 13 beside the embedding, the collapse guard)
    "default: backbone + block 13 + umap + guarded dbscan": [],
    "black-box: backbone + umap + dbscan": [
        "analysis.features='backbone'",
        "analysis.reduce='umap'",
        "analysis.cluster='dbscan'",
    ],
    "white-box: HUDD (default mode)": ["analysis.features=''"],
}


def measure(folder: Path, name: str, extra: list[str], dataset: str) -> dict[str, Any]:
    """Analyse ``folder`` in a fresh process with the ``extra`` settings; time, memory, scores."""
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
    s = score_clusters(errors["cluster"].astype(int).to_numpy(), errors["scenario"], None, rare)
    row = {
        "dataset": dataset,
        "pipeline": name,
        "errors": s.n_errors,
        "clusters": s.n_clusters,
        "purity": round(s.purity, 3),
        "coverage": round(s.coverage, 3),
        "process s": round(seconds, 1),
        "analysis s": round(stage, 1),
        "analysis peak MB": round(peak),
        "process peak RSS MB": round(rss),
    }
    print(row, flush=True)
    return row


def weak_run(dataset: str, n_train: int, n_test: int) -> Path:
    """A weakly trained model evaluated on a large test split (many errors)."""
    import torch

    from dnnsafety.config import RunConfig
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.runs import RunDir

    torch.set_num_threads(1)
    config = RunConfig()
    config.data.name = dataset
    config.data.n_train, config.data.n_test, config.data.n_pool = n_train, n_test, 500
    config.train.epochs = 1
    config.train.threads = 1
    folder = OUT / f"{dataset}-weak{n_train}-{n_test}"
    pipe = Pipeline(RunDir(folder), config)
    pipe.train()
    pipe.evaluate()
    return folder


def keep_errors(folder: Path, n: int, seed: int = 0) -> int:
    """Mark all but ``n`` test errors (a seeded random subset) correct; the number kept."""
    import numpy as np

    samples = pd.read_parquet(folder / "samples.parquet")
    wrong = np.flatnonzero(((samples["split"] == "test") & ~samples["correct"]).to_numpy())
    drop = np.random.default_rng(seed).permutation(wrong)[n:]
    samples.loc[samples.index[drop], "correct"] = True
    samples.to_parquet(folder / "samples.parquet")
    return min(n, len(wrong))


def pipeline_choice(args: argparse.Namespace) -> dict[str, list[str]]:
    """The pipelines of ``--pipelines`` (words of their names), in :data:`PIPELINES` order."""
    wanted = [w for w in args.pipelines.split(",") if w]
    return {k: v for k, v in PIPELINES.items() if not wanted or any(w in k for w in wanted)}


def errors_axis(args: argparse.Namespace) -> None:
    dataset = args.datasets.split(",")[0]
    sizes = [int(v) for v in args.errors.split(",")]
    base = weak_run(dataset, args.weak_train, args.weak_test)
    rows: list[dict[str, Any]] = []
    pipelines = pipeline_choice(args)
    for n in sizes:
        measured = []
        for name, extra in pipelines.items():
            folder = OUT / f"{dataset}-cost-errors"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(base, folder, ignore=shutil.ignore_patterns("analysis*", "clu*"))
            kept = keep_errors(folder, n)
            row = measure(folder, name, extra, dataset)
            row["errors wanted"] = n
            if kept < n:
                row["pipeline"] += f" (only {kept} errors)"
            measured.append(row)
        hudd = measured[-1]
        for row in measured:
            row["time vs HUDD"] = round(row["analysis s"] / hudd["analysis s"], 2)
            row["memory vs HUDD"] = round(row["analysis peak MB"] / hudd["analysis peak MB"], 2)
        rows += measured
        shutil.rmtree(OUT / f"{dataset}-cost-errors", ignore_errors=True)
        write_table(
            args.name,
            "Black-box vs white-box analysis: time and memory by number of errors",
            "benchmarks/bench_safe_vs_hudd.py " + " ".join(sys.argv[1:]),
            rows,
            (
                f"Errors of a weak small_cnn ({args.weak_train} training images of {dataset}, "
                f"1 epoch) on {args.weak_test} test images; for each N a seeded random subset "
                "of N errors, the same for both pipelines. Each analysis runs in a fresh "
                "process on a copy of the run with nothing cached: 'analysis s' / 'analysis "
                "peak MB' the analysis stage alone (dataset and model loaded before), peak "
                "resident memory above the level before it; 'process' the whole process. "
                "Ratios against the HUDD row of the same N, same run. The black-box path runs "
                "with the default backbone options (onnxruntime, 224 px, "
                "benchmarks/results/backbone.md). The machine is shared (2 cores, load 4-20)."
            ),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument("--errors", default="", help="e.g. 1000,2000,5000,10000")
    parser.add_argument("--weak-train", type=int, default=500)
    parser.add_argument("--weak-test", type=int, default=30000)
    parser.add_argument(
        "--name", default="safe_vs_hudd_errors", help="result name of the --errors table"
    )
    parser.add_argument(
        "--pipelines",
        default="black-box,HUDD",
        help="the pipelines whose name holds one of these (comma-separated) words (HUDD, "
        "last, is the ratios' reference)",
    )
    args = parser.parse_args()
    if args.errors:
        errors_axis(args)
        return
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets.split(","):
        base = OUT / dataset
        if not (base / "samples.parquet").exists():
            raise SystemExit(f"{base} is not evaluated: run bench_safe_pipelines.py first")
        measured = []
        for name, extra in pipeline_choice(args).items():
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
