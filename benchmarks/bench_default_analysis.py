"""Candidate default analyses on corruption and semantic-subtype causes (issue 13).

Settings (small on purpose: a shared 2-core machine):

* ``signs-corruption``, ``fashion-corruption``: the built-in datasets with their injected /
  simulated scenarios (rare in train, common in test), the causes to find;
* ``fashion-subtypes``, ``signs-subtypes``, ``fashion-subtypes2``, ``signs-subtypes-out``
  (:data:`SUBTYPE_SETTINGS`: dataset, classes, kept share): no injected scenario; in three
  classes a visual subtype (George-style: k-means, k = 3, on the class's pooled pixels reduced
  by PCA, or in ``fashion-subtypes-model`` on a reference CNN's hidden layer as George does;
  the smallest of the three clusters) is kept at 3% of its natural share in train and
  val (0% in ``signs-subtypes-out``); its test images are tagged ``<class>:subtype`` for
  scoring only.

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
from dnnsafety.config import PluginConfig, RunConfig  # noqa: E402
from dnnsafety.data import load_dataset  # noqa: E402
from dnnsafety.evaluation import score_clusters  # noqa: E402
from dnnsafety.failures import error_inputs  # noqa: E402
from dnnsafety.features.sources import combine_blocks  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.analyze.safe import fit_source  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CACHE = Path("/tmp/dnnsafety-bench-default")
# subtype setting -> (dataset, classes with a held-out subtype, share of it kept in train/val,
# the space the subtypes are clustered in: "pixels", or "model" for the hidden layer of a
# reference small CNN trained on all training images, as George (Sohoni et al. 2020) does)
SUBTYPE_SETTINGS: dict[str, tuple[str, tuple[int, ...], float, str]] = {
    "fashion-subtypes": ("fashion-mnist", (0, 2, 4), 0.03, "pixels"),  # t-shirt, pullover, coat
    "signs-subtypes": ("signs", (1, 4, 7), 0.03, "pixels"),  # yield, no_entry, keep_right
    # trouser, sandal, sneaker: classes that are otherwise easy (a pixel logistic regression
    # fails on 4-7% of the rest of each class, on 40-87% of its subtype when held out), so
    # the subtype is its class's main failure, unlike the confusable classes above
    "fashion-subtypes2": ("fashion-mnist", (1, 5, 7), 0.03, "pixels"),
    "signs-subtypes-out": ("signs", (1, 4, 7), 0.0, "pixels"),  # held fully out
    # the classes of fashion-subtypes2, their subtypes clustered in a model's feature space
    "fashion-subtypes-model": ("fashion-mnist", (1, 5, 7), 0.03, "model"),
}

# candidate -> (feature source, clusterer name, clusterer params)
CANDIDATES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "black-box today: backbone + umap + dbscan": ("backbone", "dbscan", {}),
    "backbone + umap + guarded dbscan (split by true class)": ("backbone", "guarded", {}),
    "backbone + block 13 + umap + dbscan": ("backbone+13", "dbscan", {}),
    "backbone + block 13 + umap + guarded dbscan (true class)": ("backbone+13", "guarded", {}),
    # the guard before its group-share split (a cluster holding most errors of each of its
    # classes is split per class too): only the cluster holding most errors is split
    "backbone + block 13 + umap + guarded dbscan (true class, dominant cluster only)": (
        "backbone+13",
        "guarded",
        {"group_share": 1.0},
    ),
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
# feature source -> its analysis config (backbone: the pooled embedding alone, as before;
# backbone+13: with MobileNetV2's block 13 pooled beside it, the default since issue 13)
FEATURES: dict[str, PluginConfig] = {
    "backbone": PluginConfig("backbone", {"blocks": []}),
    "backbone+13": PluginConfig("backbone", {"blocks": ["features.13"]}),
    "activations": PluginConfig("activations"),
}
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
    # tables written before a column was added: the same columns everywhere, blank if missing
    columns = list(dict.fromkeys(k for r in sorted(rows, key=len, reverse=True) for k in r))
    order = list(dict.fromkeys(r["setting"] for r in rows))  # rows grouped by setting
    rows = sorted(rows, key=lambda r: order.index(r["setting"]))
    return [{k: r.get(k, "") for k in columns} for r in rows], commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--settings", default="signs-corruption,fashion-corruption,fashion-subtypes,signs-subtypes"
    )
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--seeds",
        default="",
        help="UMAP and clusterer seeds (comma-separated; default: the run's seed): scores are "
        "means over them, 'min F1 per seed' lists each",
    )
    parser.add_argument("--no-hudd", action="store_true")
    parser.add_argument(
        "--candidates",
        default="",
        help="run only the candidates whose name holds one of these (comma-separated) words",
    )
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
    dataset = "signs" if setting.startswith("signs") else ""
    if setting.startswith("fashion"):
        dataset = "fashion-mnist"
    config.data.name = dataset
    config.data.n_train, config.data.n_val = args.train, max(args.train // 10, 100)
    config.data.n_test, config.data.n_pool = args.test, 100
    config.train.epochs = args.epochs
    config.train.threads = args.threads
    if setting in SUBTYPE_SETTINGS:
        config.data.scenarios = no_scenarios(dataset)
    return config


def no_scenarios(dataset: str) -> dict[str, dict[str, float]]:
    if dataset == "signs":
        from dnnsafety.sim.scenarios import RARE_SCENARIOS as names
    else:
        from dnnsafety.data.inject import SCENARIOS as names
    return {s: dict.fromkeys(names, 0.0) for s in ("train", "val", "test", "pool")}


def subtype_npz(config: RunConfig, path: Path, seed: int, setting: str) -> None:
    """Hold a George-style visual subtype of some classes (nearly) out of train and val."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    data = load_dataset(config.data, seed)
    _, classes, keep_share, space = SUBTYPE_SETTINGS[setting]
    rng = np.random.default_rng([seed, 13])
    embed = reference_embedding(config, data, seed) if space == "model" else None

    def pixels(images: torch.Tensor) -> np.ndarray:
        if embed is not None:
            return embed(images)
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
                drop = hit[rng.random(len(hit)) >= keep_share]
                keep_rows[split][drop] = False
    for split in ("train", "val", "test"):
        part = data[split]
        keep = keep_rows[split]
        arrays[f"x_{split}"] = (part.images[torch.from_numpy(keep)] * 255).round().byte().numpy()
        arrays[f"y_{split}"] = part.label_values[keep]
        arrays[f"scenario_{split}"] = tags[split][keep].astype(str)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def reference_embedding(
    config: RunConfig, data: Any, seed: int
) -> Callable[[torch.Tensor], np.ndarray]:
    """George's space: the 128-unit hidden layer of a small CNN trained on every training image
    (no subtype held out), ``N x C x H x W`` images -> ``N x 128`` activations."""
    from dnnsafety.models.training import train_model
    from dnnsafety.models.zoo import build_model

    train, val = data["train"], data["val"]
    shape = train.images.shape
    model = build_model("small_cnn", shape[1], len(data.class_names), shape[-1])
    train_model(
        model, train.images, train.label_values, val.images, val.label_values, config.train, seed
    )
    model.eval()
    hidden = torch.nn.Sequential(model.features, *list(model.classifier)[:3])  # type: ignore[arg-type]

    def embed(images: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([hidden(b) for b in images.split(512)]).numpy()

    return embed


def prepare(setting: str, args: argparse.Namespace) -> tuple[Pipeline, RunConfig]:
    config = config_for(setting, args)
    folder = OUT / f"default-{setting}-{args.train}-{args.test}-ep{args.epochs}"
    if setting in SUBTYPE_SETTINGS:
        npz = folder.with_suffix(".npz")
        if not npz.exists():
            subtype_npz(config, npz, config.seed, setting)
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
    kind = "subtype" if setting in SUBTYPE_SETTINGS else "corruption"
    base = {
        "setting": setting,
        "cause kind": kind,
        "val acc": round(val_accuracy(pipe), 3),
        "test images": len(split.ids),
        "errors": len(errors),
        "causes": len(causes),
    }
    if not causes:  # the model fails on no cause: nothing to score
        empty = row(base, "(none: no error has a cause)", np.zeros(0), scenarios[:0], [], 0.0)
        return [{k: ("" if k not in base and k != "candidate" else v) for k, v in empty.items()}]
    key = f"{pipe.run.path}|{pipe.model_key}|{len(errors)}"
    feats: dict[str, np.ndarray] = {}
    for name, spec in FEATURES.items():
        cfg = copy.deepcopy(config.analysis)
        cfg.features = spec

        def compute(cfg: Any = cfg, name: str = name) -> np.ndarray:
            source = fit_source(cfg, model, pipe.dataset, pipe.run, config.seed)
            return source.transform(images, desc=f"{name} features")

        t1 = time.perf_counter()
        feats[name] = cached(f"{key}|{name}", compute)
        print(f"[{setting}] {name} features {feats[name].shape} {time.perf_counter() - t1:.0f}s")
    feats["combined"] = combine_blocks([feats["backbone"], feats["activations"]])
    wanted = [w for w in args.candidates.split(",") if w]
    used = {
        src for c, (src, _, _) in CANDIDATES.items() if not wanted or any(w in c for w in wanted)
    }
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [config.seed]
    reduced = {
        (name, seed): REDUCERS.create("umap", {}, random_state=seed).fit_transform(f)
        for name, f in feats.items()
        if name in used
        for seed in seeds
    }
    rows = []
    for cand, (source, cluster, params) in CANDIDATES.items():
        if wanted and not any(w in cand for w in wanted):
            continue
        per_seed = []
        for seed in seeds:
            t1 = time.perf_counter()
            est = CLUSTERERS.create(cluster, params, random_state=seed)
            by = str(getattr(est, "by", ""))
            if isinstance(est, GroupedClusterer) and by:
                labels = est.fit_predict(reduced[source, seed], error_groups(by, *classes))
            else:
                labels = est.fit_predict(reduced[source, seed])
            per_seed.append(row(base, cand, labels, scenarios, causes, time.perf_counter() - t1))
        rows.append(mean_row(per_seed) if len(seeds) > 1 else per_seed[0])
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
        "min F1 per seed": f"{s.min_f1:.2f}",
        "seeds covering all": int(s.coverage == 1.0),
    }


def mean_row(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rows of several seeds: numbers averaged, F1 per cause averaged,
    and the lowest per-cause F1 of each seed listed."""
    out = dict(per_seed[0])
    for col, value in out.items():
        if isinstance(value, float) or (isinstance(value, int) and col != "errors"):
            if col in ("val acc", "causes", "test images"):
                continue
            out[col] = round(float(np.mean([r[col] for r in per_seed])), 3)
    per_cause: dict[str, list[float]] = {}
    for r in per_seed:
        for part in r["F1 per cause"].split(", "):
            cause, f1 = part.rsplit(" ", 1)
            per_cause.setdefault(cause, []).append(float(f1))
    out["F1 per cause"] = ", ".join(f"{c} {np.mean(v):.2f}" for c, v in per_cause.items())
    out["min F1 per seed"] = " / ".join(f"{r['min F1']:.2f}" for r in per_seed)
    out["seeds covering all"] = sum(r["coverage"] == 1.0 for r in per_seed)
    return out


def val_accuracy(pipe: Pipeline) -> float:
    """The trained model's best validation accuracy (its training record)."""
    import json

    record = json.loads((pipe.run.path / "training.json").read_text())
    return float(record.get("best_score", float("nan")))


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


def subtype_notes(rows: list[dict[str, Any]]) -> str:
    """The classes and kept share of each subtype setting among the rows."""
    from dnnsafety.data.builtin import FASHION_CLASSES
    from dnnsafety.sim.templates import SIGN_CLASSES

    names = {"fashion-mnist": FASHION_CLASSES, "signs": SIGN_CLASSES}
    parts = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        if setting in SUBTYPE_SETTINGS:
            dataset, classes, keep, space = SUBTYPE_SETTINGS[setting]
            held = ", ".join(names[dataset][c] for c in classes)
            where = "" if space == "pixels" else ", clustered in a reference CNN's hidden layer"
            parts.append(f"{setting}: {held} at {keep:.0%}{where}")
    return "; ".join(parts)


def notes(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Per candidate over all settings: do the targets hold?"""
    seeds = args.seeds or "the run's seed (0)"
    empty = [r["setting"] for r in rows if r["candidate"].startswith("(none")]
    held_out = subtype_notes(rows)
    rows = [r for r in rows if not r["candidate"].startswith("(none")]
    lines = [
        f"Sizes: {args.train} train images (minus the held-out subtypes), "
        f"{max(args.train // 10, 100)} val, the 'test images'; small CNN, {args.epochs} epochs "
        "('val acc': its best validation accuracy); backbone MobileNetV2 (ImageNet, frozen) at "
        f"224 px; UMAP (10-D) on each feature source per setting. Seeds (UMAP and clusterer): "
        f"{seeds}; with several, every score is the mean over them, 'min F1 per seed' lists "
        "each seed's lowest per-cause F1 and 'seeds covering all' counts the seeds that cover "
        "every cause (HUDD: one run). Subtypes: the smallest of 3 k-means clusters per "
        "class (on pooled pixels reduced by PCA, unless stated), kept at a share of its own "
        f"in train/val ({held_out}). F1 per cause: "
        "of its best-matching cluster (recall = share of the cause's errors in it, "
        "precision = share of the cluster that is the cause). 'purity (1 cluster)': the "
        "purity of putting all errors in one cluster. 'clustering s': clustering only "
        "(features shared); HUDD: its whole analysis stage (heatmaps included).",
        "",
        "Targets (issue 13): every cause covered, per-cause F1 >= 0.7 on every setting, mean "
        "purity >= 0.95 on the corruption settings.",
    ]
    if empty:
        lines += [
            "",
            f"Left out of the summary: {', '.join(empty)} (the model makes no error with a "
            "cause there: nothing to find).",
        ]
    lines += [
        "",
        "| candidate | settings covering every cause | min F1 (all) | mean F1 (all) | "
        "mean purity (corruption) | corruption settings at F1 >= 0.7 | subtype settings at "
        "F1 >= 0.7 | targets met on every setting |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cand in dict.fromkeys(r["candidate"] for r in rows):
        mine = [r for r in rows if r["candidate"] == cand]
        covered = sum(r["coverage"] == 1.0 for r in mine)
        min_f1 = min(r["min F1"] for r in mine)
        mean_f1 = float(np.mean([r["mean F1"] for r in mine]))
        corr = [r["purity"] for r in mine if r["cause kind"] == "corruption"]
        purity = float(np.mean(corr)) if corr else float("nan")
        met = covered == len(mine) and min_f1 >= 0.7 and (not corr or purity >= 0.95)

        def passing(kind: str, mine: list[dict[str, Any]] = mine) -> str:
            of_kind = [r for r in mine if r["cause kind"] == kind]
            good = sum(r["coverage"] == 1.0 and r["min F1"] >= 0.7 for r in of_kind)
            return f"{good}/{len(of_kind)}"

        lines.append(
            f"| {cand} | {covered}/{len(mine)} | {min_f1:.3f} | {mean_f1:.3f} | "
            f"{purity:.3f} | {passing('corruption')} | {passing('subtype')} | "
            f"{'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
