"""Pictures of a detector's scores: histograms ID vs each OOD group, ROC curves, and a
gallery of the most anomalous inputs (PNG bytes; the orchestrator decides where they go)."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = ["gallery_png", "histogram_png", "roc_png"]


def _figure_png(draw: object, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    try:
        draw(ax)  # type: ignore[operator]
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def histogram_png(id_scores: np.ndarray, groups: dict[str, np.ndarray], title: str) -> bytes:
    """Density histograms of the ID scores and of each group's scores, shared bins."""
    everything = np.concatenate([id_scores, *groups.values()]) if groups else id_scores
    finite = everything[np.isfinite(everything)]
    bins = np.histogram_bin_edges(finite if finite.size else [0.0, 1.0], bins=40)

    def draw(ax: object) -> None:
        ax.hist(id_scores, bins=bins, density=True, alpha=0.5, label="in-distribution")  # type: ignore[attr-defined]
        for name, s in groups.items():
            ax.hist(s, bins=bins, density=True, histtype="step", lw=1.5, label=name)  # type: ignore[attr-defined]
        ax.set_xlabel("score (higher = more anomalous)")  # type: ignore[attr-defined]
        ax.legend(fontsize=7)  # type: ignore[attr-defined]

    return _figure_png(draw, title)


def roc_png(id_scores: np.ndarray, groups: dict[str, np.ndarray], title: str) -> bytes:
    """ROC curve of each group against the ID scores (OOD positive)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    def draw(ax: object) -> None:
        for name, s in groups.items():
            if not len(s) or not len(id_scores):
                continue
            y = np.r_[np.zeros(len(id_scores)), np.ones(len(s))]
            x = np.r_[id_scores, s]
            fpr, tpr, _ = roc_curve(y, x)
            ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, x):.3f})")  # type: ignore[attr-defined]
        ax.plot([0, 1], [0, 1], color="grey", ls=":")  # type: ignore[attr-defined]
        ax.set_xlabel("false-positive rate (ID flagged)")  # type: ignore[attr-defined]
        ax.set_ylabel("true-positive rate (OOD flagged)")  # type: ignore[attr-defined]
        ax.legend(fontsize=7, loc="lower right")  # type: ignore[attr-defined]

    return _figure_png(draw, title)


def gallery_png(images: torch.Tensor, captions: list[str], columns: int = 8) -> bytes:
    """A contact sheet of ``images`` (``N x C x H x W`` in [0, 1]) with a caption each."""
    n = len(images)
    side = 64
    rows = max(1, -(-n // columns))
    sheet = Image.new("RGB", (columns * side, rows * (side + 12)), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        arr = images[i].detach().float().clamp(0, 1).numpy()
        if arr.shape[0] == 1:
            arr = np.repeat(arr, 3, axis=0)
        tile = Image.fromarray((arr[:3].transpose(1, 2, 0) * 255).astype(np.uint8))
        tile = tile.resize((side, side), Image.Resampling.NEAREST)
        x, y = (i % columns) * side, (i // columns) * (side + 12)
        sheet.paste(tile, (x, y))
        draw.text((x + 2, y + side), captions[i][:12], fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()
