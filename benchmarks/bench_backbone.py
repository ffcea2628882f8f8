"""Throughput of the frozen backbone (the black-box analysis's cost) and the clusters it gives.

Part 1, images per second of MobileNetV2's pooled embedding on this machine for each option:
the previous path (eager model, no_grad, a hook on the last linear layer, batches of 64,
224 px: the *baseline*, measured in the same run), inference mode, channels-last, batch size
(32..256), torch threads (1, 2), onnxruntime for the frozen network (exported once with
``torch.onnx``), onnxruntime's dynamic int8 quantization, torch's dynamic quantization, and
the input size (28/32 px images upsampled to 64..224). Every option runs on the same images,
round-robin for ``--rounds`` rounds; the median is reported, and its ratio to the baseline's
median at the same thread count.

Part 2, the same clusters: for each corruption benchmark (signs, Fashion-MNIST with injected
scenarios, as in bench_safe_vs_hudd / bench_safe_pipelines), the test errors of a small model
(benchmarks/out/<dataset>-backbone: ``--n-train`` / ``--n-test`` images, ``--epochs``) go
through features -> UMAP -> DBSCAN with the baseline features and with each candidate; mean
purity, coverage and the adjusted Rand index against the baseline's clusters, in the same run.

Reproduce: .venv/bin/python benchmarks/bench_backbone.py [--n 128] [--rounds 3]
    [--datasets signs,fashion-mnist] [--sizes 64,96,128,160,224]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

torch.set_flush_denormal(True)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table  # noqa: E402
from dnnsafety.config import RunConfig  # noqa: E402
from dnnsafety.evaluation import score_clusters  # noqa: E402
from dnnsafety.failures import error_inputs  # noqa: E402
from dnnsafety.features import FeatureContext, make_source  # noqa: E402
from dnnsafety.features.runtime import BackboneRunner, onnx_session  # noqa: E402
from dnnsafety.features.sources import IMAGENET_MEAN, IMAGENET_STD, _PenultimateHook  # noqa: E402
from dnnsafety.pipeline import Pipeline  # noqa: E402
from dnnsafety.pipeline.analyze.safe import reduce_and_cluster  # noqa: E402
from dnnsafety.runs import RunDir  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

Embed = Callable[[torch.Tensor], np.ndarray]


def _prep(batch: torch.Tensor, size: int) -> torch.Tensor:
    x = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x - MEAN) / STD


def baseline(net: torch.nn.Module, size: int = 224, batch: int = 64) -> Embed:
    """The previous path (features/sources.py before this change)."""
    hook = _PenultimateHook(net)

    def run(images: torch.Tensor) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(images), batch):
                out.append(hook(_prep(images[s : s + batch], size)).numpy())
        return np.concatenate(out)

    return run


def eager(net: torch.nn.Module, size: int, batch: int, channels_last: bool, mode: str) -> Embed:
    runner = BackboneRunner(net, "torch", channels_last=channels_last)
    hook = _PenultimateHook(net)

    def run(images: torch.Tensor) -> np.ndarray:
        out = []
        for s in range(0, len(images), batch):
            x = _prep(images[s : s + batch], size)
            if mode == "inference_mode" and not channels_last:
                with torch.inference_mode():
                    out.append(hook(x).numpy())
            else:
                out.append(runner(x))
        return np.concatenate(out)

    return run


def onnx(net: torch.nn.Module, size: int, batch: int, threads: int, quantize: bool) -> Embed:
    runner = BackboneRunner(net, "onnxruntime", threads=threads)
    if quantize:
        import tempfile

        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
            src.write_bytes(runner.model_bytes or b"")
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
            runner.model_bytes = dst.read_bytes()
        runner._session = onnx_session(runner.model_bytes, threads)

    def run(images: torch.Tensor) -> np.ndarray:
        out = [runner(_prep(images[s : s + batch], size)) for s in range(0, len(images), batch)]
        return np.concatenate(out)

    return run


def torch_dynamic_quant(net: torch.nn.Module, size: int, batch: int) -> Embed:
    """torch's dynamic int8 quantization: it quantizes only ``nn.Linear`` layers, and the
    embedding is the input of the only one, so the features are the baseline's."""
    qnet = torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {torch.nn.Linear})
    last = [m for m in qnet.modules() if type(m).__name__.endswith("Linear")][-1]
    grabbed: list[torch.Tensor] = []
    last.register_forward_pre_hook(lambda _m, inputs: grabbed.append(inputs[0].flatten(1)))

    def run(images: torch.Tensor) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(images), batch):
                grabbed.clear()
                qnet(_prep(images[s : s + batch], size))
                out.append(grabbed[-1].numpy())
        return np.concatenate(out)

    return run


def options(net: torch.nn.Module, sizes: list[int]) -> list[tuple[dict[str, Any], Embed]]:
    """(description, embed function) for every option measured."""
    opts: list[tuple[dict[str, Any], Embed]] = []

    def add(runtime: str, size: int, batch: int, threads: int, note: str, fn: Embed) -> None:
        row = {"runtime": runtime, "size": size, "batch": batch, "threads": threads, "note": note}
        opts.append((row, fn))

    for threads in (1, 2):
        add("torch (baseline)", 224, 64, threads, "previous path", baseline(net))
    add("torch", 224, 64, 1, "inference_mode", eager(net, 224, 64, False, "inference_mode"))
    add("torch", 224, 64, 1, "channels_last + inference_mode", eager(net, 224, 64, True, ""))
    add("torch", 224, 64, 1, "dynamic int8 (Linear only)", torch_dynamic_quant(net, 224, 64))
    for batch in (32, 128, 256):
        add("torch", 224, batch, 1, "channels_last", eager(net, 224, batch, True, ""))
    for batch in (32, 64, 128, 256):
        add("onnxruntime", 224, batch, 1, "", onnx(net, 224, batch, 1, False))
    add("onnxruntime", 224, 64, 2, "", onnx(net, 224, 64, 2, False))
    add("onnxruntime", 224, 64, 1, "dynamic int8", onnx(net, 224, 64, 1, True))
    for size in sizes:
        if size != 224:
            add("onnxruntime", size, 64, 1, "", onnx(net, size, 64, 1, False))
    return opts


def throughput(images: torch.Tensor, rounds: int, sizes: list[int]) -> list[dict[str, Any]]:
    net = make_source("backbone", runtime="torch").fit(FeatureContext()).net_
    opts = options(net, sizes)
    times: list[list[float]] = [[] for _ in opts]
    ref = baseline(net)(images[:8])
    for r in range(rounds):
        for i, (row, fn) in enumerate(opts):
            torch.set_num_threads(row["threads"])
            fn(images[:8])  # warm-up (allocator, onnxruntime's first run)
            t0 = time.perf_counter()
            fn(images)
            times[i].append(time.perf_counter() - t0)
            print(f"round {r}: {row} {len(images) / times[i][-1]:.1f} img/s", flush=True)
    torch.set_num_threads(1)
    rows = []
    base = {
        o["threads"]: statistics.median(t)
        for (o, _), t in zip(opts, times, strict=True)
        if "base" in o["runtime"]
    }
    for (row, fn), t in zip(opts, times, strict=True):
        med = statistics.median(t)
        same = row["size"] == 224
        diff = float(np.abs(fn(images[:8]) - ref).max()) if same else float("nan")
        rows.append(
            {
                **row,
                "images": len(images),
                "img/s": round(len(images) / med, 1),
                "x baseline": round(base[row["threads"]] / med, 2),
                "max |diff| vs baseline": f"{diff:.1e}" if same else "-",
            }
        )
    return rows


def model_run(dataset: str, args: argparse.Namespace) -> Pipeline:
    config = RunConfig()
    config.data.name = dataset
    config.data.n_train, config.data.n_test, config.data.n_pool = args.n_train, args.n_test, 500
    config.train.epochs = args.epochs
    config.train.threads = 1
    pipe = Pipeline(RunDir(OUT / f"{dataset}-backbone"), config)
    pipe.train()
    pipe.evaluate()
    return pipe


def purity_rows(dataset: str, args: argparse.Namespace, sizes: list[int]) -> list[dict[str, Any]]:
    from sklearn.metrics import adjusted_rand_score

    pipe = model_run(dataset, args)
    errors = error_inputs(pipe.run.read_samples())
    split = pipe.dataset["test"]
    pos = {sid: i for i, sid in enumerate(split.ids.tolist())}
    images = split.images[torch.tensor([pos[s] for s in errors["sample_id"]])]
    scenarios = errors["scenario"].astype(str).to_numpy()
    rare = sorted(set(scenarios) - {"nominal"})
    net = make_source("backbone", runtime="torch").fit(FeatureContext()).net_
    candidates: list[tuple[str, int, Embed]] = [("torch (baseline)", 224, baseline(net))]
    if args.rounding:  # the previous path again, other batches: float rounding alone
        candidates.append(("torch (baseline, batch 32)", 224, baseline(net, batch=32)))
    candidates += [("onnxruntime", s, onnx(net, s, 64, 1, False)) for s in sizes]
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [pipe.config.seed]
    rows = []
    base_labels: dict[int, np.ndarray] = {}
    for runtime, size, fn in candidates:
        t0 = time.perf_counter()
        feats = fn(images)
        secs = time.perf_counter() - t0
        scores, aris = [], []
        for seed in seeds:
            labels, _, _ = reduce_and_cluster(feats, "umap", "dbscan", seed)
            base_labels.setdefault(seed, labels)
            scores.append(score_clusters(labels, scenarios, scenarios_to_cover=rare))
            aris.append(adjusted_rand_score(base_labels[seed], labels))
        row = {
            "dataset": dataset,
            "runtime": runtime,
            "size": size,
            "errors": scores[0].n_errors,
            "seeds": len(seeds),
            "clusters": round(float(np.mean([s.n_clusters for s in scores])), 1),
            "purity": round(float(np.mean([s.purity for s in scores])), 3),
            "purity per seed": " / ".join(f"{s.purity:.3f}" for s in scores),
            "coverage": round(float(np.mean([s.coverage for s in scores])), 3),
            "noise share": round(float(np.mean([s.noise_share for s in scores])), 3),
            "ARI vs baseline": round(float(np.mean(aris)), 3),
            "feature s": round(secs, 1),
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=128, help="images per throughput measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets", default="signs,fashion-mnist")
    parser.add_argument("--sizes", default="64,96,128,160,224")
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--seeds", default="", help="UMAP/DBSCAN seeds (default: the run's)")
    parser.add_argument(
        "--purity-sizes", default="", help="sizes for the clusters (default --sizes)"
    )
    parser.add_argument(
        "--rounding", action="store_true", help="also the previous path with batches of 32"
    )
    parser.add_argument("--tag", default="", help="suffix of the clusters table's name")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes = [int(s) for s in args.sizes.split(",")]
    command = "benchmarks/bench_backbone.py " + " ".join(sys.argv[1:])
    if not args.skip_throughput:
        pipe = model_run(args.datasets.split(",")[0], args)
        images = pipe.dataset["test"].images[: args.n]
        rows = throughput(images, args.rounds, sizes)
        write_table(
            "backbone",
            "Frozen MobileNetV2 features: images per second by option",
            command,
            rows,
            notes=(
                f"{args.n} test images of {args.datasets.split(',')[0]} "
                f"({tuple(images.shape[1:])}), median of {args.rounds} round-robin rounds; "
                "'x baseline': against the previous path's median at the same thread count, "
                "measured in the same run. 'max |diff|': largest absolute difference of the "
                "1280 features against the previous path on 8 images (features range about "
                "0..6). The machine is shared (load 4-20): absolute figures move between runs, "
                "ratios less."
            ),
        )
    rows = []
    psizes = [int(v) for v in args.purity_sizes.split(",")] if args.purity_sizes else sizes
    for dataset in args.datasets.split(","):
        rows += purity_rows(dataset, args, psizes)
    write_table(
        "backbone_clusters" + args.tag,
        "Frozen MobileNetV2 features: the same clusters with the fast options?",
        command,
        rows,
        notes=(
            f"Test errors of a small model per dataset ({args.n_train} training images, "
            f"{args.epochs} epochs, {args.n_test} test images with the injected scenarios); "
            "features -> UMAP -> DBSCAN (the run's seed, or each of --seeds: means, and purity "
            "per seed). Baseline: the previous path (torch, 224 px); 'batch 32': the same path "
            "with other batches, i.e. float rounding alone. 'ARI vs baseline': adjusted Rand "
            "index of the clusters (noise as one label) against the baseline's with the same "
            "seed, same run. Ground truth only scores."
        ),
    )


if __name__ == "__main__":
    main()
