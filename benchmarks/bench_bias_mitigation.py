"""Zero-label bias mitigations against plain fine-tuning on signs and Fashion-MNIST (issue 17).

Setup (the same for every strategy; scenarios are used only to score):

* Data: the training and validation splits hold each rare scenario at ``--rare-train`` (2%:
  120 images per scenario in 6,000), the test split and the unlabelled pool at 11% (signs:
  night, fog, occlusion_lower, tilt) or 10% (Fashion-MNIST: injected dark, occlusion, rotation,
  blur, noise). Base model: small_cnn trained to convergence (Adam, cosine schedule, best
  epoch on val).
* Fine-tuning: every strategy and the control (plain fine-tuning on the training split: no new
  labels, no reweighting) starts from the base weights with the same epochs, optimiser and
  learning rate; the best epoch is picked on the validation split's accuracy.
* Hyperparameters of each mitigation (a small grid, ``GRID``) are picked on the validation
  split, by the worst accuracy over validation groups inferred without scenario labels
  (k-means, k = 25, over the base model's penultimate activations of val; groups of >= 10
  inputs), with one seed; never on test.
* Then ``compare`` runs every strategy with its picked parameters, ``--seeds`` seeds; the
  table holds average and worst-scenario test accuracy, the change against the control and
  A12 with the Mann-Whitney p-value against the control and against JTT.

Reproduce: OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_bias_mitigation.py
    --datasets signs --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.bias.groups import cluster_features  # noqa: E402
from dnnsafety.config import RunConfig  # noqa: E402
from dnnsafety.data.inject import CORRUPTIONS  # noqa: E402
from dnnsafety.evaluation.stats import mann_whitney, vargha_delaney_a12  # noqa: E402
from dnnsafety.features import FEATURE_SOURCES, FeatureContext  # noqa: E402
from dnnsafety.models.training import predict  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.mitigate import mitigate  # noqa: E402
from dnnsafety.pipeline.retrain import RetrainSession, compare  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402
from dnnsafety.sim import RARE_SCENARIOS  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
MITIGATIONS = ("jtt", "george", "upsample-groups", "reweight-groups")
TRAIN_EPOCHS = {"signs": 15, "fashion-mnist": 10}
TEST_SHARE = {"signs": 0.11, "fashion-mnist": 0.10}
# the grid each mitigation's parameters are picked from on val (first entry: the default)
GRID: dict[str, list[dict[str, Any]]] = {
    "reweight-groups": [{}],
    "jtt": [
        {"lambda_up": 20, "id_epochs": 2},
        {"lambda_up": 50, "id_epochs": 2},
        {"lambda_up": 20, "id_epochs": 0},
    ],
    "george": [{"dro_step": 0.01}],
    "upsample-groups": [{}],
}
VAL_GROUPS = 25
VAL_MIN_GROUP = 10


def rare_scenarios(dataset: str) -> tuple[str, ...]:
    return RARE_SCENARIOS if dataset == "signs" else tuple(CORRUPTIONS)


def pipeline_for(dataset: str, args: argparse.Namespace) -> Pipeline:
    config = RunConfig()
    config.data.name = dataset
    config.data.n_train, config.data.n_val = args.n_train, args.n_val
    config.data.n_test, config.data.n_pool = args.n_test, args.n_pool
    rare = rare_scenarios(dataset)
    low, high = dict.fromkeys(rare, args.rare_train), dict.fromkeys(rare, TEST_SHARE[dataset])
    config.data.scenarios = {"train": low, "val": dict(low), "test": high, "pool": dict(high)}
    config.train.epochs = TRAIN_EPOCHS[dataset]
    config.train.schedule = "cosine"
    config.train.threads = args.threads
    config.retrain.epochs = args.epochs
    config.retrain.lr = args.lr
    config.retrain.seeds = args.seeds
    pipe = Pipeline(RunDir(Path(args.out) / f"bias-{dataset}"), config)
    pipe.train()
    pipe.evaluate()
    return pipe


def val_groups(pipe: Pipeline) -> np.ndarray:
    """Groups of the validation split inferred without scenario labels."""
    val = pipe.dataset["val"]
    source = FEATURE_SOURCES.create("activations", {}).fit(FeatureContext(model=pipe.model()))
    groups, _ = cluster_features(
        source.transform(val.images), "pca", None, "kmeans-fixed", {"n_clusters": VAL_GROUPS}, 0
    )
    return groups


def val_worst_group(model: torch.nn.Module, pipe: Pipeline, groups: np.ndarray) -> float:
    val = pipe.dataset["val"]
    correct = predict(model, val.images, desc="val").correct(val.labels)
    accs = [correct[groups == g].mean() for g in np.unique(groups) if (groups == g).sum() >= 10]
    return float(min(accs))


def select_params(pipe: Pipeline, args: argparse.Namespace) -> dict[str, Any]:
    """Each mitigation's parameters with the best worst-group val accuracy (one seed)."""
    path = pipe.run / "bias_mitigation_selection.json"
    done: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    groups = val_groups(pipe)
    session = RetrainSession(pipe)
    seed = pipe.config.seed
    for name in args.strategies:
        for params in GRID[name] if len(GRID[name]) > 1 else []:
            key = f"{name} {json.dumps(params, sort_keys=True)} e{args.epochs} lr{args.lr:g}"
            if key in done:
                continue
            pipe.config.retrain.params[name] = dict(params)
            t0 = time.perf_counter()
            model, _, _, plan = mitigate(session, name, seed)
            done[key] = {
                "strategy": name,
                "params": params,
                "val_worst_group": val_worst_group(model, pipe, groups),
                "val_accuracy": float(
                    predict(model, pipe.dataset["val"].images)
                    .correct(pipe.dataset["val"].labels)
                    .mean()
                ),
                "plan": plan.info,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            path.write_text(json.dumps(done, indent=2))
            print(key, done[key], flush=True)
    chosen = {}
    for name in args.strategies:
        tried = [
            v
            for k, v in done.items()
            if v["strategy"] == name and k.endswith(f"e{args.epochs} lr{args.lr:g}")
        ]
        best = max(tried, key=lambda v: (v["val_worst_group"], v["val_accuracy"]), default=None)
        chosen[name] = best["params"] if best else GRID[name][0]
    pipe.config.retrain.params = {k: dict(v) for k, v in chosen.items()}
    return {"chosen": chosen, "tried": done}


def oracle_runs(pipe: Pipeline, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Ceiling of the upsampling family, not a candidate: the same augmented upsampling applied
    to the true rare-scenario training images (scenario labels read), each scenario brought to
    its test share (at most 10 times), fine-tuned as every strategy is."""
    from dnnsafety.retraining.finetune import finetune_plan, score_run
    from dnnsafety.retraining.mitigation import TrainingPlan
    from dnnsafety.retraining.mitigations.upsample import augment_copies

    path = pipe.run / f"bias_oracle_e{args.epochs}_lr{args.lr:g}.json"
    done: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    session = RetrainSession(pipe)
    train = pipe.dataset["train"]
    tags = train.scenarios.astype(str)
    for seed in [pipe.config.seed + i for i in range(args.seeds)]:
        if str(seed) in done:
            continue
        rng = np.random.default_rng(seed)
        rows = []
        for scen in rare_scenarios(pipe.config.data.name):
            members = np.flatnonzero(tags == scen)
            factor = min(TEST_SHARE[pipe.config.data.name] / args.rare_train, 10.0)
            rows.append(np.tile(members, round(factor) - 1))
        extra = np.concatenate(rows).astype(np.int64)
        copies = augment_copies(train.images[torch.from_numpy(extra)], rng, 2, 0.2)
        plan = TrainingPlan(
            torch.cat([train.images, copies]),
            np.concatenate([train.labels, train.labels[extra]]).astype(np.int64),
        )
        model, _ = finetune_plan(pipe.model(), plan, pipe.dataset["val"], session.config, seed)
        score = score_run(model, session.test, session.original_correct, session.test_clusters)
        done[str(seed)] = score.to_dict()
        path.write_text(json.dumps(done))
    return list(done.values())


def _fmt(values: np.ndarray) -> str:
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {sd:.3f}"


def table_rows(data: dict[str, Any], strategies: list[str]) -> list[dict[str, Any]]:
    def values(runs: list[dict[str, Any]], key: str) -> np.ndarray:
        return np.array([r[key] for r in runs], dtype=float)

    control = data["control"]["runs"]
    c_worst, c_avg = values(control, "worst_scenario"), values(control, "overall")
    orig = data["original"]
    rows = [
        {
            "strategy": "original model",
            "average accuracy": f"{orig['overall']:.3f}",
            "worst-scenario accuracy": f"{min(orig['per_scenario'].values()):.3f}",
        }
    ]
    jtt = None
    if "jtt" in strategies:
        jtt = values(data["strategies"]["jtt"]["runs"], "worst_scenario")
    entries = [("plain fine-tuning (control)", control)]
    entries += [(name, data["strategies"][name]["runs"]) for name in strategies]
    if "oracle" in data:
        entries.append(("ceiling: upsampling by scenario label (not zero-label)", data["oracle"]))
    for name, runs in entries:
        worst, avg = values(runs, "worst_scenario"), values(runs, "overall")
        row: dict[str, Any] = {
            "strategy": name,
            "average accuracy": _fmt(avg),
            "worst-scenario accuracy": _fmt(worst),
        }
        if runs is not control:
            row["worst vs control"] = f"{100 * (worst.mean() - c_worst.mean()):+.1f} pts"
            row["average vs control"] = f"{100 * (avg.mean() - c_avg.mean()):+.1f} pts"
            row["A12 / p vs control (worst)"] = (
                f"{vargha_delaney_a12(worst, c_worst):.2f} / {mann_whitney(worst, c_worst):.3f}"
            )
            if jtt is not None and name != "jtt":
                row["A12 / p vs jtt (worst)"] = (
                    f"{vargha_delaney_a12(worst, jtt):.2f} / {mann_whitney(worst, jtt):.3f}"
                )
        worst_names = [min(r["per_scenario"], key=r["per_scenario"].get) for r in runs]
        row["worst scenario (runs)"] = ", ".join(
            f"{s} {worst_names.count(s)}" for s in sorted(set(worst_names))
        )
        rows.append(row)
    cols = [
        "strategy",
        "average accuracy",
        "worst-scenario accuracy",
        "worst vs control",
        "average vs control",
        "A12 / p vs control (worst)",
        "A12 / p vs jtt (worst)",
        "worst scenario (runs)",
    ]
    return [{c: r.get(c, "") for c in cols} for r in rows]


def setup_note(pipe: Pipeline, dataset: str, args: argparse.Namespace) -> str:
    ds = pipe.dataset
    counts = []
    for split in ("train", "val", "test", "pool"):
        tags = ds[split].scenarios.astype(str)
        rare = [int((tags == s).sum()) for s in rare_scenarios(dataset)]
        counts.append(f"{split} {len(tags)} ({min(rare)}-{max(rare)} per rare scenario)")
    samples = pipe.run.read_samples()
    test_acc = samples.loc[samples["split"] == "test", "correct"].astype(float).mean()
    history = json.loads((pipe.run / "training.json").read_text()).get("history", [])
    val_tail = ", ".join(f"{h['val_acc']:.3f}" for h in history[-3:] if h.get("val_acc"))
    return (
        f"Data: {dataset}, {'; '.join(counts)}; rare scenarios: "
        f"{', '.join(rare_scenarios(dataset))} (train/val share {args.rare_train:.0%}, "
        f"test/pool share {TEST_SHARE[dataset]:.0%}). Base model: small_cnn, "
        f"{TRAIN_EPOCHS[dataset]} epochs Adam lr 1e-3 cosine (val accuracy of the last epochs: "
        f"{val_tail}; test accuracy {test_acc:.3f}). "
        f"Fine-tuning, the same for every strategy and the control: {args.epochs} epochs from "
        f"the base weights, SGD lr {args.lr:g}, momentum 0.9, weight decay 5e-4, batch 128, best "
        f"epoch on val accuracy; mean ± sd over {args.seeds} seeds; worst-scenario: the lowest "
        "per-scenario test accuracy of a run (scenarios used only to score); A12 > 0.5 favours "
        "the strategy (Mann-Whitney p). Parameters picked on val (worst accuracy over 25 k-means "
        "groups of val activations, 1 seed): see the second table. "
        f"{args.threads} torch thread(s)."
    )


def run_dataset(dataset: str, args: argparse.Namespace) -> None:
    pipe = pipeline_for(dataset, args)
    note = setup_note(pipe, dataset, args)
    selection = select_params(pipe, args)
    command = (
        f"benchmarks/bench_bias_mitigation.py --datasets {dataset} --seeds {args.seeds} "
        f"--epochs {args.epochs} --lr {args.lr:g} --n-train {args.n_train} "
        f"--rare-train {args.rare_train:g} --strategies {','.join(args.strategies)} "
        f"--threads {args.threads}" + (" --oracle" if args.oracle else "")
    )
    val = pipe.dataset["val"]
    base_worst = val_worst_group(pipe.model(), pipe, val_groups(pipe))
    sel_rows = [
        {
            "strategy": "original model",
            "parameters": "",
            "val worst-group accuracy": f"{base_worst:.3f}",
            "val accuracy": f"{predict(pipe.model(), val.images).correct(val.labels).mean():.3f}",
            "plan": "",
            "picked": "",
        }
    ]
    sel_rows += [
        {
            "strategy": v["strategy"],
            "parameters": json.dumps(v["params"], sort_keys=True),
            "val worst-group accuracy": f"{v['val_worst_group']:.3f}",
            "val accuracy": f"{v['val_accuracy']:.3f}",
            "plan": json.dumps(v["plan"], sort_keys=True)[:120],
            "picked": "yes" if v["params"] == selection["chosen"][v["strategy"]] else "",
        }
        for v in selection["tried"].values()
        if v["strategy"] in args.strategies
    ]
    if sel_rows:
        write_table(
            f"bias_mitigation_selection_{dataset}",
            f"Bias mitigations on {dataset}: parameters picked on the validation split",
            command,
            sel_rows,
            note,
        )
    if args.select_only:
        return
    data = compare(pipe, list(args.strategies), seeds=args.seeds)
    if args.oracle:
        data["oracle"] = oracle_runs(pipe, args)
    write_table(
        f"bias_mitigation_{dataset}",
        f"Zero-label bias mitigations on {dataset}: average and worst-scenario accuracy",
        command,
        table_rows(data, list(args.strategies)),
        note
        + " Picked parameters: "
        + "; ".join(f"{k} {json.dumps(v, sort_keys=True)}" for k, v in selection["chosen"].items()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument("--strategies", default=",".join(MITIGATIONS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning SGD learning rate")
    parser.add_argument("--n-train", type=int, default=6000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--n-pool", type=int, default=2000)
    parser.add_argument("--rare-train", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--oracle", action="store_true", help="add the scenario-label ceiling")
    parser.add_argument("--select-only", action="store_true", help="only the val selection")
    args = parser.parse_args()
    args.strategies = args.strategies.split(",")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    for dataset in args.datasets.split(","):
        run_dataset(dataset, args)


if __name__ == "__main__":
    main()
