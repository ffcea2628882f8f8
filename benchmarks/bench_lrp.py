"""Cost of LRP heatmaps for all candidate layers vs a plain forward+backward pass (CPU).

For each zoo model and rule set, on one batch of random 32x32x3 images, the median over
``--repeats`` runs (after one warm-up, the three variants interleaved) of

* forward+backward: eval mode, ``logits.gather(predicted).sum().backward()`` (parameter
  gradients included, as in training);
* zennit: :func:`dnnsafety.features.layer_relevance` with ``backend="zennit"`` (all layers);
* fast: the same with ``backend="fast"``;

and the largest difference between the two backends' maps, relative to each map's largest value.

Reproduce: .venv/bin/python benchmarks/bench_lrp.py
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table
from dnnsafety.features import find_layers, layer_relevance
from dnnsafety.models.zoo import build_model

CASES = (
    ("small_cnn", "hudd"),
    ("small_cnn", "default"),
    ("alexnet", "hudd"),
    ("alexnet", "default"),
    ("resnet", "default"),
    ("resnet", "hudd"),
)


def _forward_backward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        logits = model(xg)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for arch, ruleset in CASES:
        torch.manual_seed(0)
        model = build_model(arch, 3, 10, 32).eval()
        x = torch.rand(args.batch, 3, 32, 32)
        plan = find_layers(model, x)
        variants: dict[str, Callable[[], object]] = {
            "fb": _forward_backward(model, x),
            "zennit": functools.partial(layer_relevance, model, x, plan, ruleset, "zennit"),
            "fast": functools.partial(layer_relevance, model, x, plan, ruleset, "fast"),
        }
        times: dict[str, list[float]] = {k: [] for k in variants}
        for fn in variants.values():
            fn()
        for rep in range(args.repeats):
            names = list(variants)
            for name in names[rep % 3 :] + names[: rep % 3]:
                t0 = time.perf_counter()
                variants[name]()
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        ref = layer_relevance(model, x, plan, ruleset, "zennit")
        fast = layer_relevance(model, x, plan, ruleset, "fast")
        rel = max(
            float((fast.maps[k] - v).abs().max() / v.abs().max().clamp_min(1e-30))
            for k, v in ref.maps.items()
        )
        absdiff = max(float((fast.maps[k] - v).abs().max()) for k, v in ref.maps.items())
        rows.append(
            {
                "model": arch,
                "ruleset": ruleset,
                "layers": len(plan),
                "fwd+bwd s": round(med["fb"], 3),
                "zennit s": round(med["zennit"], 3),
                "fast s": round(med["fast"], 3),
                "zennit / fwd+bwd": round(med["zennit"] / med["fb"], 2),
                "fast / fwd+bwd": round(med["fast"] / med["fb"], 2),
                "fast vs zennit max abs diff": f"{absdiff:.2g}",
                "max rel diff": f"{rel:.2g}",
            }
        )
        print(rows[-1], flush=True)
    cmd = (
        f".venv/bin/python benchmarks/bench_lrp.py --batch {args.batch} --repeats {args.repeats}"
        + (f" --threads {args.threads}" if args.threads else "")
    )
    notes = (
        "Times are medians over the repeats for one batch of random images (untrained "
        "models, 10 classes); 'layers' counts the maps including the pixel-level 'input'. "
        "fwd+bwd computes parameter gradients (as training does); the LRP passes need none. "
        "Diffs compare every layer's map between the backends (float32); 'max rel diff' is "
        "relative to that map's largest absolute value. The machine is shared: expect noise."
    )
    md = write_table(
        "lrp",
        f"LRP heatmaps (all candidate layers) vs forward+backward, batch {args.batch} of "
        "32x32x3, CPU",
        cmd,
        rows,
        notes,
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
