"""What each strategy labels: scenario make-up of its selection, per cluster for ClosestU.

Reads a run folder that has been analysed (clusters.json) and whose pool carries ground-truth
scenarios (built-in datasets), draws each strategy's selection at one budget (first seed),
and counts the selected pool images per scenario, and those the original model gets wrong;
for the selections with clusters (`closest`, `closest-contrast`), also per root-cause cluster.
Ground truth is used for counting only.

Reproduce (after bench_retraining.py has built the folder):
    .venv/bin/python benchmarks/bench_selection_composition.py \\
        benchmarks/out/signs-retrain-safe_pool0.02_cosine --budget 300
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.config import load_config  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.retrain import RetrainSession  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--strategies", default="closest,closest-contrast,random,entropy,deepgini")
    args = parser.parse_args()
    pipe = Pipeline(RunDir(args.run), load_config(args.run / "config.toml"))
    session = RetrainSession(pipe)
    ids = session.pool.ids.astype(str)
    scenario = dict(zip(ids, np.asarray(session.pool.scenarios, dtype=str), strict=True))
    names = sorted(set(scenario.values()))
    wrong = dict(zip(ids, session.pool_probs.argmax(axis=1) != session.oracle(ids), strict=True))
    rows = []
    for strategy in args.strategies.split(","):
        sel = session.select(strategy, args.budget, seed=0)
        groups = [("all", np.ones(len(sel.ids), dtype=bool))]
        if sel.cluster is not None:
            groups += [(f"cluster {c}", sel.cluster == c) for c in np.unique(sel.cluster)]
        for group, mask in groups:
            counts = collections.Counter(scenario[str(i)] for i in sel.ids[mask])
            rows.append(
                {
                    "strategy": strategy,
                    "selected": group,
                    "images": int(mask.sum()),
                    "model wrong": int(sum(wrong[str(i)] for i in sel.ids[mask])),
                    **{n: counts.get(n, 0) for n in names},
                }
            )
    pool = collections.Counter(scenario.values())
    write_table(
        f"selection_composition_{args.run.name}",
        f"Scenario make-up of each strategy's selection ({args.run.name})",
        f"benchmarks/bench_selection_composition.py {args.run} --budget {args.budget}",
        rows,
        f"Pool of {len(ids)}: "
        + ", ".join(f"{n} {pool[n]}" for n in names)
        + f"; the original model gets {sum(wrong.values())} of them wrong. First seed.",
    )


if __name__ == "__main__":
    main()
