"""Wall time of `dnnsafety demo` from an empty run folder (the README's `make demo` job).

Reproduce: .venv/bin/python benchmarks/bench_demo.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import write_table


def main() -> None:
    exe = Path(sys.executable).parent / "dnnsafety"
    out = Path(tempfile.mkdtemp(prefix="dnnsafety-demo-"))
    try:
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--quiet", "demo", "--out", str(out)], check=True)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([str(exe), "--quiet", "demo", "--out", str(out)], check=True)
        warm = time.perf_counter() - t0
        metrics = json.loads((out / "metrics.json").read_text())
        training = json.loads((out / "training.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    test = metrics["splits"]["test"]
    rows = [
        {"what": "demo, empty run folder (s)", "value": round(cold, 1)},
        {"what": "demo again, all stages cached (s)", "value": round(warm, 1)},
        {
            "what": "training time (s)",
            "value": round(sum(h["seconds"] for h in training["history"]), 1),
        },
        {"what": "best epoch", "value": training["best_epoch"]},
        {"what": "test accuracy, all", "value": round(test["accuracy"], 4)},
    ]
    for scen, r in sorted(test["per_scenario"].items()):
        rows.append(
            {"what": f"test accuracy, {scen} (n={r['n']})", "value": round(r["accuracy"], 4)}
        )
    md = write_table(
        "demo",
        "`dnnsafety demo` on the built-in signs: wall time and accuracy per scenario",
        ".venv/bin/python benchmarks/bench_demo.py",
        rows,
        notes="Target (issue 2): at most 5 minutes; nominal accuracy >= 90%; "
        "at least 3 rare scenarios <= 75%.",
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
