"""Candidate default analyses on corruption and semantic-subtype causes (issue 13).

Settings (small on purpose: a shared 2-core machine):

* ``signs-corruption``, ``fashion-corruption``: the built-in datasets with their injected /
  simulated scenarios (rare in train, common in test), the causes to find;
* ``fashion-subtypes``, ``signs-subtypes``: no injected scenario; in three classes a visual
  subtype (George-style: k-means, k = 3, on the class's pooled pixels reduced by PCA; the
  smallest of the three clusters) is kept at 3% of its natural share in train and val; its
  test images are tagged ``<class>:subtype`` for scoring only.

For each setting: the default small CNN is trained once (cached in benchmarks/out/), its test
errors are analysed by every candidate, and the clusters are scored against the causes
(:func:`dnnsafety.evaluation.score_clusters`): coverage, per-cause F1 of the best-matching
cluster (min and mean over causes), purity beside the one-cluster purity. Features are computed
once per setting (backbone features cached under /tmp) and shared by the candidates; HUDD runs
the white-box analysis stage on a copy of the run. Ground truth is used only for scoring.

Reproduce: nice -n 10 .venv/bin/python benchmarks/bench_default_analysis.py
    [--settings signs-corruption,fashion-corruption,fashion-subtypes,signs-subtypes]
    [--train 5000] [--test 2000] [--epochs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.clustering import CLUSTERERS, REDUCERS  # noqa: E402
from dnnsafety.clustering.guard import GroupedClusterer, error_groups  # noqa: E402
from dnnsafety.config import RunConfig  # noqa: E402
from dnnsafety.data import load_dataset  # noqa: E402
from dnnsafety.evaluation import score_clusters  # noqa: E402
from dnnsafety.failures import error_inputs  # noqa: E402
from dnnsafety.features.sources import combine_blocks  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.analyze.safe import fit_source  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CACHE = Path("/tmp/dnnsafety-bench-default")
SUBTYPE_CLASSES = {"fashion-mnist": (0, 2, 4), "signs": (1, 4, 7)}
KEEP = 0.03

# candidate -> (feature source, clusterer name, clusterer params)
CANDIDATES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "black-box today: backbone + umap + dbscan": ("backbone", "dbscan", {}),
    "backbone + umap + guarded dbscan (split by true class)": ("backbone", "guarded", {}),
    "backbone + umap + guarded dbscan (split by k only)": ("backbone", "guarded", {"by": ""}),
    "backbone + umap + conditional (true class)": ("backbone", "conditional", {"by": "true"}),
    "backbone + umap + conditional (predicted class)": ("backbone", "conditional", {"by": "pred"}),
    "backbone + umap + conditional (confusion pair)": ("backbone", "conditional", {"by": "pair"}),
    "activations + umap + dbscan": ("activations", "dbscan", {}),
    "activations + umap + guarded dbscan (true class)": ("activations", "guarded", {}),
    "combined + umap + dbscan": ("combined", "dbscan", {}),
    "combined + umap + guarded dbscan (true class)": ("combined", "guarded", {}),
    "combined + umap + guarded dbscan (k only)": ("combined", "guarded", {"by": ""}),
    "combined + umap + conditional (true class)": ("combined", "conditional", {"by": "true"}),
}
HUDD = "white-box: HUDD (default mode)"
TITLE = "Candidate default analyses: corruption and semantic-subtype causes"


def merged(names: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and commands of earlier results (benchmarks/results/<name>.json)."""
    import json

    rows, commands = [], []
    for name in names:
        data = json.loads(
            (Path(__file__).resolve().parent / "results" / f"{name}.json").read_text()
        )
        rows += data["rows"]
        commands.append(data["command"])
    return rows, commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--settings", default="signs-corruption,fashion-corruption,fashion-subtypes,signs-subtypes"
    )
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-hudd", action="store_true")
    parser.add_argument("--name", default="default_analysis")
    parser.add_argument(
        "--merge",
        default="",
        help="only write the table from these result names (comma-separated), run apart",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.merge:
        rows, commands = merged(args.merge.split(","))
        command = " && ".join(
            [*commands, "benchmarks/bench_default_analysis.py " + " ".join(sys.argv[1:])]
        )
        write_table(args.name, TITLE, command, rows, notes(rows, args))
        return
    rows: list[dict[str, Any]] = []
    for setting in args.settings.split(","):
        rows += run_setting(setting, args)
    command = "benchmarks/bench_default_analysis.py " + " ".join(sys.argv[1:])
    write_table(
        args.name,
        TITLE,
        command.strip(),
        rows,
        notes(rows, args),
    )


def config_for(setting: str, args: argparse.Namespace) -> RunConfig:
    config = RunConfig()
    dataset, kind = setting.split("-", 1) if setting.startswith("signs") else ("", "")
    if setting.startswith("fashion"):
        dataset, kind = "fashion-mnist", setting.removeprefix("fashion-")
    config.data.name = dataset
    config.data.n_train, config.data.n_val = args.train, max(args.train // 10, 100)
    config.data.n_test, config.data.n_pool = args.test, 100
    config.train.epochs = args.epochs
    config.train.threads = args.threads
    if kind == "subtypes":
        config.data.scenarios = no_scenarios(dataset)
    return config


def no_scenarios(dataset: str) -> dict[str, dict[str, float]]:
    if dataset == "signs":
        from dnnsafety.sim.scenarios import RARE_SCENARIOS as names
    else:
        from dnnsafety.data.inject import SCENARIOS as names
    return {s: dict.fromkeys(names, 0.0) for s in ("train", "val", "test", "pool")}


def subtype_npz(config: RunConfig, path: Path, seed: int) -> None:
    """Hold a George-style visual subtype of three classes nearly out of train and val."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    data = load_dataset(config.data, seed)
    classes = SUBTYPE_CLASSES[config.data.name]
    rng = np.random.default_rng([seed, 13])

    def pixels(images: torch.Tensor) -> np.ndarray:
        return torch.nn.functional.adaptive_avg_pool2d(images, 14).flatten(1).numpy()

    arrays: dict[str, Any] = {"class_names": np.asarray(data.class_names), "layout": "NCHW"}
    keep_rows: dict[str, np.ndarray] = {}
    tags: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        part = data[split]
        keep_rows[split] = np.ones(len(part.ids), dtype=bool)
        tags[split] = np.full(len(part.ids), "", dtype=object)
    for c in classes:
        train = data["train"]
        mine = np.flatnonzero(train.label_values == c)
        pca = PCA(10, random_state=seed).fit(pixels(train.images[mine]))
        km = KMeans(3, n_init=10, random_state=seed).fit(pca.transform(pixels(train.images[mine])))
        sub = int(np.argmin(np.bincount(km.labels_, minlength=3)))
        name = f"{data.class_names[c]}:subtype"
        for split in ("train", "val", "test"):
            part = data[split]
            rows = np.flatnonzero(part.label_values == c)
            hit = rows[km.predict(pca.transform(pixels(part.images[rows]))) == sub]
            if split == "test":
                tags[split][hit] = name
            else:
                drop = hit[rng.random(len(hit)) >= KEEP]
                keep_rows[split][drop] = False
    for split in ("train", "val", "test"):
        part = data[split]
        keep = keep_rows[split]
        arrays[f"x_{split}"] = (part.images[torch.from_numpy(keep)] * 255).round().byte().numpy()
        arrays[f"y_{split}"] = part.label_values[keep]
        arrays[f"scenario_{split}"] = tags[split][keep].astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def prepare(setting: str, args: argparse.Namespace) -> tuple[Pipeline, RunConfig]:
    config = config_for(setting, args)
    folder = OUT / f"default-{setting}-{args.train}-{args.test}-ep{args.epochs}"
    if setting.endswith("subtypes"):
        npz = folder.with_suffix(".npz")
        if not npz.exists():
            subtype_npz(config, npz, config.seed)
        config.data.name, config.data.path = "npz", str(npz)
        config.data.n_train = config.data.n_val = config.data.n_test = config.data.n_pool = 0
        config.data.scenarios = {}
    pipe = Pipeline(RunDir(folder), config)
    pipe.train()
    pipe.evaluate()
    return pipe, config


def cached(key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    path = CACHE / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    feats = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


def run_setting(setting: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    pipe, config = prepare(setting, args)
    model = pipe.model()
    errors = error_inputs(pipe.run.read_samples())
    split = pipe.dataset["test"]
    pos = {sid: i for i, sid in enumerate(split.ids.tolist())}
    images = split.images[torch.tensor([pos[s] for s in errors["sample_id"]])]
    scenarios = errors["scenario"].astype(str).to_numpy()
    causes = sorted(set(scenarios) - {"nominal"})
    classes = (errors["label"].to_numpy(dtype=np.int64), errors["pred"].to_numpy(dtype=np.int64))
    print(f"[{setting}] {len(errors)} errors, causes {causes} ({time.perf_counter() - t0:.0f}s)")
    key = f"{pipe.run.path}|{pipe.model_key}|{len(errors)}"
    feats: dict[str, np.ndarray] = {}
    for name in ("backbone", "activations"):
        cfg = copy.deepcopy(config.analysis)
        cfg.features = name

        def compute(cfg: Any = cfg, name: str = name) -> np.ndarray:
            source = fit_source(cfg, model, pipe.dataset, pipe.run, config.seed)
            return source.transform(images, desc=f"{name} features")

        t1 = time.perf_counter()
        feats[name] = cached(f"{key}|{name}", compute)
        print(f"[{setting}] {name} features {feats[name].shape} {time.perf_counter() - t1:.0f}s")
    feats["combined"] = combine_blocks([feats["backbone"], feats["activations"]])
    reduced = {
        name: REDUCERS.create("umap", {}, random_state=config.seed).fit_transform(f)
        for name, f in feats.items()
    }
    rows = []
    kind = "subtype" if setting.endswith("subtypes") else "corruption"
    base = {"setting": setting, "cause kind": kind, "errors": len(errors), "causes": len(causes)}
    for cand, (source, cluster, params) in CANDIDATES.items():
        t1 = time.perf_counter()
        est = CLUSTERERS.create(cluster, params, random_state=config.seed)
        by = str(getattr(est, "by", ""))
        if isinstance(est, GroupedClusterer) and by:
            labels = est.fit_predict(reduced[source], error_groups(by, *classes))
        else:
            labels = est.fit_predict(reduced[source])
        rows.append(row(base, cand, labels, scenarios, causes, time.perf_counter() - t1))
        print(rows[-1], flush=True)
    if not args.no_hudd:
        rows.append(hudd_row(base, pipe, config, scenarios, causes))
        print(rows[-1], flush=True)
    return rows


def row(
    base: dict[str, Any],
    candidate: str,
    labels: np.ndarray,
    scenarios: np.ndarray,
    causes: list[str],
    seconds: float,
) -> dict[str, Any]:
    s = score_clusters(labels, scenarios, scenarios_to_cover=causes)
    per_cause = ", ".join(f"{c} {v.f1:.2f}" for c, v in s.causes.items())
    return {
        **base,
        "candidate": candidate,
        **s.table_columns(),
        "F1 per cause": per_cause,
        "clustering s": round(seconds, 1),
    }


def hudd_row(
    base: dict[str, Any],
    pipe: Pipeline,
    config: RunConfig,
    scenarios: np.ndarray,
    causes: list[str],
) -> dict[str, Any]:
    folder = pipe.run.path.with_name(pipe.run.path.name + "-hudd")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pipe.run.path, folder, ignore=shutil.ignore_patterns("analysis*", "clu*"))
    cfg = copy.deepcopy(config)
    cfg.analysis.features = ""
    run = RunDir(folder)
    hudd = Pipeline(run, cfg)
    t0 = time.perf_counter()
    hudd.analyze(white_box=True)
    seconds = time.perf_counter() - t0
    errors = error_inputs(run.read_samples())
    labels = errors["cluster"].astype(int).to_numpy()
    assert np.array_equal(errors["scenario"].astype(str).to_numpy(), scenarios)
    shutil.rmtree(folder, ignore_errors=True)
    return row(base, HUDD, labels, scenarios, causes, seconds)


def notes(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Per candidate over all settings: do the targets hold?"""
    lines = [
        f"Sizes: {args.train} train images (minus the held-out subtypes), "
        f"{max(args.train // 10, 100)} val, {args.test} test; small CNN, {args.epochs} epochs; "
        "backbone MobileNetV2 (ImageNet, frozen) at 224 px; UMAP (10-D) on each feature "
        "source once per setting. Subtypes: 3 classes, the smallest of 3 pixel k-means "
        f"clusters per class, kept at {KEEP:.0%} of their share in train/val. F1 per cause: "
        "of its best-matching cluster (recall = share of the cause's errors in it, "
        "precision = share of the cluster that is the cause). 'purity (1 cluster)': the "
        "purity of putting all errors in one cluster. 'clustering s': clustering only "
        "(features shared); HUDD: its whole analysis stage (heatmaps included).",
        "",
        "Targets (issue 13): every cause covered, per-cause F1 >= 0.7 on every setting, mean "
        "purity >= 0.95 on the corruption settings.",
        "",
        "| candidate | settings covering every cause | min F1 (all) | mean F1 (all) | "
        "mean purity (corruption) | targets met |",
        "|---|---|---|---|---|---|",
    ]
    for cand in dict.fromkeys(r["candidate"] for r in rows):
        mine = [r for r in rows if r["candidate"] == cand]
        covered = sum(r["coverage"] == 1.0 for r in mine)
        min_f1 = min(r["min F1"] for r in mine)
        mean_f1 = float(np.mean([r["mean F1"] for r in mine]))
        corr = [r["purity"] for r in mine if r["cause kind"] == "corruption"]
        purity = float(np.mean(corr)) if corr else float("nan")
        met = covered == len(mine) and min_f1 >= 0.7 and (not corr or purity >= 0.95)
        lines.append(
            f"| {cand} | {covered}/{len(mine)} | {min_f1:.3f} | {mean_f1:.3f} | "
            f"{purity:.3f} | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
