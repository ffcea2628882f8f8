"""Bring your own model: the worked example of docs/own-model.md.

Run it with a work folder (created if missing)::

    PYTHONPATH=docs/examples python docs/examples/own_model.py /tmp/own-model

It makes a small image folder, trains a tiny CNN in plain PyTorch with its classes in its own
order, saves the weights and that order (``classes.txt`` next to the weights), then runs
``dnnsafety evaluate`` on the saved model and compares the accuracies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

# The model's output order: output 0 is "vertical", 1 "horizontal", 2 "diagonal". The image
# folder sorts its class folders (diagonal, horizontal, vertical) - classes.txt says otherwise.
CLASSES = ["vertical", "horizontal", "diagonal"]
SIZE = 16


class TinyNet(nn.Module):
    """Two conv blocks and a linear layer, from standard modules (white-box analysis works)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, len(CLASSES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build() -> nn.Module:
    """The factory ``dnnsafety`` calls: ``--model-factory own_model:build``."""
    return TinyNet()


def line_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A noisy 16x16 greyscale image with one line of the given direction (uint8)."""
    img = rng.uniform(0, 0.6, size=(SIZE, SIZE))
    pos = rng.integers(2, SIZE - 2)
    if kind == "vertical":
        img[:, pos] += 0.5
    elif kind == "horizontal":
        img[pos, :] += 0.5
    else:
        idx = np.arange(SIZE)
        img[idx, (idx + pos) % SIZE] += 0.5
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_folder(root: Path, seed: int = 0) -> None:
    """``root/<split>/<class>/<n>.png``, the layout dnnsafety reads."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", 60), ("test", 40)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(line_image(name, rng), mode="L").save(folder / f"{i:03d}.png")


def read_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and labels in the model's order (CLASSES), read in plain Python."""
    xs, ys = [], []
    for label, name in enumerate(CLASSES):
        for f in sorted((root / split / name).glob("*.png")):
            xs.append(np.asarray(Image.open(f), dtype=np.float32) / 255.0)
            ys.append(label)
    return torch.from_numpy(np.stack(xs))[:, None], torch.tensor(ys)


def train(root: Path) -> tuple[nn.Module, float]:
    """Train TinyNet in plain PyTorch; return it and its test accuracy."""
    torch.manual_seed(0)
    x, y = read_split(root, "train")
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for idx in torch.randperm(len(y)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    xt, yt = read_split(root, "test")
    with torch.no_grad():
        acc = float((model(xt).argmax(1) == yt).float().mean())
    return model, acc


def main(work: Path) -> None:
    data, model_dir = work / "data", work / "model"
    make_folder(data)
    model, acc = train(data)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), model_dir / "weights.pt")  # weights only
    (model_dir / "classes.txt").write_text("\n".join(CLASSES) + "\n")  # the output order
    (work / "plain_pytorch_accuracy.json").write_text(json.dumps({"test_accuracy": acc}))
    print(f"plain PyTorch test accuracy: {acc:.4f}")

    # dnnsafety evaluate runs/mine --dataset folder --data-path data \
    #     --model-factory own_model:build --weights model/weights.pt
    here = str(Path(__file__).resolve().parent)
    command = [
        sys.executable, "-m", "dnnsafety.cli.main", "evaluate", str(work / "runs" / "mine"),
        "--dataset", "folder", "--data-path", str(data),
        "--model-factory", "own_model:build", "--weights", str(model_dir / "weights.pt"),
    ]  # fmt: skip
    path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH", "")]))
    env = {**os.environ, "PYTHONPATH": path}  # so that own_model:build imports
    subprocess.run(command, check=True, env=env)
    metrics = json.loads((work / "runs" / "mine" / "metrics.json").read_text())
    print(f"dnnsafety test accuracy:     {metrics['splits']['test']['accuracy']:.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "own-model-example"))
