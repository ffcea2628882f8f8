"""Images that let an engineer see a cluster: contact sheets, representatives, the error map.

Written into the run folder by the analysis stages (white-box and black-box alike) so that the
report only has to embed files:

- ``analysis/clusters/cluster_NNN.png``: a contact sheet of (up to 60) members, with the
  pixel-level heatmap beside each image when there is one;
- ``analysis/clusters/cluster_NNN_<role>.png``: the medoid and its nearest and farthest
  members (image, or image + heatmap overlay), listed in each cluster's
  ``representative_images``;
- ``analysis/map.json`` + ``analysis/thumbs.png``: a 2-D embedding of the error inputs
  coloured by cluster, and a sprite of their thumbnails in the same order.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from dnnsafety.explain.plots import _overlay, _to_rgb, contact_sheet
from dnnsafety.runs import write_bytes, write_json

log = logging.getLogger(__name__)

SHEET_LIMIT = 60
TILE = 32
SPRITE_COLUMNS = 40
MAP_LIMIT = 4000


def _png(array: np.ndarray, path: Path, height: int) -> None:
    """Save an image (tiles side by side) scaled to ``height`` pixels high."""
    width = height * array.shape[1] // max(array.shape[0], 1)
    img = Image.fromarray(array).resize((width, height), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def cluster_gallery(
    out_dir: Path,
    images: torch.Tensor,
    labels: np.ndarray,
    clusters: list[dict[str, Any]],
    errors: pd.DataFrame,
    class_names: tuple[str, ...],
    relevance: np.ndarray | None = None,
) -> None:
    """Write contact sheets and representative images; add their paths to ``clusters``.

    Parameters
    ----------
    out_dir
        The run's ``analysis`` folder; paths stored in ``clusters`` are relative to its parent.
    images
        The error inputs (``N x C x H x W``), in the order of ``labels`` and ``errors``.
    labels
        Cluster id per error input (``-1``: noise).
    clusters
        Entries from :func:`describe_clusters`; updated in place with ``contact_sheet`` and
        ``representative_images``.
    relevance
        Pixel-level heatmaps (``N x C x H x W``, memmap is fine) to overlay, or ``None``.
    """
    position = {sid: i for i, sid in enumerate(errors["sample_id"].astype(str))}
    names = [
        f"{class_names[int(t)]}>{class_names[int(p)]}"
        for t, p in zip(errors["label"], errors["pred"], strict=True)
    ]
    root = out_dir.parent
    for entry in clusters:
        cid = int(entry["id"])
        members = np.flatnonzero(labels == cid)[:SHEET_LIMIT]
        rel = None if relevance is None else np.asarray(relevance[members])
        sheet = out_dir / "clusters" / f"cluster_{cid:03d}.png"
        contact_sheet(images[torch.from_numpy(members)], sheet, rel, [names[i] for i in members])
        entry["contact_sheet"] = str(sheet.relative_to(root))
        reps = entry["representatives"]
        roles = [("medoid", reps["medoid"])]
        roles += [(f"nearest{j}", s) for j, s in enumerate(reps["nearest"][:1])]
        roles += [(f"farthest{j}", s) for j, s in enumerate(reps["farthest"][:1])]
        listed = []
        for role, sid in roles:
            i = position[sid]
            rgb = _to_rgb(images[i])
            tiles = [rgb] if relevance is None else [rgb, _overlay(rgb, np.asarray(relevance[i]))]
            path = out_dir / "clusters" / f"cluster_{cid:03d}_{role}.png"
            _png(np.concatenate(tiles, axis=1), path, 96)
            listed.append(
                {"role": role.rstrip("0123456789"), "id": sid, "path": str(path.relative_to(root))}
            )
        entry["representative_images"] = listed


def embed_2d(features: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``features`` for the map: UMAP, or PCA for very few points."""
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), np.float32), "none"
    if x.shape[1] == 2:
        return x, "features"
    if n < 10:
        from sklearn.decomposition import PCA

        k = min(2, n, x.shape[1])
        out = np.zeros((n, 2), np.float32)
        if k and n > 1:
            out[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(x)
        return out, "pca"
    import umap

    reducer = umap.UMAP(
        n_components=2, n_neighbors=min(15, n - 1), min_dist=0.1, random_state=seed, n_jobs=1
    )
    return np.asarray(reducer.fit_transform(x), dtype=np.float32), "umap"


def error_map(
    out_dir: Path,
    features: np.ndarray,
    labels: np.ndarray,
    ids: list[str],
    images: torch.Tensor,
    seed: int = 0,
) -> None:
    """Write ``map.json`` (2-D points by cluster) and ``thumbs.png`` (their thumbnails).

    At most :data:`MAP_LIMIT` points (an evenly spaced subset beyond that) keep the report
    light.
    """
    n = len(ids)
    keep = np.arange(n) if n <= MAP_LIMIT else np.linspace(0, n - 1, MAP_LIMIT).astype(int)
    xy, method = embed_2d(np.asarray(features)[keep], seed)
    rows = max(1, -(-len(keep) // SPRITE_COLUMNS))
    sprite = Image.new("RGB", (SPRITE_COLUMNS * TILE, rows * TILE), (255, 255, 255))
    for j, i in enumerate(keep):
        tile = Image.fromarray(_to_rgb(images[int(i)])).resize((TILE, TILE))
        r, c = divmod(j, SPRITE_COLUMNS)
        sprite.paste(tile, (c * TILE, r * TILE))
    buf = io.BytesIO()
    sprite.save(buf, format="PNG")
    write_bytes(out_dir / "thumbs.png", buf.getvalue())
    points = [
        {"id": ids[int(i)], "x": float(p[0]), "y": float(p[1]), "cluster": int(labels[int(i)])}
        for i, p in zip(keep, xy, strict=True)
    ]
    write_json(
        out_dir / "map.json",
        {
            "method": method,
            "tile": TILE,
            "columns": SPRITE_COLUMNS,
            "sprite": f"{out_dir.name}/thumbs.png",
            "points": points,
        },
    )
