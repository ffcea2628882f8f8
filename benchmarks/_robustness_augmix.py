"""The AugMix section of bench_robustness.py: tune on validation, judge on held-out families.

Protocol (Hendrycks et al., ICLR 2020, as a fine-tuning of a converged model):

* The base ``small_cnn`` is trained to convergence (``--base-epochs``, Adam, cosine) and cached
  under ``--cache`` (keyed by dataset, sizes and epochs).
* AugMix trains on the paper's operations only (autocontrast, equalize, posterize, solarize,
  rotate, shear, translate) with the Jensen-Shannon consistency loss (weight 12, two views); no
  ImageNet-C corruption is used in training.
* Fine-tuning epochs, learning rate and AugMix severity are chosen on the *validation* split:
  the config with the lowest mean error over the tuning families (noise + blur, severities
  1-5) among those whose clean validation accuracy is at most 1 point below the base model's.
* The chosen config is run with 3 seeds and judged on the *test* split under the held-out
  families (weather + digital, severities 1-5), which play no part in training or tuning;
  the control is the same fine-tuning on clean images only (same epochs, lr, seeds).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dnnsafety.config import TrainConfig
from dnnsafety.models.training import train_model
from dnnsafety.models.zoo import build_model
from dnnsafety.robustness.augmix import AugMix, AugMixConfig, augmix_finetune
from dnnsafety.robustness.corruptions import CORRUPTIONS, SEVERITIES, names_of
from dnnsafety.robustness.sweep import (
    cell_key,
    cell_seed,
    corruption_errors,
    mean_corruption_error,
    predict_labels,
)

TUNE_FAMILIES = ("noise", "blur")
HELD_OUT = ("weather", "digital")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--augmix-n-train", type=int, default=3000, help="AugMix train images")
    parser.add_argument("--base-epochs", type=int, default=30, help="AugMix base model epochs")
    parser.add_argument("--grid-epochs", default="3,6", help="fine-tuning epochs to try")
    parser.add_argument("--grid-lr", default="0.0003,0.001", help="fine-tuning lr to try")
    parser.add_argument("--grid-severity", default="3", help="AugMix severities to try (0-10)")
    parser.add_argument("--n-val-tune", type=int, default=500, help="val images for tuning")
    parser.add_argument("--cache", default="/tmp/dnnsafety-augmix-base", help="base models")


def corrupted_sets(
    x: torch.Tensor, names: list[str], seed: int
) -> dict[tuple[str, int], torch.Tensor]:
    """Every (corruption, severity) copy of ``x``, made once and shared by every model."""
    out = {}
    for name in names:
        for s in SEVERITIES:
            out[(name, s)] = CORRUPTIONS.get(name)(x, s, cell_seed(seed, cell_key(name, s)))
    return out


def accuracy_on(
    model: torch.nn.Module, sets: dict[tuple[str, int], torch.Tensor], y: np.ndarray
) -> dict[str, dict[int, float]]:
    acc: dict[str, dict[int, float]] = {}
    for (name, s), x in sets.items():
        acc.setdefault(name, {})[s] = float(np.mean(predict_labels(model, x) == y))
    return acc


def mean_error(acc: dict[str, dict[int, float]], names: list[str]) -> float:
    return float(np.mean([1 - v for n in names for v in acc[n].values()]))


def per_corruption(acc: dict[str, dict[int, float]], names: list[str]) -> dict[str, float]:
    return {n: float(np.mean([1 - v for v in acc[n].values()])) for n in names}


def base_model(
    name: str, ds: Any, x_train: torch.Tensor, y_train: np.ndarray, args: argparse.Namespace
) -> tuple[torch.nn.Module, float]:
    """``small_cnn`` trained ``--base-epochs`` (cosine), cached; and its training seconds."""
    val = ds["val"]
    c, h, _ = ds.image_shape
    digest = hashlib.sha256(x_train.numpy().tobytes()).hexdigest()[:12]
    path = Path(args.cache) / f"{name}-{len(x_train)}-{args.base_epochs}-{digest}.pt"
    torch.manual_seed(0)
    model = build_model("small_cnn", c, ds.num_classes, h)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), float("nan")
    t0 = time.perf_counter()
    cfg = TrainConfig(
        epochs=args.base_epochs, batch_size=128, lr=1e-3, schedule="cosine", threads=args.threads
    )
    train_model(model, x_train, y_train, val.images, val.labels, cfg, seed=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval(), time.perf_counter() - t0


def run_augmix(
    name: str, ds: Any, x_test: torch.Tensor, y_test: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """The AugMix section's figures for one dataset (see the module docstring)."""
    train, val = ds["train"], ds["val"]
    n_train = min(args.augmix_n_train, len(train))
    x_train, y_train = train.images[:n_train], train.labels[:n_train]
    model, base_seconds = base_model(name, ds, x_train, y_train, args)
    tune_ops, held = names_of(list(TUNE_FAMILIES)), names_of(list(HELD_OUT))
    nominal = np.flatnonzero(val.scenarios == "nominal")[: args.n_val_tune]
    x_val, y_val = val.images[nominal], val.labels[nominal]
    val_sets = corrupted_sets(x_val, tune_ops, seed=2)
    x_eval, y_eval = x_test[: args.n_eval], y_test[: args.n_eval]
    test_sets = corrupted_sets(x_eval, held, seed=1)

    def val_scores(m: torch.nn.Module) -> dict[str, float]:
        return {
            "clean": float(np.mean(predict_labels(m, x_val) == y_val)),
            "tune_error": mean_error(accuracy_on(m, val_sets, y_val), tune_ops),
        }

    base_val = val_scores(model)
    print(name, "augmix base", base_val, flush=True)
    grid: list[dict[str, Any]] = []
    tuned_models: list[torch.nn.Module] = []
    for epochs, lr, severity in itertools.product(
        [int(v) for v in args.grid_epochs.split(",")],
        [float(v) for v in args.grid_lr.split(",")],
        [float(v) for v in args.grid_severity.split(",")],
    ):
        t0 = time.perf_counter()
        tuned = augmix_finetune(
            model, x_train, y_train, AugMix(severity=severity, views=2),
            AugMixConfig(epochs=epochs, lr=lr), random_state=0,
        )  # fmt: skip
        row = {"epochs": epochs, "lr": lr, "severity": severity, **val_scores(tuned)}
        row["seconds"] = time.perf_counter() - t0
        grid.append(row)
        tuned_models.append(tuned)
        print(name, "augmix tune", row, flush=True)
    allowed = [g for g in grid if g["clean"] >= base_val["clean"] - 0.01] or grid
    best = min(allowed, key=lambda g: g["tune_error"])
    cfg = AugMixConfig(epochs=best["epochs"], lr=best["lr"])

    before = accuracy_on(model, test_sets, y_eval)
    clean = float(np.mean(predict_labels(model, x_test) == y_test))
    runs = []
    for seed in range(args.seeds):
        row: dict[str, Any] = {"seed": seed}
        for label, augment in (
            ("augmix", AugMix(severity=best["severity"], views=2)),
            ("control", None),
        ):
            if label == "augmix" and seed == 0:  # the same run as the chosen tuning run
                tuned = tuned_models[grid.index(best)]
            else:
                tuned = augmix_finetune(model, x_train, y_train, augment, cfg, seed)
            acc = accuracy_on(tuned, test_sets, y_eval)
            row[label] = {
                "clean": float(np.mean(predict_labels(tuned, x_test) == y_test)),
                "held_out_error": mean_error(acc, held),
                "per_corruption_error": per_corruption(acc, held),
                "mce_held_out": mean_corruption_error(
                    corruption_errors({n: acc[n] for n in held}, before)
                ),
            }
        runs.append(row)
        print(name, "augmix seed", seed, row, flush=True)
    return {
        "base": {"epochs": args.base_epochs, "train_seconds": base_seconds, "val": base_val},
        "before": {
            "clean": clean,
            "held_out_error": mean_error(before, held),
            "per_corruption_error": per_corruption(before, held),
        },
        "tuning": {"grid": grid, "chosen": best, "families": tune_ops, "n_val": len(y_val)},
        "runs": runs,
        "train_operations": list(AugMix().operations),
        "held_out": held,
        "n_eval": len(y_eval),
        "sizes": {"train": n_train, "test_clean": len(y_test)},
    }
