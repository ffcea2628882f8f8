"""Do two run folders hold the same results? For refactors that must not change behaviour.

Compares ``samples.parquet`` (every column), ``clusters.json``, ``metrics.json`` and
``comparison.json`` of two runs made with the same command and seed, ignoring what legitimately
differs between runs (wall times, paths, environment). Exit status 0 when they match.

Reproduce (the check quoted in the architecture work's notes):

    SMALL="--set data.n_train=4000 --set data.n_val=400 --set data.n_test=1000 \
      --set data.n_pool=2000 --set train.epochs=3 --set retrain.seeds=2 --set retrain.epochs=2"
    git worktree add /tmp/before <commit before>
    PYTHONPATH=/tmp/before/src .venv/bin/dnnsafety --quiet demo --out /tmp/run-before $SMALL
    .venv/bin/dnnsafety --quiet demo --out /tmp/run-after $SMALL
    .venv/bin/python benchmarks/same_results.py /tmp/run-before /tmp/run-after
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# what differs between two runs of one command (timings, paths, the environment), and
# schema_version, which the typed artifacts add to the stage files; everything else must match
IGNORED_KEYS = {
    "wall_s",
    "time",
    "elapsed",
    "environment",
    "path",
    "created",
    "run",
    "schema_version",
}
FILES = ("clusters.json", "metrics.json", "comparison.json")


def _diff(a: Any, b: Any, where: str, out: list[str], tol: float) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in IGNORED_KEYS or "seconds" in key:  # seconds, *_seconds
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'after' if key in b else 'before'}")
                continue
            _diff(a[key], b[key], f"{where}.{key}", out, tol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} items before, {len(b)} after")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{where}[{i}]", out, tol)
    elif isinstance(a, float) and isinstance(b, float):
        if not (math.isclose(a, b, rel_tol=tol, abs_tol=tol) or (a != a and b != b)):
            out.append(f"{where}: {a!r} before, {b!r} after")
    elif a != b:
        out.append(f"{where}: {a!r} before, {b!r} after")


def compare_runs(before: Path, after: Path, tol: float = 1e-9) -> list[str]:
    """Differences between two run folders, one line each (empty: the same results)."""
    out: list[str] = []
    for name in FILES:
        fa, fb = before / name, after / name
        if fa.exists() != fb.exists():
            out.append(f"{name}: only in {'after' if fb.exists() else 'before'}")
        elif fa.exists():
            _diff(json.loads(fa.read_text()), json.loads(fb.read_text()), name, out, tol)
    sa, sb = pd.read_parquet(before / "samples.parquet"), pd.read_parquet(after / "samples.parquet")
    for col in sorted(set(sa.columns) ^ set(sb.columns)):
        out.append(f"samples.parquet: column {col} only in {'after' if col in sb else 'before'}")
    if len(sa) != len(sb):
        out.append(f"samples.parquet: {len(sa)} rows before, {len(sb)} after")
        return out
    for col in sorted(set(sa.columns) & set(sb.columns)):
        x, y = sa[col], sb[col]
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            same = np.allclose(x.to_numpy(), y.to_numpy(), rtol=tol, atol=tol, equal_nan=True)
        else:
            same = x.astype(str).tolist() == y.astype(str).tolist()
        if not same:
            out.append(f"samples.parquet: column {col} differs")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--tol", type=float, default=1e-9, help="float tolerance (relative)")
    args = parser.parse_args()
    diffs = compare_runs(args.before, args.after, args.tol)
    for line in diffs[:200]:
        print(line)
    print("same results" if not diffs else f"{len(diffs)} difference(s)")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
