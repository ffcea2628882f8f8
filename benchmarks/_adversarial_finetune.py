"""The fine-tuning stage of ``bench_adversarial.py``: adversarial vs plain fine-tuning.

The trained zoo model (cached under /tmp/dnnsafety-bench-cache), the validation scorer that
picks epochs and settings, the fine-tuning runs, and the ``--only-finetune`` stage that merges
one process's rows into the result files under a lock. ``bench_adversarial.py`` writes the
tables. With ``--ft-loss trades`` the fine-tuning loss is TRADES' (Zhang et al., ICML 2019;
the ``adversarial`` mitigation's ``loss="trades"``) and the rows (strategy ``trades``) go to a
table of their own beside the PGD one (``finetune_trades`` in the .json).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _table import RESULTS, machine

CACHE = Path("/tmp/dnnsafety-bench-cache")


def _load(name: str, args: argparse.Namespace) -> Any:
    from dnnsafety.config import DataConfig
    from dnnsafety.data.builtin import load_dataset

    cfg = DataConfig(
        name=name, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, n_pool=10
    )
    return load_dataset(cfg, seed=0)


def _train(ds: Any, epochs: int, seed: int = 0) -> torch.nn.Module:
    from dnnsafety.config import TrainConfig
    from dnnsafety.models.training import train_model
    from dnnsafety.models.zoo import build_model

    c, h, _ = ds.image_shape
    torch.manual_seed(seed)
    model = build_model("small_cnn", c, ds.num_classes, h)
    tr, val = ds["train"], ds["val"]
    path = CACHE / f"{ds.name}-small_cnn-{len(tr)}-{len(val)}-{epochs}-{seed}.pt"
    if path.is_file():  # a rerun reuses the trained model
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    cfg = TrainConfig(epochs=epochs, schedule="cosine")
    train_model(model, tr.images, tr.labels, val.images, val.labels, cfg, seed=seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def _attacked(test: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """The test inputs attacked: the first ``n_attack`` nominal ones (the i.i.d. clean inputs
    the published detection figures use; the rare scenarios are a natural shift of their own)."""
    rows = np.flatnonzero(test.scenarios == "nominal")[: args.n_attack]
    return test.images[torch.from_numpy(rows)], test.labels[rows]


def _val_scorer(m_base: Any, ds: Any, args: argparse.Namespace) -> Any:
    """Clean accuracy on the validation split and PGD-8/255 robust accuracy on its first
    ``n_attack`` nominal inputs: what picks the fine-tuning epoch and setting (never the test
    split)."""
    from dnnsafety.adversarial import ATTACKS, robust_accuracy
    from dnnsafety.models.training import accuracy

    val = ds["val"]
    x, y = _attacked(val, args)
    pgd = ATTACKS.create("pgd")

    def score(m: Any) -> tuple[float, float]:
        clean = accuracy(m, val.images, val.labels)
        rob = robust_accuracy(m, pgd, x, y, [8 / 255], random_state=1)[0]["robust_accuracy"]
        return clean, rob

    return score


def finetune(
    model: Any, ds: Any, args: argparse.Namespace, on_row: Any = None
) -> list[dict[str, Any]]:
    """Adversarial vs plain fine-tuning over seeds: clean and PGD-8/255 robust accuracy.

    With ``--ft-select val`` every epoch is scored on the validation split (clean + robust
    accuracy, :func:`_val_scorer`) and the best one kept; its figures and the per-epoch
    history go into the row. ``on_row(rows)`` is called after every run (the tables are
    rewritten, so a stopped run keeps its rows)."""
    from dnnsafety.adversarial import ATTACKS, robust_accuracy
    from dnnsafety.config import TrainConfig
    from dnnsafety.models.training import accuracy, train_model
    from dnnsafety.retraining.mitigation import MitigationContext, plain_plan
    from dnnsafety.retraining.mitigations import MITIGATIONS

    test = ds["test"]
    x, y = _attacked(test, args)
    nominal = torch.from_numpy(np.flatnonzero(test.scenarios == "nominal"))
    pgd = ATTACKS.create("pgd")
    val_score = _val_scorer(model, ds, args)

    def scores(m: Any) -> tuple[float, float, float]:
        clean = accuracy(m, test.images, test.labels)
        clean_nom = accuracy(m, test.images[nominal], test.labels[nominal.numpy()])
        rob = robust_accuracy(m, pgd, x, y, [8 / 255])[0]["robust_accuracy"]
        return clean, clean_nom, rob

    base_clean, base_nom, base_rob = scores(model)
    base_vc, base_vr = val_score(model)
    rows = [
        {
            "strategy": "original",
            "seed": "-",
            "best_epoch": "-",
            "val_clean": round(base_vc, 4),
            "val_robust": round(base_vr, 4),
            "clean_acc": round(base_clean, 4),
            "clean_nominal_acc": round(base_nom, 4),
            "pgd8_robust_acc": round(base_rob, 4),
            "clean_change": 0.0,
            "robust_change": 0.0,
            "seconds": 0.0,
            "val_history": "-",
        }
    ]
    cfg = TrainConfig(epochs=args.ft_epochs, lr=args.ft_lr, select_by="train", schedule="cosine")
    train = ds["train"].subset(np.arange(min(args.ft_n, len(ds["train"]))))
    adv_seeds = (
        [int(v) for v in args.ft_seed_list.split(",")]
        if args.ft_seed_list
        else list(range(args.seeds))
    )
    robust_name = "trades" if args.ft_loss == "trades" else "adversarial"
    for seed in sorted({*adv_seeds, *range(args.plain_seeds)}):
        for strategy in ("plain", robust_name):
            if strategy == "plain" and seed >= args.plain_seeds:
                continue
            if strategy == robust_name and seed not in adv_seeds:
                continue
            m = copy.deepcopy(model)
            context = MitigationContext(model=m, train=train, val=ds["val"])
            if strategy == "plain":
                plan = plain_plan(train)
            else:
                params = {
                    "eps": args.ft_eps / 255,
                    "steps": args.ft_steps,
                    "share": args.ft_share,
                    "step_fraction": args.ft_step_fraction,
                }
                if args.ft_loss == "trades":
                    params |= {"loss": "trades", "beta": args.ft_beta}
                plan = MITIGATIONS.create("adversarial", params).plan(context, random_state=seed)
            history: list[tuple[float, float]] = []

            def select(m: Any, history: list[tuple[float, float]] = history) -> float:
                clean, rob = val_score(m)
                history.append((round(clean, 4), round(rob, 4)))
                print("  epoch", len(history), "val clean", clean, "val robust", rob, flush=True)
                return clean + rob

            t0 = time.perf_counter()
            result = train_model(
                m,
                plan.images,
                plan.labels,
                None,
                None,
                cfg,
                seed=seed,
                augment=plan.augment,
                consistency=plan.consistency,
                divergence=plan.divergence,
                select_score=select if args.ft_select == "val" else None,
            )
            clean, clean_nom, rob = scores(m)
            best = result.best_epoch
            rows.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "best_epoch": best,
                    "val_clean": history[best - 1][0] if history else "-",
                    "val_robust": history[best - 1][1] if history else "-",
                    "clean_acc": round(clean, 4),
                    "clean_nominal_acc": round(clean_nom, 4),
                    "pgd8_robust_acc": round(rob, 4),
                    "clean_change": round(clean - base_clean, 4),
                    "robust_change": round(rob - base_rob, 4),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "val_history": " ".join(f"{c}/{r}" for c, r in history),
                }
            )
            print("finetune", rows[-1], flush=True)
            if on_row is not None:
                on_row(rows)
    return rows


def _mean_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for strategy in ("plain", "adversarial", "trades"):
        sel = [r for r in rows if r["strategy"] == strategy]
        if sel:
            out.append(
                {
                    "strategy": strategy,
                    "seeds": len(sel),
                    "clean_change_mean": round(float(np.mean([r["clean_change"] for r in sel])), 4),
                    "robust_change_mean": round(
                        float(np.mean([r["robust_change"] for r in sel])), 4
                    ),
                }
            )
    return out


def _ft_text(s: dict[str, Any], command: str | None, where: str | None = None) -> list[str]:
    """The paragraph that says how a fine-tuning table was made."""
    frac = s.get("ft_step_fraction", 0.25)
    step = round(frac * s.get("ft_eps", 8), 2)
    select = (
        "the epoch with the best validation clean + robust accuracy kept (columns `val_*`, "
        "`val_history`: clean/robust per epoch)"
        if s.get("ft_select") == "val"
        else "the last epoch's weights (the best training accuracy)"
    )
    examples = (
        f"adversarial share of each batch {s.get('ft_share', 0.5)}, PGD-{s.get('ft_steps', 5)} "
        f"examples at {s.get('ft_eps', 8)}/255 (step {step}/255, random start)"
    )
    if s.get("ft_loss") == "trades":
        examples = (
            f"TRADES loss (Zhang et al. 2019) with beta {s['ft_beta']}: cross-entropy on every "
            "clean input plus beta x KL(p(x) || p(x_adv)), x_adv from "
            f"KL-PGD-{s.get('ft_steps', 5)} at {s.get('ft_eps', 8)}/255 (step {step}/255, start "
            "x + 0.001 N(0, I))"
        )
    out = [
        f"{s['ft_epochs']} epochs (Adam, lr {s.get('ft_lr', 5e-4)}, cosine) from the trained "
        f"model on {s.get('ft_n', s.get('train'))} training images, per seed, {select}; the "
        f"{examples}; clean accuracy on the whole test "
        "split (`clean_acc`, rare scenarios included) and on its nominal inputs "
        "(`clean_nominal_acc`), PGD (10 steps) robust accuracy at 8/255 on the attacked nominal "
        "inputs; changes against the original model."
    ]
    if where:
        out += ["", f"Fine-tuned on: {where} (the last run written)."]
    if command:
        out += ["", "Command:", "", f"    {command}"]
    return out


def _ft_settings(ds: Any, args: argparse.Namespace) -> dict[str, Any]:
    return (
        {
            "train": len(ds["train"]),
            "ft_epochs": args.ft_epochs,
            "ft_n": min(args.ft_n, len(ds["train"])),
            "ft_lr": args.ft_lr,
            "ft_steps": args.ft_steps,
            "ft_share": args.ft_share,
            "ft_step_fraction": args.ft_step_fraction,
            "ft_select": args.ft_select,
        }
        | ({"ft_eps": args.ft_eps} if args.ft_eps != 8 else {})
        | ({"ft_loss": "trades", "ft_beta": args.ft_beta} if args.ft_loss == "trades" else {})
    )


def _ft_machine(args: argparse.Namespace) -> str:
    """Where the fine-tuning ran, in words."""
    info = machine()
    where = f"{info['cpu_cores']} CPU cores, {args.threads} torch threads"
    if str(args.device).startswith("cuda"):
        where = f"{torch.cuda.get_device_name(args.device)} GPU ({where})"
    return f"{where}, torch {info['torch']}, Python {info['python']}, {info['date']}"


@contextlib.contextmanager
def _locked() -> Any:
    """An exclusive lock on the result files (on the .json itself, which the fine-tuning stage
    needs anyway): processes of one dataset (one per seed) merge their rows one at a time."""
    with open(RESULTS / "adversarial.json", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def finetune_only(
    name: str, args: argparse.Namespace, command: str, write: Any, verdict: Any
) -> None:
    """The fine-tuning stage alone, on the cached model; the other sections are kept.

    ``--only-finetune final`` writes the fine-tuning table: rows already there for the same
    settings (an earlier final run, another process's seeds, or the one-seed pilot that chose
    these settings) are kept with their commands, and this run's rows are added. Any other
    name adds or replaces a pilot table of that name. With ``--ft-loss trades`` the final
    table is ``finetune_trades`` (the PGD table is left as it is). The tables are rewritten
    after every run, under a lock (several processes may write them)."""
    ds = _load(name, args)
    model = _train(ds, args.epochs).to(args.device)
    settings = _ft_settings(ds, args)
    suffix = "_trades" if args.ft_loss == "trades" else ""  # TRADES rows: a table of their own

    def on_row(rows: list[dict[str, Any]]) -> None:
        with _locked():
            res = json.loads((RESULTS / "adversarial.json").read_text())["datasets"][name]
            mine = {(r["strategy"], r["seed"]) for r in rows[1:]}
            if args.only_finetune == "final":
                kept: list[dict[str, Any]] = []
                commands: list[str] = []
                sources = []
                if res.get(f"ft_settings{suffix}") == settings:
                    previous = res[f"finetune{suffix}"][1:]
                    sources.append((previous, res.get(f"ft_commands{suffix}", [])))
                sources += [
                    (p["rows"][1:], [p["command"]])
                    for p in res.get("pilots", [])
                    if p["settings"] == settings
                ]
                for src_rows, cmds in sources:
                    seen = mine | {(r["strategy"], r["seed"]) for r in kept}
                    new_rows = [r for r in src_rows if (r["strategy"], r["seed"]) not in seen]
                    kept += new_rows
                    commands += list(cmds) if new_rows else []
                res[f"finetune{suffix}"] = rows[:1] + sorted(
                    kept + rows[1:], key=lambda r: (r["strategy"] != "plain", r["seed"])
                )
                res[f"ft_settings{suffix}"] = settings
                res[f"ft_machine{suffix}"] = _ft_machine(args)
                res[f"ft_commands{suffix}"] = list(dict.fromkeys([*commands, command]))
                res[f"ft_command{suffix}"] = "\n    ".join(res[f"ft_commands{suffix}"])
                res["verdict"] = verdict(res)
            else:
                pilots = [p for p in res.get("pilots", []) if p["name"] != args.only_finetune]
                pilots.append(
                    {"name": args.only_finetune, "settings": settings, "command": command,
                     "rows": rows, "machine": _ft_machine(args)}
                )  # fmt: skip
                res["pilots"] = pilots
            write({"datasets": {name: res}}, args)

    finetune(model, ds, args, on_row)
