"""Robustness on signs and Fashion-MNIST with the zoo's small CNN (CPU, small sizes).

Per dataset: train ``small_cnn``; sweep ImageNet-C's 15 corruptions x 5 severities and the
4 missing-data kinds x 6 rates on the nominal test images (time, peak memory); AugMix
fine-tuning on the noise + blur families judged on the held-out weather + digital families
(3 seeds, against the model before fine-tuning and a clean-only fine-tuning control); 1,000
single bit flips (all 32 bits) for per-layer and per-bit silent-data-corruption (SDC) rates;
1,000 exponent-bit flips without and with Ranger clipping; stuck-at-zero faults on the most
LRP-relevant neurons of three layers against random neurons of the same layers.

Reproduce: OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_robustness.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import peak_memory
from _robustness_augmix import HELD_OUT, TUNE_FAMILIES, add_arguments, run_augmix
from _table import RESULTS, write_table
from dnnsafety.config import DataConfig, TrainConfig
from dnnsafety.data.builtin import load_dataset
from dnnsafety.data.inject import SCENARIOS
from dnnsafety.models.training import train_model
from dnnsafety.models.zoo import build_model
from dnnsafety.robustness.corruptions import IMAGENET_C, MISSING
from dnnsafety.robustness.criticality import relevance_vs_random
from dnnsafety.robustness.faults import EXPONENT_BITS, sample_bit_flips
from dnnsafety.robustness.ranger import Ranger
from dnnsafety.robustness.sweep import (
    corruption_sweep,
    fault_campaign,
    missing_sweep,
    predict_labels,
)

RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
CRITICAL_LAYERS = ("features.3", "features.6", "classifier.1")


def load(name: str, args: argparse.Namespace) -> tuple[Any, torch.Tensor, np.ndarray]:
    """The dataset and its nominal test images (no injected or simulated condition)."""
    none = {split: dict.fromkeys(SCENARIOS, 0.0) for split in ("train", "val", "test", "pool")}
    cfg = DataConfig(
        name=name,
        n_train=args.n_train,
        n_val=1000,
        n_test=args.n_test * (2 if name == "signs" else 1),
        n_pool=200,
        scenarios=none if name != "signs" else {},
    )
    ds = load_dataset(cfg, seed=0)
    test = ds["test"]
    keep = np.flatnonzero(test.scenarios == "nominal")[: args.n_test]
    return ds, test.images[keep], test.labels[keep]


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"dataset": name}
    ds, x_test, y_test = load(name, args)
    if args.only == "augmix":  # rerun just this section into the earlier results
        earlier = json.loads((RESULTS / f"robustness_{name}.json").read_text())
        return {**earlier, "augmix": run_augmix(name, ds, x_test, y_test, args)}
    train, val = ds["train"], ds["val"]
    c, h, _ = ds.image_shape
    out["sizes"] = {"train": len(train), "test_nominal": len(y_test), "image": [c, h, h]}
    torch.manual_seed(0)
    model = build_model("small_cnn", c, ds.num_classes, h)
    t0 = time.perf_counter()
    cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, threads=args.threads)
    train_model(model, train.images, train.labels, val.images, val.labels, cfg, seed=0)
    out["train_seconds"] = time.perf_counter() - t0
    clean = float(np.mean(predict_labels(model, x_test) == y_test))
    out["clean_accuracy"] = clean
    print(name, "clean", clean, flush=True)

    # -- the full sweep
    with peak_memory() as mem:
        sweep = corruption_sweep(model, x_test, y_test, list(IMAGENET_C), random_state=0)
        missing = missing_sweep(model, x_test, y_test, MISSING, RATES, random_state=0)
    out["sweep"] = {"accuracy": sweep, "missing": missing}
    out["sweep_seconds"], out["sweep_peak_mb"] = mem["seconds"], mem["peak"]
    print(name, "sweep", f"{mem['seconds']:.0f}s", flush=True)

    # -- AugMix fine-tuning (its own converged base model), held-out families
    out["augmix"] = run_augmix(name, ds, x_test, y_test, args)

    # -- bit flips: per layer and per bit
    x_f, y_f = x_test[: args.n_fault_inputs], y_test[: args.n_fault_inputs]
    with peak_memory() as mem:
        faults = sample_bit_flips(model, args.n_faults, random_state=0)
        campaign = fault_campaign(model, x_f, y_f, faults)
    out["faults"] = {
        "n": len(faults),
        "rate": campaign.rate(),
        "critical": campaign.critical_share(),
        "by_layer": campaign.by("layer"),
        "by_bit": campaign.by("bit"),
        "seconds": mem["seconds"],
    }
    print(name, "faults", campaign.rate(), f"{mem['seconds']:.0f}s", flush=True)

    # -- Ranger on exponent-bit flips
    n_profile = min(len(train), 2000)
    ranger = Ranger.from_training_data(model, train.images[:n_profile])
    exp_faults = sample_bit_flips(model, args.n_faults, bits=EXPONENT_BITS, random_state=1)
    plain = fault_campaign(model, x_f, y_f, exp_faults)
    hardened = fault_campaign(ranger.model, x_f, y_f, exp_faults)
    ranger_clean = float(np.mean(predict_labels(ranger, x_test) == y_test))
    out["ranger"] = {
        "n": len(exp_faults),
        "rate_plain": plain.rate(),
        "rate_ranger": hardened.rate(),
        "critical_plain": plain.critical_share(),
        "critical_ranger": hardened.critical_share(),
        "by_bit_plain": plain.by("bit"),
        "by_bit_ranger": hardened.by("bit"),
        "clean_plain": clean,
        "clean_ranger": ranger_clean,
        "profiled_on": n_profile,
    }
    print(name, "ranger", plain.rate(), hardened.rate(), ranger_clean, flush=True)

    # -- LRP relevance vs random neurons under stuck-at-zero
    crit = []
    for layer in CRITICAL_LAYERS:
        n_neurons = model.get_submodule(layer).weight.shape[1]  # type: ignore[union-attr]
        k = max(1, n_neurons // 8)
        res = relevance_vs_random(model, x_f, layer, k=k, n_random=args.n_random, random_state=0)
        crit.append({**res.to_dict(), "neurons": n_neurons})
        print(name, "criticality", crit[-1], flush=True)
    out["criticality"] = crit
    return out


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def chosen(aug: dict[str, Any]) -> str:
    """The tuned AugMix config and its clean validation change against the base model."""
    if "tuning" not in aug:
        return "-"
    best, base = aug["tuning"]["chosen"], aug["base"]["val"]["clean"]
    return (
        f"{best['epochs']} ep, lr {best['lr']:g}, severity {best['severity']:g} "
        f"({100 * (best['clean'] - base):+.1f})"
    )


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        aug = r["augmix"]
        before = aug["before"]["held_out_error"]
        held = [x["augmix"]["held_out_error"] for x in aug["runs"]]
        ctrl = [x["control"]["held_out_error"] for x in aug["runs"]]
        clean_aug = [x["augmix"]["clean"] for x in aug["runs"]]
        change = [c - aug["before"]["clean"] for c in clean_aug]
        rel = [1 - e / before for e in held]
        rel_ctrl = [1 - e / c for e, c in zip(held, ctrl, strict=True)]
        rg = r["ranger"]
        ratio = rg["rate_plain"] / rg["rate_ranger"] if rg["rate_ranger"] > 0 else float("inf")
        ranger_change = 100 * (rg["clean_ranger"] - rg["clean_plain"])
        rows.append(
            {
                "dataset": r["dataset"],
                "sizes": f"train {r['sizes']['train']}, test {r['sizes']['test_nominal']}, "
                f"{'x'.join(map(str, r['sizes']['image']))}",
                "clean acc %": pct(r["clean_accuracy"]),
                "sweep cells": f"{len(r['sweep']['accuracy'])}x5 + {len(r['sweep']['missing'])}"
                f"x{len(RATES)}",
                "sweep s": round(r["sweep_seconds"]),
                "sweep peak MB": round(r["sweep_peak_mb"]),
                "AugMix base clean acc %": pct(aug["before"]["clean"]),
                "AugMix config chosen on val (val clean change, points)": chosen(aug),
                "held-out err before %": pct(before),
                "held-out err AugMix % (3 seeds)": "/".join(pct(e) for e in held),
                "held-out err control %": "/".join(pct(e) for e in ctrl),
                "reduction vs before %": "/".join(f"{100 * x:.0f}" for x in rel),
                "reduction vs control %": "/".join(f"{100 * x:.0f}" for x in rel_ctrl),
                "clean acc change (points)": "/".join(f"{100 * d:+.1f}" for d in change),
                "bit flips": r["faults"]["n"],
                "SDC rate all bits %": f"{100 * r['faults']['rate']:.2f}",
                "exp-bit SDC % plain -> Ranger": f"{100 * rg['rate_plain']:.2f} -> "
                f"{100 * rg['rate_ranger']:.3f}",
                "Ranger cut": "no SDC to cut"
                if rg["rate_plain"] == 0
                else f"{ratio:.0f}x"
                if np.isfinite(ratio)
                else "all removed",
                "Ranger clean change (points)": f"{ranger_change:+.2f}",
            }
        )
    return rows


def details(results: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for r in results:
        name = r["dataset"]
        acc = r["sweep"]["accuracy"]
        parts += [f"## {name}: accuracy (%) per corruption x severity", ""]
        parts += ["| corruption | 1 | 2 | 3 | 4 | 5 |", "|---|---|---|---|---|---|"]
        for c, cells in acc.items():
            parts.append(f"| {c} | " + " | ".join(pct(cells[s]) for s in sorted(cells)) + " |")
        parts += ["", f"## {name}: accuracy (%) against the missing rate", ""]
        parts += ["| kind | " + " | ".join(f"{x:g}" for x in RATES) + " |"]
        parts += ["|---|" + "---|" * len(RATES)]
        for k, cells in r["sweep"]["missing"].items():
            parts.append(f"| {k} | " + " | ".join(pct(cells[x]) for x in sorted(cells)) + " |")
        parts += ["", f"## {name}: SDC rate per layer ({r['faults']['n']} single bit flips)", ""]
        parts += ["| layer | flips | SDC rate % | faults with an SDC % |", "|---|---|---|---|"]
        for layer, g in r["faults"]["by_layer"].items():
            parts.append(f"| {layer} | {g['n']} | {100 * g['rate']:.2f} | {pct(g['critical'])} |")
        parts += ["", f"## {name}: SDC rate per bit (31 sign, 30-23 exponent, 22-0 mantissa)", ""]
        parts += ["| bit | flips | SDC rate % | faults with an SDC % |", "|---|---|---|---|"]
        for bit, g in r["faults"]["by_bit"].items():
            parts.append(f"| {bit} | {g['n']} | {100 * g['rate']:.2f} | {pct(g['critical'])} |")
        rg = r["ranger"]
        parts += ["", f"## {name}: exponent-bit flips, plain vs Ranger ({rg['n']} flips)", ""]
        parts += ["| bit | plain SDC % | Ranger SDC % |", "|---|---|---|"]
        for bit, g in rg["by_bit_plain"].items():
            h = rg["by_bit_ranger"][bit]
            parts.append(f"| {bit} | {100 * g['rate']:.2f} | {100 * h['rate']:.3f} |")
        parts += ["", f"## {name}: stuck-at-zero, top-LRP-relevance neurons vs random", ""]
        parts += [
            "| layer (input neurons) | k | SDC top-k % | SDC random k % (mean ± sd) | p | "
            "Spearman(relevance, single-neuron SDC) | p |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in r["criticality"]:
            parts.append(
                f"| {c['layer']} ({c['neurons']}) | {c['k']} | {pct(c['top_sdc'])} | "
                f"{pct(c['random_sdc_mean'])} ± {pct(c['random_sdc_std'])} | "
                f"{c['p_value']:.3f} | {c['spearman']:.2f} | {c['spearman_p']:.2g} |"
            )
        parts.append("")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000, help="nominal test images")
    parser.add_argument("--n-eval", type=int, default=500, help="test images for AugMix")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-faults", type=int, default=1000)
    parser.add_argument("--n-fault-inputs", type=int, default=500)
    parser.add_argument("--n-random", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--only",
        choices=("all", "augmix"),
        default="all",
        help="augmix: rerun only the AugMix section, keeping the other figures of "
        "results/robustness_<dataset>.json",
    )
    add_arguments(parser)
    parser.add_argument(
        "--merge-only",
        action="store_true",
        help="only write the table from the per-dataset files of earlier runs "
        "(results/robustness_<dataset>.json; run the datasets in parallel, then merge)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    names = args.datasets.split(",")
    for name in names:
        if args.merge_only:
            continue
        raw = run(name, args)
        (RESULTS / f"robustness_{name}.json").write_text(json.dumps(raw, indent=1) + "\n")
    results = [
        json.loads((RESULTS / f"robustness_{name}.json").read_text())
        for name in names
        if (RESULTS / f"robustness_{name}.json").is_file()
    ]
    cmd = (
        "OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_robustness.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "merge_only"
        )
    )
    notes = (
        f"small_cnn trained {args.epochs} epochs on {args.n_train} images; sweeps on "
        f"{args.n_test} nominal test images. AugMix section: its own base small_cnn trained "
        f"to convergence ({args.base_epochs} epochs, cosine) on the first "
        f"{args.augmix_n_train} training images; AugMix "
        "(Hendrycks et al. 2020: autocontrast, equalize, posterize, solarize, rotate, "
        "shear, translate; no ImageNet-C corruption; width 3, depth 1-3, Jensen-Shannon "
        "consistency loss, weight 12, two views) fine-tunes it; epochs, lr and severity "
        f"were chosen on {args.n_val_tune} nominal validation images (grid: epochs "
        f"{args.grid_epochs}, lr {args.grid_lr}, severity {args.grid_severity}) by the "
        f"lowest error on the {'+'.join(TUNE_FAMILIES)} families (tuning families) with "
        "clean validation accuracy at most 1 point below the base model's (if none is, "
        "the lowest error overall); it is judged on "
        f"the {'+'.join(HELD_OUT)} families (held out: never used in training or tuning; "
        f"severities 1-5, {args.n_eval} test images); reduction = 1 - held-out error after "
        "AugMix / before (the base model) or / after the control (the same fine-tuning on "
        "clean images only, same seed); clean accuracy on the "
        f"{args.n_test} nominal test images. "
        f"Faults judged on {args.n_fault_inputs} test images; an SDC is a changed top-1 "
        "prediction. Ranger bounds profiled on 2,000 training images."
        + (
            " With --only augmix only the AugMix columns were rerun; the other figures are "
            "those of the earlier full run kept in results/robustness_<dataset>.json."
            if args.only == "augmix"
            else ""
        )
        + "\n\n"
        + details(results)
    )
    md = write_table(
        "robustness", "Robustness: corruptions, missing data, faults (small_cnn, CPU)", cmd,
        summary_rows(results), notes,
    )  # fmt: skip
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
