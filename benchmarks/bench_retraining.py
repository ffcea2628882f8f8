"""Retraining with each selection strategy at one labelling budget (issue 4).

For each dataset: the default model (cached in benchmarks/out/<dataset>), a root-cause
analysis of its test errors (black-box SAFE by default: MobileNetV2 + UMAP + DBSCAN; or the
white-box HUDD analysis with --analysis hudd), then `compare`: every strategy selects the same
number of pool images (3% of the pool unless --budget), the labels come from the held-back
pool labels, and the model is fine-tuned on train + the (balanced) bag, once per seed. The
table gives test accuracy overall and on the rare scenarios (mean and 95% CI over seeds), the
gain over the original model, the labels spent, and Vargha-Delaney A12 / Mann-Whitney p of
`closest` against each baseline on rare-scenario accuracy.

Reproduce: .venv/bin/python benchmarks/bench_retraining.py
    [--datasets signs,fashion-mnist] [--analysis safe|hudd] [--seeds 5] [--epochs 3]
    [--pool-rare SHARE] [--train-schedule constant|cosine]

--pool-rare sets each rare scenario's share of the unlabeled pool (the built-in default is
10-11%, far more than a field pool would hold); --train-schedule trains the original model
with a cosine learning-rate decay, so that fine-tuning alone has less left to gain.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.config import PluginConfig, RunConfig  # noqa: E402
from dnnsafety.data.inject import CORRUPTIONS  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.retrain import compare  # noqa: E402
from dnnsafety.pipeline.strategies import cluster_strategies  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402
from dnnsafety.sim import RARE_SCENARIOS  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument("--analysis", default="safe", choices=["safe", "hudd"])
    parser.add_argument("--strategies", default="closest,random,entropy,deepgini,margin")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--pool-rare",
        type=float,
        default=0.0,
        help="share of each rare scenario in the pool (0: the dataset's default, 10-11%%)",
    )
    parser.add_argument(
        "--train-schedule",
        default="constant",
        choices=["constant", "cosine"],
        help="learning-rate schedule of the original model's training",
    )
    parser.add_argument(
        "--no-balance",
        action="store_true",
        help="ClosestU bags without HUDD's balancing (each selected image once, topped up "
        "uniformly like the baselines' bags)",
    )
    parser.add_argument(
        "--bag-size",
        type=int,
        default=0,
        help="top every bag up to at least this many images (0: the largest bag)",
    )
    args = parser.parse_args()
    for dataset in args.datasets.split(","):
        rows, notes = run_dataset(dataset, args)
        _, flags = _variant(args)
        write_table(
            _table_name(dataset, args),
            f"Retraining by selection strategy on {dataset} ({args.analysis} clusters"
            + (f"; {flags.strip()}" if flags else "")
            + ")",
            f"benchmarks/bench_retraining.py --datasets {dataset} --analysis {args.analysis} "
            f"--seeds {args.seeds} --epochs {args.epochs} --strategies {args.strategies}"
            + (f" --budget {args.budget}" if args.budget else "")
            + flags
            + (" --no-balance" if args.no_balance else "")
            + (f" --bag-size {args.bag_size}" if args.bag_size else ""),
            rows,
            notes,
        )


def _variant(args: argparse.Namespace) -> tuple[str, str]:
    """File-name suffix and command-line flags of a non-default experimental setup."""
    suffix, flags = "", ""
    if args.pool_rare:
        suffix += f"_pool{args.pool_rare:g}"
        flags += f" --pool-rare {args.pool_rare:g}"
    if args.train_schedule != "constant":
        suffix += f"_{args.train_schedule}"
        flags += f" --train-schedule {args.train_schedule}"
    return suffix, flags


def _table_name(dataset: str, args: argparse.Namespace) -> str:
    variant, _ = _variant(args)
    epochs = "" if args.epochs == 3 else f"_ep{args.epochs}"
    balance = "_nobalance" if args.no_balance else ""
    bag = f"_bag{args.bag_size}" if args.bag_size else ""
    return f"retraining_{dataset}_{args.analysis}{variant}{epochs}{balance}{bag}"


def rare_scenarios(dataset: str) -> tuple[str, ...]:
    """The rare scenarios the built-in dataset under-represents in training."""
    if dataset == "signs":
        return RARE_SCENARIOS
    return tuple(CORRUPTIONS)


def run_dataset(dataset: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    variant, _ = _variant(args)
    base = RunDir(OUT / f"{dataset}{variant}")
    config = RunConfig()
    config.data.name = dataset
    config.train.schedule = args.train_schedule
    if args.pool_rare:
        config.data.scenarios = {"pool": dict.fromkeys(rare_scenarios(dataset), args.pool_rare)}
    pipe = Pipeline(base, config)
    pipe.train()
    pipe.evaluate()
    folder = OUT / f"{dataset}-retrain-{args.analysis}{variant}"
    if not folder.exists():  # keep finished retraining runs: a rerun resumes
        shutil.copytree(base.path, folder, ignore=shutil.ignore_patterns("analysis*", "clu*"))
    cfg = copy.deepcopy(config)
    if args.analysis == "safe":
        cfg.analysis.features, cfg.analysis.reduce, cfg.analysis.cluster = (
            "backbone",
            PluginConfig("umap"),
            PluginConfig("dbscan"),
        )
    else:  # the white-box analysis (no longer the default)
        cfg.analysis.features = ""
    cfg.retrain.epochs = args.epochs
    cfg.retrain.balance = not args.no_balance
    run = Pipeline(RunDir(folder), cfg)
    run.analyze()
    t0 = time.perf_counter()
    data = compare(
        run, args.strategies.split(","), args.budget or None, args.seeds, bag_size=args.bag_size
    )
    seconds = time.perf_counter() - t0
    orig = data["original"]
    picked = _rare_picked(run)
    rows = [
        {
            "strategy": "original model",
            "labels": 0,
            "rare images labelled": "",
            "overall": f"{orig['overall']:.3f}",
            "rare scenarios": f"{orig['rare']:.3f}",
            "rare gain": "",
            "rare gain over control": "",
            **{s: f"{orig['per_scenario'][s]:.3f}" for s in data["scenarios"]},
            **dict.fromkeys(_versus_columns(data), ""),
        }
    ]
    gains = {}
    control = data.get("control")
    control_rare = control["summary"]["rare"]["mean"] if control else None
    entries = list(data["strategies"].items())
    if control:
        entries.insert(0, ("fine-tuned, no new labels (control)", control))
    for name, entry in entries:
        s = entry["summary"]
        gains[name] = s["rare"]["mean"] - orig["rare"]
        rows.append(
            {
                "strategy": name,
                "labels": entry["cost"],
                "rare images labelled": picked.get(name, 0),
                "overall": _ci(s["overall"]),
                "rare scenarios": _ci(s["rare"]),
                "rare gain": f"{gains[name]:+.3f}",
                "rare gain over control": ""
                if control_rare is None
                else f"{s['rare']['mean'] - control_rare:+.3f}",
                **{sc: f"{s['per_scenario'][sc]['mean']:.3f}" for sc in data["scenarios"]},
                **_versus_cells(data, name),
            }
        )
    ratios = ""
    for ours in cluster_strategies():
        if ours not in gains or not gains.get("random"):
            continue
        ratios += (
            f"\n\n{ours}'s rare-scenario gain / random's: "
            f"{gains[ours] / gains['random']:.2f} over the original model"
        )
        if control_rare is not None:
            over = {k: gains[k] + orig["rare"] - control_rare for k in (ours, "random")}
            if over["random"]:
                ratios += f"; {over[ours] / over['random']:.2f} over the no-new-labels control"
        ratios += "."
    notes = (
        f"Budget {data['budget']} labels per strategy (pool of "
        f"{len(run.dataset['pool'])}), bag of {data['bag_size']} images for every strategy, "
        f"{len(data['seeds'])} seeds, fine-tuning {args.epochs} epochs (SGD lr 1e-3, momentum "
        f"0.9, best epoch on validation). Overall / rare: mean [95% CI] over seeds. Rare "
        f"gain: mean rare-scenario accuracy minus the original model's. Rare images "
        f"labelled: how many of the first seed's selected pool images belong to a rare "
        f"scenario ({_pool_rare_share(run):.0%} of the pool is). Original model: "
        f"{args.train_schedule} learning rate. Wall time of this "
        f"invocation (runs finished earlier are reused from retraining/runs/): {seconds:.0f} s."
        + ratios
    )
    return rows, notes


def _versus_columns(data: dict[str, Any]) -> list[str]:
    cols = []
    for ours in cluster_strategies():
        if ours in data["strategies"]:
            cols += [f"A12 {ours} vs it (rare)", f"p ({ours})"]
    return cols


def _versus_cells(data: dict[str, Any], name: str) -> dict[str, str]:
    """A12 and p of each ClosestU variant against strategy ``name`` (blank for itself)."""
    cells = {}
    for ours in cluster_strategies():
        if ours not in data["strategies"]:
            continue
        versus = data["strategies"][ours].get("versus", {}).get(name)
        cells[f"A12 {ours} vs it (rare)"] = "" if versus is None else f"{versus['a12']:.2f}"
        cells[f"p ({ours})"] = "" if versus is None else f"{versus['p_value']:.3g}"
    return cells


def _rare_picked(run: Pipeline) -> dict[str, int]:
    """Per strategy: how many of its (first seed's) selected pool images are rare scenarios."""
    samples = run.run.read_samples()
    pool = samples[samples["split"] == "pool"]
    rare = pool["scenario"].astype(str) != "nominal"
    return {
        col.removeprefix("selected."): int((pool[col].notna() & rare).sum())
        for col in pool.columns
        if col.startswith("selected.")
    }


def _pool_rare_share(run: Pipeline) -> float:
    return float((np.asarray(run.dataset["pool"].scenarios, dtype=str) != "nominal").mean())


def _ci(v: dict[str, float]) -> str:
    return f"{v['mean']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"


if __name__ == "__main__":
    main()
