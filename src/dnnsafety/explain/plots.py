"""Pictures for engineers: the WICD curve with its knee, and contact sheets with heatmaps."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dnnsafety.clustering import LayerClustering
from dnnsafety.runs import write_bytes


def plot_wicd(result: LayerClustering, path: str | Path) -> None:
    """WICD against k, its gradient, the knee and the chosen k, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    try:
        if len(result.ks):
            ax.plot(result.ks, result.wicd, color="#1f77b4", label="WICD (row-normalised)")
            ax.set_xlabel("number of clusters k")
            ax.set_ylabel("WICD")
            if len(result.gradient):
                ax2 = ax.twinx()
                ax2.plot(result.ks, result.gradient, color="#ff7f0e", alpha=0.7, label="gradient")
                ax2.set_ylabel("4th-order gradient", color="#ff7f0e")
            if result.knee_k is not None:
                ax.axvline(result.knee_k, color="#d62728", ls="--", label=f"knee k={result.knee_k}")
            ax.axvline(result.k, color="#2ca02c", ls=":", label=f"chosen k={result.k}")
            ax.legend(loc="upper right", fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no k search ({result.k_reason})", ha="center", va="center")
        ax.set_title(f"layer {result.layer}: k={result.k} ({result.k_reason})", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())


def _to_rgb(image: torch.Tensor) -> np.ndarray:
    arr = image.detach().float().clamp(0, 1).numpy()
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return (arr[:3].transpose(1, 2, 0) * 255).astype(np.uint8)


def _overlay(rgb: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """Positive relevance in red, negative in blue, over a dimmed grey copy of the image."""
    rel = relevance.sum(axis=0) if relevance.ndim == 3 else relevance
    scale = float(np.abs(rel).max()) or 1.0
    r = np.clip(rel / scale, -1, 1)
    grey = rgb.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.5
    heat = np.zeros_like(grey)
    heat[..., 0] = np.clip(r, 0, 1) * 255
    heat[..., 2] = np.clip(-r, 0, 1) * 255
    alpha = np.abs(r)[..., None]
    return (grey * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)


def contact_sheet(
    images: torch.Tensor,
    path: str | Path,
    relevance: np.ndarray | None = None,
    captions: list[str] | None = None,
    cell: int = 64,
    columns: int = 10,
) -> None:
    """A grid of images (and, when given, their pixel-level heatmaps beside them) as a PNG."""
    n = len(images)
    per = 2 if relevance is not None else 1
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    cap_h = 12 if captions else 0
    sheet = Image.new("RGB", (cols * per * cell, rows * (cell + cap_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = c * per * cell, r * (cell + cap_h)
        rgb = _to_rgb(images[i])
        tiles = [rgb]
        if relevance is not None:
            tiles.append(_overlay(rgb, np.asarray(relevance[i])))
        for j, tile in enumerate(tiles):
            img = Image.fromarray(tile).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(img, (x0 + j * cell, y0))
        if captions:
            draw.text((x0 + 2, y0 + cell), captions[i][: per * cell // 6], fill=(0, 0, 0))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())
