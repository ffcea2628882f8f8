"""Training and inference throughput of the model zoo on 32x32 RGB signs (CPU).

Reproduce: .venv/bin/python benchmarks/bench_training.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table
from dnnsafety.config import DataConfig, TrainConfig
from dnnsafety.data.builtin import load_dataset
from dnnsafety.models.training import predict, train_model
from dnnsafety.models.zoo import MODELS, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ds = load_dataset(DataConfig(name="signs", n_train=args.n, n_val=512, n_test=512, n_pool=512))
    tr = ds["train"]
    rows = []
    for arch in MODELS.names():
        train_rates, infer_rates = [], []
        for rep in range(args.repeats):
            torch.manual_seed(rep)
            model = build_model(arch, 3, ds.num_classes, 32)
            cfg = TrainConfig(epochs=1, batch_size=128, select_by="train")
            t0 = time.perf_counter()
            train_model(model, tr.images, tr.labels, None, None, cfg, seed=rep)
            train_rates.append(len(tr) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            predict(model, tr.images)
            infer_rates.append(len(tr) / (time.perf_counter() - t0))
        params = sum(p.numel() for p in build_model(arch, 3, 10, 32).parameters())
        rows.append(
            {
                "model": arch,
                "parameters": params,
                "train img/s (median)": round(statistics.median(train_rates)),
                "train img/s (min-max)": f"{min(train_rates):.0f}-{max(train_rates):.0f}",
                "inference img/s (median)": round(statistics.median(infer_rates)),
            }
        )
        print(rows[-1], flush=True)
    cmd = f".venv/bin/python benchmarks/bench_training.py --n {args.n} --repeats {args.repeats}"
    md = write_table(
        "training",
        "Training and inference throughput, 32x32x3 signs, batch 128, CPU",
        cmd,
        rows,
        notes=f"One training epoch over {args.n} images (includes the epoch's bookkeeping); "
        f"{args.repeats} repeats, median and range. " + f"numpy {np.__version__}.",
    )
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
