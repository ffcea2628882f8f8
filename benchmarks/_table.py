"""Shared helper: write a benchmark's figures as JSON and as a Markdown table."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def write_table(
    name: str, title: str, command: str, rows: list[dict[str, Any]], notes: str = ""
) -> Path:
    """Write ``results/<name>.json`` and ``results/<name>.md``; return the Markdown path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"title": title, "command": command, "machine": info, "rows": rows}, indent=2)
        + "\n"
    )
    cols = list(rows[0]) if rows else []
    lines = [f"# {title}", "", f"Reproduce: `{command}`", ""]
    lines.append(
        f"Machine: {info['cpu_cores']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads), Python {info['python']}, {info['date']}."
    )
    lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", notes]
    md = RESULTS / f"{name}.md"
    md.write_text("\n".join(lines) + "\n")
    return md
