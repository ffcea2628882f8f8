"""Can a different reading of the same LRP heatmaps lift HUDD's cluster purity? (issue 3)

Takes the heatmaps that `bench_hudd_quality.py` stored (default rule set, every candidate
layer) and clusters each layer's error-inducing inputs with HUDD's procedure (row-max
distance profiles, Ward, WICD knee) after one of these transforms of each heatmap:

- ``raw``: the flattened heatmap, as the analysis does;
- ``l2``: divided by its L2 norm (cosine geometry: the pattern, not the relevance's size);
- ``positive``: only the positive relevance (evidence for the predicted class), L2-normalised;
- ``spatial``: summed over channels (*where* the evidence is), L2-normalised;
- ``channel``: summed over positions (*which* features carry it), L2-normalised.

Purity and coverage against the ground-truth scenarios are computed at the knee's k and, as
a ceiling that no automatic rule would reach, at a fixed k = 40 cut of the same tree.
Ground truth is used for scoring only.

Reproduce: .venv/bin/python benchmarks/bench_hudd_quality.py; then
    .venv/bin/python benchmarks/bench_heatmap_variants.py [--datasets signs,fashion-mnist]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table
from dnnsafety.clustering.hudd import cluster_layer
from dnnsafety.evaluation import score_clusters
from dnnsafety.features import HeatmapStore

OUT = Path(__file__).resolve().parent / "out"
VARIANTS = ("raw", "l2", "positive", "spatial", "channel")
CEILING_K = 40


def transform(maps: np.ndarray, variant: str) -> np.ndarray:
    """One heatmap reading: ``N x ...`` relevance -> ``N x D`` float32 features."""
    x = np.asarray(maps, dtype=np.float32)
    n = len(x)
    if variant == "positive":
        x = np.clip(x, 0.0, None)
    elif variant == "spatial" and x.ndim == 4:
        x = x.sum(axis=1)
    elif variant == "channel" and x.ndim == 4:
        x = x.sum(axis=(2, 3))
    flat = x.reshape(n, -1)
    if variant == "raw":
        return flat
    return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        run = OUT / f"{dataset}-default"
        folder = run / "analysis" / "heatmaps"
        if not (folder / "index.json").exists():
            sys.exit(f"No heatmaps in {folder}: run benchmarks/bench_hudd_quality.py first.")
        store = HeatmapStore.open(folder)
        ids = store.ids.astype(str).tolist()
        samples = pd.read_parquet(run / "samples.parquet").set_index("sample_id")
        scenarios = samples.loc[ids, "scenario"].astype(str).to_numpy()
        rare = sorted(set(scenarios) - {"nominal"})
        for layer in store.layers:
            maps = store.array(layer)
            for variant in VARIANTS:
                res = cluster_layer(transform(maps, variant), layer=layer)
                knee = score_clusters(res.labels, scenarios, scenarios_to_cover=rare)
                cut = fcluster(res.linkage, t=CEILING_K, criterion="maxclust") - 1
                ceiling = score_clusters(cut, scenarios, scenarios_to_cover=rare)
                rows.append(
                    {
                        "dataset": dataset,
                        "layer": layer,
                        "reading": variant,
                        "errors": len(ids),
                        "k (knee)": res.k,
                        "purity": round(knee.purity, 3),
                        "purity (weighted)": round(knee.purity_weighted, 3),
                        "coverage (rare)": round(knee.coverage, 2),
                        "uncovered": ",".join(knee.uncovered) or "-",
                        f"purity at k={CEILING_K}": round(ceiling.purity, 3),
                        f"coverage at k={CEILING_K}": round(ceiling.coverage, 2),
                    }
                )
                print(rows[-1], flush=True)
    write_table(
        "heatmap_variants",
        "HUDD clustering of differently read LRP heatmaps against ground truth",
        "benchmarks/bench_heatmap_variants.py --datasets " + args.datasets,
        rows,
        "Heatmaps: default rule set, stored by bench_hudd_quality.py. Clustering: HUDD's "
        "(row-max profiles, Ward, WICD knee). The k=40 columns cut the same tree into 40 "
        "clusters: a ceiling for reading, not something the method would choose.",
    )


if __name__ == "__main__":
    main()
