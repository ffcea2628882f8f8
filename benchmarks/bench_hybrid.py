"""Retraining that fixes every root cause (issue 19): hybrid selection, rules, generation.

Field-like setup of ``bench_retraining.py`` (original model trained with a cosine learning
rate, each rare scenario 2% of the unlabeled pool, 300 labels), at a reduced size so that it
runs on 2 shared CPU cores: the sizes are in every table. For each dataset: the HUDD
(white-box) analysis of the test errors, then ``compare`` with the label-based strategies
(``hybrid``, ``hybrid-size``, ``cluster-margin``, HUDD's ``closest``, ``entropy``,
``deepgini``) and, on signs, the ``generated`` mitigation (simulator renders inside each
root cause's rules, no labels).

Tables (``benchmarks/results/``):

* ``hybrid_<dataset>``: overall, pooled rare-scenario and worst-scenario accuracy, the mean over
  scenarios, per scenario; A12 / p of every strategy against entropy and DeepGini on rare and
  worst-scenario accuracy.
* ``hybrid_<dataset>_clusters``: accuracy on each root-cause cluster's test errors.
* ``hybrid_<dataset>_selections``: pool images each strategy labels per scenario, and how many
  of them the original model gets wrong.
* ``hybrid_rules_signs`` (``--rules-only``): every root-cause cluster's best rule (decision
  tree and RIPPER), with precision, recall, support and the cluster's purity;
  ``hybrid_rules_signs_sweep``: depth, RIPPER's rule cap and an exhaustive two-interval search
  for the night and fog clusters.

``--analysis default`` does the same with the product's default (black-box) root-cause
clusters instead of HUDD's, on the same trained model (copied from the HUDD run folder when
it is there): run folder ``out/hybrid-<dataset>-default``, tables ``hybrid_<dataset>_default*``
and ``hybrid_rules_signs_default*``. Selection then works in the black-box analysis's feature
space (the MobileNetV2 vectors before UMAP, pool images included).

Selector variants measured beside the library's (``register_variants``): ``hybrid-errors``,
``hybrid-errors-n1``, ``hybrid-floor<k>``, ``hybrid-equal``, ``cluster-margin-emb``.

Reproduce: .venv/bin/python benchmarks/bench_hybrid.py [--datasets signs,fashion-mnist]
    [--analysis hudd|default] [--seeds 5] [--epochs 5] [--strategies ...] [--threads 1]
    [--no-generated] [--no-control] [--bag-size N] [--tag SUFFIX] [--rules-only]
(the exact lines of every table: docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.config import RunConfig  # noqa: E402
from dnnsafety.data.inject import CORRUPTIONS  # noqa: E402
from dnnsafety.explain import cluster_rules  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.retrain import compare  # noqa: E402
from dnnsafety.pipeline.spaces import read_clusters  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402
from dnnsafety.sim import RARE_SCENARIOS  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"

SIZES = {
    "signs": {"n_train": 6000, "n_val": 600, "n_test": 3000, "n_pool": 10000},
    "fashion-mnist": {"n_train": 6000, "n_val": 600, "n_test": 3000, "n_pool": 10000},
}
"""Reduced split sizes (the built-in defaults are 20,000 / 2,000 / 5,000 / 10,000 on signs)."""

POOL_RARE = 0.02
LABEL_BASED = "hybrid,hybrid-size,cluster-margin,closest,entropy,deepgini"
BASELINES = ("entropy", "deepgini")
"""Every row gets A12 / p against these (on rare-scenario and worst-scenario accuracy)."""


def register_variants() -> None:
    """Selector variants measured against the defaults (fixed parameters, own names).

    ``hybrid-errors``: quotas proportional to each cluster's expected errors in its pool
    neighbourhood (sum of ``1 - max p``); ``hybrid-floor<k>``: ``k`` labels per root cause (the
    most uncertain of its neighbourhood), the rest of the budget by global entropy;
    ``hybrid-equal``: the budget split equally among the root causes (``budget // K`` each,
    the most uncertain of each neighbourhood; the remainder by global entropy), the floor rule
    with no cap: with clusters that are the scenarios, every scenario gets the same labels;
    ``hybrid-contrast-size`` / ``hybrid-contrast-floor10``: HUDD's size quotas (each root
    cause's share of the test errors) / the floor of 10, with neighbourhoods by the contrastive
    distance of ``closest-contrast`` (near the cluster, far from correctly classified inputs);
    ``cluster-margin-emb``: Cluster-Margin in the model's penultimate-layer embedding, as
    published (the library's ``cluster-margin`` clusters in the analysis feature space).
    """
    import dataclasses
    from typing import ClassVar

    from dnnsafety.selection import SELECTORS
    from dnnsafety.selection.hybrid import ClusterMarginSelector, HybridSelector

    def hybrid(name: str, **fixed: Any) -> None:
        class Variant(HybridSelector):
            if fixed.get("distance") == "contrastive":  # ClusterSpace.correct is built
                requires: ClassVar[frozenset[str]] = frozenset({"probs", "space", "correct"})

            def __init__(self, *, f: float = 2.0, batch_size: int | None = None) -> None:
                super().__init__(f=f, batch_size=batch_size, **fixed)

        Variant.__name__ = f"Hybrid_{name.replace('-', '_')}"
        if name not in SELECTORS.names():
            SELECTORS.register(name, help=f"hybrid with {fixed}")(Variant)

    hybrid("hybrid-errors", quota="errors")
    hybrid("hybrid-errors-n1", quota="errors", neighbourhood=1.0)
    for k in (5, 10, 15, 20):
        hybrid(f"hybrid-floor{k}", quota="floor", floor=k)
    hybrid("hybrid-equal", quota="floor", floor=10**9)  # floor capped at budget // K
    hybrid("hybrid-contrast-size", quota="size", distance="contrastive")
    hybrid("hybrid-contrast-floor10", quota="floor", floor=10, distance="contrastive")

    class EmbeddingClusterMargin(ClusterMarginSelector):
        requires: ClassVar[frozenset[str]] = frozenset({"probs", "activations"})

        def _select(self, pool: Any, budget: int, **kw: Any) -> Any:
            return super()._select(
                dataclasses.replace(pool, features=pool.activations), budget, **kw
            )

    if "cluster-margin-emb" not in SELECTORS.names():
        SELECTORS.register("cluster-margin-emb", help="Cluster-Margin, penultimate embedding")(
            EmbeddingClusterMargin
        )


def rare_scenarios(dataset: str) -> tuple[str, ...]:
    """The rare scenarios the built-in dataset under-represents in training."""
    return RARE_SCENARIOS if dataset == "signs" else tuple(CORRUPTIONS)


def base_config(dataset: str) -> RunConfig:
    """The field-like setup at the reduced size (cosine schedule, rare = 2% of the pool)."""
    config = RunConfig()
    config.data.name = dataset
    for key, value in SIZES[dataset].items():
        setattr(config.data, key, value)
    config.train.schedule = "cosine"
    config.data.scenarios = {"pool": dict.fromkeys(rare_scenarios(dataset), POOL_RARE)}
    return config


ANALYSES = ("hudd", "default")
"""``--analysis``: HUDD's white-box clusters (run folder ``out/hybrid-<dataset>``, the tables
without suffix), or the product's default black-box analysis (MobileNetV2 pooled embedding +
block 13, UMAP, guarded DBSCAN per true class; run folder ``out/hybrid-<dataset>-default``,
tables with the ``_default`` suffix)."""

ANALYSIS_NAMES = {
    "hudd": "HUDD (white-box)",
    "default": "default black-box (MobileNetV2 + block 13, UMAP, guarded DBSCAN)",
}


def run_folder(dataset: str, analysis: str) -> Path:
    """Run folder of ``dataset`` analysed by ``analysis`` (:data:`ANALYSES`)."""
    return OUT / (f"hybrid-{dataset}" if analysis == "hudd" else f"hybrid-{dataset}-{analysis}")


def _share_model(source: Path, target: Path) -> None:
    """Copy the trained model of ``source`` (the HUDD run) into the empty run folder ``target``.

    Both runs have the same data, model and training settings (only the analysis differs), so
    the training stage has the same fingerprint: the copy is what ``train`` would reuse, and
    both analyses look at the errors of the same model."""
    import json
    import shutil

    stages = source / "stages.json"
    if (target / "model.pt").exists() or not stages.is_file():
        return
    train = json.loads(stages.read_text(encoding="utf-8")).get("train")
    if not train or not all((source / o).exists() for o in train["outputs"]):
        return
    target.mkdir(parents=True, exist_ok=True)
    for name in train["outputs"]:
        shutil.copy2(source / name, target / name)
    (target / "stages.json").write_text(json.dumps({"train": train}, indent=2), encoding="utf-8")


def pipeline(dataset: str, epochs: int, analysis: str = "hudd") -> Pipeline:
    """The trained, evaluated and analysed run of ``dataset``, cached in out/."""
    config = base_config(dataset)
    config.retrain.epochs = epochs
    if analysis == "hudd":
        config.analysis.features = ""  # HUDD (no longer the default)
    else:
        _share_model(run_folder(dataset, "hudd"), run_folder(dataset, analysis))
    run = Pipeline(RunDir(run_folder(dataset, analysis)), config)
    run.train()
    run.evaluate()
    run.analyze()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument(
        "--analysis", choices=ANALYSES, default="hudd", help="root-cause clusters to select by"
    )
    parser.add_argument("--strategies", default=LABEL_BASED)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prepare", action="store_true", help="train and analyse only")
    parser.add_argument("--bag-size", type=int, default=None, help="bag of every strategy")
    parser.add_argument("--tag", default="", help="suffix of the table names")
    parser.add_argument(
        "--no-control", dest="control", action="store_false", help="skip the control runs"
    )
    parser.add_argument("--rules-only", action="store_true", help="signs: the rules tables only")
    parser.add_argument(
        "--no-generated", dest="generated", action="store_false", help="skip generation"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    register_variants()
    for dataset in args.datasets.split(","):
        t0 = time.perf_counter()
        run = pipeline(dataset, args.epochs, args.analysis)
        print(f"{dataset}: prepared in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.prepare:
            continue
        if args.rules_only:
            if dataset == "signs":
                rules_table(run, args.analysis)
            continue
        run_dataset(run, dataset, args)


def run_dataset(run: Pipeline, dataset: str, args: argparse.Namespace) -> None:
    """``compare`` of every strategy, then the tables of this dataset."""
    strategies = args.strategies.split(",")
    if dataset == "signs" and args.generated and "generated" not in strategies:
        strategies.append("generated")
    t0 = time.perf_counter()
    data = compare(
        run, strategies, args.budget, args.seeds, control=args.control, bag_size=args.bag_size
    )
    seconds = time.perf_counter() - t0
    orig = data["original"]
    picked = _rare_picked(run)
    versus_cols = [f"A12 vs {b} ({m})" for b in BASELINES for m in ("rare", "worst")]
    rows = [
        {
            "strategy": "original model",
            "labels": 0,
            "rare images labelled": "",
            "overall": f"{orig['overall']:.3f}",
            "rare scenarios": f"{orig['rare']:.3f}",
            "worst scenario": f"{orig['worst_scenario']:.3f}",
            "mean over scenarios": f"{orig['mean_scenario']:.3f}",
            **{sc: f"{orig['per_scenario'][sc]:.3f}" for sc in data["scenarios"]},
            **dict.fromkeys(versus_cols, ""),
        }
    ]
    entries = list(data["strategies"].items())
    if data.get("control"):
        entries.insert(0, ("fine-tuned, no new labels (control)", data["control"]))
    for name, entry in entries:
        summ = entry["summary"]
        versus = entry.get("versus", {})
        rows.append(
            {
                "strategy": name,
                "labels": entry["cost"],
                "rare images labelled": picked.get(name, "-"),
                "overall": _ci(summ["overall"]),
                "rare scenarios": _ci(summ["rare"]),
                "worst scenario": _ci(summ["worst_scenario"]),
                "mean over scenarios": f"{summ['mean_scenario']['mean']:.3f}",
                **{sc: f"{summ['per_scenario'][sc]['mean']:.3f}" for sc in data["scenarios"]},
                **{
                    f"A12 vs {b} ({m})": _a12(versus.get(b), *keys)
                    for b in BASELINES
                    for m, keys in (
                        ("rare", ("a12", "p_value")),
                        ("worst", ("a12_worst", "p_value_worst")),
                    )
                },
            }
        )
    generated = data["strategies"].get("generated")
    extra = ""
    if generated:
        n_gen = generated["runs"][0].get("plan", {}).get("generated")
        extra = f" The generated strategy adds {n_gen} simulator images per run and no label."
    size = SIZES[dataset]
    notes = (
        f"Reduced field-like setup: {size['n_train']} training, {size['n_val']} validation, "
        f"{size['n_test']} test and {size['n_pool']} pool images (each rare scenario "
        f"{POOL_RARE:.0%} of the pool, {_pool_rare_share(run):.0%} rare in all), small_cnn "
        f"trained 8 epochs with a cosine learning rate, {ANALYSIS_NAMES[args.analysis]} "
        f"clusters: {len(data['clusters'])}. Budget {data['budget']} labels, bag of "
        f"{data['bag_size']} images for every label-based strategy, {len(data['seeds'])} "
        f"seed(s), fine-tuning {args.epochs} epochs (SGD lr 1e-3, momentum 0.9, best epoch on "
        f"validation). Mean [95% CI] over seeds. A12 / p (Vargha-Delaney, Mann-Whitney) of "
        f"each strategy against entropy and DeepGini on pooled rare-scenario and on "
        f"worst-scenario accuracy (>= 0.7: the issue's bar). Rare images "
        f"labelled: rare-scenario images among the first seed's selection.{extra} Wall time "
        f"of this invocation (finished runs are reused): {seconds:.0f} s."
    )
    suffix = (
        _analysis_suffix(args.analysis)
        + ("" if args.seeds == 5 else f"_{args.seeds}seed")
        + args.tag
    )
    command = (
        f"benchmarks/bench_hybrid.py --datasets {dataset}"
        + ("" if args.analysis == "hudd" else f" --analysis {args.analysis}")
        + f" --seeds {args.seeds} --epochs "
        f"{args.epochs} --strategies {args.strategies} --budget {args.budget}"
        + (f" --bag-size {args.bag_size}" if args.bag_size else "")
        + ("" if args.generated else " --no-generated")
        + ("" if args.control else " --no-control")
        + (f" --tag {args.tag}" if args.tag else "")
    )
    write_table(
        f"hybrid_{dataset}{suffix}",
        f"Retraining that fixes every root cause on {dataset} "
        f"({ANALYSIS_NAMES[args.analysis]} clusters, reduced size)",
        command,
        rows,
        notes,
    )
    selection_table(run, dataset, [n for n in strategies if n in picked], command, suffix)
    cluster_rows = []
    for name, entry in [("original model", {"summary": None}), *entries]:
        row: dict[str, Any] = {"strategy": name}
        for cid in data["clusters"]:
            per = (
                orig["per_cluster"] if entry["summary"] is None else entry["summary"]["per_cluster"]
            )
            value = per[str(cid)] if entry["summary"] is None else per[str(cid)]["mean"]
            row[f"#{cid} ({_dominant(run, cid)})"] = f"{value:.3f}"
        cluster_rows.append(row)
    write_table(
        f"hybrid_{dataset}_clusters{suffix}",
        f"Accuracy on each root-cause cluster's test errors, {dataset}",
        command,
        cluster_rows,
        f"Mean over seeds of the accuracy on the test errors of each "
        f"{ANALYSIS_NAMES[args.analysis]} cluster (the "
        "original model gets all of them wrong); in brackets the cluster's dominant "
        "ground-truth scenario and its share.",
    )


def _analysis_suffix(analysis: str) -> str:
    """Table-name suffix of an analysis: none for HUDD (the tables as they were)."""
    return "" if analysis == "hudd" else f"_{analysis}"


def _a12(versus: dict[str, Any] | None, key: str, p_key: str) -> str:
    if not versus or key not in versus:
        return ""
    return f"{versus[key]:.2f} (p={versus[p_key]:.3g})"


def _dominant(run: Pipeline, cid: int) -> str:
    record = next(c for c in read_clusters(run)["clusters"] if int(c["id"]) == int(cid))
    scen = record["scenarios"]
    top = max(scen, key=scen.get)
    return f"{top} {scen[top] / record['size']:.0%}"


def _rules_inputs(run: Pipeline) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Metadata of the analysed errors, their cluster ids, and ``clusters.json``."""
    data = read_clusters(run)
    samples = run.run.read_samples()
    part = samples[samples["split"] == data["split"]].set_index("sample_id")
    ids = [str(m) for c in data["clusters"] for m in c["members"]]
    labels = np.array([int(c["id"]) for c in data["clusters"] for _ in c["members"]])
    cols = [c for c in part.columns if str(c).startswith("meta.")]
    meta = part.loc[ids, cols].rename(columns=lambda c: str(c)[5:])
    return meta, labels, data


def rules_table(run: Pipeline, analysis: str = "hudd") -> None:
    """Every cluster's best rule from the decision tree and from RIPPER (signs metadata)."""
    meta, labels, data = _rules_inputs(run)
    learned, seconds = {}, {}
    for method in ("tree", "ripper"):
        t0 = time.perf_counter()
        learned[method] = cluster_rules(meta, labels, method=method)
        seconds[method] = time.perf_counter() - t0
    rows = []
    for record in data["clusters"]:
        cid = int(record["id"])
        row: dict[str, Any] = {
            "cluster": cid,
            "size": record["size"],
            "dominant scenario (purity)": _dominant(run, cid),
        }
        for method in ("tree", "ripper"):
            best = next(iter(learned[method][cid]), None)
            row[f"best {method} rule"] = best.text() if best else "-"
            row[f"{method} precision"] = f"{best.precision:.2f}" if best else "-"
            row[f"{method} recall"] = f"{best.recall:.2f}" if best else "-"
            row[f"{method} support"] = best.support if best else "-"
        rows.append(row)
    suffix = _analysis_suffix(analysis)
    command = "benchmarks/bench_hybrid.py --datasets signs --rules-only" + (
        "" if analysis == "hudd" else f" --analysis {analysis}"
    )
    write_table(
        f"hybrid_rules_signs{suffix}",
        f"Metadata rules of each root-cause cluster (signs, {ANALYSIS_NAMES[analysis]} "
        "clusters, reduced size)",
        command,
        rows,
        f"Rules separate a cluster's members from the other test errors ({len(meta)} errors, "
        f"{meta.shape[1]} metadata columns, numeric ones used). Decision tree: depth 3, leaves "
        f"of >= 2% of the errors, balanced class weights ({seconds['tree']:.1f} s for all "
        f"clusters). RIPPER: wittgenstein, max 3 rules ({seconds['ripper']:.1f} s). Precision "
        "and recall on the errors the rules were learned from. Purity: the share of the "
        "cluster's dominant ground-truth scenario; a rule on that scenario's parameters "
        "covers at most that share of the members. Depth, RIPPER and an exhaustive search "
        f"for the night and fog clusters: hybrid_rules_signs{suffix}_sweep.md.",
    )
    rules_sweep(run, meta, labels, data, suffix, command)


def rules_sweep(
    run: Pipeline,
    meta: pd.DataFrame,
    labels: np.ndarray,
    data: dict[str, Any],
    suffix: str = "",
    command: str = "benchmarks/bench_hybrid.py --datasets signs --rules-only",
) -> None:
    """Night and largest fog cluster: tree depth, RIPPER's rule cap, the scenario parameter
    alone, and the best two-interval box by exhaustive search (the ceiling of such rules)."""
    from dnnsafety.explain.rules import Condition, _numeric, _score, rules_for

    x = _numeric(meta.reset_index(drop=True))
    rows: list[dict[str, Any]] = []
    for scenario, parameter in (("night", "brightness"), ("fog", "fog")):
        cands = [c for c in data["clusters"] if _dominant(run, int(c["id"])).startswith(scenario)]
        record = max(cands, key=lambda c: c["size"])
        cid = int(record["id"])
        target = labels == cid
        name = f"#{cid} ({_dominant(run, cid)})"

        def add(setting: str, rule: Any, cluster: str = name) -> None:
            rows.append(
                {
                    "cluster": cluster,
                    "learner": setting,
                    "rule": rule.text() if rule else "-",
                    "precision": f"{rule.precision:.2f}" if rule else "-",
                    "recall": f"{rule.recall:.2f}" if rule else "-",
                    "support": rule.support if rule else "-",
                }
            )

        for depth in range(1, 7):
            for leaf in (0.02, 0.005):
                found = rules_for(meta, target, method="tree", max_depth=depth, min_leaf=leaf)
                add(f"tree depth {depth}, leaves >= {leaf:.1%}", next(iter(found), None))
        for cap in (1, 3, 10):
            found = rules_for(meta, target, method="ripper", max_rules=cap)
            add(f"RIPPER, max {cap} rules", next(iter(found), None))
        values = x[parameter].to_numpy()
        alone = [
            _score([cond], x, target, "threshold")
            for q in np.unique(np.quantile(values, np.linspace(0, 1, 201)))
            for cond in (Condition(parameter, float(q), None), Condition(parameter, None, float(q)))
        ]
        add(f"{parameter} threshold alone (best F1)", max(alone, key=lambda r: r.f1))
        box = _best_box(x, target, parameter)
        add(f"exhaustive {parameter} x any parameter box (best min(P, R))", box)
    write_table(
        f"hybrid_rules_signs{suffix}_sweep",
        "Rules of the night and fog root-cause clusters: learners, depth and the search ceiling",
        command,
        rows,
        f"Same errors as hybrid_rules_signs{suffix}.md. Trees: CART, balanced class weights, "
        "the best leaf rule (F1). Threshold alone: the simulator's own parameter of the scenario, "
        "200 quantile thresholds, either side. Exhaustive box: one interval on the scenario "
        "parameter and one on any other numeric parameter, bounds at 60 quantiles, every "
        "pair tried, the highest min(precision, recall) (on that grid; the tree's own "
        "thresholds can be slightly better).",
    )


def _best_box(x: pd.DataFrame, target: np.ndarray, parameter: str, n_q: int = 60) -> Any:
    """Best ``parameter`` interval AND another parameter's interval, by min(P, R)."""
    from dnnsafety.explain.rules import Condition, _score

    def intervals(col: str) -> tuple[list[Condition], np.ndarray]:
        v = x[col].to_numpy()
        qs = list(np.unique(np.quantile(v, np.linspace(0, 1, n_q + 1)))[1:-1])
        bounds: list[float | None] = [None, *qs, None]
        conds = [
            Condition(col, lo, hi)
            for i, lo in enumerate(bounds)
            for hi in bounds[i + 1 :]
            if lo is not None or hi is not None
        ]
        return conds, np.array([c.holds(v) for c in conds], dtype=np.float32)

    first, m1 = intervals(parameter)
    t = target.astype(np.float32)
    best: tuple[float, Any] = (-1.0, None)
    for col in x.columns:
        if col == parameter:
            continue
        second, m2 = intervals(col)
        covered = m1 @ m2.T
        support = (m1 * t) @ m2.T
        score = np.minimum(support / np.maximum(covered, 1), support / t.sum())
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[i, j] > best[0]:
            best = (float(score[i, j]), (first[i], second[j]))
    return _score(best[1], x, target, "box") if best[1] else None


def selection_table(
    run: Pipeline, dataset: str, names: list[str], command: str, suffix: str
) -> None:
    """What each strategy labels (first seed): pool images per scenario, and how many of them
    the original model gets wrong (from the held-back pool labels)."""
    from dnnsafety.pipeline.retrain import RetrainSession

    session = RetrainSession(run)
    ids = session.pool.ids.astype(str)
    scen = np.asarray(session.pool.scenarios, dtype=str)
    wrong = session.pool_probs.argmax(axis=1) != session.oracle(ids)
    pool = run.run.read_samples()
    pool = pool[pool["split"] == "pool"].set_index("sample_id").loc[ids]
    scenarios = sorted(set(scen))
    rows: list[dict[str, Any]] = [
        {
            "strategy": "pool (all)",
            **{s: f"{(scen == s).sum()} ({(wrong & (scen == s)).sum()})" for s in scenarios},
            "wrong in all": int(wrong.sum()),
        }
    ]
    for name in names:
        chosen = pool[f"selected.{name}"].notna().to_numpy()
        rows.append(
            {
                "strategy": name,
                **{
                    s: f"{(chosen & (scen == s)).sum()} ({(chosen & wrong & (scen == s)).sum()})"
                    for s in scenarios
                },
                "wrong in all": int((chosen & wrong).sum()),
            }
        )
    write_table(
        f"hybrid_{dataset}_selections{suffix}",
        f"What each strategy labels on {dataset} (first seed's selection)",
        command,
        rows,
        "Pool images labelled per ground-truth scenario, in brackets those the original model "
        "classifies wrongly (held-back pool labels); first row: the whole pool.",
    )


def _rare_picked(run: Pipeline) -> dict[str, int]:
    """Per strategy: rare-scenario images among its (first seed's) selected pool images."""
    samples = run.run.read_samples()
    pool = samples[samples["split"] == "pool"]
    rare = pool["scenario"].astype(str) != "nominal"
    return {
        col.removeprefix("selected."): int((pool[col].notna() & rare).sum())
        for col in pool.columns
        if col.startswith("selected.")
    }


def _ci(v: dict[str, Any]) -> str:
    return f"{v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"


def _pool_rare_share(run: Pipeline) -> float:
    return float((np.asarray(run.dataset["pool"].scenarios, dtype=str) != "nominal").mean())


if __name__ == "__main__":
    main()
