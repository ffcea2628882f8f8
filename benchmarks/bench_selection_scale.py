"""Selection over a 100,000-image pool: wall time and peak memory, features included (issue 4).

The white-box analysis of the cached signs run (benchmarks/out/signs-default, from
bench_hudd_quality.py) gives the root-cause clusters and the selected layer. A fresh pool of
N simulated images is rendered into a memory-mapped file in chunks; then, each step timed
with its peak resident memory (above the level before the step):
1. LRP heatmaps of every pool image at the selected layer, streamed to disk (HeatmapStore);
2. `closest` (ClosestU) against the clusters, reading the pool heatmaps in batches;
3. `closest-contrast`: heatmaps of up to 2,000 correctly classified test inputs (its
   reference), then the selection;
4. `entropy` and `random` on the pool's softmax outputs (prediction included).

Reproduce: .venv/bin/python benchmarks/bench_selection_scale.py [--pool 100000] [--budget 3000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import peak_memory  # noqa: E402
from _table import write_table  # noqa: E402
from dnnsafety.config import RunConfig  # noqa: E402
from dnnsafety.data.signs import generate_signs  # noqa: E402
from dnnsafety.features import HeatmapStore, compute_heatmaps  # noqa: E402
from dnnsafety.models.training import predict  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.spaces import (  # noqa: E402
    CORRECT_HEATMAPS,
    cluster_labels,
    correct_reference,
)
from dnnsafety.runs import RunDir  # noqa: E402
from dnnsafety.selection import SELECTORS, ClusterSpace, PoolView  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CHUNK = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--budget", type=int, default=3000)
    args = parser.parse_args()
    run = RunDir(OUT / "signs-default")
    config = RunConfig()
    pipe = Pipeline(run, config)
    pipe.train()  # no-ops when bench_hudd_quality.py's model is current
    pipe.evaluate()
    model = pipe.model()
    clusters = json.loads((run / "clusters.json").read_text())
    layer = clusters["layer"]
    errors = HeatmapStore.open(run / "analysis" / "heatmaps")
    error_ids = [str(s) for s in errors.ids]
    space = ClusterSpace(np.asarray(errors.flat(layer)), cluster_labels(clusters, error_ids))

    work = OUT / "selection-scale"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    images = np.lib.format.open_memmap(
        work / "pool.npy", mode="w+", dtype=np.float32, shape=(args.pool, 3, 32, 32)
    )
    for start in range(0, args.pool, CHUNK):
        n = min(CHUNK, args.pool - start)
        ds = generate_signs({"train": 1, "test": 1, "pool": n}, seed=1000 + start // CHUNK)
        images[start : start + n] = ds["pool"].images.numpy()
    images.flush()
    ids = [f"big-{i:06d}" for i in range(args.pool)]
    rows = []

    with peak_memory() as heat:
        store = compute_heatmaps(
            model, images, ids, work / "heatmaps", layers=[layer], ruleset="default"
        )
    rows.append(_row("LRP heatmaps of the pool", layer, args, heat))
    pool = PoolView(np.asarray(ids), None, features=store.flat(layer))
    with peak_memory() as sel:
        chosen = SELECTORS.get("closest")().select(pool, args.budget, clusters=space)
    rows.append(_row("closest (ClosestU)", layer, args, sel))
    total = {"seconds": heat["seconds"] + sel["seconds"], "peak": max(heat["peak"], sel["peak"])}
    rows.append(_row("closest, heatmaps included", layer, args, total))
    shutil.rmtree(run / CORRECT_HEATMAPS, ignore_errors=True)  # time computing them
    with peak_memory() as ref:
        correct = correct_reference(pipe)
    rows.append(_row(f"heatmaps of {len(correct)} correct test inputs", layer, args, ref))
    contrast = ClusterSpace(space.features, space.labels, correct=correct)
    with peak_memory() as sel_c:
        SELECTORS.get("closest-contrast")().select(pool, args.budget, clusters=contrast)
    rows.append(_row("closest-contrast", layer, args, sel_c))
    total_c = {
        "seconds": heat["seconds"] + ref["seconds"] + sel_c["seconds"],
        "peak": max(heat["peak"], ref["peak"], sel_c["peak"]),
    }
    rows.append(_row("closest-contrast, all heatmaps included", layer, args, total_c))
    with peak_memory() as pred:
        parts = [
            predict(model, torch.from_numpy(np.asarray(images[a : a + CHUNK])), 1024).probs
            for a in range(0, args.pool, CHUNK)
        ]
        probs = np.concatenate(parts)
    rows.append(_row("predict the pool (softmax)", "-", args, pred))
    for name in ("entropy", "random"):
        with peak_memory() as cost:
            SELECTORS.get(name)().select(
                PoolView(np.asarray(ids), probs), args.budget, random_state=0
            )
        rows.append(_row(name, "-", args, cost))
    notes = (
        f"Pool images rendered by the simulator into a {images.nbytes / 2**30:.1f} GiB "
        f"memory-mapped file (not timed). Heatmap features: {store.flat(layer).shape[1]} values "
        f"per image at layer {layer}; closest chose {len(chosen)} inputs for "
        f"{len(set(space.labels[space.labels >= 0].tolist()))} clusters of "
        f"{len(error_ids)} error inputs."
    )
    write_table(
        "selection_scale",
        f"Selection over a {args.pool:,}-image pool",
        f"benchmarks/bench_selection_scale.py --pool {args.pool} --budget {args.budget}",
        rows,
        notes,
    )
    shutil.rmtree(work, ignore_errors=True)


def _row(step: str, layer: str, args: argparse.Namespace, cost: dict[str, float]) -> dict:
    return {
        "step": step,
        "pool": args.pool,
        "budget": args.budget,
        "layer": layer,
        "seconds": round(cost["seconds"], 1),
        "peak MB": round(cost["peak"]),
    }


if __name__ == "__main__":
    main()
