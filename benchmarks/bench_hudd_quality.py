"""Root-cause cluster quality of the white-box analysis against ground truth (issue 3).

For each dataset: train the default model (cached in benchmarks/out/), analyse its test errors
in the default and the hudd-compat mode, and score every layer's clusters against the
ground-truth scenarios: purity (mean and size-weighted), coverage of the rare scenarios,
ARI/NMI and the variance-ratio share (METHOD.md §5). Ground truth is used here only.

Reproduce: .venv/bin/python benchmarks/bench_hudd_quality.py [--datasets signs,fashion-mnist]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

# before anything starts torch's worker threads: they copy the setting only when created
torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.config import RunConfig  # noqa: E402
from dnnsafety.evaluation import score_clusters  # noqa: E402
from dnnsafety.failures import error_inputs  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.analyze.hudd import load_layer_labels  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument("--modes", default="default,hudd-compat")
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        base = RunDir(OUT / dataset)
        config = RunConfig()
        config.data.name = dataset
        pipe = Pipeline(base, config)
        pipe.train()
        pipe.evaluate()
        for mode in args.modes.split(","):
            folder = OUT / f"{dataset}-{mode}"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(base.path, folder, ignore=shutil.ignore_patterns("analysis*"))
            run = RunDir(folder)
            cfg = copy.deepcopy(config)
            cfg.analysis.mode = mode
            cfg.analysis.features = ""  # the white-box analysis (no longer the default)
            t0 = time.perf_counter()
            Pipeline(run, cfg).analyze()
            seconds = time.perf_counter() - t0
            samples = run.read_samples()
            errors = error_inputs(samples)
            ids, layers = load_layer_labels(run)
            if ids != errors["sample_id"].astype(str).tolist():
                raise RuntimeError("analysis labels are not aligned with the error table")
            selected = (folder / "clusters.json").read_text()
            rare = sorted(set(errors["scenario"]) - {"nominal"})
            meta = errors[[c for c in errors.columns if c.startswith("meta.")]]
            meta = meta.select_dtypes(include=[np.number])
            for layer, labels in layers.items():
                s = score_clusters(labels, errors["scenario"], meta, scenarios_to_cover=rare)
                is_sel = f'"layer": "{layer}"' in selected
                rows.append(
                    {
                        "dataset": dataset,
                        "mode": mode,
                        "layer": layer + (" (selected)" if is_sel else ""),
                        "errors": s.n_errors,
                        "k": s.n_clusters,
                        "purity": round(s.purity, 3),
                        "purity (weighted)": round(s.purity_weighted, 3),
                        "coverage (rare)": round(s.coverage, 3),
                        "min F1": round(s.min_f1, 3),
                        "mean F1": round(s.mean_f1, 3),
                        "purity (1 cluster)": round(s.purity_trivial, 3),
                        "uncovered": ",".join(s.uncovered) or "-",
                        "ARI": round(s.ari, 3),
                        "NMI": round(s.nmi, 3),
                        "variance-ratio share": round(s.variance_ratio_share, 3),
                        "analyze s": round(seconds, 1) if is_sel else "",
                    }
                )
                print(rows[-1], flush=True)
    md = write_table(
        "hudd_quality",
        "White-box (HUDD) root-cause clusters against ground-truth scenarios",
        f".venv/bin/python benchmarks/bench_hudd_quality.py --datasets {args.datasets}",
        rows,
        notes="Errors = misclassified test inputs of the default small_cnn. Coverage counts the "
        "rare/injected scenarios that are the dominant scenario of at least one cluster. "
        "'analyze s' = wall time of the whole analysis stage (heatmaps, all layers, outputs).",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
