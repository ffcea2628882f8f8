"""A user's own model, scored right the first time: class order and output conventions."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from dnnsafety.cli.main import main
from dnnsafety.config import DataConfig, RunConfig, merge
from dnnsafety.data.builtin import load_dataset
from dnnsafety.exceptions import ConfigError, ModelLoadError
from dnnsafety.features.lrp import layer_relevance
from dnnsafety.models.adapter import adapt_outputs
from dnnsafety.models.classes import suggest_class_order
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir

ROOT = Path(__file__).resolve().parents[3]

# The order the user's model was trained with; the image folder sorts the names instead.
MODEL_ORDER = ["fox", "cat", "dog"]


class BandNet(nn.Module):
    """Output j is the brightness of horizontal band j (three bands of three rows)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((3, 1))
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3, classes)
        with torch.no_grad():
            self.fc.weight.copy_(20 * torch.eye(classes, 3))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(self.pool(x)))


def _band_images(rng: np.random.Generator, band: int, n: int) -> np.ndarray:
    """``n`` 9x9 noisy greyscale images whose band ``band`` is brighter (uint8)."""
    x = rng.uniform(0.0, 0.75, size=(n, 9, 9))
    x[:, 3 * band : 3 * band + 3] += 0.06
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def band_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/<split>/<class>/*.png``; class ``MODEL_ORDER[j]`` brightens band j."""
    root = tmp_path_factory.mktemp("bands")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 60)):
        for band, name in enumerate(MODEL_ORDER):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, img in enumerate(_band_images(rng, band, n)):
                Image.fromarray(img, mode="L").save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def band_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bandmodel")
    f = folder / "model.ts"
    torch.jit.script(BandNet().eval()).save(str(f))
    return f


def _true_accuracy(root: Path) -> float:
    """The model's accuracy in its own class order, straight from the PNG files."""
    model = BandNet().eval()
    right = total = 0
    for j, name in enumerate(MODEL_ORDER):
        files = sorted((root / "test" / name).glob("*.png"))
        x = np.stack([np.asarray(Image.open(f), dtype=np.float32) / 255 for f in files])
        with torch.no_grad():
            pred = model(torch.from_numpy(x)[:, None]).argmax(1).numpy()
        right += int((pred == j).sum())
        total += len(files)
    return right / total


def _evaluate(run: Path, argv: list[str]) -> dict:
    assert main(["--quiet", "evaluate", str(run), *argv]) == 0
    return json.loads((run / "metrics.json").read_text())


def test_stated_class_order_gives_the_true_accuracy_and_the_warning_fires_only_when_wrong(
    band_folder, band_model, tmp_path, capsys
):
    truth = _true_accuracy(band_folder)
    assert 0.6 < truth < 1.0  # a real, imperfect model
    data = ["--dataset", "folder", "--data-path", str(band_folder)]
    model = ["--arch", "torchscript", "--weights", str(band_model)]
    # default: sorted folder names (cat, dog, fox) - not the model's order
    wrong = _evaluate(tmp_path / "wrong", [*data, *model])
    assert wrong["class_names"] == ["cat", "dog", "fox"]
    assert wrong["splits"]["test"]["accuracy"] < 0.2
    err = capsys.readouterr().err
    assert f"classes = {json.dumps(MODEL_ORDER)}" in err
    assert wrong["suggested_classes"] == MODEL_ORDER
    # stated on the command line, as the warning says
    order = f"model.classes={json.dumps(MODEL_ORDER)}"
    right = _evaluate(tmp_path / "right", [*data, *model, "--set", order])
    assert right["class_names"] == MODEL_ORDER
    assert right["splits"]["test"]["accuracy"] == pytest.approx(truth)
    assert "suggested_classes" not in right
    assert "classes =" not in capsys.readouterr().err
    samples = pd.read_parquet(tmp_path / "right" / "samples.parquet")
    test = samples[samples["split"] == "test"]
    fox = test["sample_id"].str.contains("/fox/")
    assert (test.loc[fox, "label"] == 0).all()  # labels follow the model's order


def test_classes_txt_next_to_the_weights_or_at_the_data_root(
    band_folder, band_model, tmp_path, caplog
):
    truth = _true_accuracy(band_folder)
    weights_dir = tmp_path / "model"
    weights_dir.mkdir()
    weights = weights_dir / "model.ts"
    weights.write_bytes(band_model.read_bytes())
    (weights_dir / "classes.txt").write_text("# output order\n" + "\n".join(MODEL_ORDER) + "\n")
    cfg = merge(
        RunConfig(),
        {
            "data.name": "folder",
            "data.path": str(band_folder),
            "model.arch": "torchscript",
            "model.weights": str(weights),
        },
    )
    with caplog.at_level(logging.INFO, logger="dnnsafety"):
        pipe = Pipeline(RunDir(tmp_path / "run"), cfg)
        pipe.evaluate()
    assert "next to the model file" in caplog.text
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["splits"]["test"]["accuracy"] == pytest.approx(truth)
    # model.classes_file names a file anywhere; the image-folder root is looked at last
    listing = tmp_path / "names.txt"
    listing.write_text("\n".join(MODEL_ORDER))
    cfg2 = merge(cfg, {"model.weights": str(band_model), "model.classes_file": str(listing)})
    pipe2 = Pipeline(RunDir(tmp_path / "run2"), cfg2)
    assert pipe2.class_order is not None and "model.classes_file" in pipe2.class_order.source
    assert pipe2.dataset.class_names == tuple(MODEL_ORDER)
    data = tmp_path / "data"
    shutil.copytree(band_folder, data)
    (data / "classes.txt").write_text("\n".join(MODEL_ORDER))
    cfg3 = merge(cfg, {"model.weights": str(band_model), "data.path": str(data)})
    pipe3 = Pipeline(RunDir(tmp_path / "run3"), cfg3)
    assert pipe3.class_order is not None and "image folder's root" in pipe3.class_order.source
    pipe3.evaluate()
    metrics = json.loads((tmp_path / "run3" / "metrics.json").read_text())
    assert metrics["splits"]["test"]["accuracy"] == pytest.approx(truth)


def test_classes_file_with_indices_as_a_selection_folder_writes_it(tmp_path):
    from dnnsafety.models.classes import read_classes_file

    f = tmp_path / "classes.txt"
    f.write_text("1\tcat\n0\tfox\n2\tdog\n")
    assert read_classes_file(f) == ("fox", "cat", "dog")
    f.write_text("fox\n\n# comment\ncat\ndog\n")
    assert read_classes_file(f) == ("fox", "cat", "dog")


def test_class_names_that_do_not_match_the_data_are_a_clear_error(
    band_folder, band_model, tmp_path
):
    cfg = merge(
        RunConfig(),
        {
            "data.name": "folder",
            "data.path": str(band_folder),
            "model.arch": "torchscript",
            "model.weights": str(band_model),
            "model.classes": ["fox", "cat", "wolf"],
        },
    )
    with pytest.raises(ConfigError) as info:
        _ = Pipeline(RunDir(tmp_path / "run"), cfg).dataset
    msg = str(info.value)
    assert "not in the model's list: dog" in msg and "not in the data: wolf" in msg
    assert '["fox", "cat", "wolf"]' in msg and '["cat", "dog", "fox"]' in msg


def test_suggested_order_from_a_confusion_matrix():
    names = ["a", "b", "c", "d"]
    # a 74% model whose outputs for b and c are swapped: b and c score near zero
    cm = np.array([[74, 10, 8, 8], [6, 4, 80, 10], [5, 75, 6, 14], [9, 7, 10, 74]])
    found = suggest_class_order(cm, names)
    assert found is not None
    assert found.classes == ("a", "c", "b", "d")
    assert found.low_classes == ("b", "c")
    assert found.suggested_accuracy == pytest.approx((74 + 80 + 75 + 74) / cm.sum())
    assert found.config_line() == 'classes = ["a", "c", "b", "d"]'
    # the same model in the right order: no suggestion
    right = cm[:, [0, 2, 1, 3]]
    assert suggest_class_order(right, names) is None


# -- output conventions ---------------------------------------------------------------------------


def _npz(path: Path, classes: int, rng: np.random.Generator) -> Path:
    """A tiny .npz dataset: band images, ``classes`` classes."""
    xs, ys = {}, {}
    for split, n in (("train", 6), ("test", 20)):
        xs[split] = np.concatenate([_band_images(rng, k, n) for k in range(classes)])
        ys[split] = np.repeat(np.arange(classes), n)
    np.savez(
        path,
        x_train=xs["train"],
        y_train=ys["train"],
        x_test=xs["test"],
        y_test=ys["test"],
        class_names=np.array([f"c{k}" for k in range(classes)]),
    )
    return path


FACTORIES = """
import torch
from torch import nn

class Band(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((3, 1))
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3, classes)
    def forward(self, x):
        return self.fc(self.flat(self.pool(x)))

def softmax_head():
    return nn.Sequential(Band(), nn.Softmax(dim=1))

class FunctionalSoftmax(Band):
    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)

def functional_softmax():
    return FunctionalSoftmax()

def logit_head():
    return nn.Sequential(Band())

def log_softmax_head():
    return nn.Sequential(Band(), nn.LogSoftmax(dim=1))

def single_logit():
    return Band(classes=1)

def five_outputs():
    return Band(classes=5)
"""


@pytest.fixture()
def factories(tmp_path, monkeypatch):
    name = f"userfactories_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _pipeline(tmp_path: Path, data: Path, factory: str, weights: Path, **extra: object) -> Pipeline:
    settings = {
        "data.name": "npz",
        "data.path": str(data),
        "model.arch": "import",
        "model.factory": factory,
        "model.weights": str(weights),
        **extra,
    }
    return Pipeline(RunDir(tmp_path / "run"), merge(RunConfig(), settings))


def _trained(module: nn.Module, path: Path) -> Path:
    torch.manual_seed(1)
    for p in module.parameters():
        nn.init.normal_(p, std=3.0)
    torch.save(module.state_dict(), path)
    return path


@pytest.mark.parametrize("build", ["softmax_head", "functional_softmax", "log_softmax_head"])
def test_reported_confidence_is_the_models_own_probability(factories, tmp_path, build):
    module = __import__(factories)
    user = getattr(module, build)().eval()
    weights = _trained(user, tmp_path / "w.pt")
    data = _npz(tmp_path / "d.npz", 3, np.random.default_rng(0))
    pipe = _pipeline(tmp_path, data, f"{factories}:{build}", weights)
    pipe.evaluate()
    test = pipe.dataset["test"]
    with torch.no_grad():
        own = user(test.images)
    probs = own.exp() if build == "log_softmax_head" else own
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    rows = samples[samples["split"] == "test"]
    np.testing.assert_allclose(rows["confidence"], probs.max(1).values.numpy(), atol=1e-5)
    cols = rows[[f"prob.{k}" for k in range(3)]].to_numpy()
    np.testing.assert_allclose(cols, probs.numpy(), atol=1e-5)


def test_final_softmax_module_is_removed_so_lrp_starts_from_the_logit(factories, tmp_path):
    module = __import__(factories)
    user = module.softmax_head().eval()
    weights = _trained(user, tmp_path / "w.pt")
    data = _npz(tmp_path / "d.npz", 3, np.random.default_rng(0))
    pipe = _pipeline(tmp_path, data, f"{factories}:softmax_head", weights)
    model = pipe.model()
    assert isinstance(model[1], nn.Identity)  # same module names, softmax gone
    x = pipe.dataset["test"].images[:5]
    with torch.no_grad():
        logits = user[0](x)
    torch.testing.assert_close(model(x), logits)
    scores = layer_relevance(model, x).scores
    torch.testing.assert_close(scores, logits.max(1).values)


def test_single_logit_binary_model_gives_sigmoid_probabilities(factories, tmp_path):
    module = __import__(factories)
    user = module.single_logit().eval()
    weights = _trained(user, tmp_path / "w.pt")
    data = _npz(tmp_path / "d.npz", 2, np.random.default_rng(0))
    pipe = _pipeline(tmp_path, data, f"{factories}:single_logit", weights)
    pipe.evaluate()
    with torch.no_grad():
        p1 = torch.sigmoid(user(pipe.dataset["test"].images)[:, 0]).numpy()
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    rows = samples[samples["split"] == "test"]
    np.testing.assert_allclose(rows["prob.1"], p1, atol=1e-5)
    np.testing.assert_allclose(rows["prob.0"], 1 - p1, atol=1e-5)
    np.testing.assert_array_equal(rows["pred"], (p1 > 0.5).astype(int))


def test_output_width_that_does_not_fit_the_classes_is_refused_up_front(factories, tmp_path):
    module = __import__(factories)
    weights = _trained(module.five_outputs(), tmp_path / "w.pt")
    data = _npz(tmp_path / "d.npz", 3, np.random.default_rng(0))
    pipe = _pipeline(tmp_path, data, f"{factories}:five_outputs", weights)
    with pytest.raises(ModelLoadError, match=r"returns 5 output\(s\) per image but the data has 3"):
        pipe.model()


def test_stated_output_convention_and_bad_value():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1)).eval()
    x = torch.rand(6, 1, 2, 2)
    with torch.no_grad():
        probs = model(x)
    adapted = adapt_outputs(model, ["a", "b", "c"], x, output="probs")
    torch.testing.assert_close(torch.softmax(adapted(x), 1), probs)
    with pytest.raises(ConfigError, match=r"model\.output"):
        adapt_outputs(nn.Linear(4, 3), ["a", "b", "c"], x.flatten(1), output="softmax")


def test_softmax_head_model_trains_on_logits(factories, tmp_path):
    """Training a model that ends in nn.Softmax is training its logits (no double softmax)."""
    data = _npz(tmp_path / "d.npz", 3, np.random.default_rng(0))
    trained = {}
    for build in ("softmax_head", "logit_head"):
        settings = {
            "data.name": "npz",
            "data.path": str(data),
            "model.factory": f"{factories}:{build}",
            "model.arch": "import",
            "train.epochs": 3,
            "train.select_by": "train",
        }
        pipe = Pipeline(RunDir(tmp_path / build), merge(RunConfig(), settings))
        pipe.train()
        trained[build] = pipe.model().state_dict()
    for name, value in trained["logit_head"].items():
        torch.testing.assert_close(trained["softmax_head"][name], value)


def test_onnx_model_with_more_outputs_than_classes_is_one_clear_line(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", 2, np.random.default_rng(0))
    f = tmp_path / "m.onnx"
    torch.onnx.export(
        BandNet(classes=5).eval(),
        (torch.zeros(1, 1, 9, 9),),
        str(f),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        dynamo=False,
    )
    argv = ["evaluate", str(tmp_path / "run"), "--dataset", "npz", "--data-path", str(data)]
    assert main([*argv, "--arch", "onnx", "--weights", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert "5 scores per image, but the data has 2 classes" in err[-1]


def test_torch_export_model_evaluates_and_points_to_the_black_box_analysis(tmp_path, capsys):
    data = _npz(tmp_path / "d.npz", 3, np.random.default_rng(0))
    model = nn.Sequential(BandNet(), nn.Softmax(dim=1)).eval()
    program = torch.export.export(
        model, (torch.rand(2, 1, 9, 9),), dynamic_shapes=({0: torch.export.Dim("n")},)
    )
    f = tmp_path / "m.pt2"
    torch.export.save(program, str(f))
    run = tmp_path / "run"
    argv = ["--quiet", "evaluate", str(run), "--dataset", "npz", "--data-path", str(data)]
    assert main([*argv, "--arch", "export", "--weights", str(f)]) == 0
    samples = pd.read_parquet(run / "samples.parquet")
    rows = samples[samples["split"] == "test"]
    test = load_dataset(DataConfig(name="npz", path=str(data)))["test"]
    with torch.no_grad():
        probs = model(test.images).numpy()
    np.testing.assert_allclose(rows[["prob.0", "prob.1", "prob.2"]], probs, atol=1e-5)
    # a plain `analyze` would run the black-box analysis; white-box by name is refused
    assert main(["analyze", str(run), "--features", "hudd"]) == 2
    err = capsys.readouterr().err
    assert "torch.export model gives no access" in err and "--features backbone" in err


# -- the worked example of docs/own-model.md ------------------------------------------------------


@pytest.mark.slow
def test_docs_worked_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    script = ROOT / "docs" / "examples" / "own_model.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((tmp_path / "runs" / "mine" / "metrics.json").read_text())
    stated = json.loads((tmp_path / "plain_pytorch_accuracy.json").read_text())
    assert metrics["splits"]["test"]["accuracy"] == pytest.approx(stated["test_accuracy"])
    assert "suggested_classes" not in metrics


def test_a_missing_model_file_is_reported_before_the_data_is_loaded(tmp_path, capsys, monkeypatch):
    import dnnsafety.pipeline.run as run_module

    def no_loading(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the model file was checked")

    monkeypatch.setattr(run_module, "load_dataset", no_loading)
    argv = ["evaluate", str(tmp_path / "run"), "--dataset", "digits", "--arch", "torchscript"]
    assert main([*argv, "--weights", str(tmp_path / "nope.ts")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nope.ts' does not exist" in err[-1]
