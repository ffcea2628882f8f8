"""What the demo's second analysis (HUDD beside the black-box default) costs, and what it shows.

On the demo's own run folder (same model, same errors): the run's own analysis, done as the
demo does it, then the second analysis as `dnnsafety demo` runs it (`analyze_alternative`,
fresh: heatmaps, clustering of every layer, galleries, error map, agreement and its heatmap),
then the report with and without the side-by-side section. Wall time and CPU time of this
process (the machine is shared: CPU seconds are what the step costs on an idle core, wall
seconds what it took under the load at the time, given in the notes).

Reproduce: .venv/bin/python benchmarks/bench_second_analysis.py --run RUN [--threads 1]
(RUN: a `dnnsafety demo` run folder, or any run trained with `dnnsafety train --dataset signs`
with the demo's defaults; the folder is copied, not changed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import peak_memory
from _table import write_table

THREADS: dict[str, Any] = {"wanted": 1, "seen": set()}


def _timed(fn: Any) -> tuple[Any, float, float, float]:
    import torch

    torch.set_num_threads(THREADS["wanted"])  # loading the data may have changed it
    THREADS["seen"].add(torch.get_num_threads())
    c0 = time.process_time()
    with peak_memory() as box:
        out = fn()
    return out, box["seconds"], time.process_time() - c0, box["peak"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--name", default="second_analysis")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    THREADS["wanted"] = args.threads

    from dnnsafety.cli.common import resolve_config
    from dnnsafety.cli.demo import second_analysis
    from dnnsafety.pipeline import Pipeline
    from dnnsafety.pipeline.analyze.alternative import ALT_DIR, analyze_alternative
    from dnnsafety.report import render_report
    from dnnsafety.runs import RunDir

    work = Path(tempfile.mkdtemp(prefix="dnnsafety-second-"))
    run_dir = work / "run"
    try:
        shutil.copytree(args.run, run_dir, ignore=shutil.ignore_patterns("alt", "report.html"))
        config = resolve_config(run_dir, None)
        pipe = Pipeline(RunDir(run_dir), config)
        pipe.model()  # loads the data and the model, as the demo has by then
        pipe.analyze()  # the run's own analysis: reused from the run folder
        name, analysis = second_analysis(config.analysis)
        # first in this process: pays numba's compilation of UMAP (error map) and torch's
        # first-call costs, which the demo has paid in its own analysis before
        _, cold_wall, cold_cpu, _ = _timed(lambda: analyze_alternative(pipe, name, analysis))
        shutil.rmtree(run_dir / ALT_DIR)
        done, wall, cpu, peak = _timed(lambda: analyze_alternative(pipe, name, analysis))
        _, rep_wall, rep_cpu, _ = _timed(lambda: render_report(run_dir))
        size = (run_dir / "report.html").stat().st_size
        shutil.move(str(run_dir / ALT_DIR), str(work / "alt"))
        _, plain_wall, plain_cpu, _ = _timed(lambda: render_report(run_dir))
        plain = (run_dir / "report.html").stat().st_size
    finally:
        load = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    agreement = done.agreement
    a, b = agreement.analyses["main"], agreement.analyses[name]

    def scores(entry: dict[str, Any], key: str) -> Any:
        value = (entry.get("scores") or {}).get(key)
        return round(value, 3) if isinstance(value, float) else "-"

    rows = [
        {
            "step": f"second analysis ({done.method}), first in a fresh process",
            "errors": agreement.n_common,
            "wall s": round(cold_wall, 1),
            "CPU s": round(cold_cpu, 1),
            "peak MB": "-",
            "note": "includes UMAP's JIT compilation",
        },
        {
            "step": f"second analysis ({done.method}) as in the demo (after another analysis)",
            "errors": agreement.n_common,
            "wall s": round(wall, 1),
            "CPU s": round(cpu, 1),
            "peak MB": round(peak),
            "note": f"{b['n_clusters']} clusters",
        },
        {
            "step": "report with the side-by-side section",
            "errors": agreement.n_common,
            "wall s": round(rep_wall, 1),
            "CPU s": round(rep_cpu, 1),
            "peak MB": "-",
            "note": f"{size / 1e6:.1f} MB page",
        },
        {
            "step": "report without it",
            "errors": agreement.n_common,
            "wall s": round(plain_wall, 1),
            "CPU s": round(plain_cpu, 1),
            "peak MB": "-",
            "note": f"{plain / 1e6:.1f} MB page",
        },
    ]
    agree = [
        {"figure": "adjusted Rand index (main vs second)", "value": agreement.ari},
        {"figure": "errors both clustered", "value": agreement.n_shared},
        {"figure": "main: clusters / mean purity / mean F1 / coverage",
         "value": f"{a['n_clusters']} / {scores(a, 'purity')} / {scores(a, 'mean_f1')} / "
                  f"{scores(a, 'coverage')}"},
        {"figure": f"{name}: clusters / mean purity / mean F1 / coverage",
         "value": f"{b['n_clusters']} / {scores(b, 'purity')} / {scores(b, 'mean_f1')} / "
                  f"{scores(b, 'coverage')}"},
        {"figure": "purity of one cluster (trivial)", "value": scores(a, "purity_trivial")},
        {"figure": "mean best-match Jaccard",
         "value": round(sum(m["jaccard"] for m in agreement.matches)
                        / max(1, len(agreement.matches)), 3)},
    ]  # fmt: skip
    for row in agree:
        rows.append({"step": row["figure"], "errors": "", "wall s": "", "CPU s": "",
                     "peak MB": "", "note": row["value"]})  # fmt: skip
    dataset = config.data.name
    md = write_table(
        f"{args.name}_{dataset}",
        f"The demo's second analysis on {dataset}: cost and agreement",
        f".venv/bin/python benchmarks/bench_second_analysis.py --run RUN ({dataset} demo run)",
        rows,
        notes=(
            f"Load average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
            f"(1 / 5 / 15 min) on 2 cores; the benchmark ran under nice 19 with "
            f"{'/'.join(map(str, sorted(THREADS['seen'])))} torch thread(s) in the timed steps "
            "(the machine line: the count when the table was written), so wall seconds are "
            "inflated by the load; CPU seconds are this "
            "process's (all threads), about the wall time on an idle core. The second row is "
            "what the demo adds: its own analysis has already compiled UMAP's functions in "
            "the same process."
        ),
    )
    print(md.read_text())


if __name__ == "__main__":
    main()
