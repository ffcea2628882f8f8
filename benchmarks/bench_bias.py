"""Bias discovery and mitigation without labels on signs and Fashion-MNIST (issue 17).

Per dataset, a small model is trained on few images (sizes below) whose training split
under-represents the rare scenarios (signs: night, fog, occlusion_lower, tilt at 0.5% each;
Fashion-MNIST: injected dark, occlusion, rotation, blur, noise at 1% each) while the test
split holds 10-11% of each. Scenarios are used only to score.

1. Groups without metadata: the features of all training and test inputs (the model's
   penultimate activations, white-box; a frozen MobileNetV2 on 96x96 inputs, black-box) are
   reduced and clustered (several reducer/clusterer pairs), and every group flagged by the
   default rule (BH q <= 0.05 against the train-weighted error rate, representation ratio
   >= 2, >= 10 test inputs). Recall: share of rare scenarios that dominate >= 1 flagged group.
   Precision: share of flagged groups dominated by a rare scenario.
2. Groups from metadata: SliceLine's top 8 slices of the test split's metadata, each with the
   scenario that dominates it and whether its predicates name a parameter that scenario sets.
The mitigations are measured by ``bench_bias_mitigation.py`` (a larger training split).

Reproduce: OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_bias.py
    [--datasets signs,fashion-mnist] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.bias import find_groups, find_slices  # noqa: E402
from dnnsafety.config import RunConfig  # noqa: E402
from dnnsafety.data.inject import CORRUPTIONS  # noqa: E402
from dnnsafety.features import FEATURE_SOURCES, FeatureContext  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402
from dnnsafety.sim import RARE_SCENARIOS  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
SIZES = {"n_train": 3000, "n_val": 300, "n_test": 2000, "n_pool": 200}
TRAIN_EPOCHS = {"signs": 10, "fashion-mnist": 5}
GROUPINGS = [
    ("activations", "pca", "kmeans-fixed", {"n_clusters": 30}),
    ("activations", "pca", "kmeans-fixed", {"n_clusters": 50}),
    ("activations", "umap", "hdbscan", {}),
    ("backbone", "pca", "kmeans-fixed", {"n_clusters": 30}),
    ("backbone", "umap", "kmeans-fixed", {"n_clusters": 50}),
    ("backbone", "umap", "hdbscan", {}),
]
# the simulator parameters each signs scenario sets (sim/scenarios.py), and the injected ones
SCENARIO_PARAMETERS = {
    "night": {"brightness", "noise", "cast_r", "cast_g", "cast_b", "blur"},
    "fog": {"fog", "blur", "noise"},
    "occlusion_lower": {"occlusion", "occlusion_side"},
    "tilt": {"rotation"},
    "dark": {"brightness"},
    "occlusion": {"occlusion", "occ_x", "occ_y"},
    "rotation": {"rotation"},
    "blur": {"blur"},
    "noise": {"noise"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--skip-mitigation", action="store_true", help="no effect (bench_bias_mitigation.py)"
    )
    parser.add_argument("--skip-groups", action="store_true", help="slices (and mitigation) only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for dataset in args.datasets.split(","):
        run_dataset(dataset, args)


def rare_scenarios(dataset: str) -> tuple[str, ...]:
    return RARE_SCENARIOS if dataset == "signs" else tuple(CORRUPTIONS)


def _pipeline(dataset: str, args: argparse.Namespace) -> Pipeline:
    config = RunConfig()
    config.data.name = dataset
    for key, value in SIZES.items():
        setattr(config.data, key, value)
    config.train.epochs = TRAIN_EPOCHS[dataset]
    config.train.threads = args.threads
    pipe = Pipeline(RunDir(OUT / f"bias-{dataset}"), config)
    pipe.train()
    pipe.evaluate()
    return pipe


def _features(pipe: Pipeline, name: str, images: torch.Tensor) -> np.ndarray:
    path = pipe.run / f"bias_{name}.npy"
    if path.is_file():
        return np.load(path)
    params = {"image_size": 96} if name == "backbone" else {}
    source = FEATURE_SOURCES.create(name, params).fit(FeatureContext(model=pipe.model()))
    feats = source.transform(images)
    np.save(path, feats)
    return feats


def _dominant(scenarios: np.ndarray) -> tuple[str, float]:
    values, counts = np.unique(scenarios, return_counts=True)
    return str(values[counts.argmax()]), float(counts.max() / counts.sum())


def groups_rows(pipe: Pipeline, dataset: str) -> list[dict[str, Any]]:
    ds = pipe.dataset
    train, test = ds["train"], ds["test"]
    samples = pipe.run.read_samples().set_index("sample_id")
    images = torch.cat([train.images, test.images])
    is_test = np.r_[np.zeros(len(train), bool), np.ones(len(test), bool)]
    wrong = ~samples.loc[test.ids.astype(str), "correct"].to_numpy(dtype=bool)
    errors = np.r_[np.zeros(len(train), bool), wrong]
    scen = np.concatenate([train.scenarios, test.scenarios]).astype(str)
    rare = set(rare_scenarios(dataset))
    rows = []
    for source, reduce, cluster, params in GROUPINGS:
        t0 = time.perf_counter()
        feats = _features(pipe, source, images)
        result = find_groups(
            feats, is_test, errors, reduce=reduce, cluster=cluster, cluster_params=params
        )
        flagged = [g for g in result.groups if g.flagged]
        dominant = [_dominant(scen[is_test & (result.labels == g.id)]) for g in flagged]
        found = {d for d, _ in dominant if d in rare}
        precision = np.mean([d in rare for d, _ in dominant]) if dominant else float("nan")
        rows.append(
            {
                "features": source + (" (96 px)" if source == "backbone" else ""),
                "grouping": f"{reduce} + {cluster}"
                + (f" k={params['n_clusters']}" if "n_clusters" in params else ""),
                "groups": len(result.groups),
                "flagged": len(flagged),
                "recall": f"{len(found)}/{len(rare)} ({len(found) / len(rare):.0%})",
                "precision": f"{precision:.0%}" if dominant else "-",
                "rare scenarios missed": ", ".join(sorted(rare - found)) or "-",
                "flagged (dominant scenario: share, error)": "; ".join(
                    f"{d}: {s:.0%}, {g.error_rate:.2f}"
                    for (d, s), g in zip(dominant, flagged, strict=True)
                ),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    return rows


def slice_rows(pipe: Pipeline, dataset: str) -> list[dict[str, Any]]:
    test = pipe.dataset["test"]
    samples = pipe.run.read_samples().set_index("sample_id")
    wrong = ~samples.loc[test.ids.astype(str), "correct"].to_numpy(dtype=bool)
    assert test.metadata is not None
    from dnnsafety.bias import slice_members

    rows = []
    for rank, found in enumerate(find_slices(test.metadata, wrong, k=8), 1):
        members = slice_members(test.metadata, found)
        dom, share = _dominant(test.scenarios[members].astype(str))
        named = {p.column for p in found.predicates} & SCENARIO_PARAMETERS.get(dom, set())
        rows.append(
            {
                "rank": rank,
                "slice": found.rule,
                "support": found.support,
                "error": f"{found.error_rate:.2f} [{found.ci_low:.2f}, {found.ci_high:.2f}]",
                "dominant scenario": f"{dom} ({share:.0%})",
                "names its parameter": ", ".join(sorted(named)) or "no",
            }
        )
    return rows


def run_dataset(dataset: str, args: argparse.Namespace) -> None:
    pipe = _pipeline(dataset, args)
    sizes = ", ".join(f"{k[2:]} {v}" for k, v in SIZES.items())
    size_note = (
        f"Data: {dataset}, {sizes} images; small_cnn trained {TRAIN_EPOCHS[dataset]} epochs "
        f"(Adam); {args.threads} torch thread(s)."
    )
    command = f"benchmarks/bench_bias.py --datasets {dataset} --threads {args.threads}"
    if not args.skip_groups:
        write_table(
            f"bias_groups_{dataset}",
            f"Bias groups without metadata on {dataset}: recall and precision of flagged groups",
            command + " --skip-mitigation",
            groups_rows(pipe, dataset),
            size_note + " Recall: rare scenarios that dominate at least one flagged group; "
            "precision: flagged groups dominated by a rare scenario (targets 100% and >= 80%). "
            "seconds include the reducer (UMAP compiles on first use) and, on first use of a "
            "feature source, its features.",
        )
    write_table(
        f"bias_slices_{dataset}",
        f"SliceLine's top metadata slices of the test errors on {dataset}",
        command + " --skip-mitigation --skip-groups",
        slice_rows(pipe, dataset),
        size_note + " Numeric metadata in 8 quantile bins; slices of >= 20 test inputs, "
        "at most 2 predicates, found by sequential covering. names its parameter: the "
        "slice's predicates include a parameter its dominant scenario sets in the simulator "
        "(or the injected corruption's parameter).",
    )


if __name__ == "__main__":
    main()
