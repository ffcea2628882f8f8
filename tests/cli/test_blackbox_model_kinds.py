"""The black-box path needs only predictions: the same commands for every kind of model file.

A small_cnn trained on digits is saved as TorchScript (wrapped in a forward that cannot be
rebuilt as an eager module), ONNX and a ``torch.export`` archive; each is evaluated,
analysed with ``--features backbone`` and used for selection in the backbone space. The
backbone's features are computed once per input: a second ``select`` embeds nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dnnsafety.cli.main import main
from dnnsafety.config import load_config
from dnnsafety.features.sources import BackboneFeatures
from dnnsafety.models.loading import make_model, safe_load

FAST = ["--dataset", "digits", "--epochs", "3", "--set", "train.batch_size=64"]
SMALL = ["--set", "analysis.image_size=32"]


class Scaled(nn.Module):
    """A forward with an operation between layers: TorchScript that cannot be rebuilt."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * 2.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bbkinds")
    run = root / "zoo"
    assert main(["--quiet", "evaluate", str(run), *FAST]) == 0
    cfg = load_config(run / "config.toml")
    model = make_model(cfg.model, 1, 10, 8)
    model.load_state_dict(safe_load(run / "model.pt")["state_dict"])
    model.eval()
    x = torch.zeros(2, 1, 8, 8)
    torch.jit.script(Scaled(model).eval()).save(str(root / "model.ts"))
    torch.onnx.export(
        model,
        (x,),
        str(root / "model.onnx"),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("n")},))
    torch.export.save(program, str(root / "model.pt2"))
    return root


def _preds(run):
    return pd.read_parquet(run / "samples.parquet").sort_values("sample_id")["pred"].to_numpy()


@pytest.fixture
def embedded(monkeypatch):
    """Images the backbone embeds, counted."""
    count = [0]
    original = BackboneFeatures._embed

    def embed(self, batch):
        count[0] += len(batch)
        return original(self, batch)

    monkeypatch.setattr(BackboneFeatures, "_embed", embed)
    return count


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "name"), [("torchscript", "model.ts"), ("onnx", "model.onnx"), ("export", "model.pt2")]
)
def test_backbone_analysis_and_selection_for_every_model_kind(
    files, tmp_path, capsys, embedded, arch, name
):
    run = tmp_path / arch
    argv = ["--quiet", "evaluate", str(run), "--dataset", "digits", "--arch", arch]
    assert main([*argv, "--weights", str(files / name)]) == 0
    np.testing.assert_array_equal(_preds(run), _preds(files / "zoo"))
    assert main(["--quiet", "analyze", str(run), "--features", "backbone", *SMALL]) == 0
    data = json.loads((run / "clusters.json").read_text())
    assert data["method"] == "safe" and data["features"] == "backbone"
    assert embedded[0] == data["n_errors"] > 0
    select = ["--quiet", "select", str(run), "--strategy", "closest", "--budget", "10", *SMALL]
    assert main(select) == 0
    after_select = embedded[0]
    assert after_select > data["n_errors"]  # the pool, never the errors again
    assert main(select) == 0
    assert embedded[0] == after_select  # every feature came from the cache
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (run / "selection" / "closest").is_dir()
